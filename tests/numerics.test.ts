/**
 * Numerics at the edges of float32: cross-entropy with logits of ±1e4 (and ±3e38), MSE with
 * large values, every activation at ±88, ±1e4, ±1e30, the largest float32 and denormals, and
 * the normalisations with constant (variance 0) and huge inputs give finite values equal to a
 * float64 reference; where the true value is beyond float32 (a forward pass or a gradient
 * that overflows) the call throws a ValueError naming the layer or parameter; NaN and
 * infinite inputs and targets are refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  batchGradient,
  BatchNorm1d,
  ELU,
  Flatten,
  GELU,
  GroupNorm,
  InstanceNorm1d,
  jacobian,
  LayerNorm,
  LeakyReLU,
  Linear,
  perSampleGradients,
  perSampleNorms,
  ReLU,
  Sequential,
  Sigmoid,
  SiLU,
  Softplus,
  sumGradSquared,
  Tanh,
  tensor,
  ValueError,
} from "../mod.ts";
import type { Module, Tensor } from "../mod.ts";
import { erf } from "./reference/model.ts";

const FLOAT32_MAX = 3.4028234663852886e38;
/** The spacing of float32 denormals: 2^-149. */
const DENORMAL_ULP = 2 ** -149;

/** |got − want| ≤ relative·|want| + absolute (by default two denormal spacings: float32's floor). */
function close(got: number, want: number, relative: number, what: string, absolute = 2 * DENORMAL_ULP): void {
  assert.ok(Number.isFinite(got), `${what}: got ${got}, want ${want}`);
  assert.ok(Math.abs(got - want) <= relative * Math.abs(want) + absolute, `${what}: got ${got}, want ${want} (relative ${relative}, absolute ${absolute})`);
}

/** Linear(n, n) with weight I and bias 0: its output is its input, exactly. */
function identity(n: number): Linear {
  const layer = new Linear(n, n);
  layer.weight.data.fill(0);
  for (let i = 0; i < n; i++) layer.weight.data[i * n + i] = 1;
  layer.bias!.data.fill(0);
  return layer;
}

