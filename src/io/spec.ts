/**
 * The model file format: a JSON spec naming PyTorch layers and their constructor arguments,
 * plus a .safetensors file of weights keyed by state-dict names.
 *
 * ```json
 * {"format": "torch.nn.Sequential", "layers": [
 *   {"type": "Conv2d", "in_channels": 3, "out_channels": 16, "kernel_size": [3, 3], "padding": 1},
 *   {"type": "ReLU"},
 *   {"type": "Sequential", "layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 16384, "out_features": 10}]}
 * ]}
 * ```
 * Every hyperparameter has its PyTorch constructor name and default; sizes are an int or a list.
 */
import { FormatError, MemoryError, oneLine, showValue, UnsupportedError, ValueError } from "../errors.ts";
import { withParameterBudget } from "../layers/init.ts";
import type { Module } from "../layers/module.ts";
import { Sequential } from "../layers/sequential.ts";
import { Parallel, Residual } from "../layers/blocks.ts";
import { Linear } from "../layers/linear.ts";
import { Conv1d, Conv2d, Conv3d } from "../layers/conv.ts";
import type { ConvOptions, Size } from "../layers/conv.ts";
import { ConvTranspose1d, ConvTranspose2d, ConvTranspose3d } from "../layers/conv_transpose.ts";
import type { ConvTransposeOptions } from "../layers/conv_transpose.ts";
import { ELU, GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh } from "../layers/activation.ts";
import { Dropout, Flatten, Identity } from "../layers/reshape.ts";
import { AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d } from "../layers/pooling.ts";
import type { AvgPoolOptions, MaxPoolOptions } from "../layers/pooling.ts";
import { BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, LayerNorm } from "../layers/norm.ts";
import type { BatchNormOptions } from "../layers/norm.ts";
import { Embedding } from "../layers/embedding.ts";
import {
  AdaptiveAvgPool1d,
  AdaptiveAvgPool2d,
  AdaptiveAvgPool3d,
  AdaptiveMaxPool1d,
  AdaptiveMaxPool2d,
  AdaptiveMaxPool3d,
} from "../layers/adaptive_pooling.ts";
import type { AdaptiveSize } from "../layers/adaptive_pooling.ts";
import { Unflatten } from "../layers/unflatten.ts";
import type { Tensor } from "../tensor.ts";
import { formatShape } from "../tensor.ts";
import { readSafetensors } from "./safetensors.ts";
import { unravel } from "../forward.ts";

/**
 * The spec's top level: a `torch.nn.Sequential` of layers.
 *
 * @example
 * ```ts
 * import { modelFromSpec } from "jacobian-wasm";
 * import type { ModelSpec } from "jacobian-wasm";
 * const spec: ModelSpec = {
 *   format: "torch.nn.Sequential",
 *   layers: [{ type: "Linear", in_features: 4, out_features: 8 }, { type: "ReLU" }, { type: "Linear", in_features: 8, out_features: 2 }],
 * };
 * const net = modelFromSpec(spec); // parameters "0.weight", "0.bias", "2.weight", "2.bias"
 * ```
 */
export interface ModelSpec {
  /** Always `"torch.nn.Sequential"`. */
  format: "torch.nn.Sequential";
  /** The layers, in order; a `{"type": "Sequential", "layers": [...]}` entry nests. */
  layers: LayerSpec[];
}

/**
 * One layer: its PyTorch class name and constructor arguments, with PyTorch's names and
 * defaults (`in_features`, `kernel_size`, `padding`, ...). Unknown arguments are refused.
 *
 * @example
 * ```ts
 * import type { LayerSpec } from "jacobian-wasm";
 * const conv: LayerSpec = { type: "Conv2d", in_channels: 3, out_channels: 16, kernel_size: 3, padding: 1 };
 * ```
 */
export interface LayerSpec {
  /** The PyTorch class name, one of `SUPPORTED_LAYERS`: `"Conv2d"`. */
  type: string;
  /** The constructor's arguments by their PyTorch names, sizes as an int or a list. */
  [argument: string]: unknown;
}

/** The arguments of one layer spec; remembers which were read so unknown ones can be refused. */
class Arguments {
  private readonly used = new Set<string>(["type"]);

