/**
 * MaxPool1d/2d/3d and AvgPool1d/2d/3d with PyTorch's stride, padding, dilation, ceil_mode,
 * count_include_pad and divisor_override. No parameters: forward and input gradient only.
 * Max pooling caches, per output, the index of its maximum for the backward pass.
 */
import { ShapeError } from "../errors.ts";
import { numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";
import type { CompileContext, Compiled } from "./module.ts";
import { layerLabel, Module, ntuple, toThreeDims } from "./module.ts";
import type { Size } from "./conv.ts";

/**
 * Options of `MaxPool1d/2d/3d`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { MaxPool2d } from "jacobian-wasm";
 * import type { MaxPoolOptions } from "jacobian-wasm";
 * const options: MaxPoolOptions = { stride: 2, padding: 1, ceilMode: true };
 * new MaxPool2d(3, options).outputShape([8, 10, 10]); // [8, 6, 6]
 * ```
 */
export interface MaxPoolOptions {
  /** The step between windows, per spatial dim (default: kernel_size). */
  stride?: Size;
  /** Implicit −∞ padding on both sides, at most half the effective kernel size (default 0). */
  padding?: Size;
  /** The spacing between window elements (default 1). */
  dilation?: Size;
  /** Round the output size up instead of down, PyTorch's ceil_mode (default false). */
  ceilMode?: boolean;
}

/**
 * Options of `AvgPool1d/2d/3d`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { AvgPool2d } from "jacobian-wasm";
 * import type { AvgPoolOptions } from "jacobian-wasm";
 * const options: AvgPoolOptions = { stride: 1, padding: 1, countIncludePad: false };
 * new AvgPool2d(3, options).outputShape([4, 8, 8]); // [4, 8, 8]
 * ```
 */
export interface AvgPoolOptions {
  /** The step between windows, per spatial dim (default: kernel_size). */
  stride?: Size;
  /** Implicit zero padding on both sides, at most half of kernel_size (default 0). */
  padding?: Size;
  /** Round the output size up instead of down, PyTorch's ceil_mode (default false). */
  ceilMode?: boolean;
  /** Count the zero padding in each window's divisor, PyTorch's count_include_pad (default true). */
  countIncludePad?: boolean;
  /** Divide every window by this instead of its size (AvgPool2d/3d in PyTorch). */
  divisorOverride?: number | null;
}

/** PyTorch's pooling output size (ATen's pooling_output_shape). */
function pooledSize(size: number, k: number, pad: number, stride: number, dilation: number, ceil: boolean): number {
  const span = size + 2 * pad - dilation * (k - 1) - 1 + (ceil ? stride - 1 : 0);
  let out = Math.floor(span / stride) + 1;
  // With ceil_mode the last window must start inside the input or its left padding.
  if (ceil && (out - 1) * stride >= size + pad) out--;
  return out;
}

/**
 * The shared body of the max and average poolings: their geometry, as tuples of one entry
 * per spatial dim. Inputs are `(C, *spatial)` per sample, or `(*spatial)` as PyTorch allows.
 *
 * @example
 * ```ts
 * import { MaxPool2d, PoolNd } from "jacobian-wasm";
 * const pool: PoolNd = new MaxPool2d(3, { stride: 2, padding: 1 });
 * pool.kernelSize; // [3, 3]
 * pool.outputShape([16, 32, 32]); // [16, 16, 16]
 * ```
 */
export abstract class PoolNd extends Module {
  /** kernel_size, one entry per spatial dim. */
  readonly kernelSize: number[];
  /** stride, one entry per spatial dim (kernel_size unless given). */
  readonly stride: number[];
  /** padding, one entry per spatial dim. */
  readonly padding: number[];
  /** dilation, one entry per spatial dim (always 1 for average pooling). */
  readonly dilation: number[];
  /** ceil_mode: whether the output size is rounded up. */
  readonly ceilMode: boolean;

  /**
   * A pooling of `dims` spatial dims; the subclasses fix `dims` and `name`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param name The layer's name in messages (`"MaxPool2d"`).
   * @param kernelSize kernel_size: one int for every spatial dim, or one per dim.
   * @param options stride, padding, dilation, ceilMode.
   */
  constructor(readonly dims: 1 | 2 | 3, name: string, kernelSize: Size, options: MaxPoolOptions) {
    super();
    this.kernelSize = ntuple(kernelSize, dims, "kernel_size", name);
    this.stride = ntuple(options.stride ?? this.kernelSize, dims, "stride", name);
    this.padding = ntuple(options.padding ?? 0, dims, "padding", name);
    this.dilation = ntuple(options.dilation ?? 1, dims, "dilation", name);
    this.ceilMode = options.ceilMode ?? false;
    for (const [what, list] of [["kernel_size", this.kernelSize], ["stride", this.stride], ["dilation", this.dilation]] as const) {
      if (list.some((v) => v < 1)) throw new RangeError(`${name}: ${what} must be positive, got ${JSON.stringify(list)}`);
    }
  }

  /**
   * Channels and spatial size of a per-sample input: (C, spatial...) or, as PyTorch allows, (spatial...).
   *
   * @ignore
   */
  protected split(inShape: readonly number[], label: string): { channels: number; spatial: number[] } {
    if (inShape.length === this.dims + 1) return { channels: inShape[0], spatial: inShape.slice(1) };
    if (inShape.length === this.dims) return { channels: 1, spatial: [...inShape] };
    const layout = ["D", "H", "W"].slice(3 - this.dims).join(", ");
    throw new ShapeError(`${label}: expected input (N, C, ${layout}), got (N, ${inShape.join(", ")})`);
  }

  /** @ignore The output's spatial size, checked to be at least 1 in every dim. */
  protected outSpatial(spatial: readonly number[], label: string): number[] {
    const out = spatial.map((size, i) =>
      pooledSize(size, this.kernelSize[i], this.padding[i], this.stride[i], this.dilation[i], this.ceilMode)
    );
    if (out.some((v) => v < 1)) {
      throw new ShapeError(
        `${label}: input spatial size (${spatial.join(", ")}) is too small for kernel_size ${JSON.stringify(this.kernelSize)}` +
          ` with padding ${JSON.stringify(this.padding)} and dilation ${JSON.stringify(this.dilation)}`,
      );
    }
    return out;
  }

  /**
   * `(C, *spatial)` → `(C, *out)`: per dim, out = ⌊(in + 2·padding − dilation·(k − 1) − 1) / stride⌋ + 1
   * (⌈…⌉ with ceil_mode, the last window starting inside the input), as in PyTorch.
   */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const { spatial } = this.split(inShape, label);
    return [...inShape.slice(0, inShape.length - this.dims), ...this.outSpatial(spatial, label)];
  }

  /** @ignore The kernels' POOL_GEOM block for one input shape. */
  protected geometryBlock(inShape: readonly number[], label: string, countIncludePad: boolean, divisor: number): {
    block: number[];
    channels: number;
    inVolume: number;
    outVolume: number;
  } {
    const { channels, spatial } = this.split(inShape, label);
    const out = this.outSpatial(spatial, label);
    return {
      block: [
        channels,
        ...toThreeDims(spatial, 1),
        ...toThreeDims(out, 1),
        ...toThreeDims(this.kernelSize, 1),
        ...toThreeDims(this.stride, 1),
        ...toThreeDims(this.padding, 0),
        ...toThreeDims(this.dilation, 1),
        countIncludePad ? 1 : 0,
        divisor,
      ],
      channels,
      inVolume: numel(spatial),
      outVolume: numel(out),
    };
  }
}

