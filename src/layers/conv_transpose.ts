/**
 * ConvTranspose1d, ConvTranspose2d, ConvTranspose3d: the adjoint of a convolution. With the
 * "swapped" conv (input and output roles exchanged: its input is this layer's output, its
 * weight is this layer's weight (C_in, C_out/G, k...) read as (C_out', C_in'/G, k...)):
 * forward = that conv's input gradient (GEMM + col2im), input gradient = that conv's forward
 * (im2col + GEMM). Per-sample rule (docs/design.md §2): per group, ∂ℓ/∂W[n] = X[n] · im2col(G[n])ᵀ,
 * the im2col of the output gradient against the cached input; ∂ℓ/∂b[n] = Σ_positions G[n].
 * One WASM call per layer per pass.
 */
import { ShapeError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";
import type { Size } from "./conv.ts";
import { uniformFanIn } from "./init.ts";
import type { CompileContext, Compiled, Named } from "./module.ts";
import { layerLabel, Module, ntuple, toThreeDims, weightBiasStep } from "./module.ts";

/**
 * Options of `ConvTranspose1d/2d/3d`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { ConvTranspose2d } from "jacobian-wasm";
 * import type { ConvTransposeOptions } from "jacobian-wasm";
 * const options: ConvTransposeOptions = { stride: 2, padding: 1, outputPadding: 1 };
 * new ConvTranspose2d(16, 8, 3, options).outputShape([16, 8, 8]); // [8, 16, 16]
 * ```
 */
export interface ConvTransposeOptions {
  /** The upsampling factor per spatial dim (default 1). */
  stride?: Size;
  /** Zero padding removed from both ends of each output dim: `dilation·(k−1) − padding` is padded around the input. */
  padding?: Size;
  /** Extra size added at the far end of each output dim; must be smaller than stride or dilation (as PyTorch). */
  outputPadding?: Size;
  /** The spacing between kernel taps, per spatial dim (default 1). */
  dilation?: Size;
  /** Channel groups: in_channels and out_channels must both be divisible by it (default 1). */
  groups?: number;
  /** Learn an additive per-channel bias (default true). */
  bias?: boolean;
  /** Only "zeros" is supported (as in PyTorch). */
  paddingMode?: "zeros";
}

/**
 * The shared body of ConvTranspose1d/2d/3d (PyTorch's `_ConvTransposeNd`): the
 * hyperparameters, as tuples of one entry per spatial dim, and the parameters.
 *
 * @example
 * ```ts
 * import { ConvTranspose2d, ConvTransposeNd } from "jacobian-wasm";
 * const up: ConvTransposeNd = new ConvTranspose2d(8, 4, 2, { stride: 2 });
 * up.weight.shape; // [8, 4, 2, 2]: (C_in, C_out/groups, kH, kW)
 * up.outputShape([8, 5, 5]); // [4, 10, 10]
 * ```
 */
export abstract class ConvTransposeNd extends Module {
  /** The weight, `(C_in, C_out/groups, *kernel_size)`, drawn from U(−1/√fan_in, 1/√fan_in) as PyTorch's default (fan_in = C_out/groups · kernel volume). */
  readonly weight: Tensor;
  /** The bias, (C_out), drawn from the same distribution; null with `{ bias: false }`. */
  readonly bias: Tensor | null;
  /** kernel_size, one entry per spatial dim. */
  readonly kernelSize: number[];
  /** stride, one entry per spatial dim. */
  readonly stride: number[];
  /** padding, one entry per spatial dim. */
  readonly padding: number[];
  /** output_padding, one entry per spatial dim. */
  readonly outputPadding: number[];
  /** dilation, one entry per spatial dim. */
  readonly dilation: number[];
  /** groups. */
  readonly groups: number;

  /**
   * A transposed convolution of `dims` spatial dims; the subclasses fix `dims`.
   *
   * @param dims The number of spatial dims: 1, 2 or 3.
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int for every spatial dim, or one per dim.
   * @param options stride, padding, outputPadding, dilation, groups, bias, paddingMode, as PyTorch's keywords.
   */
  constructor(
    readonly dims: 1 | 2 | 3,
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Size,
    options: ConvTransposeOptions = {},
  ) {
    super();
    const name = `ConvTranspose${dims}d`;
    for (const [what, v] of [["in_channels", inChannels], ["out_channels", outChannels]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name}: ${what} must be a positive integer, got ${v}`);
    }
    this.kernelSize = ntuple(kernelSize, dims, "kernel_size", name);
    this.stride = ntuple(options.stride ?? 1, dims, "stride", name);
    this.dilation = ntuple(options.dilation ?? 1, dims, "dilation", name);
    for (const [what, list] of [["kernel_size", this.kernelSize], ["stride", this.stride], ["dilation", this.dilation]] as const) {
      if (list.some((v) => v < 1)) throw new RangeError(`${name}: ${what} must be positive, got ${JSON.stringify(list)}`);
    }
    this.padding = ntuple(options.padding ?? 0, dims, "padding", name);
    this.outputPadding = ntuple(options.outputPadding ?? 0, dims, "output_padding", name);
    this.outputPadding.forEach((p, i) => {
      if (p >= this.stride[i] && p >= this.dilation[i]) {
        throw new RangeError(
          `${name}: output_padding must be smaller than either stride or dilation, got output_padding ${
            JSON.stringify(this.outputPadding)
          }, stride ${JSON.stringify(this.stride)}, dilation ${JSON.stringify(this.dilation)}`,
        );
      }
    });
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
      throw new RangeError(`${name}: only padding_mode="zeros" is supported (as in PyTorch), got "${options.paddingMode}"`);
    }
    // PyTorch's fan_in for a transposed conv: weight.size(1) · kvol = (C_out/G) · kvol.
    const fanIn = (outChannels / this.groups) * numel(this.kernelSize);
    const shape = [inChannels, outChannels / this.groups, ...this.kernelSize];
    this.weight = { shape, data: uniformFanIn(`${name}: weight`, shape, fanIn) };
    this.bias = (options.bias ?? true) ? { shape: [outChannels], data: uniformFanIn(`${name}: bias`, [outChannels], fanIn) } : null;
  }

  /** `weight`, then `bias` when there is one. */
  override ownParameters(): Named[] {
    return this.bias ? [["weight", this.weight], ["bias", this.bias]] : [["weight", this.weight]];
  }

  /** PyTorch's output size per dim: (in−1)·stride − 2·padding + dilation·(k−1) + output_padding + 1. */
  private outputSpatial(spatial: readonly number[], label: string): number[] {
    const out = spatial.map((n, i) =>
      (n - 1) * this.stride[i] - 2 * this.padding[i] + this.dilation[i] * (this.kernelSize[i] - 1) +
      this.outputPadding[i] + 1
    );
    if (out.some((n) => n < 1)) {
      throw new ShapeError(
        `${label}: input spatial size (${spatial.join(", ")}) gives output size (${out.join(", ")}), which is too small` +
          ` (kernel_size ${JSON.stringify(this.kernelSize)}, stride ${JSON.stringify(this.stride)}, padding ${
            JSON.stringify(this.padding)
          }, output_padding ${JSON.stringify(this.outputPadding)}, dilation ${JSON.stringify(this.dilation)})`,
      );
    }
    return out;
  }

  /**
   * `(C_in, *spatial)` → `(C_out, *out)`: per dim, out = (in − 1)·stride − 2·padding +
   * dilation·(k − 1) + output_padding + 1, as in PyTorch.
   */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const layout = ["D", "H", "W"].slice(3 - this.dims).join(", ");
    if (inShape.length !== this.dims + 1 || inShape[0] !== this.inChannels || inShape.some((d) => d < 1)) {
      throw new ShapeError(
        `${label}: expected input (N, ${this.inChannels}, ${layout}), got (N, ${inShape.join(", ")})`,
      );
    }
    return [this.outChannels, ...this.outputSpatial(inShape.slice(1), label)];
  }

  /** @ignore */
  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const inSpatial = inShape.slice(1);
    const outSpatial = outShape.slice(1);
    // The CONV_GEOM of the swapped conv: its input is this layer's output and vice versa.
    const geom = builder.constantBlock([
      this.groups,
      this.outChannels,
      this.inChannels,
      ...toThreeDims(outSpatial, 1),
      ...toThreeDims(inSpatial, 1),
      ...toThreeDims(this.kernelSize, 1),
      ...toThreeDims(this.stride, 1),
      ...toThreeDims(this.padding, 0),
      ...toThreeDims(this.dilation, 1),
    ]);
    const { N, K, R } = builder;
    const inWidth = numel(inShape);
    const outWidth = numel(outShape);
    const output = builder.floats(N * outWidth);
    const work = builder.scratch(this.outChannels * numel(this.kernelSize) * numel(inSpatial) * 4);
    const weight = builder.parameterPtr(this.weight);
    const bias = this.bias ? builder.parameterPtr(this.bias) : 0;
    const k = kernels();
    return {
      output,
      outShape,
      steps: [weightBiasStep(builder, label, outShape, this.weight, this.bias, {
        forward: () => k.conv_transpose_forward(geom, N, input, weight, bias, output, work.ptr),
        backward: (gy, gx) => k.conv_transpose_backward_input(geom, R, gy, weight, gx, work.ptr),
        perSample: (first, samples, gy, jw, jb, ldJ) =>
          k.conv_transpose_weight_per_sample(geom, samples * K, K, input + first * inWidth * 4, gy, jw, jb, ldJ, work.ptr),
        gradient: (gy, gw, gb) => k.conv_transpose_weight_grad(geom, R, K, input, gy, gw, gb, work.ptr, 1),
      })],
    };
  }
}

/**
 * PyTorch's `nn.ConvTranspose1d`: input (N, C_in, L), weight (C_in, C_out/groups, k), output
 * length (L−1)·stride − 2·padding + dilation·(k−1) + output_padding + 1.
 *
 * @example
 * ```ts
 * import { ConvTranspose1d, randn } from "jacobian-wasm";
 * const up = new ConvTranspose1d(4, 2, 4, { stride: 2, padding: 1 });
 * const y = up.forward(randn([3, 4, 10], 0)); // shape [3, 2, 20]
 * ```
 */
export class ConvTranspose1d extends ConvTransposeNd {
  /** PyTorch's class name, `"ConvTranspose1d"`. */
  readonly typeName = "ConvTranspose1d";
  /**
   * A 1-d transposed convolution, initialised from the generator `manualSeed` seeds.
   *
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int, or a list of one.
   * @param options stride, padding, outputPadding, dilation, groups, bias (PyTorch's defaults: 1, 0, 0, 1, 1, true).
   */
  constructor(inChannels: number, outChannels: number, kernelSize: Size, options: ConvTransposeOptions = {}) {
    super(1, inChannels, outChannels, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.ConvTranspose2d`: input (N, C_in, H, W), weight (C_in, C_out/groups, kH, kW).
 *
 * @example
 * ```ts
 * import { ConvTranspose2d } from "jacobian-wasm";
 * const up = new ConvTranspose2d(8, 4, 3, { stride: 2, padding: 1, outputPadding: 1 });
 * up.outputShape([8, 7, 7]); // [4, 14, 14]
 * ```
 */
export class ConvTranspose2d extends ConvTransposeNd {
  /** PyTorch's class name, `"ConvTranspose2d"`. */
  readonly typeName = "ConvTranspose2d";
  /**
   * A 2-d transposed convolution, initialised from the generator `manualSeed` seeds.
   *
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int for both dims, or [kH, kW].
   * @param options stride, padding, outputPadding, dilation, groups, bias (PyTorch's defaults: 1, 0, 0, 1, 1, true).
   */
  constructor(inChannels: number, outChannels: number, kernelSize: Size, options: ConvTransposeOptions = {}) {
    super(2, inChannels, outChannels, kernelSize, options);
  }
}

/**
 * PyTorch's `nn.ConvTranspose3d`: input (N, C_in, D, H, W), weight (C_in, C_out/groups, kD, kH, kW).
 *
 * @example
 * ```ts
 * import { ConvTranspose3d } from "jacobian-wasm";
 * const up = new ConvTranspose3d(2, 2, 2, { stride: 2, groups: 2, bias: false });
 * up.weight.shape; // [2, 1, 2, 2, 2]
 * ```
 */
export class ConvTranspose3d extends ConvTransposeNd {
  /** PyTorch's class name, `"ConvTranspose3d"`. */
  readonly typeName = "ConvTranspose3d";
  /**
   * A 3-d transposed convolution, initialised from the generator `manualSeed` seeds.
   *
   * @param inChannels in_channels, C_in.
   * @param outChannels out_channels, C_out.
   * @param kernelSize kernel_size: one int for all three dims, or [kD, kH, kW].
   * @param options stride, padding, outputPadding, dilation, groups, bias (PyTorch's defaults: 1, 0, 0, 1, 1, true).
   */
  constructor(inChannels: number, outChannels: number, kernelSize: Size, options: ConvTransposeOptions = {}) {
    super(3, inChannels, outChannels, kernelSize, options);
  }
}
