/**
 * Random networks with the normalisation, Embedding, adaptive pooling and Unflatten layers,
 * between conv and linear layers, as model specs (src/io/spec.ts's JSON format) with inputs
 * that fit them; and a way to give their parameters and buffers non-trivial values (PyTorch
 * starts γ = 1, β = 0, running_mean = 0, running_var = 1, which would hide layout mistakes).
 */
import fc from "fast-check";
import { modelFromSpec } from "../../src/io/spec.ts";
import type { LayerSpec, ModelSpec } from "../../src/io/spec.ts";
import type { Module } from "../../src/layers/module.ts";
import type { Tensor } from "../../src/tensor.ts";
import { mulberry32, numel, randn } from "../../src/tensor.ts";

export interface NormNetworkCase {
  spec: ModelSpec;
  sampleShape: number[];
  N: number;
  seed: number;
  /** Embedding networks take integer indices in [0, vocabulary). */
  vocabulary?: number;
}

type Random = () => number;
const int = (rng: Random, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Random, items: readonly T[]): T => items[Math.floor(rng() * items.length)];
const chance = (rng: Random, p: number) => rng() < p;

function shapeOf(layers: LayerSpec[], sampleShape: number[]): number[] {
  return modelFromSpec({ format: "torch.nn.Sequential", layers }).outputShape(sampleShape);
}

function activation(rng: Random): LayerSpec {
  return { type: pick(rng, ["ReLU", "Tanh", "GELU", "SiLU", "Identity"]) };
}

/** A normalisation layer fitting a per-sample shape (C, spatial...) with `dims` spatial dims. */
function channelNorm(rng: Random, shape: number[], dims: number): LayerSpec {
  const C = shape[0];
  const spatial = numel(shape.slice(1));
  const options: (() => LayerSpec)[] = [
    () => ({
      type: `BatchNorm${Math.max(dims, 1)}d`,
      num_features: C,
      ...(chance(rng, 0.3) ? { affine: false } : {}),
      ...(chance(rng, 0.3) ? { eps: 1e-3 } : {}),
      ...(chance(rng, 0.2) ? { momentum: null } : {}),
    }),
    () => {
      const groups = pick(rng, [1, 2, 3, C].filter((g) => C % g === 0 && (C / g) * spatial >= 2));
      return { type: "GroupNorm", num_groups: groups ?? 1, num_channels: C, ...(chance(rng, 0.2) ? { affine: false } : {}) };
    },
    () => ({ type: "LayerNorm", normalized_shape: chance(rng, 0.5) ? shape.slice(1) : shape, ...(chance(rng, 0.2) ? { elementwise_affine: false } : {}), ...(chance(rng, 0.2) ? { bias: false } : {}) }),
  ];
  if (dims >= 1 && spatial >= 2) {
    options.push(() => ({
      type: `InstanceNorm${dims}d`,
      num_features: C,
      affine: chance(rng, 0.7),
      ...(chance(rng, 0.3) ? { track_running_stats: true } : {}),
    }));
  }
  return pick(rng, options)();
}

/** Gives a normalisation its shift back (affine β), so that its output is not centred. */
function keepShift(norm: LayerSpec): void {
  if (String(norm.type).startsWith("InstanceNorm")) norm.affine = true;
  if (norm.type === "GroupNorm") delete norm.affine;
  if (norm.type === "LayerNorm") {
    delete norm.elementwise_affine;
    delete norm.bias;
  }
}

function adaptivePool(rng: Random, shape: number[], dims: number): LayerSpec {
  const spatial = shape.slice(1);
  const sizes = spatial.map((s) => (chance(rng, 0.2) ? null : int(rng, 1, s + 1)));
  const outputSize = chance(rng, 0.3) && sizes.every((s) => s !== null && s === sizes[0]) ? sizes[0] : sizes;
  return { type: `Adaptive${chance(rng, 0.5) ? "Avg" : "Max"}Pool${dims}d`, output_size: outputSize };
}