  constructor(private readonly spec: LayerSpec, readonly where: string) {}

  /** An argument read by the caller itself (a Sequential's "layers"). */
  raw(key: string, spec: LayerSpec): unknown {
    this.used.add(key);
    return spec[key];
  }

  private take(key: string): unknown {
    this.used.add(key);
    return this.spec[key];
  }

  private fail(key: string, expected: string, value: unknown): never {
    if (value === undefined) throw new FormatError(`${this.where}: "${key}" is missing; it must be ${expected}`);
    throw new FormatError(`${this.where}: "${key}" must be ${expected}, got ${showValue(value)}`);
  }

  int(key: string, fallback?: number): number {
    const v = this.take(key);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(key, "an integer", v);
    return v;
  }

  number(key: string, fallback: number): number {
    const v = this.take(key);
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, "a finite number", v);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.take(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") this.fail(key, "true or false", v);
    return v;
  }

  /** An int or a list of ints (PyTorch's `_size_any_t`). */
  size(key: string, fallback?: Size): Size {
    const v = this.take(key);
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v === "number" && Number.isInteger(v)) return v;
    if (Array.isArray(v) && v.length > 0 && v.every((e) => typeof e === "number" && Number.isInteger(e))) return v;
    this.fail(key, "an integer or a list of integers", v);
  }

  optionalInt(key: string): number | null {
    const v = this.take(key);
    if (v === undefined || v === null) return null;
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(key, "an integer or null", v);
    return v;
  }

  choice<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const v = this.take(key);
    if (v === undefined) return fallback;
    if (!choices.includes(v as T)) this.fail(key, choices.map((c) => JSON.stringify(c)).join(" or "), v);
    return v as T;
  }

  /** Conv padding: an int, a list, or "same"/"valid". */
  padding(): Size | "same" | "valid" {
    const v = this.spec.padding;
    if (v === "same" || v === "valid") {
      this.take("padding");
      return v;
    }
    return this.size("padding", 0);
  }

  /** Accepted for PyTorch compatibility and ignored (`inplace`). */
  ignore(key: string): void {
    this.bool(key, false);
  }

  /** Refuses keys no constructor argument of the layer has. */
  finish(): void {
    const unknown = Object.keys(this.spec).filter((k) => !this.used.has(k));
    if (unknown.length > 0) {
      throw new FormatError(
        `${this.where}: unknown hyperparameter${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `"${k}"`).join(", ")}`,
      );
    }
  }
}

function convOptions(a: Arguments): ConvOptions {
  const options: ConvOptions = {
    stride: a.size("stride", 1),
    padding: a.padding(),
    dilation: a.size("dilation", 1),
    groups: a.int("groups", 1),
    bias: a.bool("bias", true),
  };
  a.choice("padding_mode", ["zeros"], "zeros");
  return options;
}

/** ConvTranspose's arguments (PyTorch's order: stride, padding, output_padding, groups, bias, dilation, padding_mode). */
function convTransposeOptions(a: Arguments): ConvTransposeOptions {
  const options: ConvTransposeOptions = {
    stride: a.size("stride", 1),
    padding: a.size("padding", 0),
    outputPadding: a.size("output_padding", 0),
    groups: a.int("groups", 1),
    bias: a.bool("bias", true),
    dilation: a.size("dilation", 1),
  };
  a.choice("padding_mode", ["zeros"], "zeros");
  return options;
}

function maxPoolOptions(a: Arguments, kernel: Size): MaxPoolOptions {
  if (a.bool("return_indices", false)) {
    throw new FormatError(`${a.where}: return_indices=true is not supported (the layer must return one tensor)`);
  }
  return {
    stride: a.size("stride", kernel),
    padding: a.size("padding", 0),
    dilation: a.size("dilation", 1),
    ceilMode: a.bool("ceil_mode", false),
  };
}

function avgPoolOptions(a: Arguments, kernel: Size, divisor: boolean): AvgPoolOptions {
  return {
    stride: a.size("stride", kernel),
    padding: a.size("padding", 0),
    ceilMode: a.bool("ceil_mode", false),
    countIncludePad: a.bool("count_include_pad", true),
    divisorOverride: divisor ? a.optionalInt("divisor_override") : null,
  };
}

