/**
 * ConvTranspose1d/2d/3d: PyTorch's output sizes and forward values on hand-checkable cases;
 * the forward is the adjoint of Conv's forward with the same weights; per-sample gradients
 * and Jacobians of random networks containing them equal naive per-sample backprop and
 * central finite differences of the float64 reference; bad shapes and arguments are refused
 * with messages that name the layer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import {
  Conv1d,
  Conv2d,
  Conv3d,
  ConvTranspose1d,
  ConvTranspose2d,
  ConvTranspose3d,
  FormatError,
  jacobian,
  manualSeed,
  modelFromSpec,
  randn,
  ReLU,
  Sequential,
  ShapeError,
  tensor,
} from "../mod.ts";
import type { LayerSpec, ModelSpec } from "../mod.ts";
import { planCache } from "../src/forward.ts";
import { arena } from "../src/wasm.ts";
import { mulberry32, numel } from "../src/tensor.ts";
import { checkAgainstFiniteDifferences, checkAgainstNaive, checkSumsToBatchGradient, describeCase, objectivesFor } from "./helpers/properties.ts";
import type { Prepared } from "./helpers/properties.ts";

const close = (actual: ArrayLike<number>, expected: readonly number[], what: string) => {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= 1e-5 * Math.max(1, Math.abs(expected[i])), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
};

// ---------------------------------------------------------------------------------------
// Hand-checkable forward cases

test("ConvTranspose1d with stride = kernel places each input's scaled kernel side by side", () => {
  const layer = new ConvTranspose1d(1, 1, 2, { stride: 2, bias: false });
  layer.weight.data.set([1, 10]);
  const y = layer.forward(tensor([1, 2, 3], [1, 1, 3]));
  assert.deepEqual(y.shape, [1, 1, 6]);
  close(y.data, [1, 10, 2, 20, 3, 30], "y");
});

test("ConvTranspose1d with padding crops both ends and adds the bias everywhere", () => {
  const layer = new ConvTranspose1d(1, 1, 3, { padding: 1 });
  layer.weight.data.set([1, 2, 3]);
  layer.bias!.data.set([0.5]);
  // y[o] = Σ_i x[i] w[o − i + 1]: [2 + 1, 3 + 2 + 1, 3 + 2] + 0.5
  close(layer.forward(tensor([1, 1, 1], [1, 1, 3])).data, [3.5, 6.5, 5.5], "y");
});

test("ConvTranspose1d output_padding lengthens the far end only, and dilation spreads the taps", () => {
  const padded = new ConvTranspose1d(1, 1, 1, { stride: 2, outputPadding: 1 });
  padded.weight.data.set([1]);
  padded.bias!.data.set([0.25]);
  const y = padded.forward(tensor([1, 2], [1, 1, 2]));
  assert.deepEqual(y.shape, [1, 1, 4]); // (2−1)·2 + 0 + 1 + 1
  close(y.data, [1.25, 0.25, 2.25, 0.25], "output_padding");
  const dilated = new ConvTranspose1d(1, 1, 2, { dilation: 2, bias: false });
  dilated.weight.data.set([1, 10]);
  close(dilated.forward(tensor([1, 2], [1, 1, 2])).data, [1, 2, 10, 20], "dilation");
});

test("ConvTranspose1d groups: weight (C_in, C_out/groups, k), group g's inputs feed only group g's outputs", () => {
  const layer = new ConvTranspose1d(2, 4, 1, { groups: 2, bias: false });
  assert.deepEqual(layer.weight.shape, [2, 2, 1]);
  layer.weight.data.set([1, 2, 3, 4]); // in 0 → out 0, 1; in 1 → out 2, 3
  const y = layer.forward(tensor([10, 100], [1, 2, 1]));
  close(y.data, [10, 20, 300, 400], "y");
});

test("ConvTranspose2d with stride 2 tiles each input pixel's 2×2 kernel", () => {
  const layer = new ConvTranspose2d(1, 1, 2, { stride: 2, bias: false });
  layer.weight.data.set([1, 2, 3, 4]);
  const y = layer.forward(tensor([1, 10], [1, 1, 1, 2]));
  assert.deepEqual(y.shape, [1, 1, 2, 4]);
  close(y.data, [1, 2, 10, 20, 3, 4, 30, 40], "y");
});

test("ConvTranspose1d/2d/3d output shapes follow PyTorch's formula (in−1)·s − 2p + d·(k−1) + op + 1", () => {
  assert.deepEqual(new ConvTranspose1d(4, 2, 4, { stride: 2, padding: 1 }).outputShape([4, 10]), [2, 20]);
  assert.deepEqual(new ConvTranspose2d(8, 4, 3, { stride: 2, padding: 1, outputPadding: 1 }).outputShape([8, 7, 7]), [4, 14, 14]);
  assert.deepEqual(
    new ConvTranspose2d(2, 2, [3, 2], { stride: [2, 1], padding: [1, 0], outputPadding: [1, 0], dilation: [1, 2], groups: 2 })
      .outputShape([2, 3, 4]),
    [2, 6, 6],
  );
  assert.deepEqual(
    new ConvTranspose3d(2, 6, [2, 3, 1], { stride: [1, 2, 3], padding: [0, 1, 0], outputPadding: [0, 1, 2], dilation: [2, 1, 1] })
      .outputShape([2, 2, 3, 4]),
    [6, 4, 6, 12],
  );
  // output_padding may reach the stride when it stays below the dilation (PyTorch's rule).
  assert.deepEqual(new ConvTranspose1d(1, 1, 2, { dilation: 3, outputPadding: 2 }).outputShape([1, 5]), [1, 10]);
  const layer = new ConvTranspose3d(4, 6, 2, { groups: 2 });
  assert.deepEqual(layer.weight.shape, [4, 3, 2, 2, 2]);
  assert.deepEqual(layer.bias!.shape, [6]);
});

// ---------------------------------------------------------------------------------------
// The adjoint identity

interface Geometry {
  dims: 1 | 2 | 3;
  groups: number;
  inPerGroup: number;
  outPerGroup: number;
  spatial: number[];
  kernel: number[];
  stride: number[];
  padding: number[];
  outputPadding: number[];
  dilation: number[];
  seed: number;
}

const geometry: fc.Arbitrary<Geometry> = fc.integer({ min: 1, max: 3 }).chain((dims) => {
  const perDim = (lo: number, hi: number) => fc.array(fc.integer({ min: lo, max: hi }), { minLength: dims, maxLength: dims });
  return fc.record({
    dims: fc.constant(dims as 1 | 2 | 3),
    groups: fc.integer({ min: 1, max: 3 }),
    inPerGroup: fc.integer({ min: 1, max: 2 }),
    outPerGroup: fc.integer({ min: 1, max: 2 }),
    spatial: perDim(1, dims === 3 ? 3 : 5),
    kernel: perDim(1, 3),
    stride: perDim(1, 3),
    padding: perDim(0, 2),
    outputPadding: perDim(0, 2),
    dilation: perDim(1, 2),
    seed: fc.integer({ min: 0, max: 1 << 30 }),
  });
}).map((g) => ({ ...g, outputPadding: g.outputPadding.map((p, i) => p % g.stride[i]) })) // op < stride: the conv maps back onto the input size
  .filter((g) => g.spatial.every((n, i) => (n - 1) * g.stride[i] - 2 * g.padding[i] + g.dilation[i] * (g.kernel[i] - 1) + g.outputPadding[i] + 1 >= 1));

const transposed = [ConvTranspose1d, ConvTranspose2d, ConvTranspose3d];
const convolutions = [Conv1d, Conv2d, Conv3d];

test("ConvTranspose's forward is the adjoint of Conv's forward with the same weights: ⟨convT(x), y⟩ = ⟨x, conv(y)⟩", () => {
  fc.assert(
    fc.property(geometry, (g) => {
      const cin = g.groups * g.inPerGroup;
      const cout = g.groups * g.outPerGroup;
      const options = { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups, bias: false };
      const up = new transposed[g.dims - 1](cin, cout, g.kernel, { ...options, outputPadding: g.outputPadding });
      const down = new convolutions[g.dims - 1](cout, cin, g.kernel, options);
      assert.deepEqual(down.weight.shape, up.weight.shape);
      up.weight.data.set(randn(up.weight.shape, g.seed).data);
      down.weight.data.set(up.weight.data);
      const N = 2;
      const x = randn([N, cin, ...g.spatial], g.seed + 1);
      const outShape = up.outputShape([cin, ...g.spatial]);
      assert.deepEqual(down.outputShape(outShape), [cin, ...g.spatial]);
      const y = randn([N, ...outShape], g.seed + 2);
      const upX = up.forward(x).data;
      const downY = down.forward(y).data;
      let left = 0, right = 0, scale = 0;
      for (let i = 0; i < upX.length; i++) {
        left += upX[i] * y.data[i];
        scale += Math.abs(upX[i] * y.data[i]);
      }
      for (let i = 0; i < downY.length; i++) right += x.data[i] * downY[i];
      assert.ok(Math.abs(left - right) <= 1e-5 * Math.max(1, scale), `⟨convT x, y⟩ = ${left}, ⟨x, conv y⟩ = ${right}, ${JSON.stringify(g)}`);
    }),
    { numRuns: runs(150) },
  );
});

// ---------------------------------------------------------------------------------------
// Random networks with ConvTranspose layers

type Random = () => number;
const int = (rng: Random, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Random, items: readonly T[]): T => items[Math.floor(rng() * items.length)];
const chance = (rng: Random, p: number) => rng() < p;

function convTransposeSpec(rng: Random, dims: number, channels: number): LayerSpec {
  const groups = pick(rng, [1, 1, 2, 3].filter((g) => channels % g === 0));
  const kernel = Array.from({ length: dims }, () => int(rng, 1, 3));
  const stride = kernel.map(() => int(rng, 1, 2));
  const dilation = kernel.map(() => (chance(rng, 0.3) ? 2 : 1));
  const spec: LayerSpec = {
    type: `ConvTranspose${dims}d`,
    in_channels: channels,
    out_channels: groups * int(rng, 1, 2),
    kernel_size: chance(rng, 0.3) && kernel.every((k) => k === kernel[0]) ? kernel[0] : kernel,
    groups,
    bias: chance(rng, 0.7),
  };
  if (stride.some((s) => s > 1) || chance(rng, 0.3)) spec.stride = stride;
  if (chance(rng, 0.6)) spec.padding = kernel.map((k, i) => int(rng, 0, Math.floor((dilation[i] * (k - 1)) / 2) + 1));
  if (chance(rng, 0.5)) spec.output_padding = stride.map((s, i) => int(rng, 0, Math.max(s, dilation[i]) - 1));
  if (dilation.some((d) => d > 1)) spec.dilation = dilation;
  return spec;
}

function otherLayer(rng: Random, dims: number, shape: number[]): LayerSpec {
  const kind = pick(rng, ["conv", "activation", "activation", "pool"]);
  const spatial = shape.slice(1);
  if (kind === "conv") {
    const groups = pick(rng, [1, 2].filter((g) => shape[0] % g === 0));
    return {
      type: `Conv${dims}d`,
      in_channels: shape[0],
      out_channels: groups * int(rng, 1, 2),
      kernel_size: spatial.map((s) => int(rng, 1, Math.min(3, s))),
      stride: spatial.map(() => int(rng, 1, 2)),
      padding: int(rng, 0, 1),
      groups,
      bias: chance(rng, 0.7),
    };
  }
  if (kind === "pool") {
    return { type: `${chance(rng, 0.5) ? "Max" : "Avg"}Pool${dims}d`, kernel_size: spatial.map((s) => int(rng, 1, Math.min(2, s))) };
  }
  return { type: pick(rng, ["ReLU", "Tanh", "Sigmoid", "ELU", "GELU", "SiLU", "LeakyReLU"]) };
}

function outputShapeOf(layers: LayerSpec[], sampleShape: number[]): number[] | undefined {
  try {
    return modelFromSpec({ format: "torch.nn.Sequential", layers }).outputShape(sampleShape);
  } catch {
    return undefined;
  }
}

interface NetworkCase {
  spec: ModelSpec;
  sampleShape: number[];
  N: number;
  seed: number;
}

/** A small network with at least one ConvTranspose layer (its first), other conv-family layers, maybe a Linear head. */
function buildNetwork(seed: number): NetworkCase {
  const rng = mulberry32(seed);
  const dims = int(rng, 1, 3);
  const sampleShape = [int(rng, 1, 3), ...Array.from({ length: dims }, () => int(rng, 1, dims === 3 ? 3 : 5))];
  const layers: LayerSpec[] = [];
  let shape = sampleShape;
  const count = int(rng, 1, 4);
  for (let i = 0; i < count; i++) {
    for (let attempt = 0; attempt < 6; attempt++) {
      const layer = i === 0 || chance(rng, 0.4) ? convTransposeSpec(rng, dims, shape[0]) : otherLayer(rng, dims, shape);
      const next = outputShapeOf([...layers, layer], sampleShape);
      if (next && numel(next) <= 160) {
        layers.push(layer);
        shape = next;
        break;
      }
    }
  }
  if (layers.length === 0) layers.push({ type: `ConvTranspose${dims}d`, in_channels: sampleShape[0], out_channels: 1, kernel_size: 1 });
  shape = outputShapeOf(layers, sampleShape)!;
  if (chance(rng, 0.5)) {
    layers.push({ type: "Flatten" }, { type: "Linear", in_features: numel(shape), out_features: int(rng, 1, 3) });
  }
  const nested = chance(rng, 0.3) && layers.length > 1 ? [layers[0], { type: "Sequential", layers: layers.slice(1) }] : layers;
  return { spec: { format: "torch.nn.Sequential", layers: nested }, sampleShape, N: int(rng, 1, 3), seed };
}

