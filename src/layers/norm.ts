/**
 * Normalisation layers: BatchNorm1d/2d/3d (eval mode, running statistics), LayerNorm,
 * GroupNorm, InstanceNorm1d/2d/3d. Each normalises its input to x̂ and applies an affine part
 * y = γ ⊙ x̂ + β, γ and β shared by the positions of a channel (elementwise over the
 * normalised dims for LayerNorm).
 * Per-sample rule: ∂ℓ/∂γ = Σ g[n] ⊙ x̂[n] and ∂ℓ/∂β = Σ g[n] over the positions that share a
 * parameter; x̂ is cached by the forward pass. The input gradient is the full normalisation
 * backward (a per-channel scale for running statistics).
 */
import { ShapeError, UnsupportedError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { formatShape, numel } from "../tensor.ts";
import { arena, kernels } from "../wasm.ts";
import type { CompileContext, Compiled, Named } from "./module.ts";
import { layerLabel, Module } from "./module.ts";

/** Options of `BatchNorm1d/2d/3d` and `InstanceNorm1d/2d/3d`, as PyTorch's keyword arguments. */
export interface BatchNormOptions {
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Running-statistics update factor; kept for the state dict only (statistics are never updated here). */
  momentum?: number | null;
  /** Learn γ (weight) and β (bias): default true for BatchNorm, false for InstanceNorm. */
  affine?: boolean;
  /** Keep running_mean / running_var buffers: default true for BatchNorm, false for InstanceNorm. */
  trackRunningStats?: boolean;
}

/** Options of `InstanceNorm1d/2d/3d` (PyTorch's defaults: affine and track_running_stats false). */
export type InstanceNormOptions = BatchNormOptions;

/** Options of `LayerNorm`, as PyTorch's keyword arguments. */
export interface LayerNormOptions {
  eps?: number;
  /** Learn γ and β of the normalized_shape (default true). */
  elementwiseAffine?: boolean;
  /** Learn β (default true; PyTorch ≥ 2.1's argument). */
  bias?: boolean;
}

/** Options of `GroupNorm`, as PyTorch's keyword arguments. */
export interface GroupNormOptions {
  eps?: number;
  /** Learn per-channel γ and β (default true). */
  affine?: boolean;
}

function positiveInteger(layer: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${layer}: ${what} must be a positive integer, got ${v}`);
}

function checkEps(layer: string, eps: number): void {
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`${layer}: eps must be a non-negative number, got ${eps}`);
}

function filled(count: number, value: number): Float32Array {
  return new Float32Array(count).fill(value);
}

/** What a normalisation step needs to know; the layer classes below fill it in. */
interface NormalisationPlan {
  label: string;
  context: CompileContext;
  outShape: number[];
  weight: Tensor | null;
  bias: Tensor | null;
  eps: number;
  /** The affine layout of a sample: `blocks` blocks of C × L, γ[c] for element (c, l). */
  blocks: number;
  C: number;
  L: number;
  /** Per-sample statistics over `groups` contiguous groups of `groupSize` floats. */
  sample?: { groups: number; groupSize: number };
  /** Running statistics, per channel c of a (C, L) sample. */
  running?: { mean: Tensor; variance: Tensor };
  /** Called at every forward pass: true to normalise with the running statistics; may refuse. */
  useRunning(): boolean;
  /** A ReLU follows, fused in (running statistics only): the output is max(y, 0). */
  relu?: boolean;
}

/** One WASM call per pass: the statistics and affine part forward, the normalisation backward, the affine contraction. */
function compileNormalisation(p: NormalisationPlan): Compiled {
  const { builder, input } = p.context;
  const { N, K, R } = builder;
  const { blocks, C, L, eps, weight, bias, sample, running } = p;
  const relu = p.relu === true;
  if (relu && !running) throw new Error(`${p.label}: a fused ReLU needs running statistics`); // a bug, not bad input
  const width = blocks * C * L;
  // Running statistics with γ keep no x̂ (the affine gradients recompute it from the input);
  // layers that may also normalise per sample (InstanceNorm in training mode) need it.
  const xhat = running && !sample && weight ? 0 : builder.floats(N * width);
  const output = weight ? builder.floats(N * width) : xhat; // without γ, the output is x̂
  const rstd = sample ? builder.floats(N * sample.groups) : 0;
  const coef = running ? builder.floats(4 * C) : 0;
  const runningMean = running ? builder.floats(C) : 0;
  const runningVar = running ? builder.floats(C) : 0;
  const gamma = weight ? builder.parameterPtr(weight) : 0;
  const beta = bias ? builder.parameterPtr(bias) : 0;
  const weightColumn = weight ? builder.columnBytes(weight) : -1;
  const biasColumn = bias ? builder.columnBytes(bias) : -1;
  const ldJ = builder.D;
  const gradientVector = builder.gradientVector;
  const useRunning = p.useRunning;
  const k = kernels();
  let usedRunning = false;
  // With running statistics, the backward pass also leaves each row's affine gradients (Σ g·x̂,
  // Σ g per channel) in `sums`, read while it reads gy anyway: perSample and gradient then copy
  // or add them instead of reading gy and x again. Not for rows shorter than an f32x4 (there the
  // plain backward runs across channels), nor when no backward ran (the first step with
  // parameters: `fresh` stays false, and the affine kernels read gy and x themselves).
  const sums = running && weight && blocks === 1 && L >= 4 ? builder.floats(R * 2 * C) : 0;
  let fresh = false;
  return {
    output,
    outShape: p.outShape,
    steps: [{
      label: p.label,
      outShape: p.outShape,
      aliasesInput: false,
      hasParameters: weight !== null,
      gy: 0,
      gx: 0,
      forward() {
        fresh = false;
        usedRunning = useRunning();
        if (usedRunning) {
          // Buffers are copied at every pass: loadStateDict may have changed them since the plan was built.
          const f32 = arena.f32();
          f32.set(running!.mean.data, runningMean >>> 2);
          f32.set(running!.variance.data, runningVar >>> 2);
          k.norm_running_forward(N, C, L * blocks, input, runningMean, runningVar, eps, gamma, beta, coef, xhat, output, relu ? 1 : 0);
        } else {
          k.norm_sample_forward(N, sample!.groups, sample!.groupSize, C, L, input, eps, gamma, beta, xhat, rstd, output);
        }
      },
      backward() {
        if (usedRunning) {
          k.norm_running_backward(R, K, C, L * blocks, this.gy, coef, this.gx, relu ? output : 0, input, sums);
          fresh = sums !== 0;
        } else k.norm_sample_backward(R, K, sample!.groups, sample!.groupSize, C, L, this.gy, gamma, xhat, rstd, this.gx);
      },
      perSample(firstSample: number, samples: number, J: number) {
        if (!weight) return;
        if (fresh) {
          const rows = sums + firstSample * K * 2 * C * 4;
          k.norm_sums_per_sample(samples * K, C, rows, J + weightColumn, biasColumn < 0 ? 0 : J + biasColumn, ldJ);
          return;
        }
        // With running statistics no x̂ is kept: the kernel recomputes it from the input and coef.
        const cache = (usedRunning ? input : xhat) + firstSample * width * 4;
        const gy = this.gy + firstSample * K * width * 4;
        const mask = relu ? output + firstSample * width * 4 : 0;
        k.norm_affine_per_sample(samples * K, K, blocks, C, L, cache, gy, J + weightColumn, biasColumn < 0 ? 0 : J + biasColumn, ldJ, usedRunning ? coef : 0, mask);
      },
      gradient() {
        if (!weight) return;
        const g = gradientVector.ptr;
        if (fresh) {
          k.norm_sums_grad(R, C, sums, g + weightColumn, biasColumn < 0 ? 0 : g + biasColumn);
          return;
        }
        const cache = usedRunning ? input : xhat;
        k.norm_affine_grad(R, K, blocks, C, L, cache, this.gy, g + weightColumn, biasColumn < 0 ? 0 : g + biasColumn, 1, usedRunning ? coef : 0, relu ? output : 0);
      },
    }],
  };
}

/**
 * The shared body of BatchNorm and InstanceNorm (PyTorch's `_NormBase`): γ, β of num_features
 * and the running_mean, running_var, num_batches_tracked buffers.
 */
abstract class ChannelNorm extends Module {
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  /** PyTorch keeps an int64 count; float here (the state dict holds numbers as float32). */
  readonly numBatchesTracked: Tensor | null;

  constructor(
    readonly dims: 1 | 2 | 3,
    name: string,
    readonly numFeatures: number,
    options: BatchNormOptions,
    defaults: { affine: boolean; trackRunningStats: boolean },
  ) {
    super();
    positiveInteger(name, "num_features", numFeatures);
    this.eps = options.eps ?? 1e-5;
    checkEps(name, this.eps);
    this.momentum = options.momentum === undefined ? 0.1 : options.momentum;
    if (this.momentum !== null && !Number.isFinite(this.momentum)) {
      throw new RangeError(`${name}: momentum must be a number or null, got ${this.momentum}`);
    }
    this.affine = options.affine ?? defaults.affine;
    this.trackRunningStats = options.trackRunningStats ?? defaults.trackRunningStats;
    this.weight = this.affine ? { shape: [numFeatures], data: filled(numFeatures, 1) } : null;
    this.bias = this.affine ? { shape: [numFeatures], data: filled(numFeatures, 0) } : null;
    this.runningMean = this.trackRunningStats ? { shape: [numFeatures], data: filled(numFeatures, 0) } : null;
    this.runningVar = this.trackRunningStats ? { shape: [numFeatures], data: filled(numFeatures, 1) } : null;
    this.numBatchesTracked = this.trackRunningStats ? { shape: [], data: filled(1, 0) } : null;
  }

  override ownParameters(): Named[] {
    return this.weight && this.bias ? [["weight", this.weight], ["bias", this.bias]] : [];
  }

  override ownBuffers(): Named[] {
    if (!this.runningMean || !this.runningVar || !this.numBatchesTracked) return [];
    return [["running_mean", this.runningMean], ["running_var", this.runningVar], ["num_batches_tracked", this.numBatchesTracked]];
  }

  /** The per-sample layouts accepted, spatial dims named: BatchNorm1d takes (C) and (C, L). */
  protected abstract layouts(): string[][];

  /** Whether the channel count must equal num_features. */
  protected channelsMustMatch(): boolean {
    return true;
  }

  outputShape(inShape: readonly number[], path = ""): number[] {
    const layouts = this.layouts();
    if (!layouts.some((l) => l.length + 1 === inShape.length) || (this.channelsMustMatch() && inShape[0] !== this.numFeatures)) {
      const expected = layouts.map((l) => `(N, ${[this.numFeatures, ...l].join(", ")})`).join(" or ");
      throw new ShapeError(`${layerLabel(path, this.typeName)}: expected input ${expected}, got (N, ${inShape.join(", ")})`);
    }
    return [...inShape];
  }
}

const SPATIAL: Record<number, string[]> = { 1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"] };

/** The shared body of BatchNorm1d/2d/3d: eval mode, running statistics. */
export abstract class BatchNormNd extends ChannelNorm {
  constructor(dims: 1 | 2 | 3, numFeatures: number, options: BatchNormOptions = {}) {
    super(dims, `BatchNorm${dims}d`, numFeatures, options, { affine: true, trackRunningStats: true });
  }

  protected layouts(): string[][] {
    return this.dims === 1 ? [[], SPATIAL[1]] : [SPATIAL[this.dims]];
  }

  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /** This layer and the ReLU after it as one step (Sequential fuses them): one pass each way instead of two. */
  compileWithReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  private compileWith(context: CompileContext, relu: boolean): Compiled {
    const { path, inShape } = context;
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    if (!this.runningMean || !this.runningVar) {
      throw new UnsupportedError(
        `${label}: track_running_stats=False normalises with the statistics of the whole batch, even in eval mode; ` +
          `they mix samples, so per-sample gradients are not defined`,
      );
    }
    const module = this;
    const C = this.numFeatures;
    return compileNormalisation({
      label,
      context,
      outShape,
      weight: this.weight,
      bias: this.bias,
      eps: this.eps,
      blocks: 1,
      C,
      L: numel(inShape) / C,
      running: { mean: this.runningMean, variance: this.runningVar },
      relu,
      useRunning() {
        // Checked when the step runs, so a plan built in eval mode still refuses after train().
        if (module.training) {
          throw new UnsupportedError(
            `${label}: ${module.typeName} in training mode normalises with batch statistics, which mix samples, ` +
              `so per-sample gradients are not defined (as in BackPACK); call net.eval() to use the running statistics`,
          );
        }
        return true;
      },
    });
  }
}

/**
 * PyTorch's `nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)`
 * on (N, C) or (N, C, L), in eval mode: y = (x − running_mean) / √(running_var + eps) · γ + β.
 * Training mode (batch statistics) is refused: they mix samples.
 *
 * @example
 * ```ts
 * import { BatchNorm1d } from "jacobian-wasm";
 * const norm = new BatchNorm1d(16); // weight, bias, running_mean, running_var of 16
 * ```
 */
export class BatchNorm1d extends BatchNormNd {
  readonly typeName = "BatchNorm1d";
  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super(1, numFeatures, options);
  }
}

/**
 * PyTorch's `nn.BatchNorm2d` on (N, C, H, W), in eval mode (running statistics).
 *
 * @example
 * ```ts
 * import { BatchNorm2d } from "jacobian-wasm";
 * const norm = new BatchNorm2d(8, { eps: 1e-3 });
 * ```
 */
export class BatchNorm2d extends BatchNormNd {
  readonly typeName = "BatchNorm2d";
  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super(2, numFeatures, options);
  }
}

/**
 * PyTorch's `nn.BatchNorm3d` on (N, C, D, H, W), in eval mode (running statistics).
 *
 * @example
 * ```ts
 * import { BatchNorm3d } from "jacobian-wasm";
 * const norm = new BatchNorm3d(4, { affine: false });
 * ```
 */
export class BatchNorm3d extends BatchNormNd {
  readonly typeName = "BatchNorm3d";
  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super(3, numFeatures, options);
  }
}

/**
 * The shared body of InstanceNorm1d/2d/3d: each sample's channels normalised over their own
 * positions (so samples never mix, in training mode too); with track_running_stats in eval
 * mode, the running statistics instead, as PyTorch. Running statistics are never updated here.
 */
export abstract class InstanceNormNd extends ChannelNorm {
  constructor(dims: 1 | 2 | 3, numFeatures: number, options: InstanceNormOptions = {}) {
    super(dims, `InstanceNorm${dims}d`, numFeatures, options, { affine: false, trackRunningStats: false });
  }

  protected layouts(): string[][] {
    return [SPATIAL[this.dims]];
  }

  // PyTorch only warns about a channel count other than num_features when nothing is per channel.
  protected override channelsMustMatch(): boolean {
    return this.affine || this.trackRunningStats;
  }

  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /** This layer and the ReLU after it as one step (Sequential fuses them): one pass each way instead of two. */
  compileWithReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  private compileWith(context: CompileContext, relu: boolean): Compiled {
    const { path, inShape } = context;
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const module = this;
    const C = inShape[0];
    const L = numel(inShape) / C;
    const running = this.runningMean && this.runningVar ? { mean: this.runningMean, variance: this.runningVar } : undefined;
    return compileNormalisation({
      label,
      context,
      outShape,
      weight: this.weight,
      bias: this.bias,
      eps: this.eps,
      blocks: 1,
      C,
      L,
      sample: { groups: C, groupSize: L },
      running,
      useRunning() {
        if (running && !module.training) return true;
        if (L === 1) {
          throw new ShapeError(
            `${label}: expected more than 1 spatial element per channel when normalising with the sample's own statistics, ` +
              `got input (N, ${inShape.join(", ")})`,
          );
        }
        return false;
      },
    });
  }
}

