/**
 * The quantities: per-sample gradients of a loss and Jacobians of the output, in one forward
 * and one backward pass; and the naive reference (one ordinary backward pass per sample).
 * Written once on top of the steps' primitives; no layer knows about them.
 */
import { BatchRuns, checkBatch, checkFinite, exclusively } from "./forward.ts";
import type { Module, Step } from "./layers/module.ts";
import type { LossName, Reduction, Target } from "./losses.ts";
import { IGNORE_INDEX, prepareTarget, seedLossGradient } from "./losses.ts";
import type { PreparedTarget } from "./losses.ts";
import type { Plan } from "./plan.ts";
import type { RowSink } from "./plan.ts";
import { checkResultSize, ResultWriter } from "./results.ts";
import type { ResultOptions, StreamOptions } from "./results.ts";
export type { ResultOptions, StreamOptions };
import { planCache } from "./forward.ts";
import type { Tensor } from "./tensor.ts";
import { numel } from "./tensor.ts";
import { arena, kernels, memoryLimit } from "./wasm.ts";
import { ShapeError, ValueError } from "./errors.ts";

/**
 * Options of `perSampleGradients`.
 *
 * @example
 * ```ts
 * import { Linear, perSampleGradients, randn, tensor } from "jacobian-wasm";
 * import type { LossOptions } from "jacobian-wasm";
 * const options: LossOptions = { loss: "cross_entropy", reduction: "sum" };
 * const G = perSampleGradients(new Linear(3, 4), randn([2, 3], 0), tensor([1, 3], [2]), options); // [2, 16]
 * ```
 */
export interface LossOptions extends ResultOptions {
  /** The loss: `"cross_entropy"` (PyTorch's `F.cross_entropy`, targets class indices or probabilities) or `"mse"` (`F.mse_loss`). */
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
export function jacobian(net: Module, x: Tensor, options: StreamOptions): void;
/**
 * The Jacobian as one matrix, `[N, D]` or `[N, K, D]`, in a new array or in `options.out`.
 *
 * @example
 * ```ts
 * import { Linear, jacobian, randn } from "jacobian-wasm";
 * const out = new Float32Array(4 * 2 * 8);
 * const J = jacobian(new Linear(3, 2), randn([4, 3], 0), { out }); // J.data === out, shape [4, 2, 8]
 * ```
 */
export function jacobian(net: Module, x: Tensor, options?: ResultOptions & { asTuple?: false }): Tensor;
/**
 * The Jacobian split by parameter, `asTuple: true`: one tensor `[N, K, ...param.shape]`
 * (`[N, ...param.shape]` for K = 1) per parameter, in `parameters()` order.
 *
 * @example
 * ```ts
 * import { Linear, jacobian, randn } from "jacobian-wasm";
 * const [dWeight, dBias] = jacobian(new Linear(3, 2), randn([4, 3], 0), { asTuple: true }); // [4, 2, 2, 3], [4, 2, 2]
 * ```
 */
export function jacobian(net: Module, x: Tensor, options: ResultOptions & { asTuple: true }): Tensor[];
/** The Jacobian, as a matrix or (with `asTuple`) one tensor per parameter. */
export function jacobian(net: Module, x: Tensor, options?: ResultOptions): Tensor | Tensor[];
export function jacobian(net: Module, x: Tensor, options: ResultOptions | StreamOptions = {}): Tensor | Tensor[] | void {
  return collectRows(net, x, {}, options);
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
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions & StreamOptions): void;
/**
 * The per-sample gradients as one `[N, D]` matrix, in a new array or in `options.out`.
 *
 * @example
 * ```ts
 * import { Linear, perSampleGradients, randn } from "jacobian-wasm";
 * const G = perSampleGradients(new Linear(3, 2), randn([4, 3], 0), randn([4, 2], 1), { loss: "mse" }); // [4, 8]
 * ```
 */
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions & { asTuple?: false; onChunk?: undefined }): Tensor;
/**
 * The per-sample gradients split by parameter, `asTuple: true`: one tensor
 * `[N, ...param.shape]` per parameter, in `parameters()` order (Opacus's `grad_sample`).
 *
 * @example
 * ```ts
 * import { Linear, perSampleGradients, randn } from "jacobian-wasm";
 * const [gW, gb] = perSampleGradients(new Linear(3, 2), randn([4, 3], 0), randn([4, 2], 1), { loss: "mse", asTuple: true }); // [4, 2, 3], [4, 2]
 * ```
 */
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions & { asTuple: true }): Tensor[];
/** The per-sample gradients, as a matrix or (with `asTuple`) one tensor per parameter. */
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions): Tensor | Tensor[];
export function perSampleGradients(net: Module, x: Tensor, target: Target, options: LossOptions | (LossOptions & StreamOptions)): Tensor | Tensor[] | void {
  lossOptions(options);
  return collectRows(net, x, { target, loss: options.loss, reduction: options.reduction }, options);
}

