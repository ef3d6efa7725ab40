/**
 * Linear: y = x Wᵀ + b on the last dimension of (N, *, in_features).
 * Per-sample rule: ∂ℓ/∂W = Σ_s g[n, s]ᵀ ⊗ x[n, s] (an outer product when S = 1), ∂ℓ/∂b = Σ_s g[n, s].
 */
import { ShapeError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { formatShape, numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";
import { uniformFanIn } from "./init.ts";
import type { CompileContext, Compiled, Named } from "./module.ts";
import { layerLabel, Module, weightBiasStep } from "./module.ts";

/**
 * Options of `Linear`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { Linear } from "jacobian-wasm";
 * import type { LinearOptions } from "jacobian-wasm";
 * const options: LinearOptions = { bias: false };
 * new Linear(4, 2, options).parameters().map(([name]) => name); // ["weight"]
 * ```
 */
export interface LinearOptions {
  /** Learn an additive bias (default true). */
  bias?: boolean;
}

/**
 * A fully connected layer, PyTorch's `nn.Linear`: weight (out, in), bias (out).
 *
 * @example
 * ```ts
 * import { Linear } from "jacobian-wasm";
 * const layer = new Linear(784, 10); // weight (10, 784), bias (10)
 * ```
 */
export class Linear extends Module {
  /** PyTorch's class name, `"Linear"`. */
  readonly typeName = "Linear";
  /** The weight, shape (out_features, in_features), drawn from U(−1/√in_features, 1/√in_features) as PyTorch's default. */
  readonly weight: Tensor;
  /** The bias, shape (out_features), drawn from the same distribution; null with `{ bias: false }`. */
  readonly bias: Tensor | null;

  /**
   * A linear layer, initialised from the generator `manualSeed` seeds.
   *
   * @param inFeatures in_features: the size of each input sample's last dimension.
   * @param outFeatures out_features: the size of each output sample's last dimension.
   * @param options `bias` (default true).
   */
  constructor(readonly inFeatures: number, readonly outFeatures: number, options: LinearOptions = {}) {
    super();
    for (const [what, v] of [["in_features", inFeatures], ["out_features", outFeatures]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`Linear: ${what} must be a positive integer, got ${v}`);
    }
    this.weight = { shape: [outFeatures, inFeatures], data: uniformFanIn("Linear: weight", [outFeatures, inFeatures], inFeatures) };
    this.bias = (options.bias ?? true) ? { shape: [outFeatures], data: uniformFanIn("Linear: bias", [outFeatures], inFeatures) } : null;
  }

  /** `weight`, then `bias` when there is one. */
  override ownParameters(): Named[] {
    return this.bias ? [["weight", this.weight], ["bias", this.bias]] : [["weight", this.weight]];
  }

  /** `(*, in_features)` → `(*, out_features)`: any leading dims pass through. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    if (inShape.length === 0 || inShape[inShape.length - 1] !== this.inFeatures) {
      throw new ShapeError(
        `${layerLabel(path, this.typeName)}: expected input (N, *, ${this.inFeatures}), got (N${
          inShape.map((d) => `, ${d}`).join("")
        }) — the last dimension must be in_features = ${this.inFeatures}`,
      );
    }
    return [...inShape.slice(0, -1), this.outFeatures];
  }

  /** @ignore */
  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const { N, K, R } = builder;
    const inF = this.inFeatures;
    const outF = this.outFeatures;
    const S = numel(inShape) / inF; // positions per sample: the extra dims of (N, *, in)
    const output = builder.floats(N * S * outF);
    const weight = builder.parameterPtr(this.weight);
    const bias = this.bias ? builder.parameterPtr(this.bias) : 0;
    const k = kernels();
    return {
      output,
      outShape,
      steps: [weightBiasStep(builder, label, outShape, this.weight, this.bias, {
        forward: () => k.linear_forward(N * S, inF, outF, input, weight, bias, output),
        backward: (gy, gx) => k.linear_backward_input(R * S, inF, outF, gy, weight, gx),
        perSample: (first, samples, gy, jw, jb, ldJ) =>
          k.linear_weight_per_sample(samples * K, K, S, inF, outF, input + first * S * inF * 4, gy, jw, jb, ldJ),
        gradient: (gy, gw, gb) => k.linear_weight_grad(R, K, S, inF, outF, input, gy, gw, gb, 1),
        // ‖Σ_s g_s x_sᵀ‖² = Σ_{s,t} (g_s·g_t)(x_s·x_t): S²(in + out) products against S·in·out
        // to form the gradient (for S = 1, ‖g‖²‖x‖²).
        squaredNorms: K === 1
          ? { preferred: S * (inF + outF) < inF * outF, positions: S, run: (gy, wOut, bOut, stride) => k.linear_sq_norms(R, S, inF, outF, input, gy, wOut, bOut, stride) }
          : undefined,
      })],
    };
  }
}