function softmax(z: readonly number[]): number[] {
  const max = Math.max(...z);
  const e = z.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

test("cross-entropy with logits of ±1e4, mixed and up to ±3e38: per-sample gradients are softmax − one-hot in float64, finite", () => {
  const logits = [
    [1e4, -1e4, 0],
    [1e4, 1e4, -1e4],
    [-1e4, -1e4, -1e4],
    [-1e4, 0, 1e4],
    [3e38, -3e38, 0],
    [88, 89, -88],
    [FLOAT32_MAX, FLOAT32_MAX, -FLOAT32_MAX],
  ];
  const labels = [1, 0, 2, 2, 1, 0, 2];
  const N = logits.length;
  const x = tensor(Float32Array.from(logits.flat()), [N, 3]);
  const target = { shape: [N], data: Int32Array.from(labels) };
  const net = identity(3); // D = 9 + 3; the logits are the input, exactly
  for (const reduction of ["sum", "mean"] as const) {
    const G = perSampleGradients(net, x, target, { loss: "cross_entropy", reduction }).data;
    const scale = reduction === "mean" ? 1 / N : 1;
    for (let n = 0; n < N; n++) {
      const z = Array.from(x.data.subarray(3 * n, 3 * n + 3)); // the logits as float32 holds them
      const g = softmax(z).map((p, c) => scale * (p - (c === labels[n] ? 1 : 0)));
      for (let c = 0; c < 3; c++) {
        close(G[n * 12 + 9 + c], g[c], 1e-6, `${reduction}: sample ${n} bias ${c}`);
        for (let j = 0; j < 3; j++) close(G[n * 12 + c * 3 + j], g[c] * z[j], 1e-6, `${reduction}: sample ${n} weight [${c}, ${j}]`);
      }
    }
  }
  // Class probabilities as targets, and the summed gradient: the same stability.
  const probabilities = tensor(Float32Array.from({ length: N * 3 }, (_, i) => [0.2, 0.5, 0.3][i % 3]), [N, 3]);
  const q = Array.from(probabilities.data.subarray(0, 3)); // as float32 holds them
  const mass = q[0] + q[1] + q[2]; // PyTorch's gradient is mass·softmax − q
  const P = perSampleGradients(net, x, probabilities, { loss: "cross_entropy", reduction: "sum" }).data;
  for (let n = 0; n < N; n++) {
    const p = softmax(Array.from(x.data.subarray(3 * n, 3 * n + 3)));
    for (let c = 0; c < 3; c++) close(P[n * 12 + 9 + c], mass * p[c] - q[c], 1e-6, `probabilities: sample ${n} bias ${c}`, 1e-15);
  }
  assert.ok(batchGradient(net, tensor(Float32Array.from(logits.slice(0, 4).flat()), [4, 3]), { shape: [4], data: Int32Array.from(labels.slice(0, 4)) }, { loss: "cross_entropy" }).data.every(Number.isFinite));
});

test("MSE with large values: finite gradients 2·(output − target)·x where they fit float32; an overflow is a ValueError naming the loss or the parameter", () => {
  const net = identity(1);
  const cases: [number, number][] = [[1e15, -1e15], [1e18, 3e18], [-1e17, 1e17], [1e-20, 3e37]];
  for (const [output, targetValue] of cases) {
    // output = x exactly (identity); the weight gradient is 2·(x − t)·x.
    const x = tensor(Float32Array.from([output]), [1, 1]);
    const target = tensor(Float32Array.from([targetValue]), [1, 1]);
    const G = perSampleGradients(net, x, target, { loss: "mse", reduction: "sum" }).data;
    const o = Math.fround(output), t = Math.fround(targetValue);
    close(G[1], 2 * (o - t), 1e-6, `bias gradient at ${output}, ${targetValue}`);
    close(G[0], 2 * (o - t) * o, 1e-6, `weight gradient at ${output}, ${targetValue}`);
  }
  // 2·(3e38 − (−3e38)) is beyond float32: the loss gradient itself overflows.
  assert.throws(
    () => perSampleGradients(net, tensor(Float32Array.from([3e38]), [1, 1]), tensor(Float32Array.from([-3e38]), [1, 1]), { loss: "mse" }),
    (error: unknown) => error instanceof ValueError && /^mse: the loss gradient/.test(error.message) && /overflowed float32/.test(error.message),
  );
  // 2·2e30 fits, 4e30 × 1e30 does not: the weight's gradient overflows, named with its layer.
  assert.throws(
    () => perSampleGradients(net, tensor(Float32Array.from([1e30]), [1, 1]), tensor(Float32Array.from([-1e30]), [1, 1]), { loss: "mse" }),
    (error: unknown) => error instanceof ValueError && /parameter weight\[0\] \(layer Linear\)/.test(error.message) && /overflowed float32/.test(error.message),
  );
  assert.throws(
    () => batchGradient(net, tensor(Float32Array.from([1e30]), [1, 1]), tensor(Float32Array.from([-1e30]), [1, 1]), { loss: "mse" }),
    (error: unknown) => error instanceof ValueError && /parameter weight\[0\]/.test(error.message),
  );
});

const sigmoid = (v: number) => (v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v)));
const SQRT_2_PI = Math.sqrt(2 / Math.PI);

