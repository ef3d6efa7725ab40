/**
 * What every layer is: a `Module` with named parameters and children, which compiles, for
 * one per-sample input shape, into `Step`s with fixed pointers into the WASM memory.
 *
 * A step exposes the few primitives every quantity is built from (BackPACK's seam):
 * forward; gradient w.r.t. its input; the per-sample contraction of its cached input with
 * its output gradient; and the ordinary summed gradient (for the naive reference path).
 * Quantities (per-sample gradients, Jacobians, ...) live in src/jacobian.ts, not here.
 */
import type { Tensor } from "../tensor.ts";
import { formatShape, numel } from "../tensor.ts";
import { ShapeError } from "../errors.ts";
import type { PlanBuilder } from "../plan.ts";
import { runOutput } from "../forward.ts";

/** One layer's compiled form for a given (input shape, batch). Pointers are fixed at build. */
export interface Step {
  /** `"2.1 (Conv2d)"`: where the step comes from, for messages. */
  readonly label: string;
  /** Per-sample output shape. */
  readonly outShape: readonly number[];
  /** Reads the input activation, writes the output activation (N rows). */
  forward(): void;
  /** Gradient w.r.t. the input (`gx`) from the gradient w.r.t. the output (`gy`), R rows. */
  backward(): void;
  /**
   * Writes the gradients w.r.t. this step's parameters of the backward rows of `samples`
   * samples from `firstSample` (K rows each) into J, whose row stride is D floats and whose
   * first row (at byte offset `J`) is the first of those rows.
   */
  perSample(firstSample: number, samples: number, J: number): void;
  /** Adds the gradient w.r.t. this step's parameters, summed over rows, into the gradient vector. */
  gradient(): void;
  /** True when output = input in memory (Flatten, Identity): forward/backward move nothing. */
  readonly aliasesInput: boolean;
  /** Whether the step has parameters (backward can stop before the first such step). */
  readonly hasParameters: boolean;
  /** True for blocks (Residual, Parallel) whose own parameters need their inner backward pass. */
  readonly innerBackward?: boolean;
  /** Blocks place their branches' gradient buffers once their own gy and gx are known. */
  placeGradients?(builder: PlanBuilder): void;
  /** Max pooling: its POOL_GEOM block and the argmax of its forward pass (N × C × out volume i32). */
  readonly maxPool?: { readonly geom: number; readonly argmax: number };
  /**
   * Offered by convolutions: take the per-sample weight gradients from the output gradient
   * and argmax of the max pooling `pool` right after this step (one position per window)
   * instead of from this step's own gy, which the plan then leaves unwritten (it skips the
   * pooling's backward pass). Returns false where the layer cannot (dilation).
   */
  perSampleThroughMaxPool?(builder: PlanBuilder, pool: Step): boolean;
  /** Offered by layers with a Gram identity for their per-sample gradient norms (Linear). */
  readonly squaredNorms?: SquaredNorms;
  /**
   * Where the step's output (N samples of `outShape`) lives, when the step ends a layer: set by
   * Sequential and the plan, read to name the layer whose forward pass overflowed float32.
   */
  output?: number;
  /** Set by the plan once every step's shape is known: where gy and gx live. */
  gy: number;
  gx: number;
}

/** The buffers a step reads and writes, handed to `Module.compile`. */
export interface CompileContext {
  readonly builder: PlanBuilder;
  /** Dotted path of the module (`"2.1"`), "" for the root. */
  readonly path: string;
  /** Pointer to the input activation (N × numel(inShape) floats). */
  readonly input: number;
  /** Per-sample input shape. */
  readonly inShape: readonly number[];
}

/** The result of compiling a module: its steps and where its output lives. */
export interface Compiled {
  readonly steps: Step[];
  readonly output: number;
  readonly outShape: readonly number[];
}

