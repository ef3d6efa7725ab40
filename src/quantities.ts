/**
 * What per-sample gradients are computed for, without handing out the N × D matrix: per-sample
 * norms (per parameter tensor and in total), the gradients' second moment and variance, the
 * empirical NTK, and the clipped sum of DP-SGD. Each is a function of the rows of J exactly as
 * `jacobian` / `perSampleGradients` return them (same reduction scaling), written once on the
 * seam of src/jacobian.ts: the J-chunk stream (`streamRows`) reduced in cache by the kernels of
 * assembly/quantities.ts. No layer knows of them.
 */
import { MemoryError, ShapeError, ValueError } from "./errors.ts";
import { checkBatch } from "./forward.ts";
import type { Module, Step } from "./layers/module.ts";
import type { LossName, Reduction, Target } from "./losses.ts";
import { outputsPerSample, parameterAt, streamRows } from "./jacobian.ts";
import type { RowObjective } from "./jacobian.ts";
import type { BatchRuns } from "./forward.ts";
import type { Plan } from "./plan.ts";
import { numel } from "./tensor.ts";
import type { Tensor } from "./tensor.ts";
import { align, arena, kernels, MAX_BYTES } from "./wasm.ts";

/**
 * Options of the quantities: without `loss`, the rows are the output's Jacobian.
 *
 * @example
 * ```ts
 * import { Linear, batchL2, randn } from "jacobian-wasm";
 * import type { QuantityOptions } from "jacobian-wasm";
 * const options: QuantityOptions = { loss: "mse", reduction: "sum", ghostNorms: "auto" };
 * const l2 = batchL2(new Linear(3, 2), randn([8, 3], 0), randn([8, 2], 1), options); // [8, 2]
 * const ofOutputs = batchL2(new Linear(3, 1), randn([8, 3], 0)); // no loss: the output's gradients
 * ```
 */
export interface QuantityOptions {
  /** The loss whose per-sample gradients are the rows; without it, the rows are the output's Jacobian (one row per output element). */
  loss?: LossName;
  /** PyTorch's reduction of the batch loss (default "mean", as PyTorch). */
  reduction?: Reduction;
  /** The per-layer path of the norm quantities (batchL2, perSampleNorms, clippedGradientSum); default "auto". */
  ghostNorms?: GhostNorms;
}

/**
 * Options of `clippedGradientSum`.
 *
 * @example
 * ```ts
 * import { Linear, clippedGradientSum, randn } from "jacobian-wasm";
 * import type { ClipOptions } from "jacobian-wasm";
 * const options: ClipOptions = { loss: "mse", reduction: "sum", maxNorm: 0.5 };
 * const { gradient } = clippedGradientSum(new Linear(3, 2), randn([8, 3], 0), randn([8, 2], 1), options); // [8]
 * ```
 */
export interface ClipOptions extends QuantityOptions {
  /** The bound C on each sample's gradient norm. */
  maxNorm: number;
}

/**
 * The clipped sum and the per-sample norms it was clipped by.
 *
 * @example
 * ```ts
 * import { Linear, clippedGradientSum, randn } from "jacobian-wasm";
 * import type { ClippedSum } from "jacobian-wasm";
 * const result: ClippedSum = clippedGradientSum(new Linear(3, 2), randn([8, 3], 0), randn([8, 2], 1), { loss: "mse", reduction: "sum", maxNorm: 0.5 });
 * const clipped = Array.from(result.norms.data).filter((norm) => norm > 0.5).length; // samples scaled down
 * ```
 */
export interface ClippedSum {
  /** Σ_n J[n] · min(1, C / ‖J[n]‖), `[D]`. */
  gradient: Tensor;
  /** ‖J[n]‖, `[N]`. */
  norms: Tensor;
}

