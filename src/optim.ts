/**
 * Optimisers that step a network's parameters from one flat gradient: the `[D]` vector, in
 * `parameters()` order, that `batchGradient` and `clippedGradientSum` return. `SGD` and `Adam`
 * are PyTorch's `torch.optim.SGD` and `torch.optim.Adam` (torch 1.13, `foreach=False`): the
 * same options, the same validation, and the same float32 arithmetic in the same order, so a
 * run gives PyTorch's parameters bit for bit (tests/optim.test.ts holds them to fixtures made
 * by torch, and allows one ulp).
 *
 * How the float32 results are matched: the state is float32 (Float32Array), as PyTorch's is;
 * every tensor operation of PyTorch's update is rounded to float32 where PyTorch
 * materialises it, with its Python-float scalars rounded to float32 where its kernels cast
 * them. PyTorch's CPU kernels for `add(other, alpha)` and `addcmul` are compiled to fused
 * multiply-adds (one rounding for `a + alpha·b`, in the AVX2 kernels x86 CPUs run), which
 * `fusedMultiplyAdd32` reproduces: rounding twice instead is up to 22 ulps off after 5 steps.
 * The parameters are updated in place; the plans copy parameter values into the WASM memory
 * at every run, so the next forward or gradient sees the new values.
 */
import { ShapeError, ValueError } from "./errors.ts";
import type { Module } from "./layers/module.ts";
import type { Tensor } from "./tensor.ts";
import { formatShape } from "./tensor.ts";

const fround = Math.fround;

/**
 * Options of `SGD`, with torch.optim.SGD's names and defaults.
 *
 * @example
 * ```ts
 * import { Linear, SGD } from "jacobian-wasm";
 * import type { SGDOptions } from "jacobian-wasm";
 * const options: SGDOptions = { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-4 };
 * const optimizer = new SGD(new Linear(3, 1), options);
 * ```
 */
export interface SGDOptions {
  /** The learning rate, finite and ≥ 0 (default 1e-3, PyTorch 2's default). */
  lr?: number;
  /** The momentum factor, finite and ≥ 0 (default 0: plain gradient descent). */
  momentum?: number;
  /** How much of each gradient the momentum buffer leaves out, finite (default 0). */
  dampening?: number;
  /** The L2 penalty added to the gradient, `weight_decay · p`, finite and ≥ 0 (default 0). */
  weight_decay?: number;
  /** Nesterov momentum; needs momentum > 0 and dampening 0 (default false). */
  nesterov?: boolean;
  /** Step up the gradient instead of down it (default false). */
  maximize?: boolean;
}

/**
 * Options of `Adam`, with torch.optim.Adam's names and defaults. `weight_decay` is Adam's L2
 * penalty added to the gradient, not AdamW's decoupled decay.
 *
 * @example
 * ```ts
 * import { Linear, Adam } from "jacobian-wasm";
 * import type { AdamOptions } from "jacobian-wasm";
 * const options: AdamOptions = { lr: 3e-4, betas: [0.9, 0.98], eps: 1e-6, amsgrad: true };
 * const optimizer = new Adam(new Linear(3, 1), options);
 * ```
 */
export interface AdamOptions {
  /** The learning rate, finite and ≥ 0 (default 1e-3). */
  lr?: number;
  /** β₁ and β₂, the decay rates of the gradient's running mean and mean square, each in [0, 1) (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator's square root, finite and ≥ 0 (default 1e-8). */
  eps?: number;
  /** The L2 penalty added to the gradient, `weight_decay · p`, finite and ≥ 0 (default 0). */
  weight_decay?: number;
  /** AMSGrad: divide by the largest running mean square seen so far (default false). */
  amsgrad?: boolean;
  /** Step up the gradient instead of down it (default false). */
  maximize?: boolean;
}

/**
 * Plain, momentum and Nesterov SGD with optional L2 weight decay, exactly as
 * torch.optim.SGD: per element of gradient g and parameter p,
 * `d = g (−g when maximize) + weight_decay·p`; with momentum, `buf = d` at the first step and
 * `buf = momentum·buf + (1 − dampening)·d` after, then `d = nesterov ? d + momentum·buf : buf`;
 * `p = p − lr·d`.
 *
 * @example
 * ```ts
 * import { Sequential, Linear, ReLU, SGD, batchGradient, randn } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 1));
 * const x = randn([16, 4], 0);
 * const y = randn([16, 1], 1);
 * const optimizer = new SGD(net, { lr: 0.1, momentum: 0.9 });
 * for (let step = 0; step < 10; step++) optimizer.step(batchGradient(net, x, y, { loss: "mse" }));
 * ```
 */