/** BatchNorm's and InstanceNorm's arguments (PyTorch's `_NormBase`); momentum may be null. */
function channelNormOptions(a: Arguments, spec: LayerSpec, batchNorm: boolean): BatchNormOptions {
  const momentum = a.raw("momentum", spec);
  if (momentum !== undefined && momentum !== null && (typeof momentum !== "number" || !Number.isFinite(momentum))) {
    throw new FormatError(`${a.where}: "momentum" must be a finite number or null, got ${showValue(momentum)}`);
  }
  return {
    eps: a.number("eps", 1e-5),
    momentum: momentum === undefined ? 0.1 : momentum,
    affine: a.bool("affine", batchNorm),
    trackRunningStats: a.bool("track_running_stats", batchNorm),
  };
}

/** An adaptive pool's output_size: an int, or a list of ints and nulls (null keeps the input's size). */
function adaptiveSize(a: Arguments, spec: LayerSpec): AdaptiveSize {
  const v = a.raw("output_size", spec);
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (Array.isArray(v) && v.length > 0 && v.every((e) => e === null || (typeof e === "number" && Number.isInteger(e)))) return v;
  throw new FormatError(`${a.where}: "output_size" must be an integer or a list of integers and nulls, got ${showValue(v)}`);
}

function adaptiveMax(a: Arguments): void {
  if (a.bool("return_indices", false)) {
    throw new FormatError(`${a.where}: return_indices=true is not supported (the layer must return one tensor)`);
  }
}

function embedding(a: Arguments, spec: LayerSpec): Embedding {
  const maxNorm = a.raw("max_norm", spec);
  if (maxNorm !== undefined && maxNorm !== null) {
    throw new UnsupportedError(
      `${a.where}: max_norm=${showValue(maxNorm)} is not supported: it renormalises weight rows in place during the ` +
        `forward pass, so the output is not linear in the weights; only max_norm=null`,
    );
  }
  if (a.bool("scale_grad_by_freq", false)) {
    throw new UnsupportedError(`${a.where}: scale_grad_by_freq=true is not supported: it scales gradients by token counts over the whole batch, which mixes samples`);
  }
  a.number("norm_type", 2);
  a.ignore("sparse"); // how PyTorch stores the gradient, not its values
  return new Embedding(a.int("num_embeddings"), a.int("embedding_dim"), { paddingIdx: a.optionalInt("padding_idx") });
}

function unflattenedSize(a: Arguments): number[] {
  const v = a.size("unflattened_size");
  if (!Array.isArray(v)) throw new FormatError(`${a.where}: "unflattened_size" must be a list of integers, got ${showValue(v)}`);
  return v;
}