function objectiveOf(what: string, target: Target | undefined, options: QuantityOptions | undefined): RowObjective {
  if (options?.loss === undefined) {
    if (target !== undefined) throw new RangeError(`${what}: a target was given without options.loss ("cross_entropy" or "mse")`);
    return {};
  }
  if (target === undefined) throw new RangeError(`${what}: options.loss "${options.loss}" needs a target`);
  return { target, loss: options.loss, reduction: options.reduction };
}

/** Refuses a batch with several rows per sample: the quantity is defined per sample. */
function oneRowPerSample(what: string, batch: BatchRuns): void {
  if (batch.K !== 1) {
    throw new ShapeError(
      `${what}: needs one row of J per sample (a loss, or an output of one number per sample); ` +
        `this network's output has ${batch.K} elements per sample (use ntk, or jacobian for [N, K, D])`,
    );
  }
}

/**
 * Memory above the batch's plans for a quantity's accumulators: grows the WASM memory and
 * hands out 64-byte aligned ranges (nothing else runs while the quantity streams).
 */
function scratchAbove(batch: BatchRuns): (bytes: number) => number {
  let cursor = align(batch.end, 64);
  return (bytes) => {
    const ptr = cursor;
    cursor = align(cursor + bytes, 64);
    arena.ensure(cursor);
    return ptr;
  };
}

/**
 * Each sample's squared gradient norm per parameter tensor, `[N, P]` in float64: from the
 * Gram identity of each step that has one and prefers it (`Step.squaredNorms`: no gradient
 * formed), from the chunks of J for the others, whose columns alone are then written.
 *
 * With `maxNorm`, the same pass also gives DP-SGD's clipped sum Σ_n min(1, C/‖J[n]‖)·J[n]:
 * a chunk holds its rows whole but for the Gram steps' columns, whose norms are taken before
 * the chunks, so each row's clip factor is known while the chunk is in cache, and the chunk
 * is added, weighted, to the sum; the Gram steps' output gradients are then scaled by the
 * factors, row by row, and their ordinary summed gradient is the weighted sum of theirs
 * (their gradient is linear in gy). One forward and one backward pass in all.
 */