const networks = fc.integer({ min: 1, max: 2 ** 31 - 1 }).map(buildNetwork);

test("the random ConvTranspose networks cover every dimension and option", () => {
  const seen = new Set<string>();
  const visit = (layers: LayerSpec[]) => {
    for (const l of layers) {
      if (l.type === "Sequential") visit(l.layers as LayerSpec[]);
      if (!l.type.startsWith("ConvTranspose")) continue;
      seen.add(l.type);
      const some = (v: unknown, above: number) => [v].flat().some((e) => (e as number) > above);
      if (some(l.stride, 1)) seen.add("stride");
      if (some(l.padding, 0)) seen.add("padding");
      if (some(l.output_padding, 0)) seen.add("output_padding");
      const strides = [l.stride ?? 1].flat() as number[];
      if ([l.output_padding ?? 0].flat().some((p, i) => (p as number) >= (strides[i] ?? strides[0]))) seen.add("output_padding >= stride");
      if (some(l.dilation, 1)) seen.add("dilation");
      if ((l.groups as number) > 1) seen.add("groups");
      if (l.bias === false) seen.add("no bias");
    }
  };
  for (let seed = 1; seed <= 300; seed++) visit(buildNetwork(seed).spec.layers);
  const wanted = ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "stride", "padding", "output_padding", "output_padding >= stride", "dilation", "groups", "no bias"];
  assert.deepEqual(wanted.filter((w) => !seen.has(w)), []);
});

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

