/**
 * AdaptiveAvgPool1d/2d/3d and AdaptiveMaxPool1d/2d/3d: pooling to a given output size, window
 * i of an output of size `out` over an input of size `size` being [⌊i·size/out⌋, ⌈(i+1)·size/out⌉)
 * as in PyTorch. No parameters: forward and input gradient only.
 */
import { ShapeError, UnsupportedError } from "../errors.ts";
import { numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";
import type { CompileContext, Compiled } from "./module.ts";
import { layerLabel, Module, toThreeDims } from "./module.ts";

/** An output size: one int for every spatial dim, or one per dim, null keeping the input's size. */
export type AdaptiveSize = number | readonly (number | null)[];

/** Options of `AdaptiveMaxPool1d/2d/3d`. */
export interface AdaptiveMaxPoolOptions {
  /** Only false: the layer returns one tensor. */
  returnIndices?: boolean;
}

abstract class AdaptivePoolNd extends Module {
  readonly outputSize: (number | null)[];

  constructor(readonly dims: 1 | 2 | 3, name: string, outputSize: AdaptiveSize) {
    super();
    const list = typeof outputSize === "number" ? new Array<number>(dims).fill(outputSize) : [...outputSize];
    if (list.length !== dims || list.some((v) => v !== null && (!Number.isInteger(v) || v < 1))) {
      throw new RangeError(
        `${name}: output_size must be a positive integer or a list of ${dims} positive integers or nulls, got ${JSON.stringify(outputSize)}`,
      );
    }
    this.outputSize = list;
  }

  /** Channels and spatial size of a per-sample input: (C, spatial...) or, as PyTorch allows, (spatial...). */
  private split(inShape: readonly number[], label: string): { channels: number; spatial: number[] } {
    if (inShape.length === this.dims + 1) return { channels: inShape[0], spatial: inShape.slice(1) };
    if (inShape.length === this.dims) return { channels: 1, spatial: [...inShape] };
    const layout = ["D", "H", "W"].slice(3 - this.dims).join(", ");
    throw new ShapeError(`${label}: expected input (N, C, ${layout}), got (N, ${inShape.join(", ")})`);
  }

  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const { spatial } = this.split(inShape, label);
    if (spatial.some((s) => s < 1)) throw new ShapeError(`${label}: empty spatial input (N, ${inShape.join(", ")})`);
    const out = spatial.map((s, i) => this.outputSize[i] ?? s);
    return [...inShape.slice(0, inShape.length - this.dims), ...out];
  }

  /** The POOL_GEOM block (docs/kernels.md): the adaptive kernels read channels and sizes only. */
  protected geometry(inShape: readonly number[], path: string): { block: number[]; outShape: number[]; width: number } {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const { channels, spatial } = this.split(inShape, label);
    const out = outShape.slice(outShape.length - this.dims);
    const block = [
      channels,
      ...toThreeDims(spatial, 1),
      ...toThreeDims(out, 1),
      1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0,
    ];
    return { block, outShape, width: numel(outShape) };
  }
}

/** The shared body of AdaptiveAvgPool1d/2d/3d. */
export abstract class AdaptiveAvgPoolNd extends AdaptivePoolNd {
  constructor(dims: 1 | 2 | 3, outputSize: AdaptiveSize) {
    super(dims, `AdaptiveAvgPool${dims}d`, outputSize);
  }

  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /**
   * The ReLU before this pooling and the pooling as one step (Sequential fuses them): the
   * pooling sums max(x, 0), and its backward pass masks by x, so the ReLU's output and its
   * gradient are never written (a ResNet's last ReLU before global average pooling).
   */
  compileAfterReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  private compileWith({ builder, path, input, inShape }: CompileContext, relu: boolean): Compiled {
    const { block, outShape, width } = this.geometry(inShape, path);
    const geom = builder.constantBlock(block);
    const { N, K, R } = builder;
    const output = builder.floats(N * width);
    const k = kernels();
    return {
      output,
      outShape,
      steps: [{
        label: layerLabel(path, this.typeName),
        outShape,
        aliasesInput: false,
        hasParameters: false,
        gy: 0,
        gx: 0,
        forward() {
          k.adaptive_avgpool_forward(geom, N, input, output, relu ? 1 : 0);
        },
        backward() {
          k.adaptive_avgpool_backward(geom, R, K, this.gy, this.gx, relu ? input : 0);
        },
        perSample() {},
        gradient() {},
      }],
    };
  }
}