/**
 * The shared body of MaxPool1d/2d/3d. The backward pass sends each window's gradient to the
 * position of its maximum (the first one, on ties), as PyTorch's.
 *
 * @example
 * ```ts
 * import { MaxPool1d, MaxPoolNd, tensor } from "jacobian-wasm";
 * const pool: MaxPoolNd = new MaxPool1d(2);
 * pool.forward(tensor([1, 5, 3, 2], [1, 1, 4])).data; // [5, 3]
 * ```
 */
export abstract class MaxPoolNd extends PoolNd {
  /**
   * A max pooling of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param kernelSize kernel_size: one int for every spatial dim, or one per dim.
   * @param options stride, padding, dilation, ceilMode.
   */
  constructor(dims: 1 | 2 | 3, kernelSize: Size, options: MaxPoolOptions = {}) {
    super(dims, `MaxPool${dims}d`, kernelSize, options);
    this.padding.forEach((pad, i) => {
      const effective = (this.kernelSize[i] - 1) * this.dilation[i] + 1;
      if (pad > Math.floor(effective / 2)) {
        throw new RangeError(
          `MaxPool${dims}d: padding ${pad} should be at most half of the effective kernel size ${effective} (as in PyTorch)`,
        );
      }
    });
  }

  /** @ignore */
  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /**
   * ReLU then this pooling, as one step: the pooling then ReLU on the pooled values. The two
   * orders agree in value and gradient (ReLU is monotone, and a window whose maximum is not
   * positive passes no gradient either way), and the pooled tensor is the smaller one, so the
   * ReLU costs no pass of its own. `Sequential` compiles the pair this way.
   *
   * @ignore
   */
  compileAfterReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  /** `compile`, with or without the ReLU before the pooling. */
  private compileWith({ builder, path, input, inShape }: CompileContext, relu: boolean): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const { block, channels, outVolume } = this.geometryBlock(inShape, label, false, 0);
    const geom = builder.constantBlock(block);
    const { N, K, R } = builder;
    const output = builder.floats(N * channels * outVolume);
    const argmax = builder.allocate(N * channels * outVolume * 4);
    const k = kernels();
    return {
      output,
      outShape,
      steps: [{
        label,
        outShape,
        aliasesInput: false,
        hasParameters: false,
        gy: 0,
        gx: 0,
        maxPool: { geom, argmax },
        forward() {
          k.maxpool_forward(geom, N, input, output, argmax, relu ? 1 : 0);
        },
        backward() {
          k.maxpool_backward(geom, R, K, this.gy, argmax, this.gx);
        },
        perSample() {},
        gradient() {},
      }],
    };
  }
}