/**
 * PyTorch's `nn.InstanceNorm1d(num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False)`
 * on (N, C, L).
 *
 * @example
 * ```ts
 * import { InstanceNorm1d } from "jacobian-wasm";
 * const norm = new InstanceNorm1d(6, { affine: true });
 * ```
 */
export class InstanceNorm1d extends InstanceNormNd {
  readonly typeName = "InstanceNorm1d";
  constructor(numFeatures: number, options: InstanceNormOptions = {}) {
    super(1, numFeatures, options);
  }
}

/**
 * PyTorch's `nn.InstanceNorm2d` on (N, C, H, W).
 *
 * @example
 * ```ts
 * import { InstanceNorm2d } from "jacobian-wasm";
 * const norm = new InstanceNorm2d(3, { affine: true });
 * ```
 */
export class InstanceNorm2d extends InstanceNormNd {
  readonly typeName = "InstanceNorm2d";
  constructor(numFeatures: number, options: InstanceNormOptions = {}) {
    super(2, numFeatures, options);
  }
}

/**
 * PyTorch's `nn.InstanceNorm3d` on (N, C, D, H, W).
 *
 * @example
 * ```ts
 * import { InstanceNorm3d } from "jacobian-wasm";
 * const norm = new InstanceNorm3d(2, { affine: true, trackRunningStats: true });
 * ```
 */
