/**
 * Per-sample losses and their gradients w.r.t. the network output, in closed form, as
 * PyTorch defines them. Row n of the seeded gradient is sample n's share of the gradient of
 * PyTorch's batch loss (BackPACK's convention), so per-sample gradients sum to the batch's.
 */
import { ShapeError, ValueError } from "./errors.ts";
import { formatShape, numel } from "./tensor.ts";
import { sameShape } from "./layers/module.ts";

/**
 * The losses per-sample gradients can be taken of.
 *
 * @example
 * ```ts
 * import { Linear, perSampleGradients, randn } from "jacobian-wasm";
 * import type { LossName } from "jacobian-wasm";
 * const loss: LossName = "mse";
 * const G = perSampleGradients(new Linear(3, 1), randn([4, 3], 0), randn([4, 1], 1), { loss }); // [4, 4]
 * ```
 */
export type LossName = "cross_entropy" | "mse";
/**
 * PyTorch's reductions: the batch loss is the sum or the mean of the per-element losses.
 *
 * @example
 * ```ts
 * import { Linear, perSampleGradients, randn } from "jacobian-wasm";
 * import type { Reduction } from "jacobian-wasm";
 * const reduction: Reduction = "sum"; // each row is the sample's own gradient ("mean": 1/N of it)
 * const G = perSampleGradients(new Linear(3, 1), randn([4, 3], 0), randn([4, 1], 1), { loss: "mse", reduction });
 * ```
 */
export type Reduction = "sum" | "mean";

/**
 * A target: class indices (any integer or integral float array) or values. A `Tensor` is one.
 *
 * @example
 * ```ts
 * import type { Target } from "jacobian-wasm";
 * const classes: Target = { shape: [3], data: new Int32Array([2, 0, 1]) }; // cross_entropy on (3, C) outputs
 * const values: Target = { shape: [3, 1], data: new Float32Array([0.5, -1, 2]) }; // mse on (3, 1) outputs
 * ```
 */
export interface Target {
  /**
   * For cross_entropy with class indices, the output's shape without the class dim (`[N]` for
   * (N, C) outputs, `[N, d1, …]` for (N, C, d1, …)); for class probabilities and for mse, the
   * output's shape.
   */
  readonly shape: readonly number[];
  /**
   * The values, row-major: class indices as integers in any of these arrays (-100, PyTorch's
   * ignore_index, adds nothing), class probabilities (float arrays only) or mse targets.
   */
  readonly data: Float32Array | Float64Array | Int32Array | BigInt64Array;
}

/** PyTorch's `ignore_index` default for cross-entropy: targets equal to it add nothing. */
export const IGNORE_INDEX = -100;

/** A target checked against the output shape, ready to seed gradients from. */
export type PreparedTarget =
  | { kind: "classes"; classes: Int32Array }
  | { kind: "probabilities"; values: Float32Array }
  | { kind: "values"; values: Float32Array };

/**
 * Checks `target` against the network's output `(N, ...)` for `loss`, with messages that say
 * what shape was expected and which value is out of range.
 */