/**
 * A parameter or buffer slot of a module: name and tensor.
 *
 * @example
 * ```ts
 * import { Linear } from "jacobian-wasm";
 * import type { Named } from "jacobian-wasm";
 * const [name, weight]: Named = new Linear(3, 2).parameters()[0];
 * name; // "weight"
 * weight.shape; // [2, 3]
 * ```
 */
export type Named = [string, Tensor];

/**
 * The base of every layer, PyTorch's `nn.Module`: named parameters and buffers, children,
 * `forward`, `parameters()`, `stateDict()` / `loadStateDict()`, `train()` / `eval()`.
 * Shapes are per sample: `outputShape([C, H, W])` is the output of one sample, the batch
 * dimension N is never part of it. A subclass lists its own parameters (and buffers) and
 * children, checks and computes its output shape, and compiles to the library's internal
 * steps; layers of your own are made with `quasiLinear`, not by subclassing `Module`.
 *
 * @example
 * ```ts
 * import { Module, Sequential, Linear, ReLU } from "jacobian-wasm";
 * const net: Module = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 2));
 * net.outputShape([4]); // [2]: one sample of 4 features gives 2 outputs
 * net.parameters().length; // 4 tensors: 0.weight, 0.bias, 2.weight, 2.bias
 * net instanceof Module; // true, as is every layer
 * ```
 */
export abstract class Module {
  /** PyTorch's class name: `"Conv2d"`. */
  abstract readonly typeName: string;
  /** Training mode (PyTorch's `module.training`); modules start in eval mode here. */
  training = false;

  /** This module's own parameters, in PyTorch's registration order ("weight", "bias"). */
  ownParameters(): Named[] {
    return [];
  }

  /** This module's own buffers (running statistics), state-dict only. */
  ownBuffers(): Named[] {
    return [];
  }

  /** Child modules with their names ("0", "1", ...). */
  children(): [string, Module][] {
    return [];
  }

  /**
   * The per-sample output shape for a per-sample input shape (no batch dimension): a
   * `ShapeError` naming the layer (by `path`, its dotted position in the network) if the
   * input does not fit.
   */
  abstract outputShape(inShape: readonly number[], path?: string): number[];

  /**
   * Compiles this module for one per-sample input shape into steps with fixed buffers in the
   * WebAssembly memory: the library's internal machinery, called by the plans.
   *
   * @ignore
   */
  abstract compile(context: CompileContext): Compiled;

  /**
   * Runs the network on a batch `x` of shape (N, ...per-sample shape).
   *
   * @example
   * ```ts
   * import { Linear, randn } from "jacobian-wasm";
   * const y = new Linear(3, 2).forward(randn([5, 3], 1)); // shape [5, 2]
   * ```
   */
  forward(x: Tensor): Tensor {
    return runOutput(this, x);
  }

  /**
   * Parameters in PyTorch's `named_parameters()` order, with state-dict names.
   *
   * @example
   * ```ts
   * import { Sequential, Linear, ReLU } from "jacobian-wasm";
   * const net = new Sequential(new Linear(4, 3), new ReLU(), new Linear(3, 1));
   * net.parameters().map(([name]) => name); // ["0.weight", "0.bias", "2.weight", "2.bias"]
   * ```
   */
  parameters(): Named[] {
    const out: Named[] = [];
    const seen = new Set<Tensor>();
    this.visit("", (prefix, module) => {
      for (const [name, t] of module.ownParameters()) {
        if (seen.has(t)) continue; // a shared parameter is listed once, as in PyTorch
        seen.add(t);
        out.push([prefix + name, t]);
      }
    });
    return out;
  }

  /** The same as `parameters()`, PyTorch's name for it. */
  namedParameters(): Named[] {
    return this.parameters();
  }