/** Builds one layer from its arguments: the table of every layer type the format knows. */
const BUILDERS: Record<string, (a: Arguments, spec: LayerSpec, path: string) => Module> = {
  Sequential: (a, spec, path) => new Sequential(...layerList(a.raw("layers", spec), path)),
  Residual: (a, spec, path) => {
    const shortcut = a.raw("shortcut", spec);
    return new Residual(
      buildLayer(a.raw("block", spec), `${path}.block`),
      shortcut === undefined || shortcut === null ? null : buildLayer(shortcut, `${path}.shortcut`),
    );
  },
  Parallel: (a, spec, path) => {
    const branches = a.raw("branches", spec);
    if (Array.isArray(branches) && branches.length === 0) throw new FormatError(`${a.where}: "branches" must hold one or more layers, got []`);
    const combine = a.choice<"concat" | "sum">("combine", ["concat", "sum"], "concat");
    return new Parallel(layerList(branches, path, "branches"), { combine, dim: a.int("dim", 1) });
  },
  Linear: (a) => new Linear(a.int("in_features"), a.int("out_features"), { bias: a.bool("bias", true) }),
  Conv1d: (a) => new Conv1d(a.int("in_channels"), a.int("out_channels"), a.size("kernel_size"), convOptions(a)),
  Conv2d: (a) => new Conv2d(a.int("in_channels"), a.int("out_channels"), a.size("kernel_size"), convOptions(a)),
  Conv3d: (a) => new Conv3d(a.int("in_channels"), a.int("out_channels"), a.size("kernel_size"), convOptions(a)),
  ConvTranspose1d: (a) =>
    new ConvTranspose1d(a.int("in_channels"), a.int("out_channels"), a.size("kernel_size"), convTransposeOptions(a)),
  ConvTranspose2d: (a) =>
    new ConvTranspose2d(a.int("in_channels"), a.int("out_channels"), a.size("kernel_size"), convTransposeOptions(a)),
  ConvTranspose3d: (a) =>
    new ConvTranspose3d(a.int("in_channels"), a.int("out_channels"), a.size("kernel_size"), convTransposeOptions(a)),
  ReLU: (a) => (a.ignore("inplace"), new ReLU()),
  LeakyReLU: (a) => {
    const slope = a.number("negative_slope", 0.01);
    a.ignore("inplace");
    return new LeakyReLU(slope);
  },
  Sigmoid: () => new Sigmoid(),
  Tanh: () => new Tanh(),
  ELU: (a) => {
    const alpha = a.number("alpha", 1.0);
    a.ignore("inplace");
    return new ELU(alpha);
  },
  GELU: (a) => new GELU(a.choice<"none" | "tanh">("approximate", ["none", "tanh"], "none")),
  SiLU: (a) => (a.ignore("inplace"), new SiLU()),
  Softplus: (a) => new Softplus(a.number("beta", 1.0), a.number("threshold", 20.0)),
  Identity: () => new Identity(),
  Dropout: (a) => {
    const p = a.number("p", 0.5);
    a.ignore("inplace");
    return new Dropout(p);
  },
  Flatten: (a) => new Flatten({ startDim: a.int("start_dim", 1), endDim: a.int("end_dim", -1) }),
  MaxPool1d: (a) => {
    const k = a.size("kernel_size");
    return new MaxPool1d(k, maxPoolOptions(a, k));
  },
  MaxPool2d: (a) => {
    const k = a.size("kernel_size");
    return new MaxPool2d(k, maxPoolOptions(a, k));
  },
  MaxPool3d: (a) => {
    const k = a.size("kernel_size");
    return new MaxPool3d(k, maxPoolOptions(a, k));
  },
  AvgPool1d: (a) => {
    const k = a.size("kernel_size");
    return new AvgPool1d(k, avgPoolOptions(a, k, false));
  },
  AvgPool2d: (a) => {
    const k = a.size("kernel_size");
    return new AvgPool2d(k, avgPoolOptions(a, k, true));
  },
  AvgPool3d: (a) => {
    const k = a.size("kernel_size");
    return new AvgPool3d(k, avgPoolOptions(a, k, true));
  },
  BatchNorm1d: (a, spec) => new BatchNorm1d(a.int("num_features"), channelNormOptions(a, spec, true)),
  BatchNorm2d: (a, spec) => new BatchNorm2d(a.int("num_features"), channelNormOptions(a, spec, true)),
  BatchNorm3d: (a, spec) => new BatchNorm3d(a.int("num_features"), channelNormOptions(a, spec, true)),
  InstanceNorm1d: (a, spec) => new InstanceNorm1d(a.int("num_features"), channelNormOptions(a, spec, false)),
  InstanceNorm2d: (a, spec) => new InstanceNorm2d(a.int("num_features"), channelNormOptions(a, spec, false)),
  InstanceNorm3d: (a, spec) => new InstanceNorm3d(a.int("num_features"), channelNormOptions(a, spec, false)),
  LayerNorm: (a) =>
    new LayerNorm(a.size("normalized_shape"), {
      eps: a.number("eps", 1e-5),
      elementwiseAffine: a.bool("elementwise_affine", true),
      bias: a.bool("bias", true),
    }),
  GroupNorm: (a) => new GroupNorm(a.int("num_groups"), a.int("num_channels"), { eps: a.number("eps", 1e-5), affine: a.bool("affine", true) }),
  Embedding: embedding,
  AdaptiveAvgPool1d: (a, spec) => new AdaptiveAvgPool1d(adaptiveSize(a, spec)),
  AdaptiveAvgPool2d: (a, spec) => new AdaptiveAvgPool2d(adaptiveSize(a, spec)),
  AdaptiveAvgPool3d: (a, spec) => new AdaptiveAvgPool3d(adaptiveSize(a, spec)),
  AdaptiveMaxPool1d: (a, spec) => (adaptiveMax(a), new AdaptiveMaxPool1d(adaptiveSize(a, spec))),
  AdaptiveMaxPool2d: (a, spec) => (adaptiveMax(a), new AdaptiveMaxPool2d(adaptiveSize(a, spec))),
  AdaptiveMaxPool3d: (a, spec) => (adaptiveMax(a), new AdaptiveMaxPool3d(adaptiveSize(a, spec))),
  Unflatten: (a) => new Unflatten(a.int("dim"), unflattenedSize(a)),
};