export class SGD {
  private readonly parameters: FlatParameters;
  private learningRate: number;
  private readonly momentum: number;
  private readonly dampening: number;
  private readonly weightDecay: number;
  private readonly nesterov: boolean;
  private readonly maximize: boolean;
  /** The momentum buffer of every parameter, flat; null until the first step (PyTorch's `None`). */
  private momentumBuffer: Float32Array | null = null;

  /**
   * An optimiser of every parameter of `net` (its `parameters()`, as they are now; they are
   * updated in place).
   *
   * @param net The network; it must have parameters.
   * @param options lr, momentum, dampening, weight_decay, nesterov, maximize; unknown keys are refused.
   */
  constructor(net: Module, options: SGDOptions = {}) {
    checkKnownOptions("SGD", options, ["lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"]);
    this.learningRate = checkNonNegative("SGD", "lr", options.lr ?? 1e-3);
    this.momentum = checkNonNegative("SGD", "momentum", options.momentum ?? 0);
    this.dampening = checkFinite("SGD", "dampening", options.dampening ?? 0);
    this.weightDecay = checkNonNegative("SGD", "weight_decay", options.weight_decay ?? 0);
    this.nesterov = checkBoolean("SGD", "nesterov", options.nesterov ?? false);
    this.maximize = checkBoolean("SGD", "maximize", options.maximize ?? false);
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new ValueError(
        `SGD: nesterov needs momentum > 0 and dampening 0, got momentum ${this.momentum} and dampening ${this.dampening}`,
      );
    }
    this.parameters = new FlatParameters("SGD", net);
  }

  /**
   * The learning rate the next step takes, settable between steps for a schedule (finite, ≥ 0).
   *
   * @example
   * ```ts
   * import { Linear, SGD } from "jacobian-wasm";
   * const optimizer = new SGD(new Linear(2, 1), { lr: 0.1 });
   * optimizer.lr *= 0.5; // halve it, as a StepLR schedule would
   * ```
   */
  get lr(): number {
    return this.learningRate;
  }

  set lr(value: number) {
    this.learningRate = checkNonNegative("SGD", "lr", value);
  }

  /**
   * Updates the parameters in place from `gradient`, the flat `[D]` gradient in
   * `net.parameters()` order. A gradient of the wrong size (ShapeError) or with a NaN or
   * infinite entry (ValueError) changes nothing: neither the parameters nor the momentum.
   *
   * @example
   * ```ts
   * import { Linear, SGD, clippedGradientSum, randn } from "jacobian-wasm";
   * const net = new Linear(3, 1);
   * const optimizer = new SGD(net, { lr: 0.05 });
   * const { gradient } = clippedGradientSum(net, randn([8, 3], 0), randn([8, 1], 1), { loss: "mse", reduction: "sum", maxNorm: 1 });
   * optimizer.step(gradient); // a DP-SGD step without the noise
   * ```
   */
  step(gradient: Tensor | Float32Array): void {
    const g = this.parameters.check("SGD.step", gradient);
    // PyTorch's Python floats, cast to float32 where its kernels take them as scalars.
    const weightDecay = fround(this.weightDecay);
    const momentum = fround(this.momentum);
    const keptFraction = fround(1 - this.dampening);
    const negativeLr = fround(-this.learningRate);
    const firstMomentumStep = this.momentum !== 0 && this.momentumBuffer === null;
    const buffer = this.momentum !== 0 ? (this.momentumBuffer ??= new Float32Array(g.length)) : null;
    let i = 0;
    for (const p of this.parameters.tensors) {
      const data = p.data;
      for (let j = 0; j < data.length; j++, i++) {
        const value = data[j];
        let d = this.maximize ? -g[i] : g[i];
        if (this.weightDecay !== 0) d = fusedMultiplyAdd32(weightDecay, value, d);
        if (buffer !== null) {
          // The first step clones d (no dampening), as PyTorch's buffer starts as None.
          buffer[i] = firstMomentumStep ? d : fusedMultiplyAdd32(keptFraction, d, fround(buffer[i] * momentum));
          d = this.nesterov ? fusedMultiplyAdd32(momentum, buffer[i], d) : buffer[i];
        }
        data[j] = fusedMultiplyAdd32(negativeLr, d, value);
      }
    }
  }
}

