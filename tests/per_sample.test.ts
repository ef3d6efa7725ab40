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
import { runs } from "./helpers/runs.ts";
import { modelFromSpec } from "../src/io/spec.ts";
import { manualSeed } from "../src/layers/init.ts";
import { jacobian } from "../src/jacobian.ts";
import { Plan } from "../src/plan.ts";
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
  fc.assert(fc.property(arbitraryNetwork(), (c) => checkAgainstNaive(prepare(c))), { numRuns: runs(150) });
});

test("per-sample gradients and Jacobians equal central finite differences of the float64 reference", () => {
  fc.assert(fc.property(arbitraryNetwork(), (c) => checkAgainstFiniteDifferences(prepare(c))), { numRuns: runs(60) });
});

test("per-sample loss gradients sum to the ordinary batch gradient (one batch backward pass, summed kernels)", () => {
  fc.assert(fc.property(arbitraryNetwork(), (c) => checkSumsToBatchGradient(prepare(c))), { numRuns: runs(60) });
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
    { numRuns: runs(30) },
  );
});

test("a first convolution right before max pooling (its weight gradients read from the pooled gradient) equals naive backprop and finite differences", () => {
  // The plan skips the pooling's backward for these: 2-d with ReLU fused into the pooling,
  // 1-d strided with a wide kernel, 3-d, overlapping windows with padding, groups.
  const cases: NetworkCase[] = [
    { sampleShape: [2, 8, 8], layers: [
      { type: "Conv2d", in_channels: 2, out_channels: 4, kernel_size: 3, padding: 1 }, { type: "ReLU" },
      { type: "MaxPool2d", kernel_size: 2 }, { type: "Flatten" }, { type: "Linear", in_features: 64, out_features: 3 },
    ] },
    { sampleShape: [6, 60], layers: [
      { type: "Conv1d", in_channels: 6, out_channels: 3, kernel_size: 9, stride: 4 }, { type: "ReLU" },
      { type: "MaxPool1d", kernel_size: 2 }, { type: "Flatten" }, { type: "Linear", in_features: 3 * 6, out_features: 2 },
    ] },
    { sampleShape: [2, 4, 4, 4], layers: [
      { type: "Conv3d", in_channels: 2, out_channels: 2, kernel_size: 3, padding: 1, bias: false },
      { type: "MaxPool3d", kernel_size: 2 }, { type: "Flatten" }, { type: "Linear", in_features: 2 * 8, out_features: 2 },
    ] },
    { sampleShape: [8, 7, 9], layers: [
      { type: "Conv2d", in_channels: 8, out_channels: 6, kernel_size: 3, stride: [1, 2], padding: 1, groups: 2 },
      { type: "MaxPool2d", kernel_size: 3, stride: 2, padding: 1, ceil_mode: true }, { type: "Flatten" },
    ] },
  ].map(({ sampleShape, layers }, i) => ({ spec: { format: "torch.nn.Sequential", layers }, sampleShape, N: 3, seed: 100 + i }));
  for (const c of cases) {
    const p = prepare(c);
    const plan = new Plan(p.net, c.sampleShape, c.N, 1, "per-sample", "test");
    assert.equal(plan.skippedBackward, 1, `the pooling's backward is skipped: ${JSON.stringify(c.spec.layers[0])}`);
    checkAgainstNaive(p);
    checkAgainstFiniteDifferences(p);
    checkSumsToBatchGradient(p);
  }
  // J rows over 1 MiB: one sample per chunk, so the pooled gradient and argmax are read at
  // each chunk's first sample. The loss objectives only: a row is then D = 282,776 floats
  // (1.08 MiB); the output's Jacobian would be 1100 such rows a sample, 3.7 GB of J for N = 3
  // and 3300 naive backward passes (30-65 s a runtime) for the same path.
  const big = prepare({
    spec: { format: "torch.nn.Sequential", layers: [
      { type: "Conv2d", in_channels: 2, out_channels: 4, kernel_size: 3, padding: 1 }, { type: "ReLU" },
      { type: "MaxPool2d", kernel_size: 2 }, { type: "Flatten" }, { type: "Linear", in_features: 256, out_features: 1100 },
    ] },
    sampleShape: [2, 16, 16],
    N: 3,
    seed: 7,
  });
  const losses = big.objectives.filter((o) => o.loss !== undefined);
  assert.equal(losses.length, 2, "MSE and cross-entropy");
  checkAgainstNaive({ ...big, objectives: losses });
});

test("cross-entropy's ignore_index (-100): ignored samples get zero rows, mean divides by the targets kept, and a batch of only ignored targets is refused under mean", async () => {
  const { Linear, perSampleGradients, perSampleGradientsNaive, ValueError } = await import("../mod.ts");
  manualSeed(4);
  const net = new Linear(3, 4);
  const x = randn([5, 3], 2);
  const labels = (values: number[]) => ({ shape: [values.length], data: Int32Array.from(values) });
  const kept = labels([1, -100, 3, -100, 0]);
  const D = 16;
  const mean = perSampleGradients(net, x, kept, { loss: "cross_entropy", reduction: "mean" });
  const sum = perSampleGradients(net, x, kept, { loss: "cross_entropy", reduction: "sum" });
  for (const n of [1, 3]) assert.ok(mean.data.subarray(n * D, (n + 1) * D).every((v) => v === 0), `row ${n} of an ignored target`);
  // mean = sum / 3 (three targets kept), as PyTorch divides.
  for (let i = 0; i < mean.data.length; i++) assert.ok(Math.abs(mean.data[i] - sum.data[i] / 3) <= 1e-7 * (1 + Math.abs(sum.data[i])), `entry ${i}`);
  const naive = perSampleGradientsNaive(net, x, kept, { loss: "cross_entropy", reduction: "mean" }) as { data: Float32Array };
  for (let i = 0; i < mean.data.length; i++) assert.ok(Math.abs(mean.data[i] - naive.data[i]) <= 1e-6, `naive entry ${i}`);

  const none = labels([-100, -100]);
  const x2 = randn([2, 3], 3);
  assert.throws(
    () => perSampleGradients(net, x2, none, { loss: "cross_entropy" }),
    (e: Error) => e instanceof ValueError && /every target is ignore_index \(-100\), so the mean over the targets is 0\/0 \(PyTorch gives NaN\)/.test(e.message),
  );
  const zeros = perSampleGradients(net, x2, none, { loss: "cross_entropy", reduction: "sum" });
  assert.ok(zeros.data.every((v) => v === 0), "sum over no targets: zero rows (as PyTorch's sum)");
});