/** Each activation with f and f' in float64, PyTorch's definitions (f' at 0 as PyTorch's backward). */
const activations: { name: string; make: () => Module; f: (v: number) => number; df: (v: number) => number }[] = [
  { name: "ReLU", make: () => new ReLU(), f: (v) => Math.max(v, 0), df: (v) => (v > 0 ? 1 : 0) },
  { name: "LeakyReLU", make: () => new LeakyReLU(0.01), f: (v) => (v > 0 ? v : Math.fround(0.01) * v), df: (v) => (v > 0 ? 1 : Math.fround(0.01)) },
  { name: "Sigmoid", make: () => new Sigmoid(), f: sigmoid, df: (v) => sigmoid(v) * sigmoid(-v) },
  { name: "Tanh", make: () => new Tanh(), f: Math.tanh, df: (v) => 1 / Math.cosh(v) ** 2 }, // sech², not 1 − tanh² (which is 0 from 19 on)
  { name: "ELU", make: () => new ELU(1), f: (v) => (v > 0 ? v : Math.expm1(v)), df: (v) => (v > 0 ? 1 : Math.exp(v)) },
  {
    name: "GELU",
    make: () => new GELU(),
    f: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
    df: (v) => 0.5 * (1 + erf(v / Math.SQRT2)) + (Math.abs(v) > 1e10 ? 0 : v * Math.exp(-v * v / 2) / Math.sqrt(2 * Math.PI)),
  },
  {
    name: "GELU tanh",
    make: () => new GELU("tanh"),
    // 0.5·x·(1 + tanh u) = x·σ(2u)
    f: (v) => v * sigmoid(2 * SQRT_2_PI * (v + 0.044715 * v ** 3)),
    df: (v) => {
      const u2 = 2 * SQRT_2_PI * (v + 0.044715 * v ** 3);
      const s = sigmoid(u2), complement = sigmoid(-u2);
      return s + (s === 0 || complement === 0 ? 0 : 2 * v * s * complement * SQRT_2_PI * (1 + 3 * 0.044715 * v * v));
    },
  },
  { name: "SiLU", make: () => new SiLU(), f: (v) => v * sigmoid(v), df: (v) => sigmoid(v) * (1 + (sigmoid(-v) === 0 ? 0 : v * sigmoid(-v))) },
  {
    name: "Softplus",
    make: () => new Softplus(),
    f: (v) => (v > 20 ? v : Math.log1p(Math.exp(v))),
    df: (v) => (v > 20 ? 1 : sigmoid(v)),
  },
  {
    name: "Softplus beta 0.01",
    make: () => new Softplus(0.01),
    f: (v) => (0.01 * v > 20 ? v : Math.log1p(Math.exp(0.01 * v)) / 0.01),
    df: (v) => (0.01 * v > 20 ? 1 : sigmoid(0.01 * v)),
  },
];

const EDGES = [88, -88, 89, -89, 1e4, -1e4, 1e30, -1e30, 3e38, -3e38, FLOAT32_MAX, -FLOAT32_MAX, 1e-40, -1e-40, 1e-45, -1e-45, 0, 20, 21];

for (const { name, make, f, df } of activations) {
  test(`${name} at ±88, ±1e4, ±1e30, ±3.4e38 and denormals: finite output and gradients equal to float64's`, () => {
    const pre = identity(1); // pre-activation z = x exactly; J = [f'(x)·x, f'(x)]
    const net = new Sequential(pre, make());
    const x = tensor(Float32Array.from(EDGES), [EDGES.length, 1]);
    const y = net.forward(x).data;
    const J = jacobian(net, x).data;
    EDGES.forEach((_, n) => {
      const v = x.data[n]; // the float32 value
      close(y[n], f(v), 1e-6, `${name}(${v})`);
      close(J[2 * n + 1], df(v), 1e-6, `${name}'(${v}) (the bias column)`);
      // The weight column is the rounded slope times x: a slope in the denormals carries their
      // absolute rounding (half a spacing) into it, times |x|.
      close(J[2 * n], df(v) * v, 1e-6, `${name}'(${v})·${v} (the weight column)`, 2 * DENORMAL_ULP * Math.max(1, Math.abs(v)));
    });
  });
}

