/**
 * BatchNorm (eval), LayerNorm, GroupNorm, InstanceNorm, Embedding, adaptive pooling and
 * Unflatten: forward values checked by hand; per-sample gradients and Jacobians of random
 * networks using them (between conv and linear layers) equal naive per-sample backprop and
 * central finite differences of the float64 reference; PyTorch's state-dict layout; the
 * errors; and no allocation on repeated calls.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import {
  AdaptiveAvgPool1d,
  AdaptiveAvgPool2d,
  AdaptiveMaxPool1d,
  AdaptiveMaxPool2d,
  AdaptiveMaxPool3d,
  BatchNorm1d,
  BatchNorm2d,
  Conv1d,
  Conv2d,
  Embedding,
  Flatten,
  GroupNorm,
  InstanceNorm1d,
  InstanceNorm2d,
  jacobian,
  LayerNorm,
  Linear,
  loadModel,
  modelFromSpec,
  perSampleGradients,
  randn,
  readSafetensors,
  ReLU,
  Sequential,
  ShapeError,
  tensor,
  Unflatten,
  UnsupportedError,
  ValueError,
  writeSafetensors,
} from "../mod.ts";
import type { Module } from "../mod.ts";
import { planCache } from "../src/forward.ts";
import { manualSeed } from "../src/layers/init.ts";
import { arena } from "../src/wasm.ts";
import { numel } from "../src/tensor.ts";
import { assertFusedMatchesApart } from "./helpers/fusion.ts";
import { arbitraryNormNetwork, inputFor, wellConditioned, randomiseNormState } from "./helpers/norm_architectures.ts";
import type { NormNetworkCase } from "./helpers/norm_architectures.ts";
import { checkAgainstFiniteDifferences, checkAgainstNaive, checkSumsToBatchGradient, describeCase, objectivesFor } from "./helpers/properties.ts";
import type { Prepared } from "./helpers/properties.ts";

function close(actual: ArrayLike<number>, expected: readonly number[], tolerance = 1e-5, what = "") {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tolerance * Math.max(1, Math.abs(expected[i])), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward values, by hand

test("BatchNorm1d in eval mode is (x − running_mean)/√(running_var + eps)·γ + β per channel, on (N, C) and (N, C, L)", () => {
  const bn = new BatchNorm1d(2, { eps: 0 });
  bn.runningMean!.data.set([1, -2]);
  bn.runningVar!.data.set([4, 0.25]);
  bn.weight!.data.set([3, -1]);
  bn.bias!.data.set([0.5, 0]);
  // (x − 1)/2·3 + 0.5 and (x + 2)/0.5·(−1)
  close(bn.forward(tensor([3, 0, -1, -2], [2, 2])).data, [3.5, -4, -2.5, 0]);
  close(bn.forward(tensor([1, 5, -2, -1.5], [1, 2, 2])).data, [0.5, 6.5, 0, -1]);
});

test("LayerNorm normalises each position over the normalized_shape, with an elementwise γ and β", () => {
  const ln = new LayerNorm(4, { eps: 0 });
  ln.weight!.data.set([1, 2, 3, 4]);
  ln.bias!.data.set([0, 0, 0, 1]);
  // [1, 2, 3, 4]: mean 2.5, variance 1.25; second row [2, 2, 2, 6]: mean 3, variance 3
  const s = 1 / Math.sqrt(1.25);
  const t = 1 / Math.sqrt(3);
  const y = ln.forward(tensor([1, 2, 3, 4, 2, 2, 2, 6], [1, 2, 4]));
  close(y.data, [-1.5 * s, -1 * s, 1.5 * s, 4 * 1.5 * s + 1, -t, -2 * t, -3 * t, 4 * 3 * t + 1]);
  assert.deepEqual(y.shape, [1, 2, 4]);
  const plain = new LayerNorm([2, 2], { elementwiseAffine: false, eps: 0 });
  assert.deepEqual(plain.parameters(), []);
  close(plain.forward(tensor([1, 2, 3, 4], [1, 2, 2])).data, [-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s]);
});

test("GroupNorm normalises groups of channels with their positions; γ and β are per channel", () => {
  const gn = new GroupNorm(2, 4, { eps: 0 });
  gn.weight!.data.set([1, 1, 2, 2]);
  gn.bias!.data.set([0, 0, 0, 10]);
  // group 0: channels 0, 1 = [0, 2 | 4, 6] mean 3, variance 5; group 1: channels 2, 3 = [1, 1 | 1, 5] mean 2, variance 3
  const a = 1 / Math.sqrt(5);
  const b = 1 / Math.sqrt(3);
  close(gn.forward(tensor([0, 2, 4, 6, 1, 1, 1, 5], [1, 4, 2])).data, [-3 * a, -a, a, 3 * a, -2 * b, -2 * b, -2 * b + 10, 6 * b + 10]);
});

test("InstanceNorm normalises each channel of each sample over its positions; with track_running_stats in eval mode, by the running statistics", () => {
  const plain = new InstanceNorm1d(2, { eps: 0 });
  close(plain.forward(tensor([1, 3, 10, 20], [1, 2, 2])).data, [-1, 1, -1, 1]);
  const tracked = new InstanceNorm1d(2, { eps: 0, affine: true, trackRunningStats: true });
  tracked.runningMean!.data.set([1, 0]);
  tracked.runningVar!.data.set([4, 1]);
  tracked.weight!.data.set([2, 1]);
  close(tracked.forward(tensor([1, 3, 10, 20], [1, 2, 2])).data, [0, 2, 10, 20]);
  // In training mode PyTorch uses the sample's own statistics (per sample: defined).
  tracked.train();
  close(tracked.forward(tensor([1, 3, 10, 20], [1, 2, 2])).data, [-2, 2, -1, 1]);
});

test("Embedding looks up rows of its weight; the padding row starts at zero", () => {
  manualSeed(3);
  const embed = new Embedding(4, 3, { paddingIdx: -1 });
  assert.equal(embed.paddingIdx, 3);
  assert.deepEqual(Array.from(embed.weight.data.subarray(9)), [0, 0, 0]);
  embed.weight.data.set([0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32]);
  const y = embed.forward(tensor([2, 0, 3, 2], [2, 2]));
  assert.deepEqual(y.shape, [2, 2, 3]);
  assert.deepEqual(Array.from(y.data), [20, 21, 22, 0, 1, 2, 30, 31, 32, 20, 21, 22]);
});

test("adaptive pools use PyTorch's windows [⌊i·L/out⌋, ⌈(i+1)·L/out⌉), null keeping a dim", () => {
  const x = tensor([1, 5, 2, 8, 3], [1, 1, 5]);
  // out 3 over 5: [0, 2), [1, 4), [3, 5)
  close(new AdaptiveAvgPool1d(3).forward(x).data, [3, 5, 5.5]);
  assert.deepEqual(Array.from(new AdaptiveMaxPool1d(3).forward(x).data), [5, 8, 8]);
  // out 7 over 5 (upsampling): [0,1) [0,2) [1,3) [2,3) [2,4) [3,5) [4,5)
  close(new AdaptiveAvgPool1d(7).forward(x).data, [1, 3, 3.5, 2, 5, 5.5, 3]);
  const image = tensor(Array.from({ length: 12 }, (_, i) => i), [1, 1, 3, 4]);
  const pooled = new AdaptiveAvgPool2d([1, null]).forward(image);
  assert.deepEqual(pooled.shape, [1, 1, 1, 4]);
  close(pooled.data, [4, 5, 6, 7]);
  assert.deepEqual(new AdaptiveMaxPool2d([2, 2]).forward(image).data, new Float32Array([5, 7, 9, 11]));
  assert.deepEqual(new AdaptiveMaxPool3d(1).forward(tensor([1, -2, 3, 0], [1, 1, 1, 2, 2])).data, new Float32Array([3]));
});

test("Unflatten splits one dim (counting the batch as 0, negative from the end, one -1 inferred)", () => {
  assert.deepEqual(new Unflatten(1, [2, 3]).outputShape([6]), [2, 3]);
  assert.deepEqual(new Unflatten(-1, [2, -1]).outputShape([5, 6]), [5, 2, 3]);
  assert.deepEqual(new Unflatten(2, [1, 4, 1]).outputShape([3, 4, 7]), [3, 1, 4, 1, 7]);
  const x = randn([2, 6], 1);
  assert.deepEqual(Array.from(new Sequential(new Unflatten(1, [3, 2])).forward(x).data), Array.from(x.data));
});

// ---------------------------------------------------------------------------------------------
// Random networks: one pass against naive per-sample backprop and finite differences

function prepare(c: NormNetworkCase): Prepared {
  manualSeed(c.seed);
  const net = modelFromSpec(c.spec);
  randomiseNormState(net, c.seed);
  return { spec: c.spec, net, x: inputFor(c), objectives: objectivesFor(net, c.sampleShape, c.N, c.seed), describe: (o) => describeCase(c, o) };
}

test("per-sample gradients and Jacobians through normalisation, Embedding, adaptive pooling and Unflatten equal naive per-sample backprop", () => {
  fc.assert(fc.property(arbitraryNormNetwork(), (c) => checkAgainstNaive(prepare(c))), { numRuns: runs(120) });
});

test("per-sample gradients and Jacobians through these layers equal central finite differences of the float64 reference", () => {
  // Normalisations over 2 values or over copies of one leave only O(ε) or zero gradients,
  // beyond a finite difference's reach (wellConditioned).
  const cases = arbitraryNormNetwork().filter(wellConditioned);
  fc.assert(fc.property(cases, (c) => checkAgainstFiniteDifferences(prepare(c))), { numRuns: runs(60) });
});

test("per-sample loss gradients through these layers sum to the ordinary batch gradient", () => {
  // The same cases as finite differences can judge: a normalisation over one value makes the
  // output β in every channel, so a cross-entropy gradient is Σ_c (p_c − y_c) = 0 in exact
  // arithmetic and float32 rounding in both sums (seed 942470631: 8.9e-8 against 7.5e-8, one
  // sixth apart; found by a 3000-run sweep on bun). Naive per-sample backprop still checks them.
  const cases = arbitraryNormNetwork().filter(wellConditioned);
  fc.assert(fc.property(cases, (c) => checkSumsToBatchGradient(prepare(c))), { numRuns: runs(40) });
});

test("BatchNorm then ReLU (compiled as one fused step) gives the same outputs, Jacobians, per-sample and batch gradients as the pair apart", () => {
  // A nested Sequential keeps the two apart, so the second network runs them unfused. Some
  // channels get γ = β = 0 and mean 0: outputs exactly 0, where ReLU passes no gradient.
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 3 }), (seed, layout, K) => {
      const C = 3;
      const sampleShape = [[5], [C, 7], [C, 3, 5]][layout];
      const make = (fused: boolean) => {
        manualSeed(seed);
        const first = layout === 0 ? new Linear(5, C) : layout === 1 ? new Conv1d(C, C, 1) : new Conv2d(C, C, 1);
        const norm = layout === 2 ? new BatchNorm2d(C) : new BatchNorm1d(C);
        const relu = fused ? new ReLU() : new Sequential(new ReLU());
        const width = numel([C, ...sampleShape.slice(1)]);
        const net = new Sequential(first, norm, relu, new Flatten(), new Linear(width, K));
        randomiseNormState(net, seed);
        norm.weight!.data[1] = 0;
        norm.bias!.data[1] = 0;
        net.eval();
        return net;
      };
      const x = randn([4, ...sampleShape], seed);
      const fused = make(true);
      const apart = make(false);
      assertFusedMatchesApart(fused, apart, x, tensor(Array.from({ length: 4 }, (_, n) => n % K), [4]));
    }),
    { numRuns: runs(40) },
  );
});

test("BatchNorm's Jacobian columns for γ and β equal Σ_l ∂out/∂y·x̂ and Σ_l ∂out/∂y computed by hand in float64, with and without a ReLU after it, first or after a convolution", () => {
  // After a convolution the backward pass leaves these sums for the per-sample pass
  // (norm_running_backward's sums); first in the network, no backward runs through it and the
  // per-sample kernel reads gy and x. The naive loop and batch gradient share each way's
  // arithmetic, so this checks both against plain arithmetic.
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 2 }), (seed, withReLU, normFirst, K) => {
      const C = 3, H = 2, W = 3, L = H * W, N = 2;
      manualSeed(seed);
      const conv = new Conv2d(C, C, 1);
      const norm = new BatchNorm2d(C);
      const head = new Linear(C * L, K);
      const net = new Sequential(...(normFirst ? [] : [conv]), norm, ...(withReLU ? [new ReLU()] : []), new Flatten(), head);
      randomiseNormState(net, seed);
      net.eval();
      const x = randn([N, C, H, W], seed);
      const z = normFirst ? x.data : conv.forward(x).data;
      const J = jacobian(net, x).data;
      const D = J.length / (N * K);
      const columns = net.parameters().map(([name]) => name);
      const start = (name: string) => net.parameters().slice(0, columns.indexOf(name)).reduce((s, [, t]) => s + t.data.length, 0);
      const at = normFirst ? "0." : "1.";
      const gammaAt = start(columns.find((n) => n.endsWith("weight") && n.startsWith(at))!);
      const betaAt = start(columns.find((n) => n.endsWith("bias") && n.startsWith(at))!);
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          for (let c = 0; c < C; c++) {
            const rstd = 1 / Math.sqrt(norm.runningVar!.data[c] + norm.eps);
            // The ReLU's mask from the output as the kernel rounds it (float32), so that an
            // output within rounding of 0 cannot flip it.
            const f = Math.fround, a = f(norm.weight!.data[c] * f(rstd));
            const offset = f(norm.bias!.data[c] - f(norm.runningMean!.data[c] * a));
            let dGamma = 0, dBeta = 0, scale = 0;
            for (let l = 0; l < L; l++) {
              const xhat = (z[(n * C + c) * L + l] - norm.runningMean!.data[c]) * rstd;
              const y = f(f(z[(n * C + c) * L + l] * a) + offset);
              const g = withReLU && y <= 0 ? 0 : head.weight.data[k * C * L + c * L + l];
              dGamma += g * xhat;
              dBeta += g;
              scale += Math.abs(g) * (1 + Math.abs(xhat));
            }
            const row = (n * K + k) * D;
            const tolerance = 1e-5 * Math.max(1, scale);
            assert.ok(Math.abs(J[row + gammaAt + c] - dGamma) <= tolerance, `∂γ[${c}] sample ${n} output ${k}: ${J[row + gammaAt + c]} vs ${dGamma}`);
            assert.ok(Math.abs(J[row + betaAt + c] - dBeta) <= tolerance, `∂β[${c}] sample ${n} output ${k}: ${J[row + betaAt + c]} vs ${dBeta}`);
          }
        }
      }
    }),
    { numRuns: runs(30) },
  );
});

test("ReLU then adaptive average pooling (compiled as one fused step) gives the same outputs, Jacobians, per-sample and batch gradients as the pair apart", () => {
  // A nested Sequential keeps the two apart. Output sizes that tile the plane (global pooling)
  // and that do not (overlapping windows); some inputs exactly 0, where ReLU passes nothing.
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.constantFrom(1, 2, 3), fc.integer({ min: 1, max: 3 }), (seed, out, K) => {
      const make = (fused: boolean) => {
        manualSeed(seed);
        const relu = fused ? new ReLU() : new Sequential(new ReLU());
        return new Sequential(new Conv2d(2, 3, 2), relu, new AdaptiveAvgPool2d(out), new Flatten(), new Linear(3 * out * out, K));
      };
      const x = randn([3, 2, 6, 7], seed);
      const fused = make(true);
      const apart = make(false);
      // A zero kernel for output channel 1 and no bias: its plane is exactly 0.
      for (const net of [fused, apart]) {
        const conv = net.layers[0] as Conv2d;
        conv.weight.data.fill(0, 8, 16);
        conv.bias!.data[1] = 0;
      }
      assertFusedMatchesApart(fused, apart, x, tensor(Array.from({ length: 3 }, (_, n) => n % K), [3]));
    }),
    { numRuns: runs(40) },
  );
});

test("Embedding's per-sample gradient is a scatter-add of the sample's output gradients into its tokens' rows; the padding row gets none", () => {
  const embed = new Embedding(5, 2, { paddingIdx: 1 });
  const net = new Sequential(embed, new Flatten());
  // sample 0: tokens [3, 3, 1]; sample 1: tokens [0, 4, 1]. Output k of a sample is one element.
  const x = tensor([3, 3, 1, 0, 4, 1], [2, 3]);
  const J = jacobian(net, x); // [2, 6, 10]
  assert.deepEqual(J.shape, [2, 6, 10]);
  for (let n = 0; n < 2; n++) {
    for (let k = 0; k < 6; k++) {
      const row = J.data.subarray((n * 6 + k) * 10, (n * 6 + k + 1) * 10);
      const token = x.data[n * 3 + Math.floor(k / 2)];
      const expected = new Array(10).fill(0);
      if (token !== 1) expected[token * 2 + (k % 2)] = 1;
      assert.deepEqual(Array.from(row), expected, `sample ${n}, output ${k}`);
    }
  }
  // Repeated tokens add up: the sum of outputs of sample 0 puts 2 on row 3.
  const G = perSampleGradients(net, x, { shape: [2, 6], data: new Float32Array(12) }, { loss: "mse", reduction: "sum" });
  assert.deepEqual(G.shape, [2, 10]);
});

// ---------------------------------------------------------------------------------------------
// State dict, model files, plans

test("BatchNorm's state dict has PyTorch's keys and order, buffers included, and loads from a safetensors file", () => {
  const net = new Sequential(new Conv2d(1, 2, 3), new BatchNorm2d(2), new Flatten(), new Linear(2, 1));
  assert.deepEqual(Object.keys(net.stateDict()), [
    "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias",
  ]);
  assert.deepEqual(net.parameters().map(([n]) => n), ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]);
  assert.deepEqual(net.stateDict()["1.num_batches_tracked"].shape, []);
  const spec = {
    format: "torch.nn.Sequential",
    layers: [
      { type: "Conv2d", in_channels: 1, out_channels: 2, kernel_size: 3 },
      { type: "BatchNorm2d", num_features: 2, eps: 1e-3, momentum: null },
      { type: "Flatten" },
      { type: "Linear", in_features: 2, out_features: 1 },
    ],
  };
  const state = modelFromSpec(spec).stateDict();
  state["1.running_mean"].data.set([0.5, -0.5]);
  state["1.running_var"].data.set([2, 3]);
  state["1.num_batches_tracked"].data[0] = 7;
  const bytes = writeSafetensors(Object.entries(state));
  assert.deepEqual(readSafetensors(bytes).get("1.num_batches_tracked")!.shape, []);
  const loaded = loadModel(JSON.stringify(spec), bytes);
  assert.deepEqual(Array.from(loaded.stateDict()["1.running_var"].data), [2, 3]);
  assert.equal(loaded.stateDict()["1.num_batches_tracked"].data[0], 7);
  delete state["1.running_var"];
  assert.throws(() => loadModel(JSON.stringify(spec), writeSafetensors(Object.entries(state))), /"1\.running_var" \(2,\) is missing/);
});

test("the spec loader knows every layer of this issue with PyTorch's argument names and defaults", () => {
  const net = modelFromSpec({
    format: "torch.nn.Sequential",
    layers: [
      { type: "BatchNorm1d", num_features: 3, eps: 1e-5, momentum: 0.1, affine: true, track_running_stats: true },
      { type: "InstanceNorm1d", num_features: 3 },
      { type: "LayerNorm", normalized_shape: [5], eps: 1e-5, elementwise_affine: true, bias: false },
      { type: "GroupNorm", num_groups: 3, num_channels: 3, eps: 1e-5, affine: false },
      { type: "AdaptiveAvgPool1d", output_size: 2 },
      { type: "AdaptiveMaxPool1d", output_size: [null], return_indices: false },
      { type: "Flatten" },
      { type: "Unflatten", dim: 1, unflattened_size: [2, 3] },
    ],
  });
  assert.deepEqual(net.stateDict() && Object.keys(net.stateDict()), [
    "0.weight", "0.bias", "0.running_mean", "0.running_var", "0.num_batches_tracked", "2.weight",
  ]);
  assert.deepEqual(net.outputShape([3, 5]), [2, 3]);
  const embed = modelFromSpec({
    format: "torch.nn.Sequential",
    layers: [{ type: "Embedding", num_embeddings: 4, embedding_dim: 2, padding_idx: null, max_norm: null, norm_type: 2, scale_grad_by_freq: false, sparse: true }],
  });
  assert.deepEqual(embed.outputShape([5]), [5, 2]);
  const layer = (l: object) => ({ format: "torch.nn.Sequential", layers: [{ type: "Sequential", layers: [l] }] });
  assert.throws(() => modelFromSpec(layer({ type: "Embedding", num_embeddings: 4, embedding_dim: 2, max_norm: 1 })), (e: Error) =>
    e instanceof UnsupportedError && /layer 0\.0 \(Embedding\): max_norm=1 is not supported/.test(e.message));
  assert.throws(() => modelFromSpec(layer({ type: "Embedding", num_embeddings: 4, embedding_dim: 2, scale_grad_by_freq: true })), /scale_grad_by_freq/);
  assert.throws(() => modelFromSpec(layer({ type: "BatchNorm2d", num_features: 2, momentum: "fast" })), /layer 0\.0 \(BatchNorm2d\): "momentum" must be/);
  assert.throws(() => modelFromSpec(layer({ type: "LayerNorm", normalized_shape: 3, elementwise_afine: true })), /layer 0\.0 \(LayerNorm\): unknown hyperparameter "elementwise_afine"/);
  assert.throws(() => modelFromSpec(layer({ type: "GroupNorm", num_groups: 2, num_channels: 3 })), /layer 0\.0 \(GroupNorm\): .*divisible/);
  // A missing hyperparameter is named as missing, not as "got undefined".
  assert.throws(() => modelFromSpec(layer({ type: "GroupNorm", num_channels: 4 })), /layer 0\.0 \(GroupNorm\): "num_groups" is missing; it must be an integer$/);
  assert.throws(() => modelFromSpec(layer({ type: "Conv2d", in_channels: 1, out_channels: 2 })), /\(Conv2d\): "kernel_size" is missing; it must be an integer or a list of integers$/);
  assert.throws(() => modelFromSpec(layer({ type: "AdaptiveAvgPool2d", output_size: [2, "x"] })), /"output_size" must be/);
  assert.throws(() => modelFromSpec(layer({ type: "AdaptiveMaxPool2d", output_size: 2, return_indices: true })), /return_indices/);
  assert.throws(() => modelFromSpec(layer({ type: "Unflatten", dim: 1, unflattened_size: 6 })), /"unflattened_size" must be a list/);
});

test("a repeated call through these layers builds no plan and grows no WASM memory; new running statistics are picked up", () => {
  const bn = new BatchNorm2d(3);
  const net = new Sequential(
    new Conv2d(2, 3, 3, { padding: 1 }), bn, new ReLU(), new GroupNorm(3, 3), new InstanceNorm2d(3, { affine: true }),
    new AdaptiveMaxPool2d([2, null]), new LayerNorm([3, 2, 5]), new AdaptiveAvgPool2d(2), new Flatten(), new Linear(12, 6),
    new Unflatten(1, [2, 3]), new LayerNorm(3),
  );
  const x = randn([4, 2, 4, 5], 5);
  const y = { shape: [4, 3], data: new Int32Array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0]) };
  const first = jacobian(net, x);
  perSampleGradients(net, x, y, { loss: "cross_entropy" });
  const plans = planCache(net).built;
  const bytes = arena.byteLength();
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(jacobian(net, x).data, first.data);
    perSampleGradients(net, x, y, { loss: "cross_entropy" });
  }
  assert.equal(planCache(net).built, plans);
  assert.equal(arena.byteLength(), bytes);
  bn.runningMean!.data.set([1, 2, 3]);
  assert.notDeepEqual(jacobian(net, x).data, first.data);
  assert.equal(planCache(net).built, plans);

  const tokens = new Sequential(new Embedding(6, 4, { paddingIdx: 0 }), new LayerNorm(4), new Flatten(), new Linear(12, 2));
  const ids = tensor([1, 0, 5, 2, 2, 3], [2, 3]);
  const once = jacobian(tokens, ids);
  const tokenPlans = planCache(tokens).built;
  const tokenBytes = arena.byteLength();
  assert.deepEqual(jacobian(tokens, ids).data, once.data);
  assert.equal(planCache(tokens).built, tokenPlans);
  assert.equal(arena.byteLength(), tokenBytes);
});

// ---------------------------------------------------------------------------------------------
// Errors

test("BatchNorm in training mode is refused with UnsupportedError, also by a plan built in eval mode", () => {
  const net = new Sequential(new Linear(3, 2), new BatchNorm1d(2));
  const x = randn([4, 3], 1);
  jacobian(net, x);
  net.train();
  assert.throws(() => jacobian(net, x), (e: Error) =>
    e instanceof UnsupportedError && /1 \(BatchNorm1d\): BatchNorm1d in training mode .*mix samples.*net\.eval\(\)/.test(e.message));
  assert.throws(() => perSampleGradients(net, x, randn([4, 2], 2), { loss: "mse" }), UnsupportedError);
  net.eval();
  jacobian(net, x);
  const untracked = new Sequential(new BatchNorm1d(3, { trackRunningStats: false }));
  assert.throws(() => jacobian(untracked, x), (e: Error) => e instanceof UnsupportedError && /track_running_stats=False/.test(e.message));
});

test("InstanceNorm in training mode is allowed (statistics per sample) and equals eval mode without running statistics", () => {
  const net = new Sequential(new InstanceNorm1d(2, { affine: true }), new Flatten(), new Linear(8, 2));
  const x = randn([3, 2, 4], 9);
  const evalMode = jacobian(net, x);
  net.train();
  assert.deepEqual(jacobian(net, x).data, evalMode.data);
  assert.throws(() => new InstanceNorm1d(2).forward(randn([2, 2, 1], 1)), (e: Error) =>
    e instanceof ShapeError && /more than 1 spatial element/.test(e.message));
});

test("Embedding indices out of range or not integers are a ValueError naming the sample and the position", () => {
  const net = new Sequential(new Embedding(5, 2));
  assert.throws(() => net.forward(tensor([0, 1, 2, 3, 5, 0], [2, 3])), (e: Error) =>
    e instanceof ValueError && /0 \(Embedding\): sample 1, position \[1\] holds index 5, not an integer in \[0, 5\)/.test(e.message));
  assert.throws(() => jacobian(net, tensor([0, 1, 2, 3, 1, 0, -1, 0], [2, 2, 2])), /sample 1, position \[1, 0\] holds index -1/);
  assert.throws(() => net.forward(tensor([0.5], [1, 1])), /sample 0, position \[0\] holds index 0\.5/);
  assert.throws(() => new Embedding(5, 2, { maxNorm: 1 }), UnsupportedError);
  assert.throws(() => new Embedding(5, 2, { paddingIdx: 5 }), /padding_idx/);
});

test("a wrong input shape names the layer, the shape expected and the shape given", () => {
  const cases: [Module, number[], RegExp][] = [
    [new BatchNorm2d(3), [2, 4, 4], /0 \(BatchNorm2d\): expected input \(N, 3, H, W\), got \(N, 2, 4, 4\)/],
    [new BatchNorm1d(3), [3, 4, 5], /0 \(BatchNorm1d\): expected input \(N, 3\) or \(N, 3, L\), got \(N, 3, 4, 5\)/],
    [new InstanceNorm2d(3, { affine: true }), [2, 4, 4], /0 \(InstanceNorm2d\): expected input \(N, 3, H, W\), got \(N, 2, 4, 4\)/],
    [new LayerNorm([4, 5]), [3, 5, 4], /0 \(LayerNorm\): expected input \(N, \*, 4, 5\), got \(N, 3, 5, 4\)/],
    [new GroupNorm(2, 4), [3, 5], /0 \(GroupNorm\): expected input \(N, 4, \*\), got \(N, 3, 5\)/],
    [new AdaptiveAvgPool2d(2), [5], /0 \(AdaptiveAvgPool2d\): expected input \(N, C, H, W\), got \(N, 5\)/],
    [new Unflatten(1, [2, 4]), [6], /0 \(Unflatten\): unflattened_size \[2,4\] does not split dim 1 of size 6/],
  ];
  for (const [layer, shape, message] of cases) {
    const net = new Sequential(layer);
    assert.throws(() => jacobian(net, randn([2, ...shape], 1)), (e: Error) => {
      assert.ok(e instanceof ShapeError && message.test(e.message), `${message.source}: got ${e}`);
      return true;
    });
  }
  assert.throws(() => new Sequential(new Unflatten(0, [1, 2])).outputShape([3]), UnsupportedError);
  assert.throws(() => new GroupNorm(3, 4), /divisible/);
  assert.throws(() => new AdaptiveMaxPool2d(2, { returnIndices: true }), UnsupportedError);
});