test("ConvTranspose networks: per-sample gradients and Jacobians in one pass equal naive per-sample backprop and sum to the batch gradient", () => {
  fc.assert(
    fc.property(networks, (c) => {
      const p = prepare(c);
      checkAgainstNaive(p);
      checkSumsToBatchGradient(p);
    }),
    { numRuns: runs(200) },
  );
});

test("ConvTranspose networks: per-sample gradients and Jacobians equal central finite differences of the float64 reference", () => {
  fc.assert(fc.property(networks, (c) => checkAgainstFiniteDifferences(prepare(c))), { numRuns: runs(100) });
});

test("ConvTranspose: a repeated call with the same input shape builds no plan and grows no WASM memory", () => {
  manualSeed(3);
  const net = new Sequential(new ConvTranspose2d(2, 4, 3, { stride: 2, padding: 1, outputPadding: 1, groups: 2 }), new ReLU(), new ConvTranspose2d(4, 1, 1));
  const x = randn([5, 2, 4, 3], 4);
  const first = jacobian(net, x);
  assert.deepEqual(first.shape, [5, 8 * 6, 2 * 2 * 9 + 4 + 4 + 1]);
  const plans = planCache(net).built;
  const bytes = arena.byteLength();
  for (let i = 0; i < 3; i++) assert.deepEqual(jacobian(net, x).data, first.data);
  assert.equal(planCache(net).built, plans);
  assert.equal(arena.byteLength(), bytes);
});