/**
 * The layer types a spec may name.
 *
 * @example
 * ```ts
 * import { SUPPORTED_LAYERS } from "jacobian-wasm";
 * SUPPORTED_LAYERS.includes("Conv2d"); // true
 * ```
 */
export const SUPPORTED_LAYERS: readonly string[] = Object.keys(BUILDERS);

function layerList(layers: unknown, path: string, key = "layers"): Module[] {
  const where = path === "" ? "model spec" : `model spec, layer ${path}`;
  if (!Array.isArray(layers)) {
    throw new FormatError(`${where}: "${key}" must be a list of layers, got ${showValue(layers)}`);
  }
  return layers.map((spec, i) => buildLayer(spec, path === "" ? String(i) : `${path}.${i}`));
}

/**
 * How deep containers (Sequential, Residual, Parallel) may nest. Real networks nest a few levels;
 * the builder recurses once per level, so a spec nested thousands deep would overflow the stack.
 */
export const MAX_SPEC_DEPTH = 100;

function buildLayer(spec: unknown, path: string): Module {
  const depth = path.split(".").length;
  if (depth > MAX_SPEC_DEPTH) {
    throw new FormatError(`model spec, layer ${path}: layers nested more than ${MAX_SPEC_DEPTH} deep (containers in containers)`);
  }
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    throw new FormatError(`model spec, layer ${path}: expected an object with a "type", got ${showValue(spec)}`);
  }
  const type = (spec as LayerSpec).type;
  const build = typeof type === "string" && Object.hasOwn(BUILDERS, type) ? BUILDERS[type] : undefined;
  if (!build) {
    throw new FormatError(
      `model spec, layer ${path}: unknown layer type ${showValue(type)}; supported: ${SUPPORTED_LAYERS.join(", ")}`,
    );
  }
  const where = `model spec, layer ${path} (${type})`;
  const args = new Arguments(spec as LayerSpec, where);
  let module: Module;
  try {
    module = build(args, spec as LayerSpec, path);
  } catch (error) {
    // Constructors check their own arguments; say which layer of the file was wrong.
    if (error instanceof Error && !error.message.startsWith("model spec")) {
      // A size over the limits (MAX_PARAMETERS, or what the weights file holds) keeps its kind.
      if (error instanceof MemoryError) throw new MemoryError(`${where}: ${error.message}`);
      if (error instanceof FormatError) throw new FormatError(`${where}: ${error.message}`);
      if (error instanceof RangeError && !(error instanceof ValueError)) throw new FormatError(`${where}: ${error.message}`);
      // A constructor's TypeError (not a layer, no branches) is the spec's mistake too; UnsupportedError keeps its kind.
      if (error instanceof TypeError && !(error instanceof UnsupportedError)) throw new FormatError(`${where}: ${error.message}`);
    }
    throw error;
  }
  args.finish();
  return module;
}

/**
 * Builds the network a spec describes, with PyTorch's default initialisation (load weights
 * with `loadModel` or `loadStateDict`). Each layer's sizes are checked before its parameters
 * are allocated: a network of more than `MAX_PARAMETERS` floats (2²⁸, 1 GiB) is a
 * `MemoryError` naming the layer, the tensor and its size.
 *
 * @example
 * ```ts
 * import { modelFromSpec } from "jacobian-wasm";
 * const net = modelFromSpec({ format: "torch.nn.Sequential", layers: [{ type: "Linear", in_features: 4, out_features: 2 }] });
 * ```
 */