function tensorSquaredNorms(
  what: string,
  net: Module,
  x: Tensor,
  objective: RowObjective,
  ghost: GhostNorms = "auto",
  maxNorm?: number,
): { values: Float64Array; N: number; ghostSteps: number; clipped?: Float32Array } {
  let out = 0;
  let P = 0;
  let ghostSteps: number[] = [];
  let starts: number[] = [];
  let sum = 0;
  const batch = streamRows(net, x, objective, (batch) => {
    oneRowPerSample(what, batch);
    starts = parameterStarts(net, batch);
    P = starts.length - 1;
    const slotOf = new Map(starts.slice(0, -1).map((column, p) => [column, p]));
    // Chosen on the first run's steps; every run's plan has the same steps in the same order.
    const trainable = batch.firstPlan.trainableSteps;
    const prefers = (step: Step) => step.squaredNorms !== undefined && (ghost === "always" || (ghost === "auto" && step.squaredNorms.preferred));
    ghostSteps = trainable.flatMap((step, i) => (prefers(step) ? [i] : []));
    const taken = new Set(ghostSteps.flatMap((i) => trainable[i].squaredNorms!.columns.map((column) => slotOf.get(column)!)));
    const segments: number[] = [];
    for (let p = 0; p < P; p++) if (!taken.has(p)) segments.push(starts[p], starts[p + 1], p);
    const take = scratchAbove(batch);
    const segmentsPtr = take(segments.length * 4);
    arena.i32().set(segments, segmentsPtr >>> 2);
    out = take(batch.N * P * 8);
    const count = segments.length / 3;
    const k = kernels();
    const ghostNorms = (plan: Plan, firstSample: number) => {
      for (const i of ghostSteps) {
        const { columns, run } = plan.trainableSteps[i].squaredNorms!;
        run(out + firstSample * P * 8, P, columns.map((column) => starts.indexOf(column)));
      }
    };
    if (maxNorm === undefined) {
      return {
        sink: (firstRow, rows, chunk) => k.rows_segment_sq_norms(chunk.byteOffset, rows, batch.D, segmentsPtr, count, out + firstRow * P * 8, P),
        skip: ghostSteps,
        beforeRows: ghostNorms,
      };
    }
    const factors = take(batch.N * 4);
    sum = take(batch.D * 4);
    arena.f32().fill(0, sum >>> 2, (sum >>> 2) + batch.D);
    /** Clip factors of rows [first, first + rows), whose squared norms are all in place. */
    const clipFactors = (first: number, rows: number) => {
      const squares = new Float64Array(k.memory.buffer, out + first * P * 8, rows * P);
      const f32 = arena.f32();
      for (let r = 0; r < rows; r++) {
        let total = 0;
        for (let p = 0; p < P; p++) total += squares[r * P + p];
        const norm = Math.sqrt(total);
        f32[(factors >>> 2) + first + r] = norm > maxNorm ? maxNorm / norm : 1;
      }
    };
    return {
      sink: (firstRow, rows, chunk) => {
        k.rows_segment_sq_norms(chunk.byteOffset, rows, batch.D, segmentsPtr, count, out + firstRow * P * 8, P);
        clipFactors(firstRow, rows);
        k.rows_weighted_segment_sum(chunk.byteOffset, rows, batch.D, factors + firstRow * 4, segmentsPtr, count, sum);
      },
      skip: ghostSteps,
      beforeRows: ghostNorms,
      afterRun: (plan, firstSample) => {
        if (count === 0) clipFactors(firstSample, plan.N); // no chunk: every step took its norms by the Gram identity
        const steps = ghostSteps.map((i) => plan.trainableSteps[i]);
        for (const step of steps) k.scale_rows(step.gy, plan.N, numel(step.outShape), factors + firstSample * 4);
        plan.addGradients(steps, sum);
      },
    };
  });
  const values = new Float64Array(kernels().memory.buffer, out, batch.N * P).slice();
  // Chunks with ghost-normed columns are not scanned for overflow (their columns are stale): a
  // NaN or infinity in J shows here, in the squared norms, as one.
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new ValueError(
      `${what}: the squared norm of sample ${Math.floor(bad / P)}'s gradient w.r.t. ${parameterAt(net, starts[bad % P])} is ${values[bad]}: ` +
        `the gradient overflowed float32 (beyond ±3.4e38) in the backward pass; scale the input, the targets or the layer's parameters down`,
    );
  }
  const clipped = maxNorm === undefined ? undefined : arena.f32().slice(sum >>> 2, (sum >>> 2) + batch.D);
  return { values, N: batch.N, ghostSteps: ghostSteps.length, clipped };
}

/** Per-sample squared norms summed over the tensors, `[N]` in float64. */
function totalSquaredNorms(what: string, net: Module, x: Tensor, objective: RowObjective, ghost?: GhostNorms): Float64Array {
  const { values, N } = tensorSquaredNorms(what, net, x, objective, ghost);
  const P = values.length / N;
  const total = new Float64Array(N);
  for (let n = 0; n < N; n++) for (let p = 0; p < P; p++) total[n] += values[n * P + p];
  return total;
}

/**
 * Which per-layer norm path the norm quantities take: `"auto"` (default) the Gram identity
 * where it moves fewer bytes than the layer's per-sample gradients, `"always"` wherever a layer
 * has one, `"never"` the gradients themselves (tests use the last two to check both paths).
 *
 * @example
 * ```ts
 * import { Linear, perSampleNorms, randn } from "jacobian-wasm";
 * import type { GhostNorms } from "jacobian-wasm";
 * const net = new Linear(64, 64), x = randn([8, 64], 0), y = randn([8, 64], 1);
 * const viaGram = perSampleNorms(net, x, y, { loss: "mse", ghostNorms: "always" satisfies GhostNorms });
 * const viaGradients = perSampleNorms(net, x, y, { loss: "mse", ghostNorms: "never" }); // equal up to rounding
 * ```
 */
