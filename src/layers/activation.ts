/**
 * Elementwise activations. No parameters: forward and the input gradient only, each one
 * WASM call over the whole batch. The kind codes are the kernels' (docs/kernels.md).
 */
import type { CompileContext, Compiled } from "./module.ts";
import { layerLabel, Module } from "./module.ts";
import { numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";

const Kind = {
  ReLU: 0,
  LeakyReLU: 1,
  Sigmoid: 2,
  Tanh: 3,
  ELU: 4,
  GELU: 5,
  GELUTanh: 6,
  SiLU: 7,
  Softplus: 8,
} as const;
type Kind = typeof Kind[keyof typeof Kind];

/** The common body of every elementwise activation: shape in = shape out. */
abstract class Elementwise extends Module {
  protected abstract readonly kind: Kind;
  protected p1 = 0;
  protected p2 = 0;

  outputShape(inShape: readonly number[]): number[] {
    return [...inShape];
  }

  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const { N, K, R } = builder;
    const width = numel(inShape);
    const output = builder.floats(N * width);
    const { kind, p1, p2 } = this;
    const k = kernels();
    const outShape = [...inShape];
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
          k.act_forward(kind, N * width, input, output, p1, p2);
        },
        backward() {
          k.act_backward(kind, R, K, width, input, output, this.gy, this.gx, p1, p2);
        },
        perSample() {},
        gradient() {},
      }],
    };
  }
}

/**
 * max(0, x), PyTorch's `nn.ReLU`.
 *
 * @example
 * ```ts
 * import { ReLU } from "jacobian-wasm";
 * const relu = new ReLU();
 * ```
 */
export class ReLU extends Elementwise {
  readonly typeName = "ReLU";
  protected readonly kind = Kind.ReLU;
}

/**
 * x for x > 0, negative_slope · x otherwise; PyTorch's `nn.LeakyReLU(negative_slope=0.01)`.
 *
 * @example
 * ```ts
 * import { LeakyReLU } from "jacobian-wasm";
 * const act = new LeakyReLU(0.2);
 * ```
 */
export class LeakyReLU extends Elementwise {
  readonly typeName = "LeakyReLU";
  protected readonly kind = Kind.LeakyReLU;
  constructor(readonly negativeSlope = 0.01) {
    super();
    finite("LeakyReLU", "negative_slope", negativeSlope);
    this.p1 = negativeSlope;
  }
}

/**
 * 1 / (1 + e^(-x)), PyTorch's `nn.Sigmoid`.
 *
 * @example
 * ```ts
 * import { Sigmoid } from "jacobian-wasm";
 * const act = new Sigmoid();
 * ```
 */
export class Sigmoid extends Elementwise {
  readonly typeName = "Sigmoid";
  protected readonly kind = Kind.Sigmoid;
}

/**
 * PyTorch's `nn.Tanh`.
 *
 * @example
 * ```ts
 * import { Tanh } from "jacobian-wasm";
 * const act = new Tanh();
 * ```
 */
export class Tanh extends Elementwise {
  readonly typeName = "Tanh";
  protected readonly kind = Kind.Tanh;
}

/**
 * x for x > 0, alpha · (e^x − 1) otherwise; PyTorch's `nn.ELU(alpha=1.0)`.
 *
 * @example
 * ```ts
 * import { ELU } from "jacobian-wasm";
 * const act = new ELU(0.5);
 * ```
 */
export class ELU extends Elementwise {
  readonly typeName = "ELU";
  protected readonly kind = Kind.ELU;
  constructor(readonly alpha = 1.0) {
    super();
    finite("ELU", "alpha", alpha);
    this.p1 = alpha;
  }
}

/** GELU's two forms, PyTorch's `approximate` argument. */
export type GELUApproximation = "none" | "tanh";

/**
 * x · Φ(x) (exact, with erf) or its tanh approximation; PyTorch's `nn.GELU(approximate="none")`.
 *
 * @example
 * ```ts
 * import { GELU } from "jacobian-wasm";
 * const exact = new GELU();
 * const fast = new GELU("tanh");
 * ```
 */
export class GELU extends Elementwise {
  readonly typeName = "GELU";
  protected readonly kind: Kind;
  readonly approximate: GELUApproximation;
  constructor(approximate: GELUApproximation | { approximate?: GELUApproximation } = "none") {
    super();
    const value = typeof approximate === "string" ? approximate : approximate.approximate ?? "none";
    if (value !== "none" && value !== "tanh") {
      throw new RangeError(`GELU: approximate must be "none" or "tanh", got ${JSON.stringify(value)}`);
    }
    this.approximate = value;
    this.kind = value === "none" ? Kind.GELU : Kind.GELUTanh;
  }
}

/**
 * x · sigmoid(x), PyTorch's `nn.SiLU`.
 *
 * @example
 * ```ts
 * import { SiLU } from "jacobian-wasm";
 * const act = new SiLU();
 * ```
 */
export class SiLU extends Elementwise {
  readonly typeName = "SiLU";
  protected readonly kind = Kind.SiLU;
}

/**
 * log(1 + e^(βx)) / β, linear above `threshold`; PyTorch's `nn.Softplus(beta=1.0, threshold=20.0)`.
 *
 * @example
 * ```ts
 * import { Softplus } from "jacobian-wasm";
 * const act = new Softplus(2, 10);
 * ```
 */
export class Softplus extends Elementwise {
  readonly typeName = "Softplus";
  protected readonly kind = Kind.Softplus;
  constructor(readonly beta = 1.0, readonly threshold = 20.0) {
    super();
    finite("Softplus", "beta", beta);
    finite("Softplus", "threshold", threshold);
    if (beta === 0) throw new RangeError("Softplus: beta must not be 0");
    this.p1 = beta;
    this.p2 = threshold;
  }
}

function finite(layer: string, what: string, value: number): void {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(`${layer}: ${what} must be a finite number, got ${value}`);
  }
}