export class InstanceNorm3d extends InstanceNormNd {
  readonly typeName = "InstanceNorm3d";
  constructor(numFeatures: number, options: InstanceNormOptions = {}) {
    super(3, numFeatures, options);
  }
}

/**
 * PyTorch's `nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True)`: each sample is
 * normalised over its last dims (normalized_shape), separately at every position of the dims
 * before them; γ and β have the normalized_shape.
 *
 * @example
 * ```ts
 * import { LayerNorm } from "jacobian-wasm";
 * const norm = new LayerNorm([4, 8]); // input (N, *, 4, 8)
 * ```
 */
export class LayerNorm extends Module {
  readonly typeName = "LayerNorm";
  readonly normalizedShape: number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;

  constructor(normalizedShape: number | readonly number[], options: LayerNormOptions = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === "number" ? [normalizedShape] : [...normalizedShape];
    if (this.normalizedShape.length === 0 || this.normalizedShape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new RangeError(`LayerNorm: normalized_shape must be a positive integer or a non-empty list of them, got ${JSON.stringify(normalizedShape)}`);
    }
    this.eps = options.eps ?? 1e-5;
    checkEps("LayerNorm", this.eps);
    this.elementwiseAffine = options.elementwiseAffine ?? true;
    const M = numel(this.normalizedShape);
    this.weight = this.elementwiseAffine ? { shape: [...this.normalizedShape], data: filled(M, 1) } : null;
    this.bias = this.elementwiseAffine && (options.bias ?? true) ? { shape: [...this.normalizedShape], data: filled(M, 0) } : null;
  }

