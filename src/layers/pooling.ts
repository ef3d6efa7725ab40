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

/** Options of `MaxPool1d/2d/3d`, as PyTorch's keyword arguments. */
export interface MaxPoolOptions {
  /** Default: kernel_size. */
  stride?: Size;
  padding?: Size;
  dilation?: Size;
  ceilMode?: boolean;
}

/** Options of `AvgPool1d/2d/3d`, as PyTorch's keyword arguments. */
export interface AvgPoolOptions {
  /** Default: kernel_size. */
  stride?: Size;
  padding?: Size;
  ceilMode?: boolean;
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

abstract class PoolNd extends Module {
  readonly kernelSize: number[];
  readonly stride: number[];
  readonly padding: number[];
  readonly dilation: number[];
  readonly ceilMode: boolean;

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

  /** Channels and spatial size of a per-sample input: (C, spatial...) or, as PyTorch allows, (spatial...). */
  protected split(inShape: readonly number[], label: string): { channels: number; spatial: number[] } {
    if (inShape.length === this.dims + 1) return { channels: inShape[0], spatial: inShape.slice(1) };
    if (inShape.length === this.dims) return { channels: 1, spatial: [...inShape] };
    const layout = ["D", "H", "W"].slice(3 - this.dims).join(", ");
    throw new ShapeError(`${label}: expected input (N, C, ${layout}), got (N, ${inShape.join(", ")})`);
  }

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

  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const { spatial } = this.split(inShape, label);
    return [...inShape.slice(0, inShape.length - this.dims), ...this.outSpatial(spatial, label)];
  }

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

/** The shared body of MaxPool1d/2d/3d. */
export abstract class MaxPoolNd extends PoolNd {
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

  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /**
   * ReLU then this pooling, as one step: the pooling then ReLU on the pooled values. The two
   * orders agree in value and gradient (ReLU is monotone, and a window whose maximum is not
   * positive passes no gradient either way), and the pooled tensor is the smaller one, so the
   * ReLU costs no pass of its own. `Sequential` compiles the pair this way.
   */
  compileAfterReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

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

/** The shared body of AvgPool1d/2d/3d. */
export abstract class AvgPoolNd extends PoolNd {
  readonly countIncludePad: boolean;
  readonly divisorOverride: number | null;

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
  readonly typeName = "MaxPool1d";
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
  readonly typeName = "MaxPool2d";
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
  readonly typeName = "MaxPool3d";
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
  readonly typeName = "AvgPool1d";
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
  readonly typeName = "AvgPool2d";
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
  readonly typeName = "AvgPool3d";
  constructor(kernelSize: Size, options: AvgPoolOptions = {}) {
    super(3, kernelSize, options);
  }
}