/** Builds one network from a seed: conv (1-3 d), MLP or Embedding networks with the layers of this issue. */
export function buildNormNetwork(seed: number): NormNetworkCase {
  const rng = mulberry32(seed);
  const kind = pick(rng, ["conv1d", "conv2d", "conv3d", "mlp", "embedding", "conv2d"]);
  const layers: LayerSpec[] = [];
  let sampleShape: number[];
  let vocabulary: number | undefined;
  if (kind === "mlp") {
    const inFeatures = int(rng, 2, 6);
    sampleShape = [inFeatures];
    const hidden = int(rng, 2, 6);
    layers.push({ type: "Linear", in_features: inFeatures, out_features: hidden });
    layers.push(pick(rng, [
      { type: "BatchNorm1d", num_features: hidden },
      { type: "LayerNorm", normalized_shape: hidden },
      { type: "GroupNorm", num_groups: 1, num_channels: hidden },
    ]));
    layers.push(activation(rng));
    if (hidden % 2 === 0 && chance(rng, 0.7)) {
      // (N, hidden) -> (N, 2, hidden/2): LayerNorm and Linear over the extra per-sample dim
      layers.push({ type: "Unflatten", dim: chance(rng, 0.5) ? 1 : -1, unflattened_size: chance(rng, 0.5) ? [2, hidden / 2] : [2, -1] });
      layers.push(pick(rng, [
        { type: "LayerNorm", normalized_shape: hidden / 2 },
        { type: "BatchNorm1d", num_features: 2 },
        hidden >= 4 ? { type: "InstanceNorm1d", num_features: 2, affine: true } : { type: "GroupNorm", num_groups: 2, num_channels: 2 },
        { type: "AdaptiveAvgPool1d", output_size: int(rng, 1, hidden / 2) },
      ]));
      layers.push({ type: "Flatten" });
    }
    const width = numel(shapeOf(layers, sampleShape));
    layers.push({ type: "Linear", in_features: width, out_features: int(rng, 1, 4) });
  } else if (kind === "embedding") {
    vocabulary = int(rng, 2, 8);
    const dim = int(rng, 1, 5);
    sampleShape = chance(rng, 0.3) ? [int(rng, 1, 2), int(rng, 1, 4)] : [int(rng, 1, 5)];
    const padding = chance(rng, 0.5) ? int(rng, -vocabulary, vocabulary - 1) : null;
    layers.push({ type: "Embedding", num_embeddings: vocabulary, embedding_dim: dim, ...(padding !== null ? { padding_idx: padding } : {}) });
    if (dim >= 2 && chance(rng, 0.6)) layers.push({ type: "LayerNorm", normalized_shape: dim });
    if (chance(rng, 0.5)) layers.push({ type: "Linear", in_features: dim, out_features: int(rng, 1, 3) });
    layers.push({ type: "Flatten" });
    const width = numel(shapeOf(layers, sampleShape));
    layers.push({ type: "Linear", in_features: width, out_features: int(rng, 1, 4) });
  } else {
    const dims = Number(kind[4]);
    const channels = int(rng, 1, 3);
    sampleShape = [channels, ...Array.from({ length: dims }, () => int(rng, 2, dims === 3 ? 4 : 6))];
    const out = int(rng, 2, 4);
    layers.push({ type: `Conv${dims}d`, in_channels: channels, out_channels: out, kernel_size: 2, padding: int(rng, 0, 1) });
    let shape = shapeOf(layers, sampleShape);
    layers.push(channelNorm(rng, shape, dims));
    layers.push(activation(rng));
    if (chance(rng, 0.7)) {
      const pool = adaptivePool(rng, shape, dims);
      // A normalisation that centres without a shift (no affine β), then an odd activation
      // (Identity, Tanh: ±1 after InstanceNorm over two positions stay opposite) and average
      // pooling over the centred extent is 0 in exact arithmetic: what a following
      // normalisation would then scale up is rounding, which no finite difference can check.
      if (String(pool.type).includes("Avg")) keepShift(layers[layers.length - 2]);
      layers.push(pool);
      shape = shapeOf(layers, sampleShape);
    }
    if (chance(rng, 0.5)) layers.push(channelNorm(rng, shape, dims));
    if (chance(rng, 0.3)) {
      layers.push({ type: `Conv${dims}d`, in_channels: shape[0], out_channels: 2, kernel_size: 1 });
      layers.push(adaptivePool(rng, shapeOf(layers, sampleShape), dims));
    }
    if (chance(rng, 0.75)) {
      layers.push({ type: "Flatten" });
      const width = numel(shapeOf(layers, sampleShape));
      layers.push({ type: "Linear", in_features: width, out_features: int(rng, 2, 4) });
      if (chance(rng, 0.3)) layers.push({ type: "BatchNorm1d", num_features: (layers[layers.length - 1].out_features as number) });
    }
  }
  const spec: ModelSpec = { format: "torch.nn.Sequential", layers: chance(rng, 0.3) ? [{ type: "Sequential", layers }] : layers };
  return { spec, sampleShape, N: int(rng, 1, 4), seed, vocabulary };
}

