/**
 * The float64 reference of the normalisation, Embedding, adaptive pooling and Unflatten
 * layers (PyTorch semantics in eval mode), for tests only: plain loops, one sample at a time.
 * model.ts calls in here for these layer types.
 *
 * Buffers (running_mean, running_var) are read from the parameters map when present (tests
 * pass a library network's stateDict()), else from the layer's `buffers` (attached by
 * paramsFromTensors from a fixture's weights, see attachBuffers), else PyTorch's initial
 * values (0 and 1).
 *
 * Embedding's padding_idx row: PyTorch gives it no gradient although the output reads it, and
 * initialises it to zero (so it stays zero through training). The reference outputs zeros for
 * padding tokens, so that finite differences give PyTorch's zero gradient; tests keep that row
 * at zero wherever they compare with the reference.
 */
import type { Params } from "./model.ts";
import { maxTies } from "./ties.ts";

type Json = Record<string, unknown>;

interface ChannelNormLayer {
  path: string;
  dims: number;
  numFeatures: number;
  eps: number;
  affine: boolean;
  trackRunningStats: boolean;
  /** running_mean, running_var, num_batches_tracked by state-dict name, from a weights file. */
  buffers?: Map<string, Float64Array>;
}

export type NormLayer =
  | ChannelNormLayer & { type: "BatchNorm" }
  | ChannelNormLayer & { type: "InstanceNorm" }
  | { type: "LayerNorm"; path: string; normalizedShape: number[]; eps: number; elementwiseAffine: boolean; bias: boolean }
  | { type: "GroupNorm"; path: string; numGroups: number; numChannels: number; eps: number; affine: boolean }
  | { type: "Embedding"; path: string; numEmbeddings: number; embeddingDim: number; paddingIdx: number | null }
  | { type: "AdaptivePool"; path: string; dims: number; max: boolean; outputSize: (number | null)[] }
  | { type: "Unflatten"; path: string; dim: number; sizes: number[] };