// ---------------------------------------------------------------------------------------
// Errors

test("ConvTranspose refuses an input of the wrong shape, naming the layer, the expected and the given shape", () => {
  const layer = new ConvTranspose2d(3, 4, 3);
  assert.throws(() => layer.forward(randn([2, 2, 5, 5], 0)), (e: Error) =>
    e instanceof ShapeError && e.message.includes("ConvTranspose2d") && e.message.includes("(N, 3, H, W)") &&
    e.message.includes("(N, 2, 5, 5)"));
  const net = new Sequential(new ReLU(), new ConvTranspose1d(2, 2, 2));
  assert.throws(() => jacobian(net, randn([1, 2, 3, 3], 0)), (e: Error) =>
    e instanceof ShapeError && e.message.includes("1 (ConvTranspose1d)") && e.message.includes("(N, 2, W)") &&
    e.message.includes("(N, 2, 3, 3)"));
  assert.throws(() => new ConvTranspose1d(1, 1, 1, { padding: 2 }).forward(randn([1, 1, 2], 0)), (e: Error) =>
    e instanceof ShapeError && e.message.includes("ConvTranspose1d") && /output size \(-2\).*too small/.test(e.message));
});

test("ConvTranspose refuses output_padding not below stride or dilation, groups that do not divide, other padding modes", () => {
  assert.throws(() => new ConvTranspose2d(1, 1, 3, { stride: 2, outputPadding: 2 }), /ConvTranspose2d: output_padding must be smaller than either stride or dilation/);
  assert.throws(() => new ConvTranspose1d(1, 1, 3, { outputPadding: 1 }), /output_padding must be smaller/);
  assert.throws(() => new ConvTranspose3d(3, 4, 1, { groups: 2 }), /ConvTranspose3d: in_channels \(3\) and out_channels \(4\) must both be divisible by groups \(2\)/);
  assert.throws(() => new ConvTranspose1d(2, 4, 1, { groups: 0 }), /groups must be a positive integer/);
  assert.throws(() => new ConvTranspose1d(2, 2, [1, 2]), /kernel_size/);
  assert.throws(() => new ConvTranspose1d(2, 2, 1, { paddingMode: "reflect" as "zeros" }), /padding_mode="zeros"/);
});