export function arbitraryNormNetwork(): fc.Arbitrary<NormNetworkCase> {
  return fc.integer({ min: 1, max: 2 ** 31 - 1 }).map(buildNormNetwork);
}

/**
 * Gives every normalisation parameter and buffer a random non-trivial value: γ = ±[0.5, 1.5],
 * β, running_mean ∈ [-1, 1], running_var ∈ [0.3, 2]. Embedding padding rows stay zero.
 */
export function randomiseNormState(net: Module, seed: number): void {
  const rng = mulberry32(seed ^ 0x51ed);
  for (const [name, t] of Object.entries(net.stateDict())) {
    const kind = name.split(".").pop();
    const owner = name.slice(0, -(kind!.length + 1));
    const module = findModule(net, owner);
    if (!module || module.typeName === "Linear" || module.typeName.startsWith("Conv") || module.typeName === "Embedding") continue;
    for (let i = 0; i < t.data.length; i++) {
      if (kind === "weight") t.data[i] = (0.5 + rng()) * (rng() < 0.2 ? -1 : 1);
      else if (kind === "bias" || kind === "running_mean") t.data[i] = 2 * rng() - 1;
      else if (kind === "running_var") t.data[i] = 0.3 + 1.7 * rng();
    }
  }
}

function findModule(net: Module, path: string): Module | undefined {
  let found: Module | undefined;
  net.visit("", (prefix, module) => {
    if (prefix === (path === "" ? "" : `${path}.`)) found = module;
  });
  return found;
}

/** The input batch of a case: randn, or integer indices for Embedding networks. */
export function inputFor(c: NormNetworkCase): Tensor {
  if (c.vocabulary === undefined) return randn([c.N, ...c.sampleShape], c.seed);
  const rng = mulberry32(c.seed ^ 0x70c);
  const data = new Float32Array(c.N * numel(c.sampleShape)).map(() => Math.floor(rng() * c.vocabulary!));
  return { shape: [c.N, ...c.sampleShape], data };
}

/**
 * Whether a float64 finite difference can judge the case's float32 gradients: every
 * normalisation that uses the sample's own statistics normalises at least 3 values, none of
 * them copies of one value. Over 2 values x̂ = ±d/√(d² + ε) is ±1 up to ε/d², and over copies
 * of one value (an adaptive pooling that upsampled it) x̂ is 0: either way every gradient
 * through it is 0 or O(ε) in exact arithmetic, and what float32 computes instead is rounding
 * scaled by 1/σ. Naive per-sample backprop, in the same precision, still checks those cases.
 */
export function wellConditioned(c: NormNetworkCase): boolean {
  const flat = c.spec.layers.flatMap((l) => (l.type === "Sequential" ? (l.layers as LayerSpec[]) : [l]));
  let upsampled = false;
  for (let i = 0; i < flat.length; i++) {
    const layer = flat[i];
    const type = String(layer.type);
    const shape = i === 0 ? c.sampleShape : shapeOf(flat.slice(0, i), c.sampleShape);
    if (type.startsWith("Adaptive")) {
      const after = shapeOf(flat.slice(0, i + 1), c.sampleShape);
      if (after.some((size, d) => size > shape[d])) upsampled = true;
      continue;
    }
    if (!/^(GroupNorm|InstanceNorm|LayerNorm)/.test(type)) continue;
    if (type.startsWith("InstanceNorm") && layer.track_running_stats === true) continue; // eval: running statistics
    if (upsampled) return false;
    let count: number;
    if (type === "GroupNorm") count = numel(shape) / Number(layer.num_groups);
    else if (type.startsWith("InstanceNorm")) count = numel(shape.slice(1));
    else {
      const normalized = layer.normalized_shape;
      count = Array.isArray(normalized) ? numel(normalized as number[]) : Number(normalized);
    }
    if (count < 3) return false;
  }
  return true;
}