/** Streams J's rows to `onChunk`, or writes them into the result `options` ask for. */
function collectRows(net: Module, x: Tensor, objective: RowObjective, options: ResultOptions | StreamOptions): Tensor | Tensor[] | void {
  if ("onChunk" in options && options.onChunk !== undefined) {
    const { onChunk } = options;
    if (typeof onChunk !== "function") throw new TypeError(`onChunk must be a function (firstSample, rows), got ${typeof onChunk}`);
    if ((options as ResultOptions).out !== undefined || (options as ResultOptions).asTuple) {
      throw new ShapeError("onChunk: streamed rows go to the callback, so out and asTuple cannot be given with it");
    }
    streamRows(net, x, objective, (batch) => {
      const lead = batch.K === 1 ? [] : [batch.K];
      return finiteRows(net, batch, (firstRow, rows, chunk) => onChunk(firstRow / batch.K, { shape: [rows / batch.K, ...lead, batch.D], data: chunk }));
    });
    return;
  }
  if ((options as ResultOptions).out === undefined) {
    // Refused before any plan is built or memory grown: N, K and D are known from the shapes.
    // A sample that alone does not fit in WebAssembly memory is refused first (onChunk would not help).
    const { N, sampleShape } = checkBatch(x);
    const K = objective.loss === undefined ? outputsPerSample(net, x) : 1;
    if (objective.loss !== undefined) planCache(net).outputShape(net, sampleShape, N);
    planCache(net).samplesPerRun(net, sampleShape, N, K, "per-sample", memoryLimit());
    checkResultSize(N, K, net.parameters().reduce((sum, [, p]) => sum + p.data.length, 0));
  }
  let writer: ResultWriter | undefined;
  streamRows(net, x, objective, (batch) => {
    writer = new ResultWriter(net, batch.N, batch.K, batch.D, options as ResultOptions);
    return finiteRows(net, batch, writer.sink);
  });
  return writer!.value();
}

/**
 * What the rows of J are: without a loss, the network's output (one row per output element
 * of each sample); with a loss and its target, each sample's share of the batch loss's
 * gradient (one row per sample), exactly as `jacobian` and `perSampleGradients` return them.
 */
export interface RowObjective {
  target?: Target;
  loss?: LossName;
  reduction?: Reduction;
}

/**
 * The seam every quantity is written on: one forward and one backward pass, then J's rows in
 * cache-sized chunks, handed to the sink that `makeSink` builds once the batch's sizes (N, K,
 * D, and the end of its memory, above which a quantity may keep its accumulators) are known.
 * Rows are numbered across the whole batch, also when it runs in several runs (a batch larger
 * than the memory limit). A chunk is a view of WASM memory, valid during the call only.
 */
export function streamRows(net: Module, x: Tensor, objective: RowObjective, makeSink: (batch: BatchRuns) => RowSink | RowConsumer): BatchRuns {
  const checked = objective.loss === undefined ? undefined : checkLoss(net, x, objective.target!, { loss: objective.loss, reduction: objective.reduction });
  const batch = new BatchRuns(net, x, checked === undefined ? outputsPerSample(net, x) : 1, "per-sample");
  const made = makeSink(batch);
  const consumer: RowConsumer = typeof made === "function" ? { sink: made } : made;
  let skip: ReadonlySet<Step> | undefined;
  batch.forEach((plan, first) => {
    if (checked === undefined) seedOneHotRows(plan);
    else seedLoss(plan, checked, first, plan.N);
    if (consumer.skip !== undefined) skip = new Set(consumer.skip.map((i) => plan.trainableSteps[i]));
    const rowOffset = first * batch.K;
    const beforeRows = consumer.beforeRows === undefined ? undefined : () => consumer.beforeRows!(plan, first);
    plan.backwardPerSample(first === 0 ? consumer.sink : (firstRow, rows, chunk) => consumer.sink(rowOffset + firstRow, rows, chunk), skip, beforeRows);
    consumer.afterRun?.(plan, first);
  });
  return batch;
}