test("ConvTranspose in model specs: PyTorch's argument names and defaults; bad arguments name the layer", () => {
  const spec = (layer: Record<string, unknown>) => ({ format: "torch.nn.Sequential", layers: [{ type: "ReLU" }, layer] });
  const net = modelFromSpec(spec({ type: "ConvTranspose2d", in_channels: 2, out_channels: 4, kernel_size: 3 }));
  const names = Object.fromEntries(net.parameters().map(([name, t]) => [name, t.shape]));
  assert.deepEqual(names, { "1.weight": [2, 4, 3, 3], "1.bias": [4] });
  assert.deepEqual(net.outputShape([2, 5, 5]), [4, 7, 7]);
  const full = modelFromSpec(spec({
    type: "ConvTranspose3d", in_channels: 2, out_channels: 2, kernel_size: [1, 2, 3], stride: [1, 2, 2], padding: [0, 1, 1],
    output_padding: [0, 1, 0], groups: 2, bias: false, dilation: 1, padding_mode: "zeros",
  }));
  assert.deepEqual(full.parameters().map(([, t]) => t.shape), [[2, 1, 1, 2, 3]]);
  assert.deepEqual(full.outputShape([2, 3, 3, 3]), [2, 3, 5, 5]);
  const refused = (layer: Record<string, unknown>, pattern: RegExp) =>
    assert.throws(() => modelFromSpec(spec(layer)), (e: Error) => e instanceof FormatError && pattern.test(e.message), JSON.stringify(layer));
  const base = { type: "ConvTranspose1d", in_channels: 2, out_channels: 2, kernel_size: 2 };
  refused({ ...base, output_size: [4] }, /layer 1 \(ConvTranspose1d\): unknown hyperparameter "output_size"/);
  refused({ ...base, padding: "same" }, /layer 1 \(ConvTranspose1d\): "padding" must be an integer or a list/);
  refused({ ...base, padding_mode: "circular" }, /layer 1 \(ConvTranspose1d\): "padding_mode" must be "zeros"/);
  refused({ ...base, stride: 2, output_padding: 2 }, /layer 1 \(ConvTranspose1d\).*output_padding must be smaller/);
  refused({ ...base, groups: 3 }, /layer 1 \(ConvTranspose1d\).*divisible by groups/);
});
