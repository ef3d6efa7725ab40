/**
 * User-defined quasi-linear layers: the user writes one sample's forward in plain float64
 * code; the library probes its 0/1 pattern once per input shape (src/probing.ts) and runs
 * forward, input gradient and per-sample gradients from that pattern with gather-multiply-
 * scatter kernels (assembly/probe.ts).
 * Per-sample rule: ∂ℓ(n)/∂W_i = Σ_{(k,j) ∈ M_i} g[n]_k x[n]_j, ∂ℓ(n)/∂b_i = Σ_{k ∈ N_i} g[n]_k.
 */
import { ShapeError, UnsupportedError } from "../errors.ts";
import type { ProbedPattern, ProbeForward } from "../probing.ts";
import { probePattern } from "../probing.ts";
import type { Tensor } from "../tensor.ts";
import { numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";
import type { CompileContext, Compiled, Named } from "./module.ts";
import { layerLabel, Module, weightBiasStep } from "./module.ts";

/**
 * Parameter values as given by the user.
 *
 * @example
 * ```ts
 * import type { ParameterValues } from "jacobian-wasm";
 * const fromList: ParameterValues = [0.5, -1, 2];
 * const fromArray: ParameterValues = new Float64Array(3).fill(0.1);
 * ```
 */
export type ParameterValues = readonly number[] | Float32Array | Float64Array;

/**
 * The initial values of a user layer's parameters; their lengths fix the parameters' sizes.
 *
 * @example
 * ```ts
 * import type { QuasiLinearParameters } from "jacobian-wasm";
 * const parameters: QuasiLinearParameters = { weight: new Float32Array(12).fill(0.1), bias: [0, 0, 0] }; // 12 weights, 3 biases
 * ```
 */
export interface QuasiLinearParameters {
  /** The weight's initial values: its length is the number of weights. */
  weight: ParameterValues;
  /** The bias's initial values, for a layer with a bias. */
  bias?: ParameterValues;
}

/**
 * What `forward` receives: float64 copies of the parameters (`bias` when the layer has one).
 *
 * @example
 * ```ts
 * import type { ForwardParameters } from "jacobian-wasm";
 * type WithBias = { weight: number[]; bias: number[] };
 * const forward = ({ weight, bias }: ForwardParameters<WithBias>, x: Float64Array) => [weight[0] * x[0] + bias[0]]; // bias is a Float64Array here
 * ```
 */
export type ForwardParameters<P extends QuasiLinearParameters> = P extends { bias: ParameterValues }
  ? { weight: Float64Array; bias: Float64Array }
  : { weight: Float64Array; bias?: Float64Array };

/**
 * A user layer: its name, parameters, output shape and single-sample forward function.
 *
 * @example
 * ```ts
 * import { quasiLinear, randn } from "jacobian-wasm";
 * import type { QuasiLinearDefinition } from "jacobian-wasm";
 * // A 1-d locally connected layer: output i = w[2i] x[i] + w[2i+1] x[i+1] + b[i], no weight sharing.
 * const definition: QuasiLinearDefinition<{ weight: number[]; bias: number[] }> = {
 *   name: "LocallyConnected1d",
 *   parameters: { weight: new Array(8).fill(0.5), bias: new Array(4).fill(0) },
 *   outputShape: ([length]) => [length - 1],
 *   forward: ({ weight, bias }, x) => Array.from({ length: x.length - 1 }, (_, i) => weight[2 * i] * x[i] + weight[2 * i + 1] * x[i + 1] + bias[i]),
 * };
 * const y = quasiLinear(definition).forward(randn([2, 5], 0)); // [2, 4]
 * ```
 */
export interface QuasiLinearDefinition<P extends QuasiLinearParameters = QuasiLinearParameters> {
  /** The layer's type name, in messages and labels (`"2 (LocallyConnected1d)"`). */
  name: string;
  /** The parameters' initial values: `weight`, and `bias` for a layer with one. */
  parameters: P;
  /** One sample's output shape for one sample's input shape (throw if the input does not fit). */
  outputShape(inputShape: readonly number[]): readonly number[];
  /**
   * One sample's output, row-major, from its input `x` (row-major, `inputShape`): must be
   * quasi-linear, y_k = Σ_ij M_kij weight_i x_j + Σ_i N_ki bias_i with 0/1 tensors M, N.
   * It may call jacobian-wasm on other networks, not on one holding this layer (refused with
   * an UnsupportedError: the layer would be probed again without end).
   */
  forward(parameters: ForwardParameters<P>, x: Float64Array, inputShape: readonly number[]): ArrayLike<number>;
}

/** Input shapes whose probed pattern a layer keeps (least recently used dropped first). */
const PATTERN_CACHE = 8;

/**
 * A user-defined quasi-linear layer, made by `quasiLinear`. Parameters `weight` and `bias`
 * are flat (shape `[length]`); the pattern is probed once per input shape and cached.
 *
 * @example
 * ```ts
 * import { QuasiLinear, quasiLinear } from "jacobian-wasm";
 * const scale: QuasiLinear = quasiLinear({
 *   name: "Scale", parameters: { weight: [2] }, outputShape: (shape) => [...shape],
 *   forward: ({ weight }, x) => x.map((v) => weight[0] * v),
 * });
 * scale.weight.shape; // [1]
 * scale.outputShape([3]); // [3]
 * ```
 */
export class QuasiLinear extends Module {
  /** The definition's `name`, in messages and labels. */
  readonly typeName: string;
  /** The weight, flat: shape `[weight.length]` of the definition, float32. */
  readonly weight: Tensor;
  /** The bias, flat, or null when the definition has none. */
  readonly bias: Tensor | null;
  /** How many times this layer was probed (tests and benchmarks read it). */
  probes = 0;
  private readonly patterns = new Map<string, ProbedPattern>();
  /** The input shapes being probed now: a forward that runs this same layer again is refused, not recursed into. */
  private readonly probing = new Set<string>();
  private readonly userForward: ProbeForward;
  private readonly userOutputShape: (inputShape: readonly number[]) => readonly number[];

  /**
   * The layer of a definition; `quasiLinear(definition)` is the same, with the definition's
   * parameter types checked.
   *
   * @param definition name, parameters, outputShape and forward.
   */
  constructor(definition: QuasiLinearDefinition) {
    super();
    if (!definition || typeof definition !== "object") throw new TypeError("quasiLinear: expected a definition object");
    const { name, parameters, outputShape, forward } = definition;
    if (typeof name !== "string" || name === "") throw new TypeError(`quasiLinear: name must be a non-empty string, got ${JSON.stringify(name)}`);
    if (typeof outputShape !== "function") throw new TypeError(`quasiLinear '${name}': outputShape must be a function`);
    if (typeof forward !== "function") throw new TypeError(`quasiLinear '${name}': forward must be a function`);
    if (!parameters || typeof parameters !== "object") throw new TypeError(`quasiLinear '${name}': parameters must be { weight, bias? }`);
    this.typeName = name;
    this.weight = parameterTensor(name, "weight", parameters.weight);
    this.bias = parameters.bias === undefined ? null : parameterTensor(name, "bias", parameters.bias);
    this.userForward = forward as ProbeForward;
    this.userOutputShape = outputShape;
  }

  /** `weight`, then `bias` when there is one. */
  override ownParameters(): Named[] {
    return this.bias ? [["weight", this.weight], ["bias", this.bias]] : [["weight", this.weight]];
  }

  /** The definition's `outputShape`, checked: a list of positive integers. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    let shape: readonly number[];
    try {
      shape = this.userOutputShape([...inShape]);
    } catch (error) {
      throw new ShapeError(`${label}: input (N, ${inShape.join(", ")}) does not fit: ${(error as Error)?.message ?? error}`);
    }
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new ShapeError(`${label}: outputShape returned ${JSON.stringify(shape)} for input (N, ${inShape.join(", ")}); expected a list of positive integers`);
    }
    return [...shape];
  }

  /**
   * The probed pattern for one per-sample input shape: probed on first use, then cached
   * (up to 8 shapes). Throws if the layer is not quasi-linear, naming the output and the
   * weight (or bias) index.
   *
   * @example
   * ```ts
   * import { quasiLinear } from "jacobian-wasm";
   * // y = [w0 x0 + w1 x1, w1 x0]
   * const layer = quasiLinear({
   *   name: "Tied", parameters: { weight: [1, 2] }, outputShape: () => [2],
   *   forward: ({ weight }, x) => [weight[0] * x[0] + weight[1] * x[1], weight[1] * x[0]],
   * });
   * const pattern = layer.pattern([2]); // weight 1 reaches (output 0, input 1) and (output 1, input 0)
   * ```
   */
  pattern(inShape: readonly number[]): ProbedPattern {
    const key = inShape.join("x");
    let pattern = this.patterns.get(key);
    if (pattern) {
      this.patterns.delete(key); // re-insert: most recently used last
    } else {
      const outShape = this.outputShape(inShape);
      if (this.probing.has(key)) {
        throw new UnsupportedError(
          `quasiLinear '${this.typeName}': its forward ran a network holding this same layer on input (N, ${inShape.join(", ")}) ` +
            `while the layer's pattern for that shape was being probed; that would probe it again without end. ` +
            `A quasiLinear forward may call jacobian-wasm on other networks only`,
        );
      }
      this.probing.add(key);
      try {
        pattern = probePattern(this.typeName, this.userForward, this.weight.data.length, this.bias?.data.length ?? 0, inShape, outShape);
      } finally {
        this.probing.delete(key);
      }
      this.probes++;
      if (this.patterns.size >= PATTERN_CACHE) this.patterns.delete(this.patterns.keys().next().value!);
    }
    this.patterns.set(key, pattern);
    return pattern;
  }

  /** The per-sample input shapes whose patterns are cached, least recently used first. */
  cachedInputShapes(): number[][] {
    return [...this.patterns.values()].map((p) => [...p.inputShape]);
  }

  /** @ignore */
  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const probed = this.pattern(inShape);
    // The pattern is a plan constant, copied into the plan's memory at every run and shared
    // (not copied) between plans in JS: a memcpy of 8 bytes per pattern entry, where each of
    // the kernels' passes (forward, input gradient, per-sample rows) reads every entry N/4 times.
    const pattern = builder.allocate(probed.block.byteLength);
    builder.constants.push({ ptr: pattern, values: probed.block });
    const { N, K, R } = builder;
    const inWidth = numel(inShape);
    const outWidth = numel(outShape);
    const output = builder.floats(N * outWidth);
    const weight = builder.parameterPtr(this.weight);
    const bias = this.bias ? builder.parameterPtr(this.bias) : 0;
    const k = kernels();
    return {
      output,
      outShape,
      steps: [weightBiasStep(builder, label, outShape, this.weight, this.bias, {
        forward: () => k.probe_forward(pattern, N, input, weight, bias, output),
        backward: (gy, gx) => k.probe_backward_input(pattern, R, gy, weight, gx),
        perSample: (first, samples, gy, jw, jb, ldJ) =>
          k.probe_weight_per_sample(pattern, samples * K, K, input + first * inWidth * 4, gy, jw, jb, ldJ),
        gradient: (gy, gw, gb) => k.probe_weight_grad(pattern, R, K, input, gy, gw, gb, 1),
      })],
    };
  }
}

