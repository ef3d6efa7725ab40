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

/**
 * An output size: one int for every spatial dim, or one per dim, null keeping the input's size.
 *
 * @example
 * ```ts
 * import { AdaptiveAvgPool2d } from "jacobian-wasm";
 * import type { AdaptiveSize } from "jacobian-wasm";
 * const size: AdaptiveSize = [1, null]; // pool every column to one row, keep the width
 * new AdaptiveAvgPool2d(size).outputShape([3, 10, 7]); // [3, 1, 7]
 * ```
 */
export type AdaptiveSize = number | readonly (number | null)[];

/**
 * Options of `AdaptiveMaxPool1d/2d/3d`.
 *
 * @example
 * ```ts
 * import { AdaptiveMaxPool2d } from "jacobian-wasm";
 * import type { AdaptiveMaxPoolOptions } from "jacobian-wasm";
 * const options: AdaptiveMaxPoolOptions = { returnIndices: false }; // true is refused
 * const pool = new AdaptiveMaxPool2d(1, options);
 * ```
 */
export interface AdaptiveMaxPoolOptions {
  /** Only false: the layer returns one tensor. */
  returnIndices?: boolean;
}

/**
 * The shared body of the adaptive poolings: the output size, one entry per spatial dim
 * (null keeps the input's size). Inputs are `(C, *spatial)` per sample, or `(*spatial)`.
 *
 * @example
 * ```ts
 * import { AdaptiveAvgPool2d, AdaptivePoolNd } from "jacobian-wasm";
 * const pool: AdaptivePoolNd = new AdaptiveAvgPool2d([1, null]);
 * pool.outputSize; // [1, null]
 * pool.outputShape([8, 5, 7]); // [8, 1, 7]
 * ```
 */
export abstract class AdaptivePoolNd extends Module {
  /** output_size, one entry per spatial dim; null keeps the input's size in that dim. */
  readonly outputSize: (number | null)[];

  /**
   * An adaptive pooling of `dims` spatial dims; the subclasses fix `dims` and `name`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param name The layer's name in messages (`"AdaptiveAvgPool2d"`).
   * @param outputSize output_size: one int for every spatial dim, or one int or null per dim.
   */
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

  /** `(C, *spatial)` → `(C, *output_size)`, a null entry keeping the input's size. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const { spatial } = this.split(inShape, label);
    if (spatial.some((s) => s < 1)) throw new ShapeError(`${label}: empty spatial input (N, ${inShape.join(", ")})`);
    const out = spatial.map((s, i) => this.outputSize[i] ?? s);
    return [...inShape.slice(0, inShape.length - this.dims), ...out];
  }

  /** @ignore The POOL_GEOM block (docs/kernels.md): the adaptive kernels read channels and sizes only. */
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

/**
 * The shared body of AdaptiveAvgPool1d/2d/3d: each output is the mean of its window
 * [⌊i·in/out⌋, ⌈(i+1)·in/out⌉), as in PyTorch.
 *
 * @example
 * ```ts
 * import { AdaptiveAvgPool1d, AdaptiveAvgPoolNd, tensor } from "jacobian-wasm";
 * const pool: AdaptiveAvgPoolNd = new AdaptiveAvgPool1d(2);
 * pool.forward(tensor([1, 2, 3, 4, 5], [1, 1, 5])).data; // [2, 4]: windows [0, 3) and [2, 5)
 * ```
 */
export abstract class AdaptiveAvgPoolNd extends AdaptivePoolNd {
  /**
   * An adaptive average pooling of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param outputSize output_size: one int for every spatial dim, or one int or null per dim.
   */
  constructor(dims: 1 | 2 | 3, outputSize: AdaptiveSize) {
    super(dims, `AdaptiveAvgPool${dims}d`, outputSize);
  }

  /** @ignore */
  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /**
   * The ReLU before this pooling and the pooling as one step (Sequential fuses them): the
   * pooling sums max(x, 0), and its backward pass masks by x, so the ReLU's output and its
   * gradient are never written (a ResNet's last ReLU before global average pooling).
   *
   * @ignore
   */
  compileAfterReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  /** `compile`, with or without the ReLU before the pooling. */
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

/**
 * The shared body of AdaptiveMaxPool1d/2d/3d: each output is the maximum of its window
 * [⌊i·in/out⌋, ⌈(i+1)·in/out⌉), as in PyTorch; its gradient goes to the maximum's position.
 *
 * @example
 * ```ts
 * import { AdaptiveMaxPool1d, AdaptiveMaxPoolNd, tensor } from "jacobian-wasm";
 * const pool: AdaptiveMaxPoolNd = new AdaptiveMaxPool1d(2);
 * pool.forward(tensor([1, 5, 3, 4, 2], [1, 1, 5])).data; // [5, 4]: windows [0, 3) and [2, 5)
 * ```
 */
export abstract class AdaptiveMaxPoolNd extends AdaptivePoolNd {
  /**
   * An adaptive max pooling of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param outputSize output_size: one int for every spatial dim, or one int or null per dim.
   * @param options returnIndices: only false (the default).
   */
  constructor(dims: 1 | 2 | 3, outputSize: AdaptiveSize, options: AdaptiveMaxPoolOptions = {}) {
    super(dims, `AdaptiveMaxPool${dims}d`, outputSize);
    if (options.returnIndices) {
      throw new UnsupportedError(`AdaptiveMaxPool${dims}d: return_indices=True is not supported (the layer must return one tensor)`);
    }
  }

  /** @ignore */
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
  /** PyTorch's class name, `"AdaptiveAvgPool1d"`. */
  readonly typeName = "AdaptiveAvgPool1d";
  /**
   * A 1-d adaptive average pooling.
   *
   * @param outputSize output_size: the output length L_out (or [L_out], or [null] to keep L).
   */
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
  /** PyTorch's class name, `"AdaptiveAvgPool2d"`. */
  readonly typeName = "AdaptiveAvgPool2d";
  /**
   * A 2-d adaptive average pooling.
   *
   * @param outputSize output_size: one int for both dims, or [H_out, W_out], each int or null (keep the input's).
   */
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
  /** PyTorch's class name, `"AdaptiveAvgPool3d"`. */
  readonly typeName = "AdaptiveAvgPool3d";
  /**
   * A 3-d adaptive average pooling.
   *
   * @param outputSize output_size: one int for all three dims, or [D_out, H_out, W_out], each int or null (keep the input's).
   */
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
  /** PyTorch's class name, `"AdaptiveMaxPool1d"`. */
  readonly typeName = "AdaptiveMaxPool1d";
  /**
   * A 1-d adaptive max pooling.
   *
   * @param outputSize output_size: the output length L_out (or [L_out], or [null] to keep L).
   * @param options returnIndices: only false (the default).
   */
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
  /** PyTorch's class name, `"AdaptiveMaxPool2d"`. */
  readonly typeName = "AdaptiveMaxPool2d";
  /**
   * A 2-d adaptive max pooling.
   *
   * @param outputSize output_size: one int for both dims, or [H_out, W_out], each int or null (keep the input's).
   * @param options returnIndices: only false (the default).
   */
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
  /** PyTorch's class name, `"AdaptiveMaxPool3d"`. */
  readonly typeName = "AdaptiveMaxPool3d";
  /**
   * A 3-d adaptive max pooling.
   *
   * @param outputSize output_size: one int for all three dims, or [D_out, H_out, W_out], each int or null (keep the input's).
   * @param options returnIndices: only false (the default).
   */
  constructor(outputSize: AdaptiveSize, options: AdaptiveMaxPoolOptions = {}) {
    super(3, outputSize, options);
  }
}