  /**
   * Parameters and buffers keyed as PyTorch's `state_dict()` ("0.weight", "2.1.bias").
   *
   * @example
   * ```ts
   * import { Linear } from "jacobian-wasm";
   * Object.keys(new Linear(2, 1).stateDict()); // ["weight", "bias"]
   * ```
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    this.visit("", (prefix, module) => {
      for (const [name, t] of module.ownParameters()) out[prefix + name] = t;
      for (const [name, t] of module.ownBuffers()) out[prefix + name] = t;
    });
    return out;
  }

  /**
   * Copies values into this module's parameters and buffers, by state-dict name. Every key
   * must be present with the right shape (and no key unknown) unless `strict` is false.
   * Nothing is changed unless everything fits.
   *
   * @example
   * ```ts
   * import { Linear, tensor } from "jacobian-wasm";
   * const layer = new Linear(2, 1);
   * layer.loadStateDict({ weight: tensor([1, 2], [1, 2]), bias: tensor([0], [1]) });
   * ```
   */
  loadStateDict(record: Record<string, Tensor>, options: { strict?: boolean } = {}): void {
    const strict = options.strict ?? true;
    const own = this.stateDict();
    const problems: string[] = [];
    for (const [key, target] of Object.entries(own)) {
      const given = record[key];
      if (given === undefined) {
        if (strict) problems.push(`missing "${key}" ${formatShape(target.shape)}`);
        continue;
      }
      if (given.data.length !== target.data.length || !sameShape(given.shape, target.shape)) {
        problems.push(
          `"${key}" has shape ${formatShape(given.shape)}, the model expects ${formatShape(target.shape)}`,
        );
      }
    }
    if (strict) {
      for (const key of Object.keys(record)) {
        if (!(key in own)) problems.push(`unexpected "${key}"`);
      }
    }
    if (problems.length > 0) {
      throw new ShapeError(`loadStateDict: ${problems.join("; ")}`);
    }
    for (const [key, target] of Object.entries(own)) {
      const given = record[key];
      if (given !== undefined) target.data.set(given.data);
    }
  }

  /** Training mode on (or off), recursively, as PyTorch's `train()`. */
  train(mode = true): this {
    this.visit("", (_prefix, module) => {
      module.training = mode;
    });
    return this;
  }

  /** Eval mode, recursively, as PyTorch's `eval()`. */
  eval(): this {
    return this.train(false);
  }

