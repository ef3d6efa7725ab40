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

/**
 * The common base of the elementwise activations (`ReLU`, `LeakyReLU`, `Sigmoid`, `Tanh`,
 * `ELU`, `GELU`, `SiLU`, `Softplus`): no parameters, the output has the input's shape, and
 * each pass is one WebAssembly call over the whole batch. `instanceof Elementwise` tells
 * an activation from other layers.
 *
 * @example
 * ```ts
 * import { Elementwise, Linear, Sequential, Tanh } from "jacobian-wasm";
 * const net = new Sequential(new Linear(3, 3), new Tanh());
 * net.layers.filter((layer) => layer instanceof Elementwise).length; // 1
 * new Tanh().outputShape([4, 5]); // [4, 5]
 * ```
 */
export abstract class Elementwise extends Module {
  /** @ignore The kernels' activation code. */
  protected abstract readonly kind: Kind;
  /** @ignore The activation's first parameter, as the kernels take it. */
  protected p1 = 0;
  /** @ignore The activation's second parameter, as the kernels take it. */
  protected p2 = 0;

  /** The input's shape: an activation works element by element. */
  outputShape(inShape: readonly number[]): number[] {
    return [...inShape];
  }

  /** @ignore */
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
  /** PyTorch's class name, `"ReLU"`. */
  readonly typeName = "ReLU";
  /** @ignore */
  protected readonly kind: Kind = Kind.ReLU;
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
  /** PyTorch's class name, `"LeakyReLU"`. */
  readonly typeName = "LeakyReLU";
  /** @ignore */
  protected readonly kind: Kind = Kind.LeakyReLU;
  /**
   * A leaky ReLU.
   *
   * @param negativeSlope negative_slope, the slope for x < 0 (default 0.01); finite.
   */
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
  /** PyTorch's class name, `"Sigmoid"`. */
  readonly typeName = "Sigmoid";
  /** @ignore */
  protected readonly kind: Kind = Kind.Sigmoid;
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
  /** PyTorch's class name, `"Tanh"`. */
  readonly typeName = "Tanh";
  /** @ignore */
  protected readonly kind: Kind = Kind.Tanh;
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
  /** PyTorch's class name, `"ELU"`. */
  readonly typeName = "ELU";
  /** @ignore */
  protected readonly kind: Kind = Kind.ELU;
  /**
   * An ELU.
   *
   * @param alpha alpha: the output tends to −alpha as x → −∞ (default 1.0); finite.
   */
  constructor(readonly alpha = 1.0) {
    super();
    finite("ELU", "alpha", alpha);
    this.p1 = alpha;
  }
}

/**
 * GELU's two forms, PyTorch's `approximate` argument.
 *
 * @example
 * ```ts
 * import { GELU } from "jacobian-wasm";
 * import type { GELUApproximation } from "jacobian-wasm";
 * const approximate: GELUApproximation = "tanh";
 * new GELU({ approximate }).approximate; // "tanh"
 * ```
 */
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
  /** PyTorch's class name, `"GELU"`. */
  readonly typeName = "GELU";
  /** @ignore */
  protected readonly kind: Kind;
  /** `"none"` (exact, with erf) or `"tanh"` (the tanh approximation), PyTorch's `approximate`. */
  readonly approximate: GELUApproximation;
  /**
   * A GELU, exact unless `approximate` is `"tanh"`.
   *
   * @param approximate `"none"` (default) or `"tanh"`, as a string or as PyTorch's keyword
   *   `{ approximate }`.
   */
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
  /** PyTorch's class name, `"SiLU"`. */
  readonly typeName = "SiLU";
  /** @ignore */
  protected readonly kind: Kind = Kind.SiLU;
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
  /** PyTorch's class name, `"Softplus"`. */
  readonly typeName = "Softplus";
  /** @ignore */
  protected readonly kind: Kind = Kind.Softplus;
  /**
   * A softplus.
   *
   * @param beta beta, the sharpness (default 1.0); finite and not 0.
   * @param threshold threshold: above it, β·x is returned as x (default 20.0); finite.
   */
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