/**
 * Adam (and AMSGrad) with optional L2 weight decay, exactly as torch.optim.Adam: per element,
 * `g = grad (−grad when maximize) + weight_decay·p`; `m = β₁·m + (1 − β₁)·g`;
 * `v = β₂·v + (1 − β₂)·g²`; with t the step count,
 * `p = p − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + eps)`, AMSGrad taking the running maximum
 * of v in its place.
 *
 * @example
 * ```ts
 * import { Sequential, Linear, Tanh, Adam, batchGradient, randn } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 8), new Tanh(), new Linear(8, 1));
 * const x = randn([16, 4], 0);
 * const y = randn([16, 1], 1);
 * const optimizer = new Adam(net, { lr: 0.01 });
 * for (let step = 0; step < 10; step++) optimizer.step(batchGradient(net, x, y, { loss: "mse" }));
 * optimizer.stepCount; // 10
 * ```
 */
export class Adam {
  private readonly parameters: FlatParameters;
  private learningRate: number;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly weightDecay: number;
  private readonly amsgrad: boolean;
  private readonly maximize: boolean;
  /** PyTorch's `exp_avg`, `exp_avg_sq` and `max_exp_avg_sq` of every parameter, flat. */
  private readonly expAvg: Float32Array;
  private readonly expAvgSq: Float32Array;
  private readonly maxExpAvgSq: Float32Array | null;
  /** PyTorch's `state["step"]`, a float32 tensor: it stops counting at 2²⁴, as PyTorch's does. */
  private readonly steps = new Float32Array(1);