/**
 * The shared body of AvgPool1d/2d/3d: each window's mean, divided by the window's size with
 * or without its padding (count_include_pad), or by divisor_override.
 *
 * @example
 * ```ts
 * import { AvgPool1d, AvgPoolNd, tensor } from "jacobian-wasm";
 * const pool: AvgPoolNd = new AvgPool1d(2);
 * pool.forward(tensor([1, 5, 3, 2], [1, 1, 4])).data; // [3, 2.5]
 * ```
 */
export abstract class AvgPoolNd extends PoolNd {
  /** count_include_pad: whether zero padding counts in a window's divisor (default true). */
  readonly countIncludePad: boolean;
  /** divisor_override: the divisor of every window instead of its size, or null (default). */
  readonly divisorOverride: number | null;

  /**
   * An average pooling of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param kernelSize kernel_size: one int for every spatial dim, or one per dim.
   * @param options stride, padding, ceilMode, countIncludePad, divisorOverride.
   */
  constructor(dims: 1 | 2 | 3, kernelSize: Size, options: AvgPoolOptions = {}) {
    super(dims, `AvgPool${dims}d`, kernelSize, { ...options, dilation: 1 });
    this.countIncludePad = options.countIncludePad ?? true;
    this.divisorOverride = options.divisorOverride ?? null;
    if (this.divisorOverride !== null && (!Number.isInteger(this.divisorOverride) || this.divisorOverride === 0)) {
      throw new RangeError(`AvgPool${dims}d: divisor_override must be a non-zero integer, got ${this.divisorOverride}`);
    }
    this.padding.forEach((pad, i) => {
      if (pad > Math.floor(this.kernelSize[i] / 2)) {
        throw new RangeError(
          `AvgPool${dims}d: padding ${pad} should be at most half of kernel_size ${this.kernelSize[i]} (as in PyTorch)`,
        );
      }
    });
  }

  /** @ignore */
  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const { block, channels, outVolume } = this.geometryBlock(inShape, label, this.countIncludePad, this.divisorOverride ?? 0);
    const geom = builder.constantBlock(block);
    const { N, R } = builder;
    const output = builder.floats(N * channels * outVolume);
    const k = kernels();
    return {
      output,
      outShape,
      steps: [{
        label,
        outShape,
        aliasesInput: false,
        hasParameters: false,
        gy: 0,
        gx: 0,
        forward() {
          k.avgpool_forward(geom, N, input, output);
        },
        backward() {
          k.avgpool_backward(geom, R, this.gy, this.gx);
        },
        perSample() {},
        gradient() {},
      }],
    };
  }
}