export type GhostNorms = "auto" | "always" | "never";

/** The first column of each parameter tensor in J, then D. */
function parameterStarts(net: Module, batch: BatchRuns): number[] {
  const starts = [0];
  for (const [, t] of net.parameters()) starts.push(starts[starts.length - 1] + t.data.length);
  if (starts[starts.length - 1] !== batch.D) throw new Error("internal: parameters() and the plan disagree on D");
  return starts;
}

/**
 * A float32 result of a quantity, refused when a value computed in float64 is beyond float32's
 * range (a squared norm of gradients past 1.8e19, say): `where(i)` names element i.
 */
function float32Result(what: string, values: ArrayLike<number>, where: (i: number) => string, map: (v: number) => number = (v) => v): Float32Array {
  const data = Float32Array.from(values, map);
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new ValueError(
      `${what}: ${where(bad)} is ${map(values[bad])}, beyond float32's range (±3.4e38): scale the input, the targets or the parameters down`,
    );
  }
  return data;
}

/**
 * BackPACK's BatchL2Grad: the squared norm of each sample's gradient per parameter tensor,
 * `[N, P]` (P tensors in `parameters()` order).
 *
 * @example
 * ```ts
 * import { Sequential, Linear, ReLU, batchL2, randn } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
 * const y = randn([16, 3], 1);
 * const l2 = batchL2(net, randn([16, 4], 0), y, { loss: "mse" }); // [16, 4]: two weights, two biases
 * ```
 */
export function batchL2(net: Module, x: Tensor, target?: Target, options?: QuantityOptions): Tensor {
  const { values, N } = tensorSquaredNorms("batchL2", net, x, objectiveOf("batchL2", target, options), options?.ghostNorms);
  const P = values.length / N;
  return { shape: [N, P], data: float32Result("batchL2", values, (i) => `the squared norm of sample ${Math.floor(i / P)}'s gradient for parameter tensor ${i % P}`) };
}

/**
 * The norm of each sample's whole gradient, `[N]` (Opacus's per-sample norms).
 *
 * @example
 * ```ts
 * import { Sequential, Linear, ReLU, perSampleNorms, randn } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
 * const labels = { shape: [16], data: new Int32Array(16).map((_, i) => i % 3) };
 * const norms = perSampleNorms(net, randn([16, 4], 0), labels, { loss: "cross_entropy", reduction: "sum" }); // [16]
 * ```
 */
export function perSampleNorms(net: Module, x: Tensor, target?: Target, options?: QuantityOptions): Tensor {
  const total = totalSquaredNorms("perSampleNorms", net, x, objectiveOf("perSampleNorms", target, options), options?.ghostNorms);
  return { shape: [total.length], data: float32Result("perSampleNorms", total, (n) => `the gradient norm of sample ${n}`, Math.sqrt) };
}

