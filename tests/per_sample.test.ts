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
import type { Module } from "../src/layers/module.ts";
import { batchGradient, jacobian, jacobianNaive, perSampleGradients, perSampleGradientsNaive } from "../src/jacobian.ts";
import type { LossName, Reduction, Target } from "../src/losses.ts";
import type { Tensor } from "../src/tensor.ts";
import { mulberry32, numel, randn } from "../src/tensor.ts";
import { arbitraryNetwork } from "./helpers/architectures.ts";
import type { NetworkCase } from "./helpers/architectures.ts";
import { finiteDifferenceCheck, parseSpec, relativeError } from "./reference/mod.ts";
import type { BatchObjective } from "./reference/mod.ts";

interface Objective {
  loss?: LossName;
  reduction?: Reduction;
  target?: Target;
}

interface Prepared {
  net: Module;
  x: Tensor;
  outShape: number[];
  objectives: Objective[];
}

function prepare(c: NetworkCase): Prepared {
  manualSeed(c.seed);
  const net = modelFromSpec(c.spec);
  const x = randn([c.N, ...c.sampleShape], c.seed);
  const outShape = net.outputShape(c.sampleShape);
  const rng = mulberry32(c.seed ^ 0x9e3779b9);
  const objectives: Objective[] = [{}];
  const reduction: Reduction = rng() < 0.5 ? "sum" : "mean";
  objectives.push({ loss: "mse", reduction, target: randn([c.N, ...outShape], c.seed + 1) });
  if (outShape.length >= 1) {
    const [C, ...positions] = outShape;
    const classes = new Int32Array(c.N * numel(positions)).map(() => Math.floor(rng() * C));
    objectives.push({ loss: "cross_entropy", reduction: rng() < 0.5 ? "sum" : "mean", target: { shape: [c.N, ...positions], data: classes } });
  }
  return { net, x, outShape, objectives };
}

function onePass(p: Prepared, o: Objective): Tensor {
  return o.loss
    ? perSampleGradients(p.net, p.x, o.target!, { loss: o.loss, reduction: o.reduction })
    : jacobian(p.net, p.x);
}

function naive(p: Prepared, o: Objective): Tensor {
  return (o.loss
    ? perSampleGradientsNaive(p.net, p.x, o.target!, { loss: o.loss, reduction: o.reduction })
    : jacobianNaive(p.net, p.x)) as Tensor;
}

function describeCase(c: NetworkCase, o: Objective): string {
  return `seed ${c.seed}, N=${c.N}, input ${JSON.stringify(c.sampleShape)}, objective ${o.loss ?? "output"}/${o.reduction ?? "-"}, spec ${JSON.stringify(c.spec)}`;
}

test("per-sample gradients and Jacobians in one pass equal naive per-sample backprop, for random networks", () => {
  fc.assert(
    fc.property(arbitraryNetwork(), (c) => {
      const p = prepare(c);
      for (const o of p.objectives) {
        const fast = onePass(p, o);
        const slow = naive(p, o);
        assert.deepEqual(fast.shape, slow.shape, describeCase(c, o));
        const error = relativeError(fast.data, slow.data);
        assert.ok(error <= 1e-4, `relative error ${error} for ${describeCase(c, o)}`);
      }
    }),
    { numRuns: 150 },
  );
});

test("per-sample gradients and Jacobians equal central finite differences of the float64 reference", () => {
  fc.assert(
    fc.property(arbitraryNetwork(), (c) => {
      const p = prepare(c);
      const model = parseSpec(c.spec);
      const params = new Map(Object.entries(p.net.stateDict()).map(([k, t]) => [k, Float64Array.from(t.data)]));
      for (const o of p.objectives) {
        const fast = onePass(p, o);
        const objective: BatchObjective = o.loss
          ? { objective: o.loss, reduction: o.reduction!, target: Array.from(o.target!.data as ArrayLike<number>, Number) }
          : { objective: "output" };
        const { error, shape } = finiteDifferenceCheck(fast.data, model, params, p.x.data, p.x.shape as number[], objective, 2e-3);
        assert.deepEqual(fast.shape, shape, describeCase(c, o));
        assert.ok(error <= 2e-3, `relative error ${error} against finite differences for ${describeCase(c, o)}`);
      }
    }),
    { numRuns: 60 },
  );
});

test("per-sample loss gradients sum to the ordinary batch gradient (one batch backward pass, summed kernels)", () => {
  fc.assert(
    fc.property(arbitraryNetwork(), (c) => {
      const p = prepare(c);
      for (const o of p.objectives.filter((o) => o.loss)) {
        const rows = onePass(p, o);
        const total = batchGradient(p.net, p.x, o.target!, { loss: o.loss!, reduction: o.reduction });
        const D = total.shape[0];
        const summed = new Float64Array(D);
        for (let n = 0; n < c.N; n++) for (let d = 0; d < D; d++) summed[d] += rows.data[n * D + d];
        const error = relativeError(summed, total.data);
        assert.ok(error <= 1e-4, `relative error ${error} for ${describeCase(c, o)}`);
      }
    }),
    { numRuns: 60 },
  );
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