/**
 * PyTorch's `nn.MaxPool1d`.
 *
 * @example
 * ```ts
 * import { MaxPool1d } from "jacobian-wasm";
 * const pool = new MaxPool1d(3, { stride: 2, padding: 1 });
 * ```
 */
export class MaxPool1d extends MaxPoolNd {
  /** PyTorch's class name, `"MaxPool1d"`. */
  readonly typeName = "MaxPool1d";
  /**
   * A 1-d max pooling.
   *
   * @param kernelSize kernel_size: one int, or a list of one.
   * @param options stride (default kernel_size), padding (0), dilation (1), ceilMode (false).
   */
  constructor(kernelSize: Size, options: MaxPoolOptions = {}) {
    super(1, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.MaxPool2d`.
 *
 * @example
 * ```ts
 * import { MaxPool2d } from "jacobian-wasm";
 * const pool = new MaxPool2d(2);
 * ```
 */
export class MaxPool2d extends MaxPoolNd {
  /** PyTorch's class name, `"MaxPool2d"`. */
  readonly typeName = "MaxPool2d";
  /**
   * A 2-d max pooling.
   *
   * @param kernelSize kernel_size: one int for both dims, or [kH, kW].
   * @param options stride (default kernel_size), padding (0), dilation (1), ceilMode (false).
   */
  constructor(kernelSize: Size, options: MaxPoolOptions = {}) {
    super(2, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.MaxPool3d`.
 *
 * @example
 * ```ts
 * import { MaxPool3d } from "jacobian-wasm";
 * const pool = new MaxPool3d(2, { ceilMode: true });
 * ```
 */
export class MaxPool3d extends MaxPoolNd {
  /** PyTorch's class name, `"MaxPool3d"`. */
  readonly typeName = "MaxPool3d";
  /**
   * A 3-d max pooling.
   *
   * @param kernelSize kernel_size: one int for all three dims, or [kD, kH, kW].
   * @param options stride (default kernel_size), padding (0), dilation (1), ceilMode (false).
   */
  constructor(kernelSize: Size, options: MaxPoolOptions = {}) {
    super(3, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.AvgPool1d` (no divisor_override in PyTorch's 1-d version; accepted here).
 *
 * @example
 * ```ts
 * import { AvgPool1d } from "jacobian-wasm";
 * const pool = new AvgPool1d(4);
 * ```
 */
export class AvgPool1d extends AvgPoolNd {
  /** PyTorch's class name, `"AvgPool1d"`. */
  readonly typeName = "AvgPool1d";
  /**
   * A 1-d average pooling.
   *
   * @param kernelSize kernel_size: one int, or a list of one.
   * @param options stride (default kernel_size), padding (0), ceilMode (false), countIncludePad (true), divisorOverride (none).
   */
  constructor(kernelSize: Size, options: AvgPoolOptions = {}) {
    super(1, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.AvgPool2d`.
 *
 * @example
 * ```ts
 * import { AvgPool2d } from "jacobian-wasm";
 * const pool = new AvgPool2d(2, { countIncludePad: false, padding: 1 });
 * ```
 */
export class AvgPool2d extends AvgPoolNd {
  /** PyTorch's class name, `"AvgPool2d"`. */
  readonly typeName = "AvgPool2d";
  /**
   * A 2-d average pooling.
   *
   * @param kernelSize kernel_size: one int for both dims, or [kH, kW].
   * @param options stride (default kernel_size), padding (0), ceilMode (false), countIncludePad (true), divisorOverride (none).
   */
  constructor(kernelSize: Size, options: AvgPoolOptions = {}) {
    super(2, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.AvgPool3d`.
 *
 * @example
 * ```ts
 * import { AvgPool3d } from "jacobian-wasm";
 * const pool = new AvgPool3d(4);
 * ```
 */
export class AvgPool3d extends AvgPoolNd {
  /** PyTorch's class name, `"AvgPool3d"`. */
  readonly typeName = "AvgPool3d";
  /**
   * A 3-d average pooling.
   *
   * @param kernelSize kernel_size: one int for all three dims, or [kD, kH, kW].
   * @param options stride (default kernel_size), padding (0), ceilMode (false), countIncludePad (true), divisorOverride (none).
   */
  constructor(kernelSize: Size, options: AvgPoolOptions = {}) {
    super(3, kernelSize, options);
  }
}