  /**
   * An optimiser of every parameter of `net` (its `parameters()`, as they are now; they are
   * updated in place), its moments starting at zero.
   *
   * @param net The network; it must have parameters.
   * @param options lr, betas, eps, weight_decay, amsgrad, maximize; unknown keys are refused.
   */
  constructor(net: Module, options: AdamOptions = {}) {
    checkKnownOptions("Adam", options, ["lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"]);
    this.learningRate = checkNonNegative("Adam", "lr", options.lr ?? 1e-3);
    const betas = options.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) {
      throw new ValueError(`Adam: betas must be a pair [β₁, β₂], got ${describe(betas)}`);
    }
    this.beta1 = checkBeta(betas[0], 0);
    this.beta2 = checkBeta(betas[1], 1);
    this.eps = checkNonNegative("Adam", "eps", options.eps ?? 1e-8);
    this.weightDecay = checkNonNegative("Adam", "weight_decay", options.weight_decay ?? 0);
    this.amsgrad = checkBoolean("Adam", "amsgrad", options.amsgrad ?? false);
    this.maximize = checkBoolean("Adam", "maximize", options.maximize ?? false);
    this.parameters = new FlatParameters("Adam", net);
    this.expAvg = new Float32Array(this.parameters.size);
    this.expAvgSq = new Float32Array(this.parameters.size);
    this.maxExpAvgSq = this.amsgrad ? new Float32Array(this.parameters.size) : null;
  }

  /**
   * The learning rate the next step takes, settable between steps for a schedule (finite, ≥ 0).
   *
   * @example
   * ```ts
   * import { Linear, Adam } from "jacobian-wasm";
   * const optimizer = new Adam(new Linear(2, 1));
   * optimizer.lr = 1e-4; // a smaller rate for fine-tuning
   * ```
   */
  get lr(): number {
    return this.learningRate;
  }

  set lr(value: number) {
    this.learningRate = checkNonNegative("Adam", "lr", value);
  }

  /**
   * The steps taken so far, t of the bias corrections (PyTorch's `state["step"]`, float32).
   *
   * @example
   * ```ts
   * import { Linear, Adam } from "jacobian-wasm";
   * const optimizer = new Adam(new Linear(2, 1));
   * optimizer.step(new Float32Array(3).fill(0.5));
   * optimizer.stepCount; // 1
   * ```
   */
  get stepCount(): number {
    return this.steps[0];
  }

  /**
   * Updates the parameters in place from `gradient`, the flat `[D]` gradient in
   * `net.parameters()` order. A gradient of the wrong size (ShapeError) or with a NaN or
   * infinite entry (ValueError) changes nothing: neither the parameters, the moments nor the
   * step count.
   *
   * @example
   * ```ts
   * import { Linear, Adam, batchGradient, randn } from "jacobian-wasm";
   * const net = new Linear(3, 2);
   * const optimizer = new Adam(net, { lr: 0.01, weight_decay: 1e-4 });
   * optimizer.step(batchGradient(net, randn([4, 3], 0), randn([4, 2], 1), { loss: "mse" }));
   * ```
   */
  step(gradient: Tensor | Float32Array): void {
    const g = this.parameters.check("Adam.step", gradient);
    this.steps[0] += 1;
    // The bias corrections in Python floats (doubles) from the float32 step, as PyTorch's
    // `step_t.item()`; then each scalar cast to float32 where a kernel takes it.
    const step = this.steps[0];
    const stepSize = this.learningRate / (1 - this.beta1 ** step);
    const biasCorrection2Sqrt = fround(Math.sqrt(1 - this.beta2 ** step));
    const negativeStepSize = fround(-stepSize);
    const eps = fround(this.eps);
    const weightDecay = fround(this.weightDecay);
    const beta1 = fround(this.beta1);
    const beta2 = fround(this.beta2);
    const gradientWeight = fround(1 - this.beta1);
    const squareWeight = fround(1 - this.beta2);
    const { expAvg, expAvgSq, maxExpAvgSq } = this;
    let i = 0;
    for (const p of this.parameters.tensors) {
      const data = p.data;
      for (let j = 0; j < data.length; j++, i++) {
        const value = data[j];
        let d = this.maximize ? -g[i] : g[i];
        if (this.weightDecay !== 0) d = fusedMultiplyAdd32(weightDecay, value, d);
        // exp_avg.mul_(β₁).add_(g, alpha=1 − β₁); exp_avg_sq.mul_(β₂).addcmul_(g, g, value=1 − β₂),
        // whose kernel computes self + (value·g)·g with one fused multiply-add.
        expAvg[i] = fusedMultiplyAdd32(gradientWeight, d, fround(expAvg[i] * beta1));
        expAvgSq[i] = fusedMultiplyAdd32(fround(squareWeight * d), d, fround(expAvgSq[i] * beta2));
        let second = expAvgSq[i];
        if (maxExpAvgSq !== null) second = maxExpAvgSq[i] = Math.max(maxExpAvgSq[i], second);
        // (sqrt(v) / √bias_correction2).add_(eps), then addcdiv_: p + (−step_size·m) / denom.
        const denominator = fround(fround(fround(Math.sqrt(second)) / biasCorrection2Sqrt) + eps);
        data[j] = fround(value + fround(fround(negativeStepSize * expAvg[i]) / denominator));
      }
    }
  }
}

/**
 * The parameters of a network as one flat vector of D floats, in `parameters()` order: what
 * a flat gradient is checked against, and where its entry i falls.
 */
class FlatParameters {
  readonly names: readonly string[];
  readonly tensors: readonly Tensor[];
  /** The first flat index of each tensor, and D at the end. */
  private readonly offsets: readonly number[];

  constructor(who: string, net: Module) {
    const named = net.parameters();
    if (named.length === 0) throw new ValueError(`${who}: the network has no parameters to optimise`);
    this.names = named.map(([name]) => name);
    this.tensors = named.map(([, t]) => t);
    const offsets = [0];
    for (const t of this.tensors) offsets.push(offsets[offsets.length - 1] + t.data.length);
    this.offsets = offsets;
  }

  /** D: the number of parameters. */
  get size(): number {
    return this.offsets[this.offsets.length - 1];
  }