export function modelFromSpec(spec: string | ModelSpec | unknown): Sequential {
  return withParameterBudget(() => buildModel(spec));
}

function buildModel(spec: unknown): Sequential {
  let parsed: unknown = spec;
  if (typeof spec === "string") {
    try {
      parsed = JSON.parse(spec);
    } catch (error) {
      throw new FormatError(`model spec: not valid JSON (${oneLine((error as Error).message)})`);
    }
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new FormatError(`model spec: expected a JSON object {"format": "torch.nn.Sequential", "layers": [...]}`);
  }
  const format = (parsed as ModelSpec).format;
  if (format !== "torch.nn.Sequential") {
    throw new FormatError(`model spec: "format" must be "torch.nn.Sequential", got ${showValue(format)}`);
  }
  const unknown = Object.keys(parsed).filter((k) => k !== "format" && k !== "layers");
  if (unknown.length > 0) throw new FormatError(`model spec: unknown key${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `"${k}"`).join(", ")}`);
  return new Sequential(...layerList((parsed as ModelSpec).layers, ""));
}

/**
 * A network from a spec (JSON text or object) and its weights (.safetensors bytes), with
 * every weight checked: present, of the right shape, finite, none unexpected. The weights
 * file is read first, and no layer may allocate more floats than it holds (nor more than
 * `MAX_PARAMETERS`): a spec larger than its weights is a `FormatError` naming the layer, before
 * the layer's memory is allocated. Nothing is randomly initialised (the generator `manualSeed`
 * seeds is left as it was).
 *
 * @example
 * ```ts
 * import { loadModel, modelFromSpec, writeSafetensors } from "jacobian-wasm";
 * const spec = { format: "torch.nn.Sequential", layers: [{ type: "Linear", in_features: 2, out_features: 1 }] };
 * const weights = writeSafetensors(Object.entries(modelFromSpec(spec).stateDict()));
 * const net = loadModel(JSON.stringify(spec), weights);
 * ```
 */
export function loadModel(
  spec: string | ModelSpec,
  safetensors: Uint8Array,
  names: { spec?: string; weights?: string } = {},
): Sequential {
  const weightsName = names.weights ?? "weights";
  const tensors = readSafetensors(safetensors, weightsName);
  let floats = 0;
  for (const t of tensors.values()) floats += t.data.length;
  const net = withParameterBudget(() => buildModel(spec), { name: weightsName, floats });
  loadWeights(net, tensors, weightsName);
  return net;
}

/**
 * Checks a state dict against a network and loads it: every key present with the right shape,
 * none unknown, every value finite; every problem named in one error, nothing half-loaded.
 *
 * @example
 * ```ts
 * import { Linear, loadWeights, readSafetensors, writeSafetensors } from "jacobian-wasm";
 * const trained = new Linear(3, 2);
 * const bytes = writeSafetensors(Object.entries(trained.stateDict())); // as a .safetensors file holds them
 * const copy = new Linear(3, 2);
 * loadWeights(copy, readSafetensors(bytes)); // copy now has trained's weights
 * ```
 */
export function loadWeights(net: Module, tensors: Map<string, Tensor>, name = "weights"): void {
  const expected = net.stateDict();
  const problems: string[] = [];
  for (const [key, t] of Object.entries(expected)) {
    const given = tensors.get(key);
    if (!given) problems.push(`"${key}" ${formatShape(t.shape)} is missing`);
    else if (formatShape(given.shape) !== formatShape(t.shape)) {
      problems.push(`"${key}" has shape ${formatShape(given.shape)}, the model expects ${formatShape(t.shape)}`);
    }
  }
  for (const key of tensors.keys()) {
    if (!(key in expected)) problems.push(`"${key}" is not a parameter or buffer of the model`);
  }
  if (problems.length > 0) throw new FormatError(`${name}: ${problems.join("; ")}`);
  for (const [key, t] of tensors) {
    const bad = t.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new ValueError(`${name}: tensor "${key}" holds ${t.data[bad]} at index [${unravel(bad, t.shape).join(", ")}]`);
    }
  }
  net.loadStateDict(Object.fromEntries(tensors));
}
