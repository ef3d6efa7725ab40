/**
 * A float64 reference implementation of the model spec (PyTorch `nn.Sequential` layers), for
 * tests only: plain nested loops, one sample at a time, written to be obviously right rather
 * than fast. It shares no code with `src/` so that it can check it.
 *
 * API (everything below is also re-exported by `tests/reference/mod.ts`):
 *
 * model.ts
 *   parseSpec(spec: unknown): Model
 *       Validates a `{"format": "torch.nn.Sequential", "layers": [...]}` spec (parsed JSON) and
 *       flattens nested Sequentials into `model.layers`, each with its state-dict `path`.
 *       Defaults are PyTorch's. Throws TypeError/RangeError naming the layer path.
 *   parameterList(model): ParameterInfo[]        {name, shape, size} in named_parameters() order
 *   parameterCount(model): number                D
 *   paramsFromTensors(model, tensors: Map<string, {shape, data}>): Params
 *       Checks names and shapes against the spec; Params = Map<string, Float64Array>.
 *   randomParams(model, seed = 0): Params        PyTorch-like uniform(±1/sqrt(fan_in)) init
 *   flattenParams(model, params): Float64Array   the D-vector, named_parameters() order
 *   forwardSample(model, params, x: Float64Array, inputShape: number[]): {output, shape}
 *       ONE sample, inputShape without the batch dimension (e.g. [C, H, W]).
 *   forwardLayers(model, params, from, to, x, inputShape): {output, shape}
 *       layers [from, to) of the flattened model only (forwardSample = [0, layers.length))
 *   outputShape(model, inputShape): number[]     per-sample output shape (runs a forward)
 *   erf(x): number                               accurate to ~1e-15 (series), used by GELU
 *
 * finite_differences.ts
 *   crossEntropySum(output, outputShape, target): number  class dim 0 of the sample, i.e. dim 1
 *       of the batch; outputShape [C] or [C, d1, ...], target holds class indices, shape [d1, ...]
 *   mseSum(output, target): number
 *   lossShare(output, outputShape, objective: SampleObjective): number
 *       sample n's share of PyTorch's batch loss: the per-sample sum, divided for "mean" by
 *       batchSize * prod(d) (cross-entropy) or batchSize * K (MSE)
 *   finiteDifferenceJacobian(model, params, x, inputShape, objective: SampleObjective,
 *                            options?: {relativeStep?: number}): Float64Array
 *       central differences over every parameter (step 1e-6 * max(1, |θ|)). "output": row-major
 *       [K, D] (K = output elements of the sample); a loss: [D].
 *   finiteDifferenceBatch(model, params, x: Float64Array, batchShape: number[],
 *                         objective: BatchObjective, options?): {data: Float64Array, shape: number[]}
 *       the whole per-sample quantity as in the fixtures: [N, K, D], or [N, D] when K = 1 or the
 *       objective is a loss; the target of a BatchObjective is the whole batch's.
 *   relativeError(actual, expected): number      max |a - e| / max |e|
 *
 * files.ts
 *   parseNpy(bytes) / readNpy(path): {shape, data: Float64Array, dtype}
 *   parseSafetensors(bytes) / readSafetensors(path): Map<string, {shape, data: Float64Array}>
 *   loadFixture(dir, name?): Fixture             one tests/fixtures/<name>/ directory, read whole
 *
 * @example
 * const model = parseSpec({ format: "torch.nn.Sequential", layers: [
 *   { type: "Linear", in_features: 3, out_features: 2 }, { type: "Tanh" }] });
 * const params = randomParams(model, 1);
 * const { output, shape } = forwardSample(model, params, new Float64Array([1, 2, 3]), [3]); // shape [2]
 * const jacobian = finiteDifferenceJacobian(model, params, new Float64Array([1, 2, 3]), [3],
 *   { objective: "output" });                                     // [2, 8] row-major
 */

import { type ConvTransposeLayer, convTranspose, convTransposeParameters, parseConvTranspose } from "./conv_transpose.ts";
import { attachBuffers, type NormLayer, normForward, normParameters, parseNormLayer } from "./norm.ts";
import { maxTies } from "./ties.ts";

/** Parameters keyed by state-dict name ("0.weight", "2.1.bias"). */
export type Params = Map<string, Float64Array>;

/** One parameter tensor of the model, in named_parameters() order. */
export interface ParameterInfo {
  name: string;
  shape: number[];
  size: number;
}

