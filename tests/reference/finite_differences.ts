/**
 * Float64 losses and central finite differences over every parameter of the reference model:
 * the independent check of per-sample Jacobians and gradients. See the API list at the top of
 * model.ts.
 */
import { forwardLayers, forwardSample, type Model, parameterList, type Params } from "./model.ts";

/**
 * What to differentiate for ONE sample: its output (all K elements), or its share of PyTorch's
 * batch loss. `target` is this sample's target: class indices of shape [d1, ...] for
 * cross-entropy, the same shape as the output for MSE. `batchSize` (N) is needed for "mean".
 */
export type SampleObjective =
  | { objective: "output" }
  | { objective: "cross_entropy" | "mse"; reduction: "sum" | "mean"; target: ArrayLike<number>; batchSize?: number };

/** The same for a whole batch, as listed in a fixture's cases.json: `target` covers all N samples. */
export type BatchObjective =
  | { objective: "output" }
  | { objective: "cross_entropy" | "mse"; reduction: "sum" | "mean"; target: ArrayLike<number> };

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Cross-entropy of one sample summed over its positions: output shape [C] or [C, d1, ...]
 * (the class dim is dim 1 of the batch), `target` the class index of each of the d1*... positions.
 */
export function crossEntropySum(output: ArrayLike<number>, outputShape: number[], target: ArrayLike<number>): number {
  if (outputShape.length < 1) throw new RangeError(`cross_entropy: the output of a sample needs a class dimension, got shape [${outputShape}]`);
  const classes = outputShape[0];
  const positions = product(outputShape.slice(1));
  if (target.length !== positions) {
    throw new RangeError(`cross_entropy: output [${outputShape}] needs ${positions} targets per sample, got ${target.length}`);
  }
  let loss = 0;
  for (let p = 0; p < positions; p++) {
    const t = target[p];
    if (!Number.isInteger(t) || t < 0 || t >= classes) throw new RangeError(`cross_entropy: class index ${t} out of range [0, ${classes})`);
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, output[c * positions + p]);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(output[c * positions + p] - max);
    loss += max + Math.log(sum) - output[t * positions + p];
  }
  return loss;
}

/** Squared error of one sample summed over its elements. */
export function mseSum(output: ArrayLike<number>, target: ArrayLike<number>): number {
  if (target.length !== output.length) throw new RangeError(`mse: output has ${output.length} elements, target ${target.length}`);
  let loss = 0;
  for (let i = 0; i < output.length; i++) loss += (output[i] - target[i]) ** 2;
  return loss;
}

/**
 * Sample n's share of PyTorch's batch loss: its sum for "sum"; for "mean", divided by what
 * PyTorch divides by: N * d1 * ... targets (cross-entropy) or N * K elements (MSE).
 */
export function lossShare(output: ArrayLike<number>, outputShape: number[], objective: SampleObjective): number {
  if (objective.objective === "output") throw new TypeError(`lossShare: "output" is not a loss`);
  const sum = objective.objective === "cross_entropy"
    ? crossEntropySum(output, outputShape, objective.target)
    : mseSum(output, objective.target);
  if (objective.reduction === "sum") return sum;
  if (objective.reduction !== "mean") throw new TypeError(`${objective.objective}: reduction must be "sum" or "mean", got ${objective.reduction}`);
  const n = objective.batchSize;
  if (n === undefined || !(n >= 1)) throw new TypeError(`${objective.objective} with reduction "mean" needs batchSize`);
  const perSample = objective.objective === "cross_entropy" ? product(outputShape.slice(1)) : output.length;
  return sum / (n * perSample);
}

/**
 * Central finite differences of several objectives of ONE sample at once (they share the
 * perturbed forward passes). Returns, per objective, row-major [K, D] for "output" and [D] for a loss.
 */