  override ownParameters(): Named[] {
    const out: Named[] = [];
    if (this.weight) out.push(["weight", this.weight]);
    if (this.bias) out.push(["bias", this.bias]);
    return out;
  }

  outputShape(inShape: readonly number[], path = ""): number[] {
    const k = this.normalizedShape.length;
    const tail = inShape.slice(inShape.length - k);
    if (inShape.length < k || tail.some((d, i) => d !== this.normalizedShape[i])) {
      throw new ShapeError(
        `${layerLabel(path, this.typeName)}: expected input (N, *, ${this.normalizedShape.join(", ")}), got (N, ${inShape.join(", ")})` +
          ` — the last dims must be normalized_shape ${formatShape(this.normalizedShape)}`,
      );
    }
    return [...inShape];
  }

  compile(context: CompileContext): Compiled {
    const { path, inShape } = context;
    const outShape = this.outputShape(inShape, path);
    const M = numel(this.normalizedShape);
    const S = numel(inShape) / M;
    return compileNormalisation({
      label: layerLabel(path, this.typeName),
      context,
      outShape,
      weight: this.weight,
      bias: this.bias,
      eps: this.eps,
      blocks: S,
      C: M,
      L: 1,
      sample: { groups: S, groupSize: M },
      useRunning: () => false,
    });
  }
}