export type Activation = "ReLU" | "LeakyReLU" | "Sigmoid" | "Tanh" | "ELU" | "GELU" | "SiLU" | "Softplus";

/** A layer of the flattened model; `path` is its state-dict prefix without the dot ("2.1"). */
export type Layer =
  | ConvTransposeLayer
  | NormLayer
  | { type: "Linear"; path: string; inFeatures: number; outFeatures: number; bias: boolean }
  | {
    type: "Conv";
    path: string;
    dims: number;
    inChannels: number;
    outChannels: number;
    kernel: number[];
    stride: number[];
    /** Zeros added before and after each spatial dim. */
    padBefore: number[];
    padAfter: number[];
    dilation: number[];
    groups: number;
    bias: boolean;
  }
  | { type: "Activation"; path: string; name: Activation; slope: number; alpha: number; approximate: "none" | "tanh"; beta: number; threshold: number }
  | { type: "Identity"; path: string }
  /** y = shortcut(x) + block(x); the identity shortcut when null. */
  | { type: "Residual"; path: string; block: Model; shortcut: Model | null }
  /** Branches on the same input, concatenated along `dim` (counting the batch as 0) or summed. */
  | { type: "Parallel"; path: string; branches: Model[]; combine: "concat" | "sum"; dim: number }
  | { type: "Flatten"; path: string; startDim: number; endDim: number }
  | { type: "MaxPool"; path: string; dims: number; kernel: number[]; stride: number[]; padding: number[]; dilation: number[]; ceilMode: boolean }
  | {
    type: "AvgPool";
    path: string;
    dims: number;
    kernel: number[];
    stride: number[];
    padding: number[];
    ceilMode: boolean;
    countIncludePad: boolean;
    divisorOverride: number | null;
  };

/** A parsed spec: the layers of all nested Sequentials in execution order. */
export interface Model {
  layers: Layer[];
}

// ---------------------------------------------------------------------------------------------
// Parsing

type Json = Record<string, unknown>;

const noArgs = ["inplace"];
const allowedKeys: Record<string, string[]> = {
  Linear: ["in_features", "out_features", "bias"],
  Conv: ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode"],
  ReLU: noArgs,
  Sigmoid: noArgs,
  Tanh: noArgs,
  SiLU: noArgs,
  Identity: noArgs,
  LeakyReLU: ["negative_slope", "inplace"],
  ELU: ["alpha", "inplace"],
  GELU: ["approximate"],
  Softplus: ["beta", "threshold"],
  Dropout: ["p", "inplace"],
  Flatten: ["start_dim", "end_dim"],
  MaxPool: ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
  AvgPool: ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
  AvgPool1d: ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"],
};

