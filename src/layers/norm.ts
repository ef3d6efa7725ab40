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
import { filledParameter } from "./init.ts";
import type { CompileContext, Compiled, Named } from "./module.ts";
import { layerLabel, Module } from "./module.ts";

/**
 * Options of `BatchNorm1d/2d/3d` and `InstanceNorm1d/2d/3d`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { BatchNorm2d } from "jacobian-wasm";
 * import type { BatchNormOptions } from "jacobian-wasm";
 * const options: BatchNormOptions = { eps: 1e-3, momentum: 0.01 };
 * const norm = new BatchNorm2d(16, options);
 * ```
 */
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

/**
 * Options of `InstanceNorm1d/2d/3d` (PyTorch's defaults: affine and track_running_stats false).
 *
 * @example
 * ```ts
 * import { InstanceNorm2d } from "jacobian-wasm";
 * import type { InstanceNormOptions } from "jacobian-wasm";
 * const options: InstanceNormOptions = { affine: true }; // learn γ and β; no running statistics
 * new InstanceNorm2d(3, options).parameters().length; // 2
 * ```
 */
export type InstanceNormOptions = BatchNormOptions;

/**
 * Options of `LayerNorm`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { LayerNorm } from "jacobian-wasm";
 * import type { LayerNormOptions } from "jacobian-wasm";
 * const options: LayerNormOptions = { eps: 1e-6, bias: false };
 * new LayerNorm(8, options).parameters().length; // 1: weight only
 * ```
 */
export interface LayerNormOptions {
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Learn γ and β of the normalized_shape (default true). */
  elementwiseAffine?: boolean;
  /** Learn β (default true; PyTorch ≥ 2.1's argument). */
  bias?: boolean;
}

/**
 * Options of `GroupNorm`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { GroupNorm } from "jacobian-wasm";
 * import type { GroupNormOptions } from "jacobian-wasm";
 * const options: GroupNormOptions = { eps: 1e-6, affine: false };
 * new GroupNorm(4, 16, options).parameters().length; // 0
 * ```
 */
export interface GroupNormOptions {
  /** Added to the variance (default 1e-5). */
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
 *
 * @example
 * ```ts
 * import { BatchNorm2d, ChannelNorm } from "jacobian-wasm";
 * const norm: ChannelNorm = new BatchNorm2d(8);
 * norm.numFeatures; // 8
 * Object.keys(norm.stateDict()); // ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
 * ```
 */
export abstract class ChannelNorm extends Module {
  /** eps, added to the variance. */
  readonly eps: number;
  /** momentum, kept for the state dict and specs: the running statistics are never updated here. */
  readonly momentum: number | null;
  /** affine: whether γ (`weight`) and β (`bias`) are learnt. */
  readonly affine: boolean;
  /** track_running_stats: whether the running_mean / running_var buffers exist. */
  readonly trackRunningStats: boolean;
  /** γ, (num_features), starting at 1; null unless affine. */
  readonly weight: Tensor | null;
  /** β, (num_features), starting at 0; null unless affine. */
  readonly bias: Tensor | null;
  /** The running_mean buffer, (num_features), starting at 0; null unless track_running_stats. */
  readonly runningMean: Tensor | null;
  /** The running_var buffer, (num_features), starting at 1; null unless track_running_stats. */
  readonly runningVar: Tensor | null;
  /** PyTorch keeps an int64 count; float here (the state dict holds numbers as float32). */
  readonly numBatchesTracked: Tensor | null;

  /**
   * A channel normalisation of `dims` spatial dims; the subclasses fix `dims`, `name` and the defaults.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param name The layer's name in messages (`"BatchNorm2d"`).
   * @param numFeatures num_features, C: the channels.
   * @param options eps, momentum, affine, trackRunningStats.
   * @param defaults affine and trackRunningStats when the options leave them out.
   */
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
    this.weight = this.affine ? { shape: [numFeatures], data: filledParameter(`${name}: weight`, [numFeatures], 1) } : null;
    this.bias = this.affine ? { shape: [numFeatures], data: filledParameter(`${name}: bias`, [numFeatures], 0) } : null;
    this.runningMean = this.trackRunningStats ? { shape: [numFeatures], data: filledParameter(`${name}: running_mean`, [numFeatures], 0) } : null;
    this.runningVar = this.trackRunningStats ? { shape: [numFeatures], data: filledParameter(`${name}: running_var`, [numFeatures], 1) } : null;
    this.numBatchesTracked = this.trackRunningStats ? { shape: [], data: filledParameter(`${name}: num_batches_tracked`, [], 0) } : null;
  }

  /** `weight` and `bias` when affine, else none. */
  override ownParameters(): Named[] {
    return this.weight && this.bias ? [["weight", this.weight], ["bias", this.bias]] : [];
  }