test("denormal inputs are not flushed: Linear's per-sample weight gradient is the denormal input, exactly", () => {
  const net = new Linear(4, 1);
  const values = [1e-40, -3e-42, 1e-45, 5e-39];
  const x = tensor(Float32Array.from([...values, ...values.map((v) => -v)]), [2, 4]);
  const J = jacobian(net, x).data; // [2, 5]: the input row, then 1
  for (let n = 0; n < 2; n++) {
    for (let j = 0; j < 4; j++) assert.equal(J[n * 5 + j], x.data[n * 4 + j], `sample ${n} input ${j}`);
    assert.equal(J[n * 5 + 4], 1);
  }
  const y = net.forward(x).data;
  const w = net.weight.data, b = net.bias!.data[0];
  for (let n = 0; n < 2; n++) {
    let sum = b;
    for (let j = 0; j < 4; j++) sum += w[j] * x.data[n * 4 + j];
    close(y[n], sum, 1e-6, `output ${n}`);
  }
});

/** x̂ of one group in float64. */
function normalised(values: readonly number[], eps: number): number[] {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length;
  return values.map((v) => (v - mean) / Math.sqrt(variance + eps));
}

const HUGE_ROWS = [
  [5, 5, 5, 5], // variance 0
  [1e20, 1e20, 1e20, 1e20],
  [1e20, -1e20, 1e20, 2e20], // squares past float32
  [1e30, -1e30, 1e30, 2e30],
  [3e38, -3e38, 3e38, 3e38], // the sum and x − mean past float32
  [FLOAT32_MAX, -FLOAT32_MAX, FLOAT32_MAX, -FLOAT32_MAX],
  [1e-40, 2e-40, -1e-40, 0],
];

test("LayerNorm, GroupNorm and InstanceNorm with constant and huge inputs: finite x̂ equal to float64's, finite gradients", () => {
  const layers: { name: string; make: () => Module; groups: number; shape: number[] }[] = [
    { name: "LayerNorm", make: () => new LayerNorm([4]), groups: 1, shape: [4] },
    { name: "GroupNorm", make: () => new GroupNorm(2, 4), groups: 2, shape: [4] },
    { name: "InstanceNorm1d", make: () => new InstanceNorm1d(1, { affine: true }), groups: 1, shape: [1, 4] },
  ];
  for (const { name, make, groups, shape } of layers) {
    const norm = make();
    const head = new Linear(4, 1);
    const net = new Sequential(norm, ...(shape.length > 1 ? [new Flatten()] : []), head);
    for (const row of HUGE_ROWS) {
      const x = tensor(Float32Array.from(row), [1, ...shape]);
      const xs = Array.from(x.data);
      const size = 4 / groups;
      const xhat = Array.from({ length: groups }, (_, g) => normalised(xs.slice(g * size, (g + 1) * size), 1e-5)).flat();
      // norm's gamma = 1, beta = 0: its output is x̂, and y = head(x̂).
      const y = net.forward(x).data[0];
      const want = xhat.reduce((a, v, j) => a + v * head.weight.data[j], head.bias!.data[0]);
      // Denormal inputs: x − mean is exact to float32's denormal spacing, x̂ to 316 times that.
      const absolute = 1e3 * DENORMAL_ULP;
      close(y, want, 1e-5, `${name}(${row}) through the head`, absolute);
      const J = jacobian(net, x).data; // gamma (P), beta (P), head weight (4), head bias
      const P = norm.parameters()[0][1].data.length; // 4, or 1 for InstanceNorm's one channel
      for (let j = 0; j < 4; j++) close(J[2 * P + j], xhat[j], 1e-5, `${name}(${row}): d/dhead.weight[${j}]`, absolute);
      const dGamma = xhat.map((v, j) => v * head.weight.data[j]);
      if (P === 4) dGamma.forEach((want, j) => close(J[j], want, 1e-5, `${name}(${row}): d/dgamma[${j}]`, absolute));
      else close(J[0], dGamma.reduce((a, b) => a + b, 0), 1e-5, `${name}(${row}): d/dgamma`, absolute);
    }
  }
});