/** One chunk of J's rows from `rowChunks`: samples [firstSample, firstSample + rows.shape[0]). */
export interface RowChunk {
  firstSample: number;
  /** `[samples, D]`, or `[samples, K, D]` for K outputs per sample: a view of WASM memory, valid until the next chunk is asked for. */
  rows: Tensor;
}

/**
 * The rows `jacobian` / `perSampleGradients` stream to `onChunk`, as a generator: one chunk
 * per `next()`, so that a caller that writes them to a file can hand the event loop a turn
 * between chunks (the CLI does, so that its SIGINT and SIGTERM handlers run during a long
 * computation). A call into the library made between two chunks is refused until the generator
 * finishes or is returned: they share its memory. Each chunk is scanned for overflow as
 * `onChunk`'s are.
 */
export function* rowChunks(net: Module, x: Tensor, objective: RowObjective): Generator<RowChunk, void, undefined> {
  const checked = objective.loss === undefined ? undefined : checkLoss(net, x, objective.target!, { loss: objective.loss, reduction: objective.reduction });
  const batch = new BatchRuns(net, x, checked === undefined ? outputsPerSample(net, x) : 1, "per-sample");
  const lead = batch.K === 1 ? [] : [batch.K];
  for (const [plan, first] of batch.runs()) {
    if (checked === undefined) seedOneHotRows(plan);
    else seedLoss(plan, checked, first, plan.N);
    for (const { firstRow, rows, chunk } of plan.perSampleChunks()) {
      const bad: number = kernels().first_nonfinite(chunk.byteOffset, chunk.length);
      if (bad >= 0) throw overflowInJ(net, batch, first * batch.K + firstRow + Math.floor(bad / batch.D), bad % batch.D, chunk[bad]);
      yield { firstSample: first + firstRow / batch.K, rows: { shape: [rows / batch.K, ...lead, batch.D], data: chunk } };
    }
  }
}

/**
 * `sink`, after a scan of each chunk for NaN or ±Infinity (J's rows as returned: the
 * quantities need none, an overflow in J shows in their float64 sums, which they check).
 */
function finiteRows(net: Module, batch: BatchRuns, sink: RowSink): RowSink {
  const k = kernels();
  return (firstRow, rows, chunk) => {
    const bad: number = k.first_nonfinite(chunk.byteOffset, chunk.length);
    if (bad >= 0) throw overflowInJ(net, batch, firstRow + Math.floor(bad / batch.D), bad % batch.D, chunk[bad]);
    sink(firstRow, rows, chunk);
  };
}

/**
 * The error for a NaN or ±Infinity in row `row`, column `column` of J: with a finite input
 * and a finite output, the gradient itself overflowed float32 in the backward pass.
 * @ignore
 */
export function overflowInJ(net: Module, batch: { K: number }, row: number, column: number, value: number): ValueError {
  const sample = Math.floor(row / batch.K);
  const at = batch.K === 1 ? `sample ${sample}` : `sample ${sample}, output ${row % batch.K}`;
  return new ValueError(
    `the gradient w.r.t. ${parameterAt(net, column)} is ${value} for ${at}: it overflowed float32 (beyond ±3.4e38) in the backward ` +
      `pass: scale the input, the targets or the layer's parameters down`,
  );
}

/** `parameter 0.weight[3] (layer 0 (Linear))`: the parameter, index and layer of column `column` of J. */
export function parameterAt(net: Module, column: number): string {
  let start = 0;
  for (const [name, tensor] of net.parameters()) {
    if (column < start + tensor.data.length) {
      let layer = "";
      net.visit("", (prefix, module) => {
        if (layer === "" && module.ownParameters().some(([, t]) => t === tensor)) {
          layer = prefix === "" ? module.typeName : `${prefix.replace(/\.$/, "")} (${module.typeName})`;
        }
      });
      return `parameter ${name}[${column - start}] (layer ${layer})`;
    }
    start += tensor.data.length;
  }
  return `column ${column}`;
}