const NORM_KEYS = ["num_features", "eps", "momentum", "affine", "track_running_stats"];
const ALLOWED: Record<string, string[]> = {
  BatchNorm: NORM_KEYS,
  InstanceNorm: NORM_KEYS,
  LayerNorm: ["normalized_shape", "eps", "elementwise_affine", "bias"],
  GroupNorm: ["num_groups", "num_channels", "eps", "affine"],
  Embedding: ["num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse"],
  AdaptiveAvgPool: ["output_size"],
  AdaptiveMaxPool: ["output_size", "return_indices"],
  Unflatten: ["dim", "unflattened_size"],
};

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function int(where: string, key: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) throw new TypeError(`${where}: ${key} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function flag(where: string, key: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== "boolean") throw new TypeError(`${where}: ${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function eps(where: string, v: unknown): number {
  if (v === undefined) return 1e-5;
  if (typeof v !== "number" || !(v > 0)) throw new TypeError(`${where}: eps must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

/** Parses one of this file's layer types; undefined for any other type. */
export function parseNormLayer(spec: Json, type: string, path: string, where: string): NormLayer | undefined {
  const m = /^(BatchNorm|InstanceNorm|AdaptiveAvgPool|AdaptiveMaxPool)([123])d$/.exec(type);
  const family = m ? m[1] : type;
  const allowed = ALLOWED[family];
  if (allowed === undefined) return undefined;
  for (const key of Object.keys(spec)) {
    if (key !== "type" && !allowed.includes(key)) throw new TypeError(`${where}: unknown argument ${key}`);
  }
  const dims = m ? Number(m[2]) : 0;
  if (family === "BatchNorm" || family === "InstanceNorm") {
    const batch = family === "BatchNorm";
    return {
      type: family,
      path,
      dims,
      numFeatures: int(where, "num_features", spec.num_features, 1),
      eps: eps(where, spec.eps),
      affine: flag(where, "affine", spec.affine, batch),
      trackRunningStats: flag(where, "track_running_stats", spec.track_running_stats, batch),
    };
  }
  if (family === "LayerNorm") {
    const shape = typeof spec.normalized_shape === "number" ? [spec.normalized_shape] : spec.normalized_shape;
    if (!Array.isArray(shape) || shape.length === 0) throw new TypeError(`${where}: normalized_shape must be an int or a list`);
    return {
      type: "LayerNorm",
      path,
      normalizedShape: shape.map((d) => int(where, "normalized_shape", d, 1)),
      eps: eps(where, spec.eps),
      elementwiseAffine: flag(where, "elementwise_affine", spec.elementwise_affine, true),
      bias: flag(where, "bias", spec.bias, true),
    };
  }
  if (family === "GroupNorm") {
    const numGroups = int(where, "num_groups", spec.num_groups, 1);
    const numChannels = int(where, "num_channels", spec.num_channels, 1);
    if (numChannels % numGroups !== 0) throw new RangeError(`${where}: num_groups must divide num_channels`);
    return { type: "GroupNorm", path, numGroups, numChannels, eps: eps(where, spec.eps), affine: flag(where, "affine", spec.affine, true) };
  }
  if (family === "Embedding") {
    if (spec.max_norm !== undefined && spec.max_norm !== null) throw new TypeError(`${where}: max_norm is not supported`);
    if (flag(where, "scale_grad_by_freq", spec.scale_grad_by_freq, false)) throw new TypeError(`${where}: scale_grad_by_freq is not supported`);
    const numEmbeddings = int(where, "num_embeddings", spec.num_embeddings, 1);
    let paddingIdx: number | null = null;
    if (spec.padding_idx !== undefined && spec.padding_idx !== null) {
      paddingIdx = int(where, "padding_idx", spec.padding_idx, -numEmbeddings);
      if (paddingIdx < 0) paddingIdx += numEmbeddings;
      if (paddingIdx >= numEmbeddings) throw new RangeError(`${where}: padding_idx out of range`);
    }
    return { type: "Embedding", path, numEmbeddings, embeddingDim: int(where, "embedding_dim", spec.embedding_dim, 1), paddingIdx };
  }
  if (family === "AdaptiveAvgPool" || family === "AdaptiveMaxPool") {
    if (flag(where, "return_indices", spec.return_indices, false)) throw new TypeError(`${where}: return_indices must be false`);
    const v = spec.output_size;
    const list = typeof v === "number" ? new Array(dims).fill(v) : v;
    if (!Array.isArray(list) || list.length !== dims) throw new TypeError(`${where}: output_size must be an int or a list of ${dims}`);
    const outputSize = list.map((e) => (e === null ? null : int(where, "output_size", e, 1)));
    return { type: "AdaptivePool", path, dims, max: family === "AdaptiveMaxPool", outputSize };
  }
  const sizes = spec.unflattened_size;
  if (!Array.isArray(sizes) || sizes.length === 0) throw new TypeError(`${where}: unflattened_size must be a list`);
  return { type: "Unflatten", path, dim: int(where, "dim", spec.dim, -Infinity), sizes: sizes.map((s) => int(where, "unflattened_size", s, -1)) };
}

/** Parameters of a layer of this file, in named_parameters() order ([] for any other layer). */
export function normParameters(layer: { type: string; path: string }): { name: string; shape: number[] }[] {
  const l = layer as NormLayer;
  const both = (shape: number[]) => [{ name: `${l.path}.weight`, shape }, { name: `${l.path}.bias`, shape }];
  switch (l.type) {
    case "BatchNorm":
    case "InstanceNorm":
      return l.affine ? both([l.numFeatures]) : [];
    case "GroupNorm":
      return l.affine ? both([l.numChannels]) : [];
    case "LayerNorm":
      if (!l.elementwiseAffine) return [];
      return l.bias ? both(l.normalizedShape) : [{ name: `${l.path}.weight`, shape: l.normalizedShape }];
    case "Embedding":
      return [{ name: `${l.path}.weight`, shape: [l.numEmbeddings, l.embeddingDim] }];
  }
  return [];
}

/**
 * Every layer of a model, layers of nested blocks included: any property of a layer holding a
 * model ({layers: [...]}) or a list of them is walked, whatever the block type.
 */
function allLayers(model: { layers: unknown[] }): { type: string; path: string }[] {
  const out: { type: string; path: string }[] = [];
  const isModel = (v: unknown): v is { layers: unknown[] } =>
    typeof v === "object" && v !== null && Array.isArray((v as { layers?: unknown }).layers);
  for (const layer of model.layers as { type: string; path: string }[]) {
    out.push(layer);
    for (const value of Object.values(layer)) {
      for (const child of Array.isArray(value) ? value : [value]) if (isModel(child)) out.push(...allLayers(child));
    }
  }
  return out;
}

/**
 * Gives every BatchNorm/InstanceNorm layer of `model` (nested ones too) its buffers from
 * `tensors` (a weights file); returns the names taken. A missing or mis-shaped buffer throws.
 */
export function attachBuffers(model: { layers: unknown[] }, tensors: Map<string, { shape: number[]; data: ArrayLike<number> }>): Set<string> {
  const taken = new Set<string>();
  for (const layer of allLayers(model)) {
    const list = normBuffers(layer);
    if (list.length === 0) continue;
    const buffers = new Map<string, Float64Array>();
    for (const { name, shape } of list) {
      const t = tensors.get(name);
      if (t === undefined) throw new TypeError(`weights: missing buffer ${name} (shape [${shape}])`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new RangeError(`weights: buffer ${name} has shape [${t.shape}], the spec needs [${shape}]`);
      }
      buffers.set(name, Float64Array.from(t.data));
      taken.add(name);
    }
    (layer as unknown as ChannelNormLayer).buffers = buffers;
  }
  return taken;
}

/** Buffers of a layer of this file, in state_dict() order ([] for any other layer). */
export function normBuffers(layer: { type: string; path: string }): { name: string; shape: number[] }[] {
  const l = layer as NormLayer;
  if ((l.type === "BatchNorm" || l.type === "InstanceNorm") && l.trackRunningStats) {
    return [
      { name: `${l.path}.running_mean`, shape: [l.numFeatures] },
      { name: `${l.path}.running_var`, shape: [l.numFeatures] },
      { name: `${l.path}.num_batches_tracked`, shape: [] },
    ];
  }
  return [];
}

function fail(layer: NormLayer, expected: string, shape: number[]): never {
  throw new RangeError(`layer ${layer.path} (${layer.type}): expected a per-sample input of shape ${expected}, got [${shape}]`);
}

/** y = x̂ · γ + β for element (c, l) of a (C, L) block, blocks repeated. */
function affine(xhat: Float64Array, C: number, L: number, weight?: Float64Array, bias?: Float64Array): Float64Array {
  if (!weight) return xhat;
  return xhat.map((v, i) => {
    const c = Math.floor(i / L) % C;
    return v * weight[c] + (bias ? bias[c] : 0);
  });
}

/** Each of `groups` contiguous groups normalised by its own mean and biased variance. */
function normaliseGroups(x: Float64Array, groups: number, epsilon: number): Float64Array {
  const size = x.length / groups;
  const y = new Float64Array(x.length);
  for (let g = 0; g < groups; g++) {
    let mean = 0;
    for (let i = 0; i < size; i++) mean += x[g * size + i];
    mean /= size;
    let variance = 0;
    for (let i = 0; i < size; i++) variance += (x[g * size + i] - mean) ** 2;
    variance /= size;
    const scale = 1 / Math.sqrt(variance + epsilon);
    for (let i = 0; i < size; i++) y[g * size + i] = (x[g * size + i] - mean) * scale;
  }
  return y;
}

function windowBounds(i: number, size: number, out: number): [number, number] {
  return [Math.floor((i * size) / out), Math.ceil(((i + 1) * size) / out)];
}

/** Runs one layer of this file on one sample. */
export function normForward(
  layer: NormLayer,
  params: Params,
  x: Float64Array,
  shape: number[],
): { output: Float64Array; shape: number[] } {
  const weight = params.get(`${layer.path}.weight`);
  const bias = params.get(`${layer.path}.bias`);
  const buffer = (name: string, count: number, initial: number) =>
    params.get(`${layer.path}.${name}`) ?? (layer as ChannelNormLayer).buffers?.get(`${layer.path}.${name}`) ??
      new Float64Array(count).fill(initial);
  switch (layer.type) {
    case "BatchNorm":
    case "InstanceNorm": {
      const ranks = layer.type === "BatchNorm" && layer.dims === 1 ? [1, 2] : [layer.dims + 1];
      const mustMatch = layer.type === "BatchNorm" || layer.affine || layer.trackRunningStats;
      if (!ranks.includes(shape.length) || (mustMatch && shape[0] !== layer.numFeatures)) fail(layer, `[${layer.numFeatures}, ...]`, shape);
      const C = shape[0];
      const L = product(shape.slice(1));
      let xhat: Float64Array;
      if (layer.trackRunningStats) {
        const mean = buffer("running_mean", C, 0);
        const variance = buffer("running_var", C, 1);
        xhat = x.map((v, i) => {
          const c = Math.floor(i / L);
          return (v - mean[c]) / Math.sqrt(variance[c] + layer.eps);
        });
      } else if (layer.type === "InstanceNorm") {
        xhat = normaliseGroups(x, C, layer.eps);
      } else {
        throw new TypeError(`layer ${layer.path} (BatchNorm): track_running_stats=False uses batch statistics`);
      }
      return { output: affine(xhat, C, L, weight, bias), shape: shape.slice() };
    }
    case "LayerNorm": {
      const k = layer.normalizedShape.length;
      if (shape.length < k || shape.slice(shape.length - k).some((d, i) => d !== layer.normalizedShape[i])) {
        fail(layer, `[..., ${layer.normalizedShape}]`, shape);
      }
      const M = product(layer.normalizedShape);
      return { output: affine(normaliseGroups(x, x.length / M, layer.eps), M, 1, weight, bias), shape: shape.slice() };
    }
    case "GroupNorm": {
      if (shape.length < 1 || shape[0] !== layer.numChannels) fail(layer, `[${layer.numChannels}, ...]`, shape);
      const L = product(shape.slice(1));
      return { output: affine(normaliseGroups(x, layer.numGroups, layer.eps), layer.numChannels, L, weight, bias), shape: shape.slice() };
    }
    case "Embedding": {
      const E = layer.embeddingDim;
      const y = new Float64Array(x.length * E);
      x.forEach((v, t) => {
        if (!Number.isInteger(v) || v < 0 || v >= layer.numEmbeddings) throw new RangeError(`layer ${layer.path} (Embedding): index ${v} out of range`);
        if (v === layer.paddingIdx) return; // see the note at the top
        for (let e = 0; e < E; e++) y[t * E + e] = weight![v * E + e];
      });
      return { output: y, shape: [...shape, E] };
    }
    case "AdaptivePool": {
      const d = layer.dims;
      if (shape.length !== d && shape.length !== d + 1) fail(layer, `[C, ${new Array(d).fill("*")}]`, shape);
      const spatial = shape.slice(shape.length - d);
      const channels = product(shape.slice(0, shape.length - d));
      const out = spatial.map((s, i) => layer.outputSize[i] ?? s);
      const lift = (v: number[]) => [...new Array(3 - v.length).fill(1), ...v];
      const [D, H, W] = lift(spatial);
      const [oD, oH, oW] = lift(out);
      const y = new Float64Array(channels * oD * oH * oW);
      let o = 0;
      for (let c = 0; c < channels; c++) {
        for (let i = 0; i < oD; i++) {
          const [d0, d1] = windowBounds(i, D, oD);
          for (let j = 0; j < oH; j++) {
            const [h0, h1] = windowBounds(j, H, oH);
            for (let k = 0; k < oW; k++) {
              const [w0, w1] = windowBounds(k, W, oW);
              let acc = layer.max ? -Infinity : 0;
              let second = -Infinity;
              for (let a = d0; a < d1; a++) {
                for (let b = h0; b < h1; b++) {
                  for (let e = w0; e < w1; e++) {
                    const v = x[((c * D + a) * H + b) * W + e];
                    if (!layer.max) acc += v;
                    else if (v > acc || Number.isNaN(v)) [second, acc] = [acc, v];
                    else if (v > second) second = v;
                  }
                }
              }
              if (layer.max) maxTies.record(acc, second);
              y[o++] = layer.max ? acc : acc / ((d1 - d0) * (h1 - h0) * (w1 - w0));
            }
          }
        }
      }
      return { output: y, shape: [...shape.slice(0, shape.length - d), ...out] };
    }
    case "Unflatten": {
      const rank = shape.length + 1;
      const dim = layer.dim < 0 ? layer.dim + rank : layer.dim;
      if (dim < 1 || dim >= rank) fail(layer, `a dim ${layer.dim} to split (not the batch)`, shape);
      const known = product(layer.sizes.filter((s) => s !== -1));
      const sizes = layer.sizes.map((s) => (s === -1 ? shape[dim - 1] / known : s));
      if (product(sizes) !== shape[dim - 1] || !sizes.every(Number.isInteger)) fail(layer, `dim ${dim} of size ${product(sizes)}`, shape);
      return { output: x, shape: [...shape.slice(0, dim - 1), ...sizes, ...shape.slice(dim)] };
    }
  }
}