  /** Walks this module and its descendants depth-first, parents first. */
  visit(prefix: string, fn: (prefix: string, module: Module) => void): void {
    fn(prefix, this);
    for (const [name, child] of this.children()) child.visit(`${prefix}${name}.`, fn);
  }
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** `"2.1 (Conv2d)"`, or just `"Conv2d"` for a root module. */
export function layerLabel(path: string, typeName: string): string {
  return path === "" ? typeName : `${path} (${typeName})`;
}

/** Expands an int or a list into a tuple of `n` positive-or-zero integers, as PyTorch's `_ntuple`. */
export function ntuple(value: number | readonly number[], n: number, what: string, layer: string): number[] {
  const list = typeof value === "number" ? new Array<number>(n).fill(value) : [...value];
  if (list.length === 1 && n > 1) return new Array<number>(n).fill(list[0]);
  if (list.length !== n || list.some((v) => !Number.isInteger(v) || v < 0)) {
    throw new RangeError(
      `${layer}: ${what} must be a non-negative integer or a list of ${n}, got ${JSON.stringify(value)}`,
    );
  }
  return list;
}

/** The unused leading dims padded with `fill`, so 1-d and 2-d geometry reads as 3-d. */
export function toThreeDims(values: readonly number[], fill: number): number[] {
  return [...new Array<number>(3 - values.length).fill(fill), ...values];
}

/**
 * A step with no parameters and no work (Flatten, Identity, Dropout in eval mode): its
 * output is its input, reinterpreted.
 */
export function aliasStep(label: string, outShape: readonly number[]): Step {
  return {
    label,
    outShape,
    aliasesInput: true,
    hasParameters: false,
    gy: 0,
    gx: 0,
    forward() {},
    backward() {},
    perSample() {},
    gradient() {},
  };
}

/**
 * The kernels of a layer whose parameters are a weight and an optional bias. Pointers are
 * byte offsets; `jb`/`gb` are 0 where the layer has no bias.
 */
export interface WeightBiasKernels {
  forward(): void;
  /** The input gradient gx from the output gradient gy, all R rows. */
  backward(gy: number, gx: number): void;
  /**
   * Per-sample gradients of samples [first, first + samples): `gy` points at the first of
   * their K·samples rows; weight and bias columns of the first J row at `jw`, `jb`.
   */
  perSample(first: number, samples: number, gy: number, jw: number, jb: number, ldJ: number): void;
  /** The gradient summed over all rows, added into `gw`, `gb`. */
  gradient(gy: number, gw: number, gb: number): void;
  /**
   * Each row's squared gradient norms without forming the gradients (the Gram or "ghost
   * norm" identities): ‖∂/∂W‖² to `weightOut` and ‖∂/∂b‖² to `biasOut` (0: no bias), float64,
   * `stride` floats64 apart per row, for all R rows. `preferred` when that moves fewer bytes
   * than forming the gradients; layers without such an identity leave it out.
   */
  squaredNorms?: { readonly preferred: boolean; readonly positions: number; run(gy: number, weightOut: number, biasOut: number, stride: number): void };
}

/** A step's per-row squared gradient norms (see `WeightBiasKernels.squaredNorms`), by J column. */
export interface SquaredNorms {
  /** Whether this path moves fewer bytes than forming the rows' gradients. */
  readonly preferred: boolean;
  /**
   * Positions per sample whose gradients a row sums (Linear's S of (N, S, in)): above 1 the
   * identity sums products across positions, so it rounds differently from the formed rows.
   */
  readonly positions: number;
  /** J's first column of each of the step's parameter tensors, in the order `run` writes them. */
  readonly columns: readonly number[];
  /** Writes row r's squared norm of the step's i-th tensor to float64 `out + (r·stride + slots[i])·8`. */
  run(out: number, stride: number, slots: readonly number[]): void;
}

/**
 * The step of a layer with a weight and an optional bias: the bookkeeping every such layer
 * shares (J's columns, the output-gradient offset of a chunk of samples, the gradient vector).
 */
export function weightBiasStep(
  builder: PlanBuilder,
  label: string,
  outShape: readonly number[],
  weight: Tensor,
  bias: Tensor | null,
  run: WeightBiasKernels,
): Step {
  const weightColumn = builder.columnBytes(weight);
  const biasColumn = bias ? builder.columnBytes(bias) : -1;
  const gyPerSample = builder.K * numel(outShape) * 4;
  const ldJ = builder.D;
  const gradientVector = builder.gradientVector;
  const step: Step = {
    label,
    outShape,
    aliasesInput: false,
    hasParameters: true,
    gy: 0,
    gx: 0,
    forward: run.forward,
    backward() {
      run.backward(this.gy, this.gx);
    },
    perSample(first: number, samples: number, J: number) {
      run.perSample(first, samples, this.gy + first * gyPerSample, J + weightColumn, biasColumn < 0 ? 0 : J + biasColumn, ldJ);
    },
    gradient() {
      const g = gradientVector.ptr;
      run.gradient(this.gy, g + weightColumn, biasColumn < 0 ? 0 : g + biasColumn);
    },
    squaredNorms: run.squaredNorms && {
      preferred: run.squaredNorms.preferred,
      positions: run.squaredNorms.positions,
      columns: biasColumn < 0 ? [weightColumn / 4] : [weightColumn / 4, biasColumn / 4],
      run(out: number, stride: number, slots: readonly number[]) {
        run.squaredNorms!.run(step.gy, out + slots[0] * 8, biasColumn < 0 ? 0 : out + slots[1] * 8, stride);
      },
    },
  };
  return step;
}