export function finiteDifferences(
  model: Model,
  params: Params,
  x: Float64Array,
  inputShape: number[],
  objectives: SampleObjective[],
  options: { relativeStep?: number } = {},
): Float64Array[] {
  const relativeStep = options.relativeStep ?? 1e-6;
  const list = parameterList(model);
  const D = list.reduce((a, p) => a + p.size, 0);
  const work: Params = new Map([...params].map(([name, values]) => [name, values.slice()]));
  const end = model.layers.length;
  const base = forwardLayers(model, work, 0, end, x, inputShape);
  const K = base.output.length;
  const results = objectives.map((o) => new Float64Array(o.objective === "output" ? K * D : D));
  const evaluate = (output: Float64Array, shape: number[]) =>
    objectives.map((o) => (o.objective === "output" ? 0 : lossShare(output, shape, o)));

  let column = 0;
  for (const { name } of list) {
    // Layers before the parameter's own are unchanged by it: run them once.
    // (a parameter of a block nested in layer l is named "<l.path>.…")
    const layerIndex = model.layers.findIndex((l) => name.startsWith(`${l.path}.`));
    const before = forwardLayers(model, work, 0, layerIndex, x, inputShape);
    const values = work.get(name)!;
    for (let j = 0; j < values.length; j++, column++) {
      const original = values[j];
      const h = relativeStep * Math.max(1, Math.abs(original));
      const up = original + h;
      const down = original - h;
      values[j] = up;
      const plus = forwardLayers(model, work, layerIndex, end, before.output, before.shape);
      values[j] = down;
      const minus = forwardLayers(model, work, layerIndex, end, before.output, before.shape);
      values[j] = original;
      const step = up - down; // the step actually taken, after rounding
      const plusLoss = evaluate(plus.output, plus.shape);
      const minusLoss = evaluate(minus.output, minus.shape);
      objectives.forEach((o, i) => {
        if (o.objective === "output") {
          for (let k = 0; k < K; k++) results[i][k * D + column] = (plus.output[k] - minus.output[k]) / step;
        } else {
          results[i][column] = (plusLoss[i] - minusLoss[i]) / step;
        }
      });
    }
  }
  return results;
}

/** Central finite differences of one objective of ONE sample: [K, D] row-major for "output", [D] for a loss. */
export function finiteDifferenceJacobian(
  model: Model,
  params: Params,
  x: Float64Array,
  inputShape: number[],
  objective: SampleObjective,
  options: { relativeStep?: number } = {},
): Float64Array {
  return finiteDifferences(model, params, x, inputShape, [objective], options)[0];
}

/**
 * The per-sample quantity of a whole batch, laid out as in the fixtures: [N, K, D] for
 * "output" ([N, D] when K = 1) and [N, D] for a loss. `batchShape` = [N, ...inputShape].
 */
export function finiteDifferenceBatch(
  model: Model,
  params: Params,
  x: ArrayLike<number>,
  batchShape: number[],
  objective: BatchObjective,
  options: { relativeStep?: number } = {},
): { data: Float64Array; shape: number[] } {
  const [n, ...inputShape] = batchShape;
  const sampleSize = product(inputShape);
  if (x.length !== n * sampleSize) throw new RangeError(`finiteDifferenceBatch: x has ${x.length} values, shape [${batchShape}] needs ${n * sampleSize}`);
  const rows: Float64Array[] = [];
  for (let s = 0; s < n; s++) {
    const sample = Float64Array.from({ length: sampleSize }, (_, i) => x[s * sampleSize + i]);
    let sampleObjective: SampleObjective = { objective: "output" };
    if (objective.objective !== "output") {
      const per = objective.target.length / n;
      if (!Number.isInteger(per)) throw new RangeError(`finiteDifferenceBatch: ${objective.target.length} targets do not split into ${n} samples`);
      const target = Float64Array.from({ length: per }, (_, i) => objective.target[s * per + i]);
      sampleObjective = { objective: objective.objective, reduction: objective.reduction, target, batchSize: n };
    }
    rows.push(finiteDifferenceJacobian(model, params, sample, inputShape, sampleObjective, options));
  }
  const D = parameterList(model).reduce((a, p) => a + p.size, 0);
  const data = new Float64Array(n * rows[0].length);
  rows.forEach((row, s) => data.set(row, s * row.length));
  // Outputs per sample from the forward pass itself: rows / D is 0 / 0 for a network without parameters.
  const K = forwardSample(model, params, Float64Array.from({ length: sampleSize }, (_, i) => x[i]), inputShape).output.length;
  return { data, shape: objective.objective === "output" && K > 1 ? [n, K, D] : [n, D] };
}

/** max |actual - expected| / max |expected| (the plain max difference when expected is all zeros). */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new RangeError(`relativeError: ${actual.length} values against ${expected.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/**
 * The relative error of `actual` against central finite differences of a batch objective,
 * and the finite differences' shape. A kink (ReLU at 0, a max-pool tie, Softplus's threshold)
 * within one step of a perturbed parameter spoils central differences at that step, so a
 * mismatch is measured again with a step ten times smaller: a real error shows at both
 * steps, a kink at one only.
 */
export function finiteDifferenceCheck(
  actual: ArrayLike<number>,
  model: Model,
  params: Params,
  x: ArrayLike<number>,
  batchShape: number[],
  objective: BatchObjective,
  tolerance: number,
): { error: number; shape: number[] } {
  let best = { error: Infinity, shape: [] as number[] };
  for (const relativeStep of [1e-6, 1e-7]) {
    const { data, shape } = finiteDifferenceBatch(model, params, x, batchShape, objective, { relativeStep });
    const error = data.length === actual.length ? relativeError(actual, data) : Infinity;
    if (error < best.error) best = { error, shape };
    if (best.error <= tolerance) break;
  }
  return best;
}
