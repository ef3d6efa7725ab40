/**
 * The quantities: per-sample gradients of a loss and Jacobians of the output, in one forward
 * and one backward pass; and the naive reference (one ordinary backward pass per sample).
 * Written once on top of the steps' primitives; no layer knows about them.
 */
import { checkBatch, checkFinite, runForward } from "./forward.ts";
import type { Module } from "./layers/module.ts";
import type { LossName, Reduction, Target } from "./losses.ts";
import { prepareTarget, seedLossGradient } from "./losses.ts";
import type { PreparedTarget } from "./losses.ts";
import type { Plan } from "./plan.ts";
import { ResultWriter } from "./results.ts";
import type { ResultOptions } from "./results.ts";
export type { ResultOptions };
import { planCache } from "./forward.ts";
import type { Tensor } from "./tensor.ts";
import { numel } from "./tensor.ts";
import { arena } from "./wasm.ts";
import { ShapeError } from "./errors.ts";

/** Options of `perSampleGradients`. */
export interface LossOptions extends ResultOptions {
  loss: LossName;
  /** PyTorch's reduction of the batch loss (default "mean", as PyTorch). */
  reduction?: Reduction;
}

/**
 * The Jacobian of the network output w.r.t. all parameters, per sample, in one forward and
 * one backward pass: `[N, D]` when each sample's output is one number, `[N, K, D]` for K
 * outputs per sample (a backward batch of N·K rows). Columns follow `net.parameters()`, each
 * parameter flattened row-major.
 *
 * @example
 * ```ts
 * import { Sequential, Linear, Tanh, jacobian, randn } from "jacobian-wasm";
 * const net = new Sequential(new Linear(3, 4), new Tanh(), new Linear(4, 2));
 * const J = jacobian(net, randn([5, 3], 0)); // shape [5, 2, 26]
 * ```
 */
export function jacobian(net: Module, x: Tensor, options?: ResultOptions & { asTuple?: false }): Tensor;
export function jacobian(net: Module, x: Tensor, options: ResultOptions & { asTuple: true }): Tensor[];
export function jacobian(net: Module, x: Tensor, options?: ResultOptions): Tensor | Tensor[];
export function jacobian(net: Module, x: Tensor, options: ResultOptions = {}): Tensor | Tensor[] {
  const K = outputsPerSample(net, x);
  const plan = runForward(net, x, K, "per-sample");
  seedOneHotRows(plan);
  const writer = new ResultWriter(net, plan.N, K, plan.D, options);
  plan.backwardPerSample(writer.sink);
  return writer.value();
}

/**
 * Per-sample gradients of a loss, in one forward and one backward pass: row n is sample n's
 * share of the gradient of PyTorch's batch loss (so the rows sum to it); with
 * `reduction: "sum"` that is sample n's own gradient.
 *
 * @example
 * ```ts
 * import { Sequential, Linear, ReLU, perSampleGradients, randn, tensor } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
 * const y = tensor(new Float32Array([0, 2]), [2]);
 * const G = perSampleGradients(net, randn([2, 4], 0), y, { loss: "cross_entropy", reduction: "sum" }); // [2, 67]
 * ```
 */
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions & { asTuple?: false }): Tensor;
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions & { asTuple: true }): Tensor[];
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions): Tensor | Tensor[];
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions): Tensor | Tensor[] {
  const objective = checkLoss(net, x, target, options);
  const plan = runForward(net, x, 1, "per-sample");
  seedLoss(plan, objective, 0, plan.N);
  const writer = new ResultWriter(net, plan.N, 1, plan.D, options);
  plan.backwardPerSample(writer.sink);
  return writer.value();
}

/**
 * The ordinary gradient of PyTorch's batch loss (what `loss.backward()` leaves in `.grad`),
 * flattened in `parameters()` order: one forward and one backward pass, summed over samples.
 *
 * @example
 * ```ts
 * import { Linear, batchGradient, randn } from "jacobian-wasm";
 * const g = batchGradient(new Linear(3, 2), randn([4, 3], 0), randn([4, 2], 1), { loss: "mse" }); // [8]
 * ```
 */
export function batchGradient(net: Module, x: Tensor, target: Target, options: Omit<LossOptions, "asTuple">): Tensor {
  const objective = checkLoss(net, x, target, options);
  const plan = runForward(net, x, 1, "summed");
  seedLoss(plan, objective, 0, plan.N);
  plan.backwardSummed();
  return { shape: [plan.D], data: gradientVector(plan).slice() };
}

/**
 * The naive reference for `perSampleGradients`: N separate forward and backward passes of
 * one sample each, through the ordinary summed-gradient path. Same result, N times the work:
 * for tests and for measuring what the one-pass method saves.
 *
 * @example
 * ```ts
 * import { Linear, perSampleGradientsNaive, randn } from "jacobian-wasm";
 * const G = perSampleGradientsNaive(new Linear(3, 2), randn([4, 3], 0), randn([4, 2], 1), { loss: "mse" });
 * ```
 */
