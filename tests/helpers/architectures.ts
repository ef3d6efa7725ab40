/**
 * Random networks for property tests: a fast-check arbitrary of model specs (the JSON format
 * of src/io/spec.ts) with a per-sample input shape that fits them, covering every layer and
 * option of the core issue. Built from a seed with a small PRNG, layer by layer, so every
 * generated network is valid by construction (shapes are checked with the library's own
 * `outputShape` as each layer is added).
 */
import fc from "fast-check";
import { modelFromSpec } from "../../src/io/spec.ts";
import type { LayerSpec, ModelSpec } from "../../src/io/spec.ts";
import { mulberry32, numel } from "../../src/tensor.ts";

/** A generated case: the spec, the per-sample input shape, and a batch size. */
export interface NetworkCase {
  spec: ModelSpec;
  sampleShape: number[];
  N: number;
  seed: number;
}

type Random = () => number;

const int = (rng: Random, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Random, items: readonly T[]): T => items[Math.floor(rng() * items.length)];
const chance = (rng: Random, p: number) => rng() < p;

/** Every elementwise layer, with random non-default hyperparameters half the time. */
function activation(rng: Random): LayerSpec {
  const type = pick(rng, ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "ELU", "GELU", "SiLU", "Softplus", "Identity", "Dropout"]);
  const spec: LayerSpec = { type };
  if (type === "LeakyReLU" && chance(rng, 0.5)) spec.negative_slope = Math.round((rng() * 0.6 - 0.1) * 100) / 100;
  if (type === "ELU" && chance(rng, 0.5)) spec.alpha = Math.round((0.2 + rng() * 1.5) * 100) / 100;
  if (type === "GELU" && chance(rng, 0.5)) spec.approximate = "tanh";
  if (type === "Softplus" && chance(rng, 0.5)) {
    spec.beta = pick(rng, [0.5, 2, 3]);
    spec.threshold = pick(rng, [1, 5, 20]);
  }
  if (type === "Dropout") spec.p = pick(rng, [0, 0.2, 0.5]);
  return spec;
}

/** The output shape of a layer list on a per-sample shape, or undefined if it does not fit. */
function tryShape(layers: LayerSpec[], sampleShape: number[]): number[] | undefined {
  try {
    return modelFromSpec({ format: "torch.nn.Sequential", layers }).outputShape(sampleShape);
  } catch {
    return undefined;
  }
}

function convLayer(rng: Random, dims: number, channels: number, spatial: number[]): LayerSpec {
  const groups = pick(rng, [1, 1, 2, 3].filter((g) => channels % g === 0));
  const outChannels = groups * int(rng, 1, 2);
  const kernel = spatial.map((s) => int(rng, 1, Math.min(3, s)));
  const spec: LayerSpec = {
    type: `Conv${dims}d`,
    in_channels: channels,
    out_channels: outChannels,
    kernel_size: chance(rng, 0.3) && kernel.every((k) => k === kernel[0]) ? kernel[0] : kernel,
    groups,
    bias: chance(rng, 0.7),
  };
  const paddingKind = pick(rng, ["int", "list", "same", "valid", "none"]);
  const stride = spatial.map(() => (chance(rng, 0.3) ? 2 : 1));
  if (paddingKind === "same") {
    spec.padding = "same";
  } else {
    if (stride.some((s) => s > 1)) spec.stride = stride;
    if (paddingKind === "int") spec.padding = int(rng, 0, 1);
    if (paddingKind === "list") spec.padding = kernel.map((k) => int(rng, 0, Math.floor(k / 2) + 1));
    if (paddingKind === "valid") spec.padding = "valid";
  }
  if (chance(rng, 0.3)) spec.dilation = spatial.map(() => int(rng, 1, 2));
  return spec;
}

function poolLayer(rng: Random, dims: number, spatial: number[], max = chance(rng, 0.5)): LayerSpec {
  const kernel = spatial.map((s) => int(rng, 1, Math.min(3, s)));
  const spec: LayerSpec = { type: `${max ? "Max" : "Avg"}Pool${dims}d`, kernel_size: kernel };
  if (chance(rng, 0.5)) spec.stride = kernel.map((k) => int(rng, 1, k));
  if (chance(rng, 0.5)) spec.padding = kernel.map((k) => int(rng, 0, Math.floor(k / 2)));
  if (chance(rng, 0.4)) spec.ceil_mode = true;
  if (max && chance(rng, 0.3)) spec.dilation = spatial.map(() => int(rng, 1, 2));
  if (!max && chance(rng, 0.4)) spec.count_include_pad = false;
  if (!max && dims > 1 && chance(rng, 0.2)) spec.divisor_override = int(rng, 1, 5);
  return spec;
}