/** Σ_n J[n, i] and Σ_n J[n, i]² in float64, and N. */
function columnMoments(what: string, net: Module, x: Tensor, target: Target | undefined, options: QuantityOptions | undefined): { sum: Float64Array; squares: Float64Array; N: number } {
  let sumPtr = 0;
  let squaresPtr = 0;
  const batch = streamRows(net, x, objectiveOf(what, target, options), (batch) => {
    oneRowPerSample(what, batch);
    const take = scratchAbove(batch);
    sumPtr = take(batch.D * 8);
    squaresPtr = take(batch.D * 8);
    const f64 = new Float64Array(kernels().memory.buffer);
    f64.fill(0, sumPtr >>> 3, (sumPtr >>> 3) + batch.D);
    f64.fill(0, squaresPtr >>> 3, (squaresPtr >>> 3) + batch.D);
    const k = kernels();
    return (_firstRow, rows, chunk) => k.column_moments(chunk.byteOffset, rows, batch.D, batch.D, sumPtr, squaresPtr);
  });
  const buffer = kernels().memory.buffer;
  const sum = new Float64Array(buffer, sumPtr, batch.D).slice();
  const squares = new Float64Array(buffer, squaresPtr, batch.D).slice();
  // A NaN or infinity in J (a gradient that overflowed float32) shows in the float64 sums.
  const bad = squares.findIndex((v, i) => !Number.isFinite(v) || !Number.isFinite(sum[i]));
  if (bad >= 0) {
    throw new ValueError(
      `${what}: the gradient w.r.t. ${parameterAt(net, bad)} holds ${squares[bad]} in the sum of its squares over the batch: ` +
        `it overflowed float32 (beyond ±3.4e38) in the backward pass; scale the input, the targets or the layer's parameters down`,
    );
  }
  return { sum, squares, N: batch.N };
}

/**
 * BackPACK's SumGradSquared: Σ_n J[n, i]², `[D]`.
 *
 * @example
 * ```ts
 * import { Linear, sumGradSquared, randn } from "jacobian-wasm";
 * const s = sumGradSquared(new Linear(3, 1), randn([8, 3], 0), randn([8, 1], 1), { loss: "mse", reduction: "sum" }); // [4]
 * ```
 */
export function sumGradSquared(net: Module, x: Tensor, target?: Target, options?: QuantityOptions): Tensor {
  const { squares } = columnMoments("sumGradSquared", net, x, target, options);
  return { shape: [squares.length], data: float32Result("sumGradSquared", squares, (i) => `the sum of squared gradients w.r.t. ${parameterAt(net, i)}`) };
}

/**
 * BackPACK's Variance: (1/N) Σ_n (J[n, i] − mean_n J[n, i])², `[D]`.
 *
 * @example
 * ```ts
 * import { Linear, variance, randn } from "jacobian-wasm";
 * const v = variance(new Linear(3, 1), randn([8, 3], 0), randn([8, 1], 1), { loss: "mse", reduction: "sum" }); // [4]
 * ```
 */
export function variance(net: Module, x: Tensor, target?: Target, options?: QuantityOptions): Tensor {
  const { sum, squares, N } = columnMoments("variance", net, x, target, options);
  const data = new Float32Array(sum.length);
  for (let i = 0; i < data.length; i++) {
    const mean = sum[i] / N;
    data[i] = Math.max(0, squares[i] / N - mean * mean);
    if (!Number.isFinite(data[i])) float32Result("variance", [squares[i] / N - mean * mean], () => `the variance of the gradient w.r.t. ${parameterAt(net, i)}`);
  }
  return { shape: [data.length], data };
}

/**
 * The empirical neural tangent kernel J Jᵀ: `[N, N]` for one row per sample, `[N·K, N·K]` for
 * K outputs per sample (row n·K + k is sample n's output k). J is gathered in WebAssembly
 * memory (N·K × D floats, which must fit in it) and multiplied with the GEMM kernel.
 *
 * @example
 * ```ts
 * import { Sequential, Linear, Tanh, ntk, randn } from "jacobian-wasm";
 * const net = new Sequential(new Linear(3, 16), new Tanh(), new Linear(16, 1));
 * const K = ntk(net, randn([5, 3], 0)); // [5, 5]: K[i, j] = ⟨∂f(x_i)/∂θ, ∂f(x_j)/∂θ⟩
 * const withTwoOutputs = ntk(new Linear(3, 2), randn([5, 3], 0)); // [10, 10]
 * ```
 */