export function perSampleGradientsNaive(net: Module, x: Tensor, target: Target, options: LossOptions): Tensor | Tensor[] {
  const objective = checkLoss(net, x, target, options);
  const { N, sampleShape } = checkBatch(x);
  checkFinite(x.data, x.shape, "input");
  const plan = planCache(net).get(net, sampleShape, 1, 1, "summed");
  const writer = new ResultWriter(net, N, 1, plan.D, options);
  plan.prepare();
  for (let n = 0; n < N; n++) {
    plan.writeInput(x.data, n);
    plan.forward();
    seedLoss(plan, objective, n, 1);
    plan.backwardSummed();
    writer.sink(n, 1, gradientVector(plan));
  }
  return writer.value();
}

/**
 * The naive reference for `jacobian`: per sample, one forward pass and one ordinary backward
 * pass per output element.
 *
 * @example
 * ```ts
 * import { Linear, jacobianNaive, randn } from "jacobian-wasm";
 * const J = jacobianNaive(new Linear(3, 2), randn([4, 3], 0)); // [4, 2, 8]
 * ```
 */
export function jacobianNaive(net: Module, x: Tensor, options: ResultOptions = {}): Tensor | Tensor[] {
  const { N, sampleShape } = checkBatch(x);
  checkFinite(x.data, x.shape, "input");
  const K = outputsPerSample(net, x);
  const plan = planCache(net).get(net, sampleShape, 1, 1, "summed");
  const writer = new ResultWriter(net, N, K, plan.D, options);
  plan.prepare();
  for (let n = 0; n < N; n++) {
    plan.writeInput(x.data, n);
    plan.forward();
    for (let k = 0; k < K; k++) {
      const f32 = arena.f32();
      f32.fill(0, plan.seedPtr >>> 2, (plan.seedPtr >>> 2) + K);
      f32[(plan.seedPtr >>> 2) + k] = 1;
      plan.backwardSummed();
      writer.sink(n * K + k, 1, gradientVector(plan));
    }
  }
  return writer.value();
}

/** Output elements per sample (K), checked layer by layer. */
function outputsPerSample(net: Module, x: Tensor): number {
  const { sampleShape } = checkBatch(x);
  const K = numel(planCache(net).outputShape(net, sampleShape));
  if (K === 0) throw new ShapeError(`jacobian: the network's output for one sample is empty`);
  return K;
}

/** A loss objective checked against the network and the batch. */
interface LossObjective {
  loss: LossName;
  reduction: Reduction;
  /** The whole batch's output shape, (N, ...). */
  outputShape: number[];
  target: PreparedTarget;
}

function checkLoss(net: Module, x: Tensor, target: Target, options: Omit<LossOptions, "asTuple">): LossObjective {
  const { loss, reduction } = lossOptions(options);
  const { N, sampleShape } = checkBatch(x);
  const outputShape = [N, ...planCache(net).outputShape(net, sampleShape)];
  return { loss, reduction, outputShape, target: prepareTarget(loss, outputShape, target) };
}

/** Seeds the plan's output gradient with the loss gradient of samples [first, first + count) of the batch. */
function seedLoss(plan: Plan, objective: LossObjective, first: number, count: number): void {
  const f32 = arena.f32();
  const size = count * numel(plan.outShape);
  seedLossGradient(
    objective.loss,
    objective.reduction,
    f32.subarray(plan.outputPtr >>> 2, (plan.outputPtr >>> 2) + size),
    objective.outputShape,
    objective.target,
    f32.subarray(plan.seedPtr >>> 2, (plan.seedPtr >>> 2) + size),
    first,
    count,
  );
}

function lossOptions(options: Omit<LossOptions, "asTuple">): { loss: LossName; reduction: Reduction } {
  if (!options || (options.loss !== "cross_entropy" && options.loss !== "mse")) {
    throw new RangeError(`perSampleGradients: options.loss must be "cross_entropy" or "mse", got ${JSON.stringify(options?.loss)}`);
  }
  const reduction = options.reduction ?? "mean";
  if (reduction !== "sum" && reduction !== "mean") {
    throw new RangeError(`perSampleGradients: options.reduction must be "sum" or "mean", got ${JSON.stringify(reduction)}`);
  }
  return { loss: options.loss, reduction };
}

/** Seeds row r = n·K + k of the output gradient with the k-th one-hot vector. */
function seedOneHotRows(plan: Plan): void {
  const f32 = arena.f32();
  const K = plan.K;
  const start = plan.seedPtr >>> 2;
  f32.fill(0, start, start + plan.R * K);
  for (let r = 0; r < plan.R; r++) f32[start + r * K + (r % K)] = 1;
}

/** The summed gradient vector of a "summed" plan, as a view of WASM memory. */
function gradientVector(plan: Plan): Float32Array {
  const start = plan.gradientPtr >>> 2;
  return arena.f32().subarray(start, start + plan.D);
}