test("BatchNorm (running statistics) with huge and denormal inputs: finite, x/√(1 + eps)", () => {
  // A head whose output stays finite for every row (|Σ w x| ≤ 0.4 · 3.4e38); random weights up
  // to ±0.5 could overflow it on the ±3e38 rows, depending on the generator's state.
  const head = new Linear(4, 1);
  head.weight.data.fill(0.1);
  head.bias!.data.fill(0);
  const net = new Sequential(new BatchNorm1d(4), head);
  net.eval();
  for (const row of HUGE_ROWS) {
    const x = tensor(Float32Array.from(row), [1, 4]);
    const J = jacobian(net, x).data; // weight (4), bias (4), head (4 + 1)
    for (let j = 0; j < 4; j++) close(J[8 + j], Math.fround(x.data[j] / Math.sqrt(1 + 1e-5)), 1e-6, `BatchNorm1d(${row}): x̂[${j}]`);
  }
});

test("a gradient whose true value is beyond float32 is a ValueError naming the parameter and its layer, not a NaN", () => {
  // Variance 0 in the second group: x̂'s slope is 1/√eps ≈ 316, times x = 3e38 for the Linear before it.
  const net = new Sequential(identity(4), new GroupNorm(2, 4), new Linear(4, 1));
  const x = tensor(Float32Array.from([3e38, -3e38, 3e38, 3e38]), [1, 4]);
  const named = (error: unknown) => error instanceof ValueError && /parameter 0\.weight\[\d+\] \(layer 0 \(Linear\)\)/.test(error.message);
  assert.throws(() => jacobian(net, x), named);
  assert.throws(() => perSampleNorms(net, x), (error: unknown) => error instanceof ValueError && /0\.weight/.test(error.message));
  assert.throws(() => perSampleNorms(net, x, undefined, { ghostNorms: "always" }), (error: unknown) => error instanceof ValueError && /0\.weight/.test(error.message));
  // Finite J whose squares are past float32: the float32 result is refused, naming the parameter.
  const big = new Sequential(identity(1));
  assert.throws(
    () => sumGradSquared(big, tensor(Float32Array.from([1e20, 1e20]), [2, 1])),
    (error: unknown) => error instanceof ValueError && /sumGradSquared: the sum of squared gradients w\.r\.t\. parameter 0\.weight\[0\]/.test(error.message),
  );
});

test("a forward pass that overflows float32 is a ValueError naming the layer and where", () => {
  const scale = new Linear(1, 1);
  scale.weight.data[0] = 10;
  scale.bias!.data[0] = 0;
  const net = new Sequential(new Linear(1, 1), scale, new ReLU());
  (net.parameters()[0][1] as Tensor).data[0] = 1;
  (net.parameters()[1][1] as Tensor).data[0] = 0;
  const x = tensor(Float32Array.from([1, 1e38]), [2, 1]);
  const overflow = (error: unknown) => error instanceof ValueError && /^1 \(Linear\): its output holds Infinity at \[1, 0\]/.test(error.message);
  assert.throws(() => net.forward(x), overflow);
  assert.throws(() => jacobian(net, x), overflow);
  assert.throws(() => perSampleGradients(net, x, tensor(Float32Array.from([0, 0]), [2, 1]), { loss: "mse" }), overflow);
});

test("NaN and infinite inputs and targets are refused with a ValueError naming the index", () => {
  const net = new Sequential(new Linear(3, 2), new Tanh());
  for (const bad of [NaN, Infinity, -Infinity]) {
    const x = tensor(Float32Array.from([0, 1, 2, 3, bad, 5]), [2, 3]);
    const refused = (error: unknown) => error instanceof ValueError && error.message === `input holds ${bad} at index [1, 1]`;
    assert.throws(() => net.forward(x), refused);
    assert.throws(() => jacobian(net, x), refused);
    assert.throws(() => perSampleGradients(net, x, tensor(new Float32Array(4), [2, 2]), { loss: "mse" }), refused);
    const target = tensor(Float32Array.from([0, bad, 0, 0]), [2, 2]);
    assert.throws(
      () => perSampleGradients(net, tensor(new Float32Array(6), [2, 3]), target, { loss: "mse" }),
      (error: unknown) => error instanceof ValueError && error.message === `mse: target holds ${bad} at index 1`,
    );
  }
});