  /** The gradient's values, once checked to be D finite floats: nothing may change before this. */
  check(who: string, gradient: Tensor | Float32Array): Float32Array {
    const D = this.size;
    let values: Float32Array;
    if (gradient instanceof Float32Array) {
      if (gradient.length !== D) {
        throw new ShapeError(`${who}: the gradient must hold D = ${D} floats (the network's parameters), got ${gradient.length}`);
      }
      values = gradient;
    } else if (gradient !== null && typeof gradient === "object" && gradient.data instanceof Float32Array && Array.isArray(gradient.shape)) {
      if (gradient.shape.length !== 1 || gradient.shape[0] !== D || gradient.data.length !== D) {
        throw new ShapeError(
          `${who}: the gradient must have shape ${formatShape([D])} (D, the network's parameters), ` +
            `got shape ${formatShape(gradient.shape)} with ${gradient.data.length} floats`,
        );
      }
      values = gradient.data;
    } else {
      throw new ShapeError(`${who}: the gradient must be a Tensor of shape ${formatShape([D])} or a Float32Array of ${D} floats, got ${describe(gradient)}`);
    }
    for (let i = 0; i < D; i++) {
      if (!Number.isFinite(values[i])) throw new ValueError(`${who}: ${this.describeEntry(i, values[i])}; nothing was changed`);
    }
    return values;
  }

  /** `gradient[13] is NaN (element 1 of "0.bias", shape (4,))`. */
  private describeEntry(index: number, value: number): string {
    let k = 0;
    while (this.offsets[k + 1] <= index) k++;
    const t = this.tensors[k];
    return `gradient[${index}] is ${value} (element ${index - this.offsets[k]} of "${this.names[k]}", shape ${formatShape(t.shape)})`;
  }
}

/**
 * `a + alpha·b` rounded to float32 once, as the fused multiply-add PyTorch's CPU kernels
 * compute `add(b, alpha)` and `addcmul` with; a, alpha and b are float32 values. The product
 * is exact in a double (24 + 24 bits); the double sum rounds once more, which changes the
 * float32 result only when it lands exactly halfway between two float32 values while the
 * exact sum lies to one side, so that case is settled by the sum's exact rounding error.
 * Internal (not exported from mod.ts); exported from this file for its tests.
 *
 * @example
 * ```ts
 * import { fusedMultiplyAdd32 } from "./optim.ts";
 * const a = Math.fround(-0.13210486), alpha = Math.fround(0.1), b = Math.fround(1.2853819);
 * fusedMultiplyAdd32(alpha, b, a); // -0.0035666655…, where a + fround(alpha·b) rounds to -0.0035666674…
 * ```
 */
export function fusedMultiplyAdd32(alpha: number, b: number, a: number): number {
  const product = alpha * b;
  const sum = a + product;
  const rounded = fround(sum);
  if (rounded === sum || !Number.isFinite(rounded)) return rounded;
  const neighbour = 2 * sum - rounded;
  if (fround(neighbour) !== neighbour || (rounded + neighbour) / 2 !== sum) return rounded; // not a halfway case
  // TwoSum (Knuth): sum + error = a + product exactly.
  const productPart = sum - a;
  const error = (a - (sum - productPart)) + (product - productPart);
  if (error === 0) return rounded; // an exact tie: fround's ties-to-even is the FMA's
  return error > 0 ? Math.max(rounded, neighbour) : Math.min(rounded, neighbour);
}

function describe(value: unknown): string {
  if (typeof value === "number") return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** An unknown key is a misspelt option (`learning_rate`), which would otherwise be silently ignored. */
function checkKnownOptions(who: string, options: object, known: readonly string[]): void {
  if (options === null || typeof options !== "object") throw new ValueError(`${who}: options must be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new ValueError(`${who}: unknown option "${key}" (the options are ${known.join(", ")})`);
  }
}

function checkFinite(who: string, name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new ValueError(`${who}: ${name} must be a finite number, got ${describe(value)}`);
  return value;
}

function checkNonNegative(who: string, name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new ValueError(`${who}: ${name} must be a finite number ≥ 0, got ${describe(value)}`);
  }
  return value;
}

function checkBoolean(who: string, name: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new ValueError(`${who}: ${name} must be true or false, got ${describe(value)}`);
  return value;
}

function checkBeta(value: unknown, index: 0 | 1): number {
  if (typeof value !== "number" || !(value >= 0 && value < 1)) {
    throw new ValueError(`Adam: betas[${index}] must be in [0, 1), got ${describe(value)}`);
  }
  return value;
}