/** A sink that takes some steps' parameters another way, run by run. */
export interface RowConsumer {
  sink: RowSink;
  /** The trainable steps (indices into `plan.trainableSteps`) whose columns of each chunk are left unwritten. */
  skip?: readonly number[];
  /** Before each run's rows, with its plan and first sample: every trainable step's output gradient is in place. */
  beforeRows?: (plan: Plan, firstSample: number) => void;
  /** After each run's rows, with its plan and first sample: the skipped steps' output gradients are in place. */
  afterRun?: (plan: Plan, firstSample: number) => void;
}

/**
 * The ordinary backward pass of a batch from the output gradient `seed` writes for each run,
 * summed over the runs (in float64 when there are several), `[D]`.
 */
function summedGradient(net: Module, x: Tensor, seed: (plan: Plan, firstSample: number) => void): Tensor {
  const batch = new BatchRuns(net, x, 1, "summed");
  const sum = batch.samplesPerRun === batch.N ? undefined : new Float64Array(batch.D);
  let result: Float32Array | undefined;
  batch.forEach((plan, first) => {
    seed(plan, first);
    plan.backwardSummed();
    const gradient = gradientVector(plan);
    const bad: number = kernels().first_nonfinite(plan.gradientPtr, plan.D);
    if (bad >= 0) {
      throw new ValueError(
        `the gradient w.r.t. ${parameterAt(net, bad)} summed over the batch is ${gradient[bad]}: it overflowed float32 ` +
          `(beyond ±3.4e38) in the backward pass; scale the input, the targets or the layer's parameters down`,
      );
    }
    if (sum === undefined) result = gradient.slice();
    else for (let i = 0; i < sum.length; i++) sum[i] += gradient[i];
  });
  return { shape: [batch.D], data: result ?? Float32Array.from(sum!) };
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
  return summedGradient(net, x, (plan, first) => seedLoss(plan, objective, first, plan.N));
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
  exclusively("perSampleGradientsNaive", () => {
    plan.prepare();
    for (let n = 0; n < N; n++) {
      plan.writeInput(x.data, n);
      plan.forward();
      seedLoss(plan, objective, n, 1);
      plan.backwardSummed();
      writer.sink(n, 1, gradientVector(plan));
    }
  });
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
  exclusively("jacobianNaive", () => {
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
  });
  return writer.value();
}

/** Output elements per sample (K), checked layer by layer. */
/** K: the network's outputs per sample for batch `x` (rows of J per sample without a loss). @ignore */
export function outputsPerSample(net: Module, x: Tensor): number {
  const { N, sampleShape } = checkBatch(x);
  const K = numel(planCache(net).outputShape(net, sampleShape, N));
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
  const outputShape = [N, ...planCache(net).outputShape(net, sampleShape, N)];
  const prepared = prepareTarget(loss, outputShape, target);
  // PyTorch divides by the number of targets that are not ignored: with none, 0/0 = NaN in
  // every gradient. Refused instead, as a NaN result would be garbage passed on silently.
  if (reduction === "mean" && prepared.kind === "classes" && prepared.classes.every((c) => c === IGNORE_INDEX)) {
    throw new ValueError(
      `cross_entropy: every target is ignore_index (${IGNORE_INDEX}), so the mean over the targets is 0/0 ` +
        `(PyTorch gives NaN); use reduction "sum", or a batch with at least one target`,
    );
  }
  return { loss, reduction, outputShape, target: prepared };
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
  const bad: number = kernels().first_nonfinite(plan.seedPtr, size);
  if (bad >= 0) {
    const width = numel(plan.outShape);
    const seed = arena.f32()[(plan.seedPtr >>> 2) + bad];
    throw new ValueError(
      `${objective.loss}: the loss gradient w.r.t. the output is ${seed} at sample ${first + Math.floor(bad / width)}, ` +
        `output element ${bad % width}: ${objective.loss === "mse" ? "2·(output − target)" : "the softmax minus the target"} ` +
        `overflowed float32 (beyond ±3.4e38); scale the outputs and targets down`,
    );
  }
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