export function ntk(net: Module, x: Tensor, target?: Target, options?: QuantityOptions): Tensor {
  const objective = objectiveOf("ntk", target, options);
  checkNtkSize(net, x, objective);
  let J = 0;
  let gram = 0;
  const batch = streamRows(net, x, objective, (batch) => {
    const take = scratchAbove(batch);
    J = take(batch.R * batch.D * 4);
    gram = take(batch.R * batch.R * 4);
    return (firstRow, _rows, chunk) => arena.f32().copyWithin((J >>> 2) + firstRow * batch.D, chunk.byteOffset >>> 2, (chunk.byteOffset >>> 2) + chunk.length);
  });
  const R = batch.R;
  kernels().gemm_nt(R, R, batch.D, J, batch.D, J, batch.D, gram, R, 0);
  const data = arena.f32().slice(gram >>> 2, (gram >>> 2) + R * R);
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new ValueError(
      `ntk: entry [${Math.floor(bad / R)}, ${bad % R}] (a dot product of two rows of J) is ${data[bad]}, beyond float32's range (±3.4e38): ` +
        `scale the input or the parameters down`,
    );
  }
  return { shape: [R, R], data };
}

/**
 * Refuses, before the forward pass, a kernel whose J (R × D) and Gram matrix (R × R, R = N·K
 * rows) cannot be held in one WebAssembly memory together: ntk needs all of J at once.
 */
function checkNtkSize(net: Module, x: Tensor, objective: RowObjective): void {
  const { N } = checkBatch(x);
  const K = objective.loss === undefined ? outputsPerSample(net, x) : 1;
  const D = net.parameters().reduce((sum, [, p]) => sum + p.data.length, 0);
  const R = N * K;
  const bytes = (R * D + R * R) * 4;
  if (bytes > MAX_BYTES) {
    const fits = Math.floor((Math.sqrt(D * D + MAX_BYTES) - D) / 2 / K); // the largest N with (R·D + R²)·4 ≤ MAX_BYTES
    throw new MemoryError(
      `ntk: needs J (N·K × D = ${R} × ${D} floats) and the kernel (${R} × ${R}) in WebAssembly memory at once, ` +
        `${bytes} bytes (${(bytes / 2 ** 30).toFixed(2)} GiB), over the 4 GiB one memory holds: use fewer samples a call (fewer than ${fits}, less what the network's activations take)`,
    );
  }
}

/**
 * DP-SGD's clipped sum: Σ_n J[n] · min(1, C / ‖J[n]‖), `[D]`, with the norms ‖J[n]‖ it used.
 * J is never formed, and one forward and one backward pass give both: each chunk of rows is
 * reduced to its norms and clip factors and added, weighted, to the sum while it is in cache;
 * layers whose norms come from the Gram identity have their output gradients scaled by the
 * factors and contracted once (their ordinary summed gradient).
 *
 * @example
 * ```ts
 * import { Sequential, Linear, ReLU, clippedGradientSum, randn } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
 * const labels = { shape: [16], data: new Int32Array(16).map((_, i) => i % 3) };
 * const { gradient, norms } = clippedGradientSum(net, randn([16, 4], 0), labels, { loss: "cross_entropy", reduction: "sum", maxNorm: 1 });
 * ```
 */
export function clippedGradientSum(net: Module, x: Tensor, target: Target | undefined, options: ClipOptions): ClippedSum {
  const maxNorm = options?.maxNorm;
  if (typeof maxNorm !== "number" || !(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new ValueError(`clippedGradientSum: maxNorm must be a positive finite number, got ${maxNorm}`);
  }
  const objective = objectiveOf("clippedGradientSum", target, options);
  const { values, N, clipped } = tensorSquaredNorms("clippedGradientSum", net, x, objective, options.ghostNorms, maxNorm);
  const norms = new Float32Array(N);
  const P = values.length / N;
  for (let n = 0; n < N; n++) {
    let total = 0;
    for (let p = 0; p < P; p++) total += values[n * P + p];
    norms[n] = Math.sqrt(total);
  }
  return { gradient: { shape: [clipped!.length], data: clipped! }, norms: { shape: [N], data: norms } };
}