/**
 * PyTorch's `nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)` on (N, C, *): each
 * sample's channels are split into num_groups groups, each normalised over its channels and
 * positions; γ and β are per channel.
 *
 * @example
 * ```ts
 * import { GroupNorm } from "jacobian-wasm";
 * const norm = new GroupNorm(2, 8); // 2 groups of 4 channels
 * ```
 */
export class GroupNorm extends Module {
  readonly typeName = "GroupNorm";
  readonly eps: number;
  readonly affine: boolean;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;

  constructor(readonly numGroups: number, readonly numChannels: number, options: GroupNormOptions = {}) {
    super();
    positiveInteger("GroupNorm", "num_groups", numGroups);
    positiveInteger("GroupNorm", "num_channels", numChannels);
    if (numChannels % numGroups !== 0) {
      throw new RangeError(`GroupNorm: num_channels (${numChannels}) must be divisible by num_groups (${numGroups})`);
    }
    this.eps = options.eps ?? 1e-5;
    checkEps("GroupNorm", this.eps);
    this.affine = options.affine ?? true;
    this.weight = this.affine ? { shape: [numChannels], data: filled(numChannels, 1) } : null;
    this.bias = this.affine ? { shape: [numChannels], data: filled(numChannels, 0) } : null;
  }

  override ownParameters(): Named[] {
    return this.weight && this.bias ? [["weight", this.weight], ["bias", this.bias]] : [];
  }

  outputShape(inShape: readonly number[], path = ""): number[] {
    if (inShape.length < 1 || inShape[0] !== this.numChannels) {
      throw new ShapeError(
        `${layerLabel(path, this.typeName)}: expected input (N, ${this.numChannels}, *), got (N, ${inShape.join(", ")})`,
      );
    }
    return [...inShape];
  }

  compile(context: CompileContext): Compiled {
    const { path, inShape } = context;
    const outShape = this.outputShape(inShape, path);
    const C = this.numChannels;
    const L = numel(inShape) / C;
    return compileNormalisation({
      label: layerLabel(path, this.typeName),
      context,
      outShape,
      weight: this.weight,
      bias: this.bias,
      eps: this.eps,
      blocks: 1,
      C,
      L,
      sample: { groups: this.numGroups, groupSize: (C / this.numGroups) * L },
      useRunning: () => false,
    });
  }
}