  /** `running_mean`, `running_var`, `num_batches_tracked` when track_running_stats, else none. */
  override ownBuffers(): Named[] {
    if (!this.runningMean || !this.runningVar || !this.numBatchesTracked) return [];
    return [["running_mean", this.runningMean], ["running_var", this.runningVar], ["num_batches_tracked", this.numBatchesTracked]];
  }

  /** @ignore The per-sample layouts accepted, spatial dims named: BatchNorm1d takes (C) and (C, L). */
  protected abstract layouts(): string[][];

  /** @ignore Whether the channel count must equal num_features. */
  protected channelsMustMatch(): boolean {
    return true;
  }

  /** The input's shape, `(C, *spatial)` with C = num_features. */
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

/**
 * The shared body of BatchNorm1d/2d/3d: eval mode, running statistics. Training mode and
 * track_running_stats=False (batch statistics, which mix samples) are refused when computing.
 *
 * @example
 * ```ts
 * import { BatchNorm1d, BatchNormNd, tensor } from "jacobian-wasm";
 * const norm: BatchNormNd = new BatchNorm1d(2);
 * norm.runningMean!.data.set([1, 2]);
 * norm.forward(tensor([3, 2], [1, 2])).data; // ≈ [2, 0]: (x − running_mean) / √(running_var + eps)
 * ```
 */
export abstract class BatchNormNd extends ChannelNorm {
  /**
   * A batch normalisation of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param numFeatures num_features, C.
   * @param options eps (1e-5), momentum (0.1), affine (true), trackRunningStats (true).
   */
  constructor(dims: 1 | 2 | 3, numFeatures: number, options: BatchNormOptions = {}) {
    super(dims, `BatchNorm${dims}d`, numFeatures, options, { affine: true, trackRunningStats: true });
  }

  /** @ignore */
  protected layouts(): string[][] {
    return this.dims === 1 ? [[], SPATIAL[1]] : [SPATIAL[this.dims]];
  }

  /** @ignore */
  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /**
   * This layer and the ReLU after it as one step (Sequential fuses them): one pass each way instead of two.
   *
   * @ignore
   */
  compileWithReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  /** `compile`, with or without the ReLU after the normalisation. */
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
  /** PyTorch's class name, `"BatchNorm1d"`. */
  readonly typeName = "BatchNorm1d";
  /**
   * A 1-d batch normalisation.
   *
   * @param numFeatures num_features, C: the channels.
   * @param options eps (1e-5), momentum (0.1), affine (true), trackRunningStats (true).
   */
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
  /** PyTorch's class name, `"BatchNorm2d"`. */
  readonly typeName = "BatchNorm2d";
  /**
   * A 2-d batch normalisation.
   *
   * @param numFeatures num_features, C: the channels.
   * @param options eps (1e-5), momentum (0.1), affine (true), trackRunningStats (true).
   */
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
  /** PyTorch's class name, `"BatchNorm3d"`. */
  readonly typeName = "BatchNorm3d";
  /**
   * A 3-d batch normalisation.
   *
   * @param numFeatures num_features, C: the channels.
   * @param options eps (1e-5), momentum (0.1), affine (true), trackRunningStats (true).
   */
  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super(3, numFeatures, options);
  }
}

/**
 * The shared body of InstanceNorm1d/2d/3d: each sample's channels normalised over their own
 * positions (so samples never mix, in training mode too); with track_running_stats in eval
 * mode, the running statistics instead, as PyTorch. Running statistics are never updated here.
 *
 * @example
 * ```ts
 * import { InstanceNorm1d, InstanceNormNd, tensor } from "jacobian-wasm";
 * const norm: InstanceNormNd = new InstanceNorm1d(1);
 * norm.forward(tensor([1, 3], [1, 1, 2])).data; // ≈ [-1, 1]: each channel of each sample on its own
 * ```
 */
export abstract class InstanceNormNd extends ChannelNorm {
  /**
   * An instance normalisation of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param numFeatures num_features, C.
   * @param options eps (1e-5), momentum (0.1), affine (false), trackRunningStats (false).
   */
  constructor(dims: 1 | 2 | 3, numFeatures: number, options: InstanceNormOptions = {}) {
    super(dims, `InstanceNorm${dims}d`, numFeatures, options, { affine: false, trackRunningStats: false });
  }

  /** @ignore */
  protected layouts(): string[][] {
    return [SPATIAL[this.dims]];
  }

  /** @ignore PyTorch only warns about a channel count other than num_features when nothing is per channel. */
  protected override channelsMustMatch(): boolean {
    return this.affine || this.trackRunningStats;
  }