function integer(layer: string, key: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new TypeError(`${layer}: ${key} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function real(layer: string, key: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value)) throw new TypeError(`${layer}: ${key} must be a number, got ${JSON.stringify(value)}`);
  return value;
}

function bool(layer: string, key: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TypeError(`${layer}: ${key} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

/** A size argument (int, or a list of 1 or `dims` ints) as `dims` ints. */
function sizes(layer: string, key: string, value: unknown, dims: number, fallback: number | undefined, min: number): number[] {
  if (value === undefined || value === null) {
    if (fallback === undefined) throw new TypeError(`${layer}: ${key} is required`);
    return new Array(dims).fill(fallback);
  }
  if (typeof value === "number") return new Array(dims).fill(integer(layer, key, value, min));
  if (Array.isArray(value) && (value.length === dims || value.length === 1)) {
    const ints = value.map((v) => integer(layer, key, v, min));
    return ints.length === dims ? ints : new Array(dims).fill(ints[0]);
  }
  throw new TypeError(`${layer}: ${key} must be an int or a list of ${dims} ints, got ${JSON.stringify(value)}`);
}

/** PyTorch's pooling output size, with ceil_mode's rule that the last window starts inside the input or left padding. */
export function poolOutputSize(input: number, kernel: number, stride: number, pad: number, dilation: number, ceilMode: boolean): number {
  const span = input + 2 * pad - dilation * (kernel - 1) - 1;
  let out = Math.floor((span + (ceilMode ? stride - 1 : 0)) / stride) + 1;
  if (ceilMode && (out - 1) * stride >= input + pad) out -= 1;
  return out;
}

function parseLayer(raw: unknown, path: string, out: Layer[]): void {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new TypeError(`layer ${path}: expected an object, got ${JSON.stringify(raw)}`);
  const spec = raw as Json;
  const type = spec.type;
  if (typeof type !== "string") throw new TypeError(`layer ${path}: missing "type"`);
  const where = `layer ${path} (${type})`;
  if (type === "Residual" || type === "Parallel") {
    const keys = type === "Residual" ? ["block", "shortcut"] : ["branches", "combine", "dim"];
    for (const key of Object.keys(spec)) if (key !== "type" && !keys.includes(key)) throw new TypeError(`${where}: unknown argument ${key}`);
    const nested = (child: unknown, prefix: string): Model => {
      const layers: Layer[] = [];
      parseLayer(child, prefix, layers);
      return { layers };
    };
    if (type === "Residual") {
      const shortcut = spec.shortcut === undefined || spec.shortcut === null ? null : nested(spec.shortcut, `${path}.shortcut`);
      out.push({ type, path, block: nested(spec.block, `${path}.block`), shortcut });
    } else {
      if (!Array.isArray(spec.branches)) throw new TypeError(`${where}: "branches" must be a list`);
      const combine = spec.combine ?? "concat";
      if (combine !== "concat" && combine !== "sum") throw new TypeError(`${where}: bad combine ${JSON.stringify(combine)}`);
      out.push({ type, path, branches: spec.branches.map((b, i) => nested(b, `${path}.${i}`)), combine, dim: integer(where, "dim", spec.dim ?? 1, -10) });
    }
    return;
  }
  if (type === "Sequential") {
    if (!Array.isArray(spec.layers)) throw new TypeError(`${where}: "layers" must be a list`);
    for (const key of Object.keys(spec)) if (key !== "type" && key !== "layers") throw new TypeError(`${where}: unknown argument ${key}`);
    spec.layers.forEach((child, i) => parseLayer(child, path === "" ? `${i}` : `${path}.${i}`, out));
    return;
  }
  const convTransposeMatch = /^ConvTranspose([123])d$/.exec(type);
  if (convTransposeMatch) {
    out.push(parseConvTranspose(spec, path, Number(convTransposeMatch[1])));
    return;
  }
  const norm = parseNormLayer(spec, type, path, where);
  if (norm) {
    out.push(norm);
    return;
  }
  const conv = /^Conv([123])d$/.exec(type);
  const maxPool = /^MaxPool([123])d$/.exec(type);
  const avgPool = /^AvgPool([123])d$/.exec(type);
  const family = conv ? "Conv" : maxPool ? "MaxPool" : type === "AvgPool1d" ? "AvgPool1d" : avgPool ? "AvgPool" : type;
  const allowed = allowedKeys[family];
  if (allowed === undefined) throw new TypeError(`${where}: unsupported layer type`);
  for (const key of Object.keys(spec)) {
    if (key !== "type" && !allowed.includes(key)) throw new TypeError(`${where}: unknown argument ${key}`);
  }
  const activation = (name: Activation, extra: Partial<Extract<Layer, { type: "Activation" }>> = {}) =>
    out.push({ type: "Activation", path, name, slope: 0, alpha: 1, approximate: "none", beta: 1, threshold: 20, ...extra });

  if (type === "Linear") {
    out.push({
      type: "Linear",
      path,
      inFeatures: integer(where, "in_features", spec.in_features, 1),
      outFeatures: integer(where, "out_features", spec.out_features, 1),
      bias: bool(where, "bias", spec.bias, true),
    });
  } else if (conv) {
    const dims = Number(conv[1]);
    const inChannels = integer(where, "in_channels", spec.in_channels, 1);
    const outChannels = integer(where, "out_channels", spec.out_channels, 1);
    const groups = spec.groups === undefined ? 1 : integer(where, "groups", spec.groups, 1);
    if (inChannels % groups !== 0 || outChannels % groups !== 0) {
      throw new RangeError(`${where}: groups=${groups} must divide in_channels=${inChannels} and out_channels=${outChannels}`);
    }
    if (spec.padding_mode !== undefined && spec.padding_mode !== "zeros") {
      throw new TypeError(`${where}: padding_mode must be "zeros", got ${JSON.stringify(spec.padding_mode)}`);
    }
    const kernel = sizes(where, "kernel_size", spec.kernel_size, dims, undefined, 1);
    const stride = sizes(where, "stride", spec.stride, dims, 1, 1);
    const dilation = sizes(where, "dilation", spec.dilation, dims, 1, 1);
    let padBefore: number[];
    let padAfter: number[];
    if (spec.padding === "valid") {
      padBefore = padAfter = new Array(dims).fill(0);
    } else if (spec.padding === "same") {
      if (stride.some((s) => s !== 1)) throw new RangeError(`${where}: padding="same" needs stride 1, got ${stride}`);
      // PyTorch: total = dilation * (k - 1), the smaller half before, the rest after.
      const total = kernel.map((k, i) => dilation[i] * (k - 1));
      padBefore = total.map((t) => Math.floor(t / 2));
      padAfter = total.map((t, i) => t - padBefore[i]);
    } else {
      padBefore = padAfter = sizes(where, "padding", spec.padding, dims, 0, 0);
    }
    out.push({
      type: "Conv",
      path,
      dims,
      inChannels,
      outChannels,
      kernel,
      stride,
      padBefore,
      padAfter,
      dilation,
      groups,
      bias: bool(where, "bias", spec.bias, true),
    });
  } else if (type === "ReLU" || type === "Sigmoid" || type === "Tanh" || type === "SiLU") {
    activation(type);
  } else if (type === "LeakyReLU") {
    activation("LeakyReLU", { slope: real(where, "negative_slope", spec.negative_slope, 0.01) });
  } else if (type === "ELU") {
    activation("ELU", { alpha: real(where, "alpha", spec.alpha, 1) });
  } else if (type === "GELU") {
    const approximate = spec.approximate ?? "none";
    if (approximate !== "none" && approximate !== "tanh") throw new TypeError(`${where}: approximate must be "none" or "tanh", got ${JSON.stringify(approximate)}`);
    activation("GELU", { approximate });
  } else if (type === "Softplus") {
    activation("Softplus", { beta: real(where, "beta", spec.beta, 1), threshold: real(where, "threshold", spec.threshold, 20) });
  } else if (type === "Identity") {
    out.push({ type: "Identity", path });
  } else if (type === "Dropout") {
    const p = real(where, "p", spec.p, 0.5);
    if (p < 0 || p > 1) throw new RangeError(`${where}: p must be in [0, 1], got ${p}`);
    out.push({ type: "Identity", path }); // evaluation mode
  } else if (type === "Flatten") {
    out.push({
      type: "Flatten",
      path,
      startDim: spec.start_dim === undefined ? 1 : integer(where, "start_dim", spec.start_dim, -Infinity),
      endDim: spec.end_dim === undefined ? -1 : integer(where, "end_dim", spec.end_dim, -Infinity),
    });
  } else if (maxPool || avgPool) {
    const dims = Number((maxPool ?? avgPool)![1]);
    const kernel = sizes(where, "kernel_size", spec.kernel_size, dims, undefined, 1);
    const strideGiven = Array.isArray(spec.stride) && spec.stride.length === 0 ? undefined : spec.stride;
    const stride = strideGiven === undefined || strideGiven === null ? kernel.slice() : sizes(where, "stride", strideGiven, dims, undefined, 1);
    const padding = sizes(where, "padding", spec.padding, dims, 0, 0);
    const dilation = maxPool ? sizes(where, "dilation", spec.dilation, dims, 1, 1) : new Array(dims).fill(1);
    const ceilMode = bool(where, "ceil_mode", spec.ceil_mode, false);
    padding.forEach((p, i) => {
      if (p > Math.floor(kernel[i] / 2)) throw new RangeError(`${where}: padding ${p} must be at most half of kernel_size ${kernel[i]}`);
    });
    if (maxPool) {
      if (bool(where, "return_indices", spec.return_indices, false)) throw new TypeError(`${where}: return_indices must be false`);
      out.push({ type: "MaxPool", path, dims, kernel, stride, padding, dilation, ceilMode });
    } else {
      let divisorOverride: number | null = null;
      if (spec.divisor_override !== undefined && spec.divisor_override !== null) {
        divisorOverride = integer(where, "divisor_override", spec.divisor_override, 1);
      }
      out.push({
        type: "AvgPool",
        path,
        dims,
        kernel,
        stride,
        padding,
        ceilMode,
        countIncludePad: bool(where, "count_include_pad", spec.count_include_pad, true),
        divisorOverride,
      });
    }
  } else {
    throw new TypeError(`${where}: unsupported layer type`);
  }
}

/** Validates a parsed model.json and flattens its nested Sequentials. */
export function parseSpec(spec: unknown): Model {
  if (typeof spec !== "object" || spec === null) throw new TypeError(`model spec: expected an object`);
  const s = spec as Json;
  if (s.format !== "torch.nn.Sequential") throw new TypeError(`model spec: format must be "torch.nn.Sequential", got ${JSON.stringify(s.format)}`);
  if (!Array.isArray(s.layers)) throw new TypeError(`model spec: "layers" must be a list`);
  const layers: Layer[] = [];
  s.layers.forEach((layer, i) => parseLayer(layer, `${i}`, layers));
  return { layers };
}

// ---------------------------------------------------------------------------------------------
// Parameters

/** The model's parameters in PyTorch's named_parameters() order. */
export function parameterList(model: Model): ParameterInfo[] {
  const list: ParameterInfo[] = [];
  const add = (name: string, shape: number[]) => list.push({ name, shape, size: shape.reduce((a, b) => a * b, 1) });
  for (const layer of model.layers) {
    if (layer.type === "Residual") {
      list.push(...parameterList(layer.block), ...(layer.shortcut ? parameterList(layer.shortcut) : []));
    } else if (layer.type === "Parallel") {
      for (const branch of layer.branches) list.push(...parameterList(branch));
    } else if (layer.type === "Linear") {
      add(`${layer.path}.weight`, [layer.outFeatures, layer.inFeatures]);
      if (layer.bias) add(`${layer.path}.bias`, [layer.outFeatures]);
    } else if (layer.type === "ConvTranspose") {
      for (const { name, shape } of convTransposeParameters(layer)) add(name, shape);
    } else if (layer.type === "Conv") {
      add(`${layer.path}.weight`, [layer.outChannels, layer.inChannels / layer.groups, ...layer.kernel]);
      if (layer.bias) add(`${layer.path}.bias`, [layer.outChannels]);
    } else {
      for (const { name, shape } of normParameters(layer)) add(name, shape);
    }
  }
  return list;
}

/** D, the total number of parameters. */
export function parameterCount(model: Model): number {
  return parameterList(model).reduce((a, p) => a + p.size, 0);
}

/** Builds Params from named tensors (e.g. a safetensors file), checking names and shapes against the spec. */
export function paramsFromTensors(model: Model, tensors: Map<string, { shape: number[]; data: ArrayLike<number> }>): Params {
  const params: Params = new Map();
  const expected = parameterList(model);
  for (const { name, shape, size } of expected) {
    const t = tensors.get(name);
    if (t === undefined) throw new TypeError(`weights: missing tensor ${name} (shape [${shape}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]) || t.data.length !== size) {
      throw new RangeError(`weights: tensor ${name} has shape [${t.shape}], the spec needs [${shape}]`);
    }
    params.set(name, Float64Array.from(t.data));
  }
  const buffers = attachBuffers(model, tensors); // BatchNorm/InstanceNorm running statistics
  const extra = [...tensors.keys()].filter((k) => !params.has(k) && !buffers.has(k));
  if (extra.length > 0) throw new TypeError(`weights: tensors not in the spec: ${extra.join(", ")}`);
  return params;
}

/** Deterministic PyTorch-like init: weights and biases uniform in ±1/sqrt(fan_in). */
export function randomParams(model: Model, seed = 0): Params {
  let state = (seed >>> 0) ^ 0x9e3779b9;
  const next = () => { // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const params: Params = new Map();
  const list = parameterList(model);
  for (const { name, shape, size } of list) {
    const weightShape = name.endsWith(".bias") ? list.find((p) => p.name === name.replace(/bias$/, "weight"))!.shape : shape;
    const fanIn = weightShape.slice(1).reduce((a, b) => a * b, 1);
    const bound = 1 / Math.sqrt(fanIn);
    params.set(name, Float64Array.from({ length: size }, () => (2 * next() - 1) * bound));
  }
  return params;
}

/** All parameters as one D-vector, in named_parameters() order, each flattened row-major. */
export function flattenParams(model: Model, params: Params): Float64Array {
  const list = parameterList(model);
  const flat = new Float64Array(list.reduce((a, p) => a + p.size, 0));
  let offset = 0;
  for (const { name } of list) {
    const p = params.get(name)!;
    flat.set(p, offset);
    offset += p.length;
  }
  return flat;
}

// ---------------------------------------------------------------------------------------------
// Forward, one sample at a time

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** erf(x) to ~1e-15: erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)), all terms positive. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (Math.abs(x) >= 6) return Math.sign(x); // 1 - erf(6) < 2.2e-17
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 0; Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (2 * x2) / (2 * n + 3);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
}

function activate(layer: Extract<Layer, { type: "Activation" }>, v: number): number {
  switch (layer.name) {
    case "ReLU":
      return v > 0 ? v : Number.isNaN(v) ? v : 0;
    case "LeakyReLU":
      return v > 0 ? v : v * layer.slope;
    case "Sigmoid":
      return 1 / (1 + Math.exp(-v));
    case "Tanh":
      return Math.tanh(v);
    case "ELU":
      return v > 0 ? v : layer.alpha * Math.expm1(v);
    case "GELU":
      if (layer.approximate === "tanh") {
        const inner = Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v);
        return 0.5 * v * (1 + Math.tanh(inner));
      }
      return 0.5 * v * (1 + erf(v / Math.SQRT2));
    case "SiLU":
      return v / (1 + Math.exp(-v));
    case "Softplus":
      // PyTorch switches to the identity above the threshold (a small jump in value).
      return v * layer.beta > layer.threshold ? v : Math.log1p(Math.exp(v * layer.beta)) / layer.beta;
  }
}

function shapeError(layer: Layer, expected: string, shape: number[]): never {
  throw new RangeError(`layer ${layer.path} (${layer.type}): expected a per-sample input of shape ${expected}, got [${shape}]`);
}

/** Pads a per-dim list to 3 dims at the front, so 1d and 2d run through the 3d loops. */
const lift = (values: number[], fill: number) => [...new Array(3 - values.length).fill(fill), ...values];

function linear(layer: Extract<Layer, { type: "Linear" }>, params: Params, x: Float64Array, shape: number[]) {
  if (shape.length < 1 || shape[shape.length - 1] !== layer.inFeatures) shapeError(layer, `[..., ${layer.inFeatures}]`, shape);
  const weight = params.get(`${layer.path}.weight`)!;
  const bias = layer.bias ? params.get(`${layer.path}.bias`)! : undefined;
  const rows = product(shape.slice(0, -1));
  const { inFeatures: I, outFeatures: O } = layer;
  const y = new Float64Array(rows * O);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < O; o++) {
      let sum = bias ? bias[o] : 0;
      for (let i = 0; i < I; i++) sum += weight[o * I + i] * x[r * I + i];
      y[r * O + o] = sum;
    }
  }
  return { output: y, shape: [...shape.slice(0, -1), O] };
}

function convolution(layer: Extract<Layer, { type: "Conv" }>, params: Params, x: Float64Array, shape: number[]) {
  if (shape.length !== layer.dims + 1 || shape[0] !== layer.inChannels) {
    shapeError(layer, `[${layer.inChannels}, ${new Array(layer.dims).fill("*").join(", ")}]`, shape);
  }
  const weight = params.get(`${layer.path}.weight`)!;
  const bias = layer.bias ? params.get(`${layer.path}.bias`)! : undefined;
  const size = lift(shape.slice(1), 1);
  const k = lift(layer.kernel, 1);
  const s = lift(layer.stride, 1);
  const d = lift(layer.dilation, 1);
  const pb = lift(layer.padBefore, 0);
  const pa = lift(layer.padAfter, 0);
  const o = size.map((n, i) => Math.floor((n + pb[i] + pa[i] - d[i] * (k[i] - 1) - 1) / s[i]) + 1);
  if (o.some((n) => n < 1)) shapeError(layer, "large enough for the kernel", shape);
  const inPerGroup = layer.inChannels / layer.groups;
  const outPerGroup = layer.outChannels / layer.groups;
  const y = new Float64Array(layer.outChannels * o[0] * o[1] * o[2]);
  for (let co = 0; co < layer.outChannels; co++) {
    const group = Math.floor(co / outPerGroup);
    for (let o0 = 0; o0 < o[0]; o0++) {
      for (let o1 = 0; o1 < o[1]; o1++) {
        for (let o2 = 0; o2 < o[2]; o2++) {
          let sum = bias ? bias[co] : 0;
          for (let ci = 0; ci < inPerGroup; ci++) {
            const channel = group * inPerGroup + ci;
            for (let k0 = 0; k0 < k[0]; k0++) {
              const i0 = o0 * s[0] - pb[0] + k0 * d[0];
              if (i0 < 0 || i0 >= size[0]) continue;
              for (let k1 = 0; k1 < k[1]; k1++) {
                const i1 = o1 * s[1] - pb[1] + k1 * d[1];
                if (i1 < 0 || i1 >= size[1]) continue;
                for (let k2 = 0; k2 < k[2]; k2++) {
                  const i2 = o2 * s[2] - pb[2] + k2 * d[2];
                  if (i2 < 0 || i2 >= size[2]) continue;
                  const w = weight[(((co * inPerGroup + ci) * k[0] + k0) * k[1] + k1) * k[2] + k2];
                  sum += w * x[((channel * size[0] + i0) * size[1] + i1) * size[2] + i2];
                }
              }
            }
          }
          y[((co * o[0] + o0) * o[1] + o1) * o[2] + o2] = sum;
        }
      }
    }
  }
  return { output: y, shape: [layer.outChannels, ...o.slice(3 - layer.dims)] };
}

function pool(layer: Extract<Layer, { type: "MaxPool" | "AvgPool" }>, x: Float64Array, shape: number[]) {
  // Pooling accepts (C, spatial...) per sample, as PyTorch does for batched input.
  if (shape.length !== layer.dims + 1) shapeError(layer, `[C, ${new Array(layer.dims).fill("*").join(", ")}]`, shape);
  const channels = shape[0];
  const size = lift(shape.slice(1), 1);
  const k = lift(layer.kernel, 1);
  const s = lift(layer.stride, 1);
  const p = lift(layer.padding, 0);
  const d = lift(layer.type === "MaxPool" ? layer.dilation : [], 1);
  const o = size.map((n, i) => poolOutputSize(n, k[i], s[i], p[i], d[i], layer.ceilMode));
  if (o.some((n) => n < 1)) shapeError(layer, "large enough for the kernel", shape);
  const y = new Float64Array(channels * o[0] * o[1] * o[2]);
  const at = (c: number, i0: number, i1: number, i2: number) => x[((c * size[0] + i0) * size[1] + i1) * size[2] + i2];
  for (let c = 0; c < channels; c++) {
    for (let o0 = 0; o0 < o[0]; o0++) {
      for (let o1 = 0; o1 < o[1]; o1++) {
        for (let o2 = 0; o2 < o[2]; o2++) {
          const out = [o0, o1, o2];
          let value: number;
          if (layer.type === "MaxPool") {
            // Padding never wins: only positions inside the input are compared. NaN propagates as in ATen.
            value = -Infinity;
            let second = -Infinity;
            for (let k0 = 0; k0 < k[0]; k0++) {
              const i0 = o0 * s[0] - p[0] + k0 * d[0];
              if (i0 < 0 || i0 >= size[0]) continue;
              for (let k1 = 0; k1 < k[1]; k1++) {
                const i1 = o1 * s[1] - p[1] + k1 * d[1];
                if (i1 < 0 || i1 >= size[1]) continue;
                for (let k2 = 0; k2 < k[2]; k2++) {
                  const i2 = o2 * s[2] - p[2] + k2 * d[2];
                  if (i2 < 0 || i2 >= size[2]) continue;
                  const v = at(c, i0, i1, i2);
                  if (v > value || Number.isNaN(v)) [second, value] = [value, v];
                  else if (v > second) second = v;
                }
              }
            }
            maxTies.record(value, second);
          } else {
            // ATen's avg_pool: the window is clipped to the padded input for count_include_pad,
            // and to the input itself for the sum and for count_include_pad=False.
            const start = out.map((oi, i) => oi * s[i] - p[i]);
            const paddedEnd = start.map((st, i) => Math.min(st + k[i], size[i] + p[i]));
            const poolSize = product(paddedEnd.map((e, i) => e - start[i]));
            const lo = start.map((st) => Math.max(st, 0));
            const hi = paddedEnd.map((e, i) => Math.min(e, size[i]));
            if (lo.some((l, i) => l >= hi[i])) {
              value = 0;
            } else {
              let sum = 0;
              for (let i0 = lo[0]; i0 < hi[0]; i0++) {
                for (let i1 = lo[1]; i1 < hi[1]; i1++) {
                  for (let i2 = lo[2]; i2 < hi[2]; i2++) sum += at(c, i0, i1, i2);
                }
              }
              const divisor = layer.divisorOverride !== null
                ? layer.divisorOverride
                : layer.countIncludePad
                ? poolSize
                : product(hi.map((h, i) => h - lo[i]));
              value = sum / divisor;
            }
          }
          y[((c * o[0] + o0) * o[1] + o1) * o[2] + o2] = value;
        }
      }
    }
  }
  return { output: y, shape: [channels, ...o.slice(3 - layer.dims)] };
}

function flatten(layer: Extract<Layer, { type: "Flatten" }>, shape: number[]): number[] {
  // start_dim/end_dim count the batch dimension; a sample's dims are the batch's minus one.
  const rank = shape.length + 1;
  const start = layer.startDim < 0 ? layer.startDim + rank : layer.startDim;
  const end = layer.endDim < 0 ? layer.endDim + rank : layer.endDim;
  if (start < 0 || end >= rank || start > end) {
    throw new RangeError(`layer ${layer.path} (Flatten): start_dim=${layer.startDim}, end_dim=${layer.endDim} out of range for a batch of rank ${rank} (sample shape [${shape}])`);
  }
  if (start === 0 && end > 0) throw new RangeError(`layer ${layer.path} (Flatten): start_dim=0 would merge the batch dimension into the sample`);
  if (start === end) return shape.slice();
  return [...shape.slice(0, start - 1), product(shape.slice(start - 1, end)), ...shape.slice(end)];
}

/** Runs `model.layers[from..to)` on one sample; `forwardSample` is the whole network. */
export function forwardLayers(
  model: Model,
  params: Params,
  from: number,
  to: number,
  x: Float64Array,
  inputShape: number[],
): { output: Float64Array; shape: number[] } {
  let value = x;
  let shape = inputShape.slice();
  if (x.length !== product(shape)) throw new RangeError(`forward: input has ${x.length} values, shape [${shape}] needs ${product(shape)}`);
  for (let l = from; l < to; l++) {
    const layer = model.layers[l];
    switch (layer.type) {
      case "Linear":
        ({ output: value, shape } = linear(layer, params, value, shape));
        break;
      case "ConvTranspose":
        ({ output: value, shape } = convTranspose(layer, params, value, shape));
        break;
      case "Conv":
        ({ output: value, shape } = convolution(layer, params, value, shape));
        break;
      case "MaxPool":
      case "AvgPool":
        ({ output: value, shape } = pool(layer, value, shape));
        break;
      case "Activation":
        value = value.map((v) => activate(layer, v));
        break;
      case "Flatten":
        shape = flatten(layer, shape);
        break;
      case "Identity":
        break;
      case "BatchNorm":
      case "InstanceNorm":
      case "LayerNorm":
      case "GroupNorm":
      case "Embedding":
      case "AdaptivePool":
      case "Unflatten":
        ({ output: value, shape } = normForward(layer, params, value, shape));
        break;
      case "Residual": {
        const block = forwardSample(layer.block, params, value, shape);
        const skip = layer.shortcut ? forwardSample(layer.shortcut, params, value, shape) : { output: value, shape };
        if (block.shape.join() !== skip.shape.join()) throw new RangeError(`layer ${layer.path} (Residual): block ${block.shape} vs shortcut ${skip.shape}`);
        ({ output: value, shape } = { output: block.output.map((v, i) => v + skip.output[i]), shape: block.shape });
        break;
      }
      case "Parallel": {
        const outs = layer.branches.map((b) => forwardSample(b, params, value, shape));
        if (layer.combine === "sum") {
          ({ output: value, shape } = { output: outs.reduce((acc, o) => acc.map((v, i) => v + o.output[i]), new Float64Array(outs[0].output.length)), shape: outs[0].shape });
        } else {
          // Concatenate along per-sample dim d: for each outer index, each branch's inner block in turn.
          const rank = outs[0].shape.length + 1;
          const d = (layer.dim < 0 ? layer.dim + rank : layer.dim) - 1;
          const outer = product(outs[0].shape.slice(0, d));
          const joined: number[] = [];
          for (let o = 0; o < outer; o++) {
            for (const out of outs) {
              const inner = product(out.shape.slice(d));
              for (let i = 0; i < inner; i++) joined.push(out.output[o * inner + i]);
            }
          }
          const outShape = outs[0].shape.slice();
          outShape[d] = outs.reduce((a, o) => a + o.shape[d], 0);
          ({ output: value, shape } = { output: Float64Array.from(joined), shape: outShape });
        }
        break;
      }
    }
  }
  return { output: value === x ? x.slice() : value, shape };
}

/** The network's output for ONE sample `x` of shape `inputShape` (no batch dimension). */
export function forwardSample(model: Model, params: Params, x: Float64Array, inputShape: number[]): { output: Float64Array; shape: number[] } {
  return forwardLayers(model, params, 0, model.layers.length, x, inputShape);
}

/** The per-sample output shape for a per-sample input shape. */
export function outputShape(model: Model, inputShape: number[]): number[] {
  return forwardSample(model, randomParams(model), new Float64Array(product(inputShape)), inputShape).shape;
}