/** The shared body of AdaptiveMaxPool1d/2d/3d. */
export abstract class AdaptiveMaxPoolNd extends AdaptivePoolNd {
  constructor(dims: 1 | 2 | 3, outputSize: AdaptiveSize, options: AdaptiveMaxPoolOptions = {}) {
    super(dims, `AdaptiveMaxPool${dims}d`, outputSize);
    if (options.returnIndices) {
      throw new UnsupportedError(`AdaptiveMaxPool${dims}d: return_indices=True is not supported (the layer must return one tensor)`);
    }
  }

  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const { block, outShape, width } = this.geometry(inShape, path);
    const geom = builder.constantBlock(block);
    const { N, K, R } = builder;
    const output = builder.floats(N * width);
    const argmax = builder.allocate(N * width * 4);
    const k = kernels();
    return {
      output,
      outShape,
      steps: [{
        label: layerLabel(path, this.typeName),
        outShape,
        aliasesInput: false,
        hasParameters: false,
        gy: 0,
        gx: 0,
        forward() {
          k.adaptive_maxpool_forward(geom, N, input, output, argmax);
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
 * PyTorch's `nn.AdaptiveAvgPool1d(output_size)` on (N, C, L).
 *
 * @example
 * ```ts
 * import { AdaptiveAvgPool1d } from "jacobian-wasm";
 * const pool = new AdaptiveAvgPool1d(4);
 * ```
 */
export class AdaptiveAvgPool1d extends AdaptiveAvgPoolNd {
  readonly typeName = "AdaptiveAvgPool1d";
  constructor(outputSize: AdaptiveSize) {
    super(1, outputSize);
  }
}

/**
 * PyTorch's `nn.AdaptiveAvgPool2d(output_size)` on (N, C, H, W); a null size keeps the input's.
 *
 * @example
 * ```ts
 * import { AdaptiveAvgPool2d } from "jacobian-wasm";
 * const pool = new AdaptiveAvgPool2d(1); // global average pooling
 * ```
 */
export class AdaptiveAvgPool2d extends AdaptiveAvgPoolNd {
  readonly typeName = "AdaptiveAvgPool2d";
  constructor(outputSize: AdaptiveSize) {
    super(2, outputSize);
  }
}

/**
 * PyTorch's `nn.AdaptiveAvgPool3d(output_size)` on (N, C, D, H, W).
 *
 * @example
 * ```ts
 * import { AdaptiveAvgPool3d } from "jacobian-wasm";
 * const pool = new AdaptiveAvgPool3d([null, 2, 2]);
 * ```
 */
export class AdaptiveAvgPool3d extends AdaptiveAvgPoolNd {
  readonly typeName = "AdaptiveAvgPool3d";
  constructor(outputSize: AdaptiveSize) {
    super(3, outputSize);
  }
}

/**
 * PyTorch's `nn.AdaptiveMaxPool1d(output_size)` on (N, C, L).
 *
 * @example
 * ```ts
 * import { AdaptiveMaxPool1d } from "jacobian-wasm";
 * const pool = new AdaptiveMaxPool1d(3);
 * ```
 */
export class AdaptiveMaxPool1d extends AdaptiveMaxPoolNd {
  readonly typeName = "AdaptiveMaxPool1d";
  constructor(outputSize: AdaptiveSize, options: AdaptiveMaxPoolOptions = {}) {
    super(1, outputSize, options);
  }
}

/**
 * PyTorch's `nn.AdaptiveMaxPool2d(output_size)` on (N, C, H, W).
 *
 * @example
 * ```ts
 * import { AdaptiveMaxPool2d } from "jacobian-wasm";
 * const pool = new AdaptiveMaxPool2d([3, null]);
 * ```
 */
export class AdaptiveMaxPool2d extends AdaptiveMaxPoolNd {
  readonly typeName = "AdaptiveMaxPool2d";
  constructor(outputSize: AdaptiveSize, options: AdaptiveMaxPoolOptions = {}) {
    super(2, outputSize, options);
  }
}

/**
 * PyTorch's `nn.AdaptiveMaxPool3d(output_size)` on (N, C, D, H, W).
 *
 * @example
 * ```ts
 * import { AdaptiveMaxPool3d } from "jacobian-wasm";
 * const pool = new AdaptiveMaxPool3d(2);
 * ```
 */
export class AdaptiveMaxPool3d extends AdaptiveMaxPoolNd {
  readonly typeName = "AdaptiveMaxPool3d";
  constructor(outputSize: AdaptiveSize, options: AdaptiveMaxPoolOptions = {}) {
    super(3, outputSize, options);
  }
}