  /** @ignore */
  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /**
   * This layer and the ReLU after it as one step (Sequential fuses them): one pass each way instead of two.
   *
   * @ignore
   */
  compileWithReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  /** `compile`, with or without the ReLU after the normalisation. */
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
  /** PyTorch's class name, `"InstanceNorm1d"`. */
  readonly typeName = "InstanceNorm1d";
  /**
   * A 1-d instance normalisation.
   *
   * @param numFeatures num_features, C: the channels.
   * @param options eps (1e-5), momentum (0.1), affine (false), trackRunningStats (false).
   */
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
  /** PyTorch's class name, `"InstanceNorm2d"`. */
  readonly typeName = "InstanceNorm2d";
  /**
   * A 2-d instance normalisation.
   *
   * @param numFeatures num_features, C: the channels.
   * @param options eps (1e-5), momentum (0.1), affine (false), trackRunningStats (false).
   */
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
  /** PyTorch's class name, `"InstanceNorm3d"`. */
  readonly typeName = "InstanceNorm3d";
  /**
   * A 3-d instance normalisation.
   *
   * @param numFeatures num_features, C: the channels.
   * @param options eps (1e-5), momentum (0.1), affine (false), trackRunningStats (false).
   */
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
  /** PyTorch's class name, `"LayerNorm"`. */
  readonly typeName = "LayerNorm";
  /** normalized_shape: the last dims each sample is normalised over. */
  readonly normalizedShape: number[];
  /** eps, added to the variance. */
  readonly eps: number;
  /** elementwise_affine: whether γ (and β) are learnt. */
  readonly elementwiseAffine: boolean;
  /** γ, of normalized_shape, starting at 1; null unless elementwise_affine. */
  readonly weight: Tensor | null;
  /** β, of normalized_shape, starting at 0; null unless elementwise_affine and bias. */
  readonly bias: Tensor | null;

  /**
   * A layer normalisation.
   *
   * @param normalizedShape normalized_shape: one int (the last dim) or the sizes of the last dims.
   * @param options eps (1e-5), elementwiseAffine (true), bias (true).
   */
  constructor(normalizedShape: number | readonly number[], options: LayerNormOptions = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === "number" ? [normalizedShape] : [...normalizedShape];
    if (this.normalizedShape.length === 0 || this.normalizedShape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new RangeError(`LayerNorm: normalized_shape must be a positive integer or a non-empty list of them, got ${JSON.stringify(normalizedShape)}`);
    }
    this.eps = options.eps ?? 1e-5;
    checkEps("LayerNorm", this.eps);
    this.elementwiseAffine = options.elementwiseAffine ?? true;
    const shape = this.normalizedShape;
    this.weight = this.elementwiseAffine ? { shape: [...shape], data: filledParameter("LayerNorm: weight", shape, 1) } : null;
    this.bias = this.elementwiseAffine && (options.bias ?? true) ? { shape: [...shape], data: filledParameter("LayerNorm: bias", shape, 0) } : null;
  }

  /** `weight` and `bias`, those that exist. */
  override ownParameters(): Named[] {
    const out: Named[] = [];
    if (this.weight) out.push(["weight", this.weight]);
    if (this.bias) out.push(["bias", this.bias]);
    return out;
  }

  /** The input's shape, `(*, *normalized_shape)`. */
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

  /** @ignore */
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
 * PyTorch's `nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)` on `(N, C, *)`: each
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
  /** PyTorch's class name, `"GroupNorm"`. */
  readonly typeName = "GroupNorm";
  /** eps, added to the variance. */
  readonly eps: number;
  /** affine: whether the per-channel γ and β are learnt. */
  readonly affine: boolean;
  /** γ, (num_channels), starting at 1; null unless affine. */
  readonly weight: Tensor | null;
  /** β, (num_channels), starting at 0; null unless affine. */
  readonly bias: Tensor | null;

  /**
   * A group normalisation.
   *
   * @param numGroups num_groups: how many groups the channels are split into.
   * @param numChannels num_channels, C: a multiple of num_groups.
   * @param options eps (1e-5), affine (true).
   */
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
    this.weight = this.affine ? { shape: [numChannels], data: filledParameter("GroupNorm: weight", [numChannels], 1) } : null;
    this.bias = this.affine ? { shape: [numChannels], data: filledParameter("GroupNorm: bias", [numChannels], 0) } : null;
  }

  /** `weight` and `bias` when affine, else none. */
  override ownParameters(): Named[] {
    return this.weight && this.bias ? [["weight", this.weight], ["bias", this.bias]] : [];
  }

  /** The input's shape, `(C, *)` with C = num_channels. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    if (inShape.length < 1 || inShape[0] !== this.numChannels) {
      throw new ShapeError(
        `${layerLabel(path, this.typeName)}: expected input (N, ${this.numChannels}, *), got (N, ${inShape.join(", ")})`,
      );
    }
    return [...inShape];
  }

  /** @ignore */
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