/** A Residual or Parallel block that fits a per-sample shape (channels first for convs, features last for MLPs). */
function branchingBlock(rng: Random, shape: number[]): LayerSpec {
  const spatial = shape.length - 1;
  if (spatial <= 0 || spatial > 3) {
    // features in the last dim: Linear branches
    const w = shape[shape.length - 1];
    const linear = (out: number): LayerSpec => ({ type: "Linear", in_features: w, out_features: out, bias: chance(rng, 0.7) });
    const kind = pick(rng, ["residual", "projection", "concat", "sum"]);
    if (kind === "residual") return { type: "Residual", block: { type: "Sequential", layers: [linear(w), activation(rng)] } };
    if (kind === "projection") return { type: "Residual", block: linear(w), shortcut: { type: "Sequential", layers: [activation(rng)] } };
    if (kind === "sum") return { type: "Parallel", combine: "sum", branches: [linear(w), activation(rng), linear(w)] };
    return { type: "Parallel", dim: -1, branches: [linear(int(rng, 1, 3)), { type: "Identity" }, linear(int(rng, 1, 2))] };
  }
  const c = shape[0];
  const conv = (out: number, k: number): LayerSpec => ({
    type: `Conv${spatial}d`,
    in_channels: c,
    out_channels: out,
    kernel_size: k,
    padding: "same",
    bias: chance(rng, 0.7),
  });
  const kind = pick(rng, ["residual", "projection", "concat", "sum"]);
  if (kind === "residual") return { type: "Residual", block: { type: "Sequential", layers: [conv(c, 3), activation(rng), conv(c, 1)] } };
  if (kind === "projection") {
    const out = int(rng, 1, 3);
    return { type: "Residual", block: { type: "Sequential", layers: [conv(out, 3), activation(rng)] }, shortcut: conv(out, 1) };
  }
  if (kind === "sum") return { type: "Parallel", combine: "sum", branches: [conv(c, 3), { type: "Identity" }, activation(rng)] };
  return { type: "Parallel", combine: "concat", dim: 1, branches: [conv(int(rng, 1, 2), 1), activation(rng), conv(int(rng, 1, 2), 3)] };
}

/** Inserts a branching block at a random position, where its input shape allows. */
function addBranching(rng: Random, layers: LayerSpec[], sampleShape: number[]): LayerSpec[] {
  const at = int(rng, 0, layers.length);
  const shape = at === 0 ? sampleShape : tryShape(layers.slice(0, at), sampleShape);
  if (!shape) return layers;
  const candidate = [...layers.slice(0, at), branchingBlock(rng, shape), ...layers.slice(at)];
  const fits = tryShape(candidate, sampleShape);
  // the block may change the width a following Linear expects: keep it only if everything fits
  return fits ? candidate : layers;
}

/** Wraps random runs of layers in nested Sequentials (depth up to 3). */
function nest(rng: Random, layers: LayerSpec[], depth = 0): LayerSpec[] {
  if (layers.length < 2 || depth >= 3 || !chance(rng, 0.5)) return layers;
  const start = int(rng, 0, layers.length - 2);
  const end = int(rng, start + 1, layers.length);
  return [
    ...layers.slice(0, start),
    { type: "Sequential", layers: nest(rng, layers.slice(start, end), depth + 1) },
    ...layers.slice(end),
  ];
}

/** Builds one network from a seed. `classesOut` keeps a class dim (for cross-entropy). */
export function buildNetwork(seed: number): NetworkCase {
  const rng = mulberry32(seed);
  const kind = pick(rng, ["mlp", "conv1d", "conv2d", "conv3d", "conv1d"]);
  const layers: LayerSpec[] = [];
  let sampleShape: number[];
  if (kind === "mlp") {
    const inFeatures = int(rng, 1, 6);
    sampleShape = chance(rng, 0.3) ? [int(rng, 1, 3), inFeatures] : [inFeatures];
    let width = inFeatures;
    const count = int(rng, 1, 3);
    for (let i = 0; i < count; i++) {
      const out = int(rng, 1, 5);
      layers.push({ type: "Linear", in_features: width, out_features: out, bias: chance(rng, 0.8) });
      width = out;
      if (i < count - 1 || chance(rng, 0.4)) layers.push(activation(rng));
    }
    if (sampleShape.length === 2 && chance(rng, 0.5)) layers.push({ type: "Flatten" });
  } else {
    const dims = Number(kind[4]);
    const channels = int(rng, 1, 3);
    const spatial = Array.from({ length: dims }, () => int(rng, 2, dims === 3 ? 4 : 7));
    sampleShape = [channels, ...spatial];
    let shape = sampleShape;
    const count = int(rng, 1, 3);
    for (let i = 0; i < count; i++) {
      const candidates = [
        () => convLayer(rng, dims, shape[0], shape.slice(1)),
        () => activation(rng),
        () => poolLayer(rng, dims, shape.slice(1)),
      ];
      for (let attempt = 0; attempt < 4; attempt++) {
        const layer = (i === 0 ? candidates[0] : pick(rng, candidates))();
        const next = tryShape([...layers, layer], sampleShape);
        if (next && numel(next) > 0) {
          layers.push(layer);
          shape = next;
          break;
        }
      }
    }
    if (chance(rng, 0.3)) {
      // ReLU then max pooling: Sequential compiles the pair as one fused step.
      const pair = [{ type: "ReLU" }, poolLayer(rng, dims, shape.slice(1), true)];
      const next = tryShape([...layers, ...pair], sampleShape);
      if (next && numel(next) > 0) {
        layers.push(...pair);
        shape = next;
      }
    }
    if (chance(rng, 0.7)) {
      // Flatten then a small head; otherwise the conv output (N, C, spatial) is the output.
      const flat = pick(rng, [{ type: "Flatten" }, { type: "Flatten", start_dim: 1, end_dim: -1 }]);
      layers.push(flat);
      layers.push({ type: "Linear", in_features: numel(shape), out_features: int(rng, 1, 4) });
    } else if (shape.length > 2 && chance(rng, 0.3)) {
      layers.push({ type: "Flatten", start_dim: 2 });
    }
  }
  const branched = chance(rng, 0.35) ? addBranching(rng, layers, sampleShape) : layers;
  const spec: ModelSpec = { format: "torch.nn.Sequential", layers: nest(rng, branched) };
  return { spec, sampleShape, N: int(rng, 1, 4), seed };
}

/** Random valid networks with their input shapes. */
export function arbitraryNetwork(): fc.Arbitrary<NetworkCase> {
  return fc.integer({ min: 1, max: 2 ** 31 - 1 }).map(buildNetwork);
}