/**
 * A layer from a user's single-sample forward function, usable anywhere a layer is (inside
 * `Sequential`, nested). The function must be quasi-linear: every output a sum of
 * weight × input terms and bias terms, each weight and bias entering with coefficient 0 or 1
 * (linear layers, convolutions of any kind, locally connected layers, tied weights). Its
 * pattern is probed once per input shape (a few hundred calls for ~10⁴ weights); a layer that
 * is not quasi-linear is refused then, with a message naming the output and weight index.
 *
 * @example
 * ```ts
 * import { quasiLinear, Sequential, ReLU, perSampleGradients, randn } from "jacobian-wasm";
 * // A diagonal layer: y_k = w_k x_k + b_k.
 * const diagonal = quasiLinear({
 *   name: "Diagonal",
 *   parameters: { weight: [0.5, -1, 2], bias: [0, 0, 0] },
 *   outputShape: (shape) => [...shape],
 *   forward: ({ weight, bias }, x) => x.map((v, k) => weight[k] * v + bias[k]),
 * });
 * const net = new Sequential(diagonal, new ReLU());
 * const G = perSampleGradients(net, randn([4, 3], 0), randn([4, 3], 1), { loss: "mse" }); // [4, 6]
 * ```
 */
export function quasiLinear<P extends QuasiLinearParameters>(definition: QuasiLinearDefinition<P>): QuasiLinear {
  return new QuasiLinear(definition as unknown as QuasiLinearDefinition);
}

function parameterTensor(name: string, what: string, values: ParameterValues): Tensor {
  if (!values || typeof values.length !== "number" || values.length < 1) {
    throw new TypeError(`quasiLinear '${name}': parameters.${what} must be a non-empty array of numbers`);
  }
  const data = Float32Array.from(values as ArrayLike<number>);
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new RangeError(`quasiLinear '${name}': parameters.${what}[${bad}] is ${values[bad]}, not a finite number`);
  return { shape: [data.length], data };
}

