/**
 * Conv1d, Conv2d, Conv3d: im2col + GEMM per sample and group, in one WASM call per layer.
 * Per-sample rule: per group, ∂ℓ/∂W[n] = G[n] · U[n]ᵀ with U[n] = im2col(x[n]) and G[n] the
 * output gradient (C_out/G × L); ∂ℓ/∂b[n] = Σ_L G[n].
 */
import { ShapeError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";
import { uniformFanIn } from "./init.ts";
import type { PlanBuilder } from "../plan.ts";
import type { CompileContext, Compiled, Named, Step } from "./module.ts";
import { layerLabel, Module, ntuple, toThreeDims, weightBiasStep } from "./module.ts";

/**
 * A size argument: one int for every spatial dim, or one per dim.
 *
 * @example
 * ```ts
 * import { Conv2d } from "jacobian-wasm";
 * import type { Size } from "jacobian-wasm";
 * const square: Size = 3; // 3 × 3
 * const wide: Size = [1, 5]; // 1 × 5
 * new Conv2d(1, 1, wide).weight.shape; // [1, 1, 1, 5]
 * ```
 */
export type Size = number | readonly number[];

/**
 * Options of `Conv1d/2d/3d`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { Conv2d } from "jacobian-wasm";
 * import type { ConvOptions } from "jacobian-wasm";
 * const options: ConvOptions = { stride: 2, padding: 1, bias: false };
 * new Conv2d(3, 8, 3, options).outputShape([3, 32, 32]); // [8, 16, 16]
 * const depthwise = new Conv2d(8, 8, 3, { groups: 8, padding: "same" });
 * ```
 */
export interface ConvOptions {
  /** The step between windows, per spatial dim (default 1). */
  stride?: Size;
  /** Zero padding on both sides of each dim (default 0), or "valid" (none) / "same" (output size = input size, stride 1). */
  padding?: Size | "same" | "valid";
  /** The spacing between kernel taps, per spatial dim (default 1). */
  dilation?: Size;
  /** Channel groups: in_channels and out_channels must both be divisible by it (default 1; in_channels gives a depthwise convolution). */
  groups?: number;
  /** Learn an additive per-channel bias (default true). */
  bias?: boolean;
  /** Only "zeros" is supported. */
  paddingMode?: "zeros";
}

/**
 * The shared body of Conv1d/2d/3d (PyTorch's `_ConvNd`): the hyperparameters, as tuples of
 * one entry per spatial dim, and the parameters. `instanceof ConvNd` matches every convolution.
 *
 * @example
 * ```ts
 * import { Conv2d, ConvNd } from "jacobian-wasm";
 * const conv: ConvNd = new Conv2d(3, 8, [3, 5], { stride: 2 });
 * conv.kernelSize; // [3, 5]
 * conv.stride; // [2, 2]
 * conv.weight.shape; // [8, 3, 3, 5]
 * ```
 */
export abstract class ConvNd extends Module {
  /** The weight, `(C_out, C_in/groups, *kernel_size)`, drawn from U(−1/√fan_in, 1/√fan_in) as PyTorch's default (fan_in = C_in/groups · kernel volume). */
  readonly weight: Tensor;
  /** The bias, (C_out), drawn from the same distribution; null with `{ bias: false }`. */
  readonly bias: Tensor | null;
  /** kernel_size, one entry per spatial dim. */
  readonly kernelSize: number[];
  /** stride, one entry per spatial dim. */
  readonly stride: number[];
  /** padding, one entry per spatial dim (`"valid"` is stored as zeros), or `"same"`. */
  readonly padding: number[] | "same";
  /** dilation, one entry per spatial dim. */
  readonly dilation: number[];
  /** groups. */
  readonly groups: number;

  /**
   * A convolution of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int for every spatial dim, or one per dim.
   * @param options stride, padding, dilation, groups, bias, paddingMode, as PyTorch's keywords.
   */
  constructor(
    readonly dims: 1 | 2 | 3,
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Size,
    options: ConvOptions = {},
  ) {
    super();
    const name = `Conv${dims}d`;
    for (const [what, v] of [["in_channels", inChannels], ["out_channels", outChannels]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name}: ${what} must be a positive integer, got ${v}`);
    }
    this.kernelSize = ntuple(kernelSize, dims, "kernel_size", name);
    this.stride = ntuple(options.stride ?? 1, dims, "stride", name);
    this.dilation = ntuple(options.dilation ?? 1, dims, "dilation", name);
    for (const [what, list] of [["kernel_size", this.kernelSize], ["stride", this.stride], ["dilation", this.dilation]] as const) {
      if (list.some((v) => v < 1)) throw new RangeError(`${name}: ${what} must be positive, got ${JSON.stringify(list)}`);
    }
    const padding = options.padding ?? 0;
    if (padding === "same") {
      if (this.stride.some((s) => s !== 1)) {
        throw new RangeError(`${name}: padding="same" is not supported for strided convolutions (as in PyTorch)`);
      }
      this.padding = "same";
    } else if (padding === "valid") {
      this.padding = new Array<number>(dims).fill(0);
    } else {
      this.padding = ntuple(padding, dims, "padding", name);
    }
    this.groups = options.groups ?? 1;
    if (!Number.isInteger(this.groups) || this.groups < 1) {
      throw new RangeError(`${name}: groups must be a positive integer, got ${this.groups}`);
    }
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new RangeError(
        `${name}: in_channels (${inChannels}) and out_channels (${outChannels}) must both be divisible by groups (${this.groups})`,
      );
    }
    if ((options.paddingMode ?? "zeros") !== "zeros") {
      throw new RangeError(`${name}: only padding_mode="zeros" is supported, got "${options.paddingMode}"`);
    }
    const kvol = numel(this.kernelSize);
    const fanIn = (inChannels / this.groups) * kvol;
    const shape = [outChannels, inChannels / this.groups, ...this.kernelSize];
    this.weight = { shape, data: uniformFanIn(`${name}: weight`, shape, fanIn) };
    this.bias = (options.bias ?? true) ? { shape: [outChannels], data: uniformFanIn(`${name}: bias`, [outChannels], fanIn) } : null;
  }

  /** `weight`, then `bias` when there is one. */
  override ownParameters(): Named[] {
    return this.bias ? [["weight", this.weight], ["bias", this.bias]] : [["weight", this.weight]];
  }

  /** Front padding per dim and the output size, for a given spatial input size. */
  private geometry(spatial: readonly number[], label: string): { front: number[]; out: number[] } {
    const front: number[] = [];
    const out: number[] = [];
    for (let i = 0; i < this.dims; i++) {
      const reach = this.dilation[i] * (this.kernelSize[i] - 1);
      // "same": PyTorch puts the odd padding element at the end.
      const before = this.padding === "same" ? Math.floor(reach / 2) : this.padding[i];
      const total = this.padding === "same" ? reach : 2 * this.padding[i];
      const size = Math.floor((spatial[i] + total - reach - 1) / this.stride[i]) + 1;
      if (size < 1) {
        throw new ShapeError(
          `${label}: input spatial size (${spatial.join(", ")}) is too small for kernel_size ${
            JSON.stringify(this.kernelSize)
          } with padding ${JSON.stringify(this.padding)} and dilation ${JSON.stringify(this.dilation)}`,
        );
      }
      front.push(before);
      out.push(size);
    }
    return { front, out };
  }

  /**
   * `(C_in, *spatial)` → `(C_out, *out)`: per dim, out = ⌊(in + 2·padding − dilation·(k − 1) − 1) / stride⌋ + 1,
   * as in PyTorch (out = in for `"same"`).
   */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const layout = ["D", "H", "W"].slice(3 - this.dims).join(", ");
    if (inShape.length !== this.dims + 1 || inShape[0] !== this.inChannels) {
      throw new ShapeError(
        `${label}: expected input (N, ${this.inChannels}, ${layout}), got (N, ${inShape.join(", ")})`,
      );
    }
    return [this.outChannels, ...this.geometry(inShape.slice(1), label).out];
  }

  /** @ignore */
  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const { front, out } = this.geometry(inShape.slice(1), label);
    const geom = builder.constantBlock([
      this.groups,
      this.inChannels,
      this.outChannels,
      ...toThreeDims(inShape.slice(1), 1),
      ...toThreeDims(out, 1),
      ...toThreeDims(this.kernelSize, 1),
      ...toThreeDims(this.stride, 1),
      ...toThreeDims(front, 0),
      ...toThreeDims(this.dilation, 1),
    ]);
    const { N, K, R } = builder;
    const L = numel(out);
    const inWidth = numel(inShape);
    const output = builder.floats(N * this.outChannels * L);
    const work = builder.scratch(this.inChannels * numel(this.kernelSize) * L * 4);
    const weight = builder.parameterPtr(this.weight);
    const bias = this.bias ? builder.parameterPtr(this.bias) : 0;
    const k = kernels();
    const step = weightBiasStep(builder, label, outShape, this.weight, this.bias, {
      forward: () => k.conv_forward(geom, N, input, weight, bias, output, work.ptr),
      backward: (gy, gx) => k.conv_backward_input(geom, R, gy, weight, gx, work.ptr),
      perSample: (first, samples, gy, jw, jb, ldJ) =>
        k.conv_weight_per_sample(geom, samples * K, K, input + first * inWidth * 4, gy, jw, jb, ldJ, work.ptr),
      gradient: (gy, gw, gb) => k.conv_weight_grad(geom, R, K, input, gy, gw, gb, work.ptr, 1),
    });
    const dims = toThreeDims(this.dilation, 1);
    const [oD, oH, oW] = toThreeDims(out, 1);
    const [kD, kH, kW] = toThreeDims(this.kernelSize, 1);
    const [sD, sH, sW] = toThreeDims(this.stride, 1);
    const weightColumn = builder.columnBytes(this.weight);
    const biasColumn = this.bias ? builder.columnBytes(this.bias) : -1;
    step.perSampleThroughMaxPool = (builder: PlanBuilder, pool: Step): boolean => {
      if (!pool.maxPool || dims.some((d) => d !== 1)) return false;
      const { geom: poolGeom, argmax } = pool.maxPool;
      const pooledWidth = numel(pool.outShape); // per sample: C_out × pooled volume
      // Only where it pays: per output channel, the sparse sum costs about 16 cycles per window
      // plus one per f32x4 of kernel row, the dense contraction (with the pooling's backward)
      // about 1 + C_in·kvol/3 per output position (measured on cnn's first layer, where the
      // sparse sum is 1.9x faster, and audio1d's, where it is 1.7x slower).
      const rowVectors = (this.inChannels / this.groups) * kD * kH * Math.ceil(kW / 4);
      const sparseCost = (pooledWidth / this.outChannels) * (16 + rowVectors);
      const denseCost = L * (1 + ((this.inChannels / this.groups) * kD * kH * kW) / 3);
      if (sparseCost >= denseCost) return false;
      const frameBytes = k.conv_pooled_frame_floats(this.inChannels, oD, oH, oW, sD, sH, sW, kD, kH, kW) * 4;
      const listBytes = (pooledWidth / this.outChannels) * 8 + L * 4;
      const scratch = builder.scratch(frameBytes + listBytes);
      const ldJ = builder.D;
      step.perSample = (first: number, samples: number, J: number) => {
        k.conv_weight_per_sample_pooled(
          geom, poolGeom, samples * K, K, input + first * inWidth * 4, pool.gy + first * K * pooledWidth * 4,
          argmax + first * pooledWidth * 4, J + weightColumn, biasColumn < 0 ? 0 : J + biasColumn, ldJ,
          scratch.ptr, scratch.ptr + frameBytes,
        );
      };
      return true;
    };
    return { output, outShape, steps: [step] };
  }
}

/**
 * PyTorch's `nn.Conv1d`: input (N, C_in, L), weight (C_out, C_in/groups, k).
 *
 * @example
 * ```ts
 * import { Conv1d } from "jacobian-wasm";
 * const conv = new Conv1d(1, 8, 5, { stride: 2, padding: "valid" });
 * ```
 */
export class Conv1d extends ConvNd {
  /** PyTorch's class name, `"Conv1d"`. */
  readonly typeName = "Conv1d";
  /**
   * A 1-d convolution, initialised from the generator `manualSeed` seeds.
   *
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int, or a list of one.
   * @param options stride, padding, dilation, groups, bias (PyTorch's defaults: 1, 0, 1, 1, true).
   */
  constructor(inChannels: number, outChannels: number, kernelSize: Size, options: ConvOptions = {}) {
    super(1, inChannels, outChannels, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.Conv2d`: input (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW).
 *
 * @example
 * ```ts
 * import { Conv2d } from "jacobian-wasm";
 * const conv = new Conv2d(3, 16, 3, { padding: 1 });
 * ```
 */
export class Conv2d extends ConvNd {
  /** PyTorch's class name, `"Conv2d"`. */
  readonly typeName = "Conv2d";
  /**
   * A 2-d convolution, initialised from the generator `manualSeed` seeds.
   *
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int for both dims, or [kH, kW].
   * @param options stride, padding, dilation, groups, bias (PyTorch's defaults: 1, 0, 1, 1, true).
   */
  constructor(inChannels: number, outChannels: number, kernelSize: Size, options: ConvOptions = {}) {
    super(2, inChannels, outChannels, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.Conv3d`: input (N, C_in, D, H, W), weight (C_out, C_in/groups, kD, kH, kW).
 *
 * @example
 * ```ts
 * import { Conv3d } from "jacobian-wasm";
 * const conv = new Conv3d(1, 2, 2, { bias: false });
 * ```
 */
export class Conv3d extends ConvNd {
  /** PyTorch's class name, `"Conv3d"`. */
  readonly typeName = "Conv3d";
  /**
   * A 3-d convolution, initialised from the generator `manualSeed` seeds.
   *
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int for all three dims, or [kD, kH, kW].
   * @param options stride, padding, dilation, groups, bias (PyTorch's defaults: 1, 0, 1, 1, true).
   */
  constructor(inChannels: number, outChannels: number, kernelSize: Size, options: ConvOptions = {}) {
    super(3, inChannels, outChannels, kernelSize, options);
  }
}
