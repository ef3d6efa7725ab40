/**
 * Every layer's forward pass: hand-checkable cases, PyTorch's shape rules, and a property
 * test against the float64 reference over random architectures.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import {
  AvgPool1d,
  AvgPool2d,
  AvgPool3d,
  Conv1d,
  Conv2d,
  Conv3d,
  Dropout,
  ELU,
  Flatten,
  GELU,
  Identity,
  jacobian,
  LeakyReLU,
  Linear,
  MaxPool1d,
  MaxPool2d,
  MaxPool3d,
  modelFromSpec,
  ReLU,
  Sequential,
  ShapeError,
  Sigmoid,
  SiLU,
  Softplus,
  Tanh,
  tensor,
  UnsupportedError,
} from "../mod.ts";
import type { Module, Tensor } from "../mod.ts";
import { manualSeed } from "../src/layers/init.ts";
import { randn } from "../src/tensor.ts";
import { arbitraryNetwork, buildNetwork } from "./helpers/architectures.ts";
import { forwardSample, parseSpec } from "./reference/mod.ts";

function set(module: Module, values: Record<string, number[]>): void {
  const state = module.stateDict();
  for (const [key, data] of Object.entries(values)) state[key].data.set(data);
}

function close(actual: Tensor, shape: number[], expected: number[], tolerance = 1e-6): void {
  assert.deepEqual(actual.shape, shape);
  assert.equal(actual.data.length, expected.length);
  expected.forEach((e, i) => assert.ok(Math.abs(actual.data[i] - e) <= tolerance * (1 + Math.abs(e)), `element ${i}: ${actual.data[i]} vs ${e}`));
}

test("Linear computes x Wᵀ + b on the last dimension, also with extra dims (N, S, in)", () => {
  const layer = new Linear(2, 2);
  set(layer, { weight: [1, 2, 3, 4], bias: [1, -1] });
  close(layer.forward(tensor([1, 1, 2, 0], [2, 2])), [2, 2], [4, 6, 3, 5]);
  close(layer.forward(tensor([1, 1, 2, 0, 0, 1], [1, 3, 2])), [1, 3, 2], [4, 6, 3, 5, 3, 3]);
  const noBias = new Linear(2, 1, { bias: false });
  assert.deepEqual(noBias.parameters().map(([n]) => n), ["weight"]);
});

test("Conv1d with stride, padding and dilation matches a hand computation", () => {
  const conv = new Conv1d(1, 1, 2, { stride: 2, padding: 1, dilation: 1 });
  set(conv, { weight: [1, 10], bias: [0.5] });
  // padded input: 0 1 2 3 4 0 ; windows at 0, 2, 4: (0,1) (2,3) (4,0)
  close(conv.forward(tensor([1, 2, 3, 4], [1, 1, 4])), [1, 1, 3], [10.5, 32.5, 4.5]);
  const dilated = new Conv1d(1, 1, 2, { dilation: 2, bias: false });
  set(dilated, { weight: [1, 1] });
  close(dilated.forward(tensor([1, 2, 3, 4], [1, 1, 4])), [1, 1, 2], [4, 6]);
});

test('Conv padding "same" pads the odd element at the end, as PyTorch', () => {
  const conv = new Conv1d(1, 1, 2, { padding: "same", bias: false });
  set(conv, { weight: [1, 100] });
  // reach 1: pad 0 before, 1 after: windows (1,2) (2,3) (3,0)
  close(conv.forward(tensor([1, 2, 3], [1, 1, 3])), [1, 1, 3], [201, 302, 3]);
  assert.throws(() => new Conv2d(1, 1, 3, { padding: "same", stride: 2 }), /padding="same"/);
});

test("Conv2d with groups convolves each group's channels with its own filters only", () => {
  const conv = new Conv2d(2, 2, 1, { groups: 2, bias: false });
  assert.deepEqual(conv.weight.shape, [2, 1, 1, 1]);
  set(conv, { weight: [2, 3] });
  close(conv.forward(tensor([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 2, 2])), [1, 2, 2, 2], [2, 4, 6, 8, 15, 18, 21, 24]);
  assert.throws(() => new Conv2d(3, 2, 1, { groups: 2 }), /divisible by groups/);
});

test("Conv2d and Conv3d output shapes follow PyTorch's formula", () => {
  const conv = new Conv2d(3, 16, [3, 5], { stride: [2, 1], padding: [1, 2], dilation: [1, 2] });
  // H: floor((10 + 2 - 2 - 1) / 2) + 1 = 5; W: floor((9 + 4 - 8 - 1) / 1) + 1 = 5
  assert.deepEqual(conv.outputShape([3, 10, 9]), [16, 5, 5]);
  assert.deepEqual(new Conv3d(1, 2, 2, { bias: false }).outputShape([1, 6, 6, 6]), [2, 5, 5, 5]);
  assert.deepEqual(new Conv3d(2, 4, 3, { padding: "valid", groups: 2 }).weight.shape, [4, 1, 3, 3, 3]);
});

test("activations match their formulas at hand-picked points", () => {
  const x = tensor([-2, -0.5, 0, 0.5, 3], [1, 5]);
  const erf = (v: number) => {
    // Abramowitz-Stegun 7.1.26 is enough for this 1e-6 check at these points.
    const t = 1 / (1 + 0.3275911 * Math.abs(v));
    const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-v * v);
    return Math.sign(v) * y;
  };
  const cases: [Module, (v: number) => number][] = [
    [new ReLU(), (v) => Math.max(0, v)],
    [new LeakyReLU(0.2), (v) => (v > 0 ? v : 0.2 * v)],
    [new Sigmoid(), (v) => 1 / (1 + Math.exp(-v))],
    [new Tanh(), Math.tanh],
    [new ELU(0.7), (v) => (v > 0 ? v : 0.7 * (Math.exp(v) - 1))],
    [new GELU(), (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))],
    [new GELU("tanh"), (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))],
    [new SiLU(), (v) => v / (1 + Math.exp(-v))],
    [new Softplus(2, 4), (v) => (2 * v > 4 ? v : Math.log1p(Math.exp(2 * v)) / 2)],
    [new Identity(), (v) => v],
  ];
  for (const [layer, f] of cases) {
    close(layer.forward(x), [1, 5], Array.from(x.data, f), 2e-6);
  }
});

test("MaxPool2d and AvgPool2d on a 4x4 input give the hand-computed values", () => {
  const x = tensor(Array.from({ length: 16 }, (_, i) => i), [1, 1, 4, 4]);
  close(new MaxPool2d(2).forward(x), [1, 1, 2, 2], [5, 7, 13, 15]);
  close(new AvgPool2d(2).forward(x), [1, 1, 2, 2], [2.5, 4.5, 10.5, 12.5]);
  // 3x3 windows, stride 2, ceil_mode: out 2x2; the last windows are clipped at the input's end.
  close(new AvgPool2d(3, { stride: 2, ceilMode: true }).forward(x), [1, 1, 2, 2], [5, 6.5, 11, 12.5]);
  // padding 1 with count_include_pad: each window holds 4 input elements and 5 of padding
  // (the window at (0, 0) holds 0, 1, 4, 5; the one at (0, 1) holds 2, 3, 6, 7).
  close(new AvgPool2d(3, { stride: 3, padding: 1 }).forward(x), [1, 1, 2, 2], [10 / 9, 18 / 9, 42 / 9, 50 / 9]);
  close(new AvgPool2d(3, { stride: 3, padding: 1, countIncludePad: false }).forward(x), [1, 1, 2, 2], [10 / 4, 18 / 4, 42 / 4, 50 / 4]);
  close(new AvgPool2d(2, { divisorOverride: 3 }).forward(x), [1, 1, 2, 2], [10 / 3, 18 / 3, 42 / 3, 50 / 3]);
});

test("pooling output shapes follow PyTorch, ceil_mode's last window starting inside the input", () => {
  // L = 5, k = 2, s = 2: floor -> 2, ceil -> 3
  assert.deepEqual(new MaxPool1d(2).outputShape([1, 5]), [1, 2]);
  assert.deepEqual(new MaxPool1d(2, { ceilMode: true }).outputShape([1, 5]), [1, 3]);
  // L = 4, k = 2, s = 2, pad 1, ceil: (4 + 2 - 2 + 1) / 2 + 1 = 3; last start 4 >= 4 + 1? no -> 3
  assert.deepEqual(new AvgPool1d(2, { padding: 1, ceilMode: true }).outputShape([1, 4]), [1, 3]);
  // L = 5, k = 3, s = 3, pad 1, ceil: ceil((5 + 2 - 3) / 3) + 1 = 3; start 6 >= 5 + 1 -> 2
  assert.deepEqual(new MaxPool1d(3, { padding: 1, ceilMode: true }).outputShape([2, 5]), [2, 2]);
  assert.deepEqual(new MaxPool3d(2, { dilation: 2 }).outputShape([1, 5, 5, 5]), [1, 2, 2, 2]);
  assert.deepEqual(new AvgPool3d(4).outputShape([1, 5, 5, 5]), [1, 1, 1, 1]);
  assert.throws(() => new MaxPool2d(2, { padding: 2 }), /at most half/);
});

test("Flatten follows start_dim/end_dim counted with the batch dim; Dropout is the identity in eval mode", () => {
  assert.deepEqual(new Flatten().outputShape([2, 3, 4]), [24]);
  assert.deepEqual(new Flatten({ startDim: 2 }).outputShape([2, 3, 4]), [2, 12]);
  assert.deepEqual(new Flatten({ startDim: 1, endDim: 2 }).outputShape([2, 3, 4]), [6, 4]);
  assert.deepEqual(new Flatten({ startDim: -2 }).outputShape([2, 3, 4]), [2, 12]);
  assert.throws(() => new Flatten({ startDim: 0 }).outputShape([2, 3]), UnsupportedError);
  const x = randn([3, 4], 1);
  assert.deepEqual(new Dropout(0.5).forward(x).data, x.data);
  const net = new Sequential(new Linear(4, 2), new Dropout(0.5)).train();
  assert.throws(() => net.forward(x), /Dropout in training mode/);
  net.eval();
  assert.equal(net.forward(x).shape[1], 2);
});

test("a wrong input shape names the layer, what it expected and what it got", () => {
  const net = new Sequential(new Linear(4, 3), new ReLU(), new Sequential(new Linear(5, 2)));
  assert.throws(() => net.forward(randn([2, 4], 0)), (e: Error) =>
    e instanceof ShapeError && e.message.includes("2.0 (Linear)") && e.message.includes("(N, *, 5)") && e.message.includes("(N, 3)"));
  const conv = new Sequential(new Conv2d(3, 8, 3));
  assert.throws(() => conv.forward(randn([2, 1, 8, 8], 0)), (e: Error) =>
    e instanceof ShapeError && e.message.includes("0 (Conv2d)") && e.message.includes("(N, 3, H, W)") && e.message.includes("(N, 1, 8, 8)"));
  assert.throws(() => conv.forward(randn([2, 3, 2, 2], 0)), /too small/);
});

test("parameters() and stateDict() use PyTorch's names and order, through nested Sequentials", () => {
  const net = new Sequential(new Conv2d(1, 2, 3), new ReLU(), new Sequential(new Flatten(), new Sequential(new Linear(2, 2, { bias: false }))));
  assert.deepEqual(net.parameters().map(([n]) => n), ["0.weight", "0.bias", "2.1.0.weight"]);
  assert.deepEqual(Object.keys(net.stateDict()), ["0.weight", "0.bias", "2.1.0.weight"]);
  assert.throws(() => net.loadStateDict({ "0.weight": tensor(new Float32Array(18), [2, 1, 3, 3]) }), /missing "0.bias"/);
});

test("the forward pass of random networks equals the float64 reference", () => {
  fc.assert(
    fc.property(arbitraryNetwork(), (c) => {
      manualSeed(c.seed);
      const net = modelFromSpec(c.spec);
      const x = randn([c.N, ...c.sampleShape], c.seed);
      const y = net.forward(x);
      const model = parseSpec(c.spec);
      const params = new Map(Object.entries(net.stateDict()).map(([k, t]) => [k, Float64Array.from(t.data)]));
      const width = x.data.length / c.N;
      for (let n = 0; n < c.N; n++) {
        const { output, shape } = forwardSample(model, params, Float64Array.from(x.data.subarray(n * width, (n + 1) * width)), c.sampleShape);
        assert.deepEqual(y.shape, [c.N, ...shape]);
        const row = y.data.subarray(n * output.length, (n + 1) * output.length);
        // Relative to max(1, |output|): a single output near zero (cancellation) has float32
        // rounding of its O(1) terms, not of itself.
        let difference = 0;
        for (let i = 0; i < output.length; i++) difference = Math.max(difference, Math.abs(row[i] - output[i]));
        const error = difference / Math.max(1, ...Array.from(output, Math.abs));
        assert.ok(error <= 1e-5, `sample ${n}: relative error ${error}, spec ${JSON.stringify(c.spec)}, input ${JSON.stringify(c.sampleShape)}`);
      }
    }),
    { numRuns: runs(150) },
  );
});

test("ReLU then MaxPool (compiled as one fused step, the convolution before it reading the pooled gradient) gives the same outputs and per-sample gradients as the pair apart", () => {
  // A nested Sequential keeps the two apart, so the second network runs them unfused.
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.boolean(), fc.integer({ min: 1, max: 3 }), (seed, ceilMode, K) => {
      const make = (fused: boolean) => {
        manualSeed(seed);
        const relu = fused ? new ReLU() : new Sequential(new ReLU());
        return new Sequential(
          new Conv2d(2, 3, 3, { padding: 1 }),
          relu,
          new MaxPool2d(2, { ceilMode }),
          new Flatten(),
          new Linear(3 * (ceilMode ? 25 : 16), K),
        );
      };
      // 8 or 9 wide: pooled rows of 4 or 5, through the f32x4 path and the scalar tail.
      const x = randn([3, 2, ceilMode ? 9 : 8, ceilMode ? 9 : 8], seed);
      const fused = make(true);
      const apart = make(false);
      assert.deepEqual(fused.forward(x).data, apart.forward(x).data);
      // The fused network's first convolution also takes its weight gradients from the pooled
      // gradient (the plan skips the pooling's backward): the same sums in another order.
      const a = jacobian(fused, x).data, b = jacobian(apart, x).data;
      assert.equal(a.length, b.length);
      const scale = Math.max(1, ...Array.from(b, Math.abs));
      for (let i = 0; i < a.length; i++) {
        assert.ok(Math.abs(a[i] - b[i]) <= 1e-5 * scale, `J[${i}]: ${a[i]} fused, ${b[i]} apart`);
      }
    }),
    { numRuns: runs(40) },
  );
});

test("the random architectures of the property tests include ReLU directly before MaxPool (the fused pair)", () => {
  let pairs = 0;
  const visit = (layers: { type: string; layers?: unknown }[]) => {
    layers.forEach((layer, i) => {
      if (layer.type === "ReLU" && layers[i + 1]?.type.startsWith("MaxPool")) pairs++;
      if (Array.isArray(layer.layers)) visit(layer.layers as { type: string }[]);
    });
  };
  for (let seed = 1; seed <= 200; seed++) visit(buildNetwork(seed).spec.layers as { type: string }[]);
  assert.ok(pairs >= 20, `only ${pairs} ReLU→MaxPool pairs in 200 networks`);
});
