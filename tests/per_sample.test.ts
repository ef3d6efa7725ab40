/**
 * The central property: per-sample gradients and vector-output Jacobians computed in one
 * forward and one backward pass equal (a) naive per-sample backprop, N separate batch-of-one
 * passes through the ordinary summed-gradient path, and (b) central finite differences of
 * the float64 reference in tests/reference/, over random architectures, shapes and
 * hyperparameters.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { modelFromSpec } from "../src/io/spec.ts";
import { manualSeed } from "../src/layers/init.ts";
import { jacobian } from "../src/jacobian.ts";
import { numel, randn } from "../src/tensor.ts";
import { arbitraryNetwork } from "./helpers/architectures.ts";
import type { NetworkCase } from "./helpers/architectures.ts";
import { checkAgainstFiniteDifferences, checkAgainstNaive, checkSumsToBatchGradient, describeCase, objectivesFor } from "./helpers/properties.ts";
import type { Prepared } from "./helpers/properties.ts";

function prepare(c: NetworkCase): Prepared {
  manualSeed(c.seed);
  const net = modelFromSpec(c.spec);
  return {
    spec: c.spec,
    net,
    x: randn([c.N, ...c.sampleShape], c.seed),
    objectives: objectivesFor(net, c.sampleShape, c.N, c.seed),
    describe: (o) => describeCase(c, o),
  };
}

test("per-sample gradients and Jacobians in one pass equal naive per-sample backprop, for random networks", () => {
  fc.assert(fc.property(arbitraryNetwork(), (c) => checkAgainstNaive(prepare(c))), { numRuns: 150 });
});

test("per-sample gradients and Jacobians equal central finite differences of the float64 reference", () => {
  fc.assert(fc.property(arbitraryNetwork(), (c) => checkAgainstFiniteDifferences(prepare(c))), { numRuns: 60 });
});

test("per-sample loss gradients sum to the ordinary batch gradient (one batch backward pass, summed kernels)", () => {
  fc.assert(fc.property(arbitraryNetwork(), (c) => checkSumsToBatchGradient(prepare(c))), { numRuns: 60 });
});

test("asTuple splits the matrix per parameter, in parameters() order, with [N, ...shape] or [N, K, ...shape]", () => {
  fc.assert(
    fc.property(arbitraryNetwork(), (c) => {
      const p = prepare(c);
      const flat = jacobian(p.net, p.x);
      const parts = jacobian(p.net, p.x, { asTuple: true });
      const parameters = p.net.parameters();
      assert.equal(parts.length, parameters.length);
      const lead = flat.shape.slice(0, -1);
      const D = flat.shape[flat.shape.length - 1];
      const rows = numel(lead);
      let column = 0;
      parameters.forEach(([, t], i) => {
        assert.deepEqual(parts[i].shape, [...lead, ...t.shape]);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < t.data.length; j++) {
            assert.equal(parts[i].data[r * t.data.length + j], flat.data[r * D + column + j]);
          }
        }
        column += t.data.length;
      });
    }),
    { numRuns: 30 },
  );
});