export function prepareTarget(loss: LossName, outputShape: readonly number[], target: Target): PreparedTarget {
  if (!target || !Array.isArray(target.shape) || !ArrayBuffer.isView(target.data)) {
    throw new TypeError(`target must be a tensor { shape: number[], data: typed array }`);
  }
  if (target.data.length !== numel(target.shape)) {
    throw new ShapeError(
      `target: shape ${formatShape(target.shape)} needs ${numel(target.shape)} values, data has ${target.data.length}`,
    );
  }
  if (loss === "mse") {
    if (!sameShape(target.shape, outputShape)) {
      throw new ShapeError(`mse: target shape ${formatShape(target.shape)} must equal the output shape ${formatShape(outputShape)}`);
    }
    const values = toFloat32(target.data);
    checkFiniteTarget(values, "mse");
    return { kind: "values", values };
  }
  if (loss !== "cross_entropy") {
    throw new RangeError(`loss must be "cross_entropy" or "mse", got ${JSON.stringify(loss)}`);
  }
  if (outputShape.length < 2) {
    throw new ShapeError(
      `cross_entropy: the output ${formatShape(outputShape)} has no class dimension; expected (N, C) or (N, C, d1, ...)`,
    );
  }
  const C = outputShape[1];
  const expected = [outputShape[0], ...outputShape.slice(2)];
  const isFloat = target.data instanceof Float32Array || target.data instanceof Float64Array;
  if (isFloat && sameShape(target.shape, outputShape)) {
    const values = toFloat32(target.data);
    checkFiniteTarget(values, "cross_entropy");
    return { kind: "probabilities", values };
  }
  if (!sameShape(target.shape, expected)) {
    throw new ShapeError(
      `cross_entropy: target shape ${formatShape(target.shape)} does not fit the output ${formatShape(outputShape)}: ` +
        `expected class indices ${formatShape(expected)}`,
    );
  }
  const classes = new Int32Array(target.data.length);
  for (let i = 0; i < classes.length; i++) {
    const v = Number(target.data[i]);
    if (!Number.isInteger(v) || ((v < 0 || v >= C) && v !== IGNORE_INDEX)) {
      throw new ValueError(
        `cross_entropy: target ${v} at index ${i} is not a class index in [0, ${C - 1}] (the output has ${C} classes)`,
      );
    }
    classes[i] = v;
  }
  return { kind: "classes", classes };
}

/** Float values as float32: a float32 target is used as it is, others converted once. */
function toFloat32(data: Target["data"]): Float32Array {
  if (data instanceof Float32Array) return data;
  if (data instanceof BigInt64Array) return Float32Array.from(data, Number);
  return new Float32Array(data);
}

function checkFiniteTarget(values: Float32Array, loss: string): void {
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new ValueError(`${loss}: target holds ${values[bad]} at index ${bad}`);
}

/**
 * Writes ∂(batch loss)/∂output, restricted to sample n, into row n of `grad`, for the
 * outputs `output` of shape `outputShape` = (N, ...). `first` and `count` select a range of
 * the batch's samples (the naive path feeds them one at a time) while `mean` divides by the
 * whole batch's count, as PyTorch does.
 */
export function seedLossGradient(
  loss: LossName,
  reduction: Reduction,
  output: Float32Array,
  outputShape: readonly number[],
  target: PreparedTarget,
  grad: Float32Array,
  first = 0,
  count = outputShape[0],
): void {
  const width = numel(outputShape.slice(1));
  if (target.kind === "values") {
    const scale = reduction === "mean" ? 2 / numel(outputShape) : 2;
    for (let i = 0; i < count * width; i++) {
      grad[i] = scale * (output[i] - target.values[first * width + i]);
    }
    return;
  }
  const C = outputShape[1];
  const P = width / C; // positions per sample (d1·d2·…), 1 for (N, C)
  let divisor = 1;
  if (reduction === "mean") {
    if (target.kind === "classes") {
      divisor = 0;
      for (const c of target.classes) if (c !== IGNORE_INDEX) divisor++;
    } else {
      divisor = outputShape[0] * P;
    }
  }
  const probabilities = new Float64Array(C);
  for (let n = 0; n < count; n++) {
    const sample = first + n;
    for (let p = 0; p < P; p++) {
      // softmax over the class dim (stride P), in float64, shifted by the max for range
      let max = -Infinity;
      for (let c = 0; c < C; c++) max = Math.max(max, output[n * width + c * P + p]);
      let sum = 0;
      for (let c = 0; c < C; c++) {
        probabilities[c] = Math.exp(output[n * width + c * P + p] - max);
        sum += probabilities[c];
      }
      if (target.kind === "classes") {
        const label = target.classes[sample * P + p];
        const scale = label === IGNORE_INDEX ? 0 : 1 / divisor;
        for (let c = 0; c < C; c++) {
          grad[n * width + c * P + p] = scale * (probabilities[c] / sum - (c === label ? 1 : 0));
        }
      } else {
        let mass = 0;
        for (let c = 0; c < C; c++) mass += target.values[sample * width + c * P + p];
        for (let c = 0; c < C; c++) {
          const q = target.values[sample * width + c * P + p];
          grad[n * width + c * P + p] = (mass * probabilities[c] / sum - q) / divisor;
        }
      }
    }
  }
}
