/**
 * Checking a batch against a network and running its forward pass through cached plans, in
 * runs of as many samples as fit in the memory limit: what every computation starts with.
 */
import { ShapeError, UnsupportedError, ValueError } from "./errors.ts";
import type { Module } from "./layers/module.ts";
import type { Plan, PlanMode } from "./plan.ts";
import { PlanCache } from "./plan.ts";
import type { Tensor } from "./tensor.ts";
import { formatShape, numel } from "./tensor.ts";
import { arena, kernels, memoryLimit } from "./wasm.ts";
import { setComputing } from "./threads/parallel.ts";

const caches = new WeakMap<Module, PlanCache>();

/** The plan cache of a network (one per root module). */
export function planCache(net: Module): PlanCache {
  let cache = caches.get(net);
  if (!cache) {
    cache = new PlanCache();
    caches.set(net, cache);
  }
  return cache;
}

/** What is running in WebAssembly memory now (undefined when nothing is). */
let running: string | undefined;

/**
 * Runs `body` as the one computation in WebAssembly memory: every plan of every network starts
 * at the same address, so a call made while another runs (from inside `onChunk`, or a
 * quasiLinear forward probed mid-run) would overwrite the running one's activations, gradients
 * and rows and corrupt its result silently. Such a call is refused instead; the flag is
 * released however `body` ends, so an exception thrown by user code leaves the library usable.
 */
export function exclusively<T>(what: string, body: () => T): T {
  const release = claim(what);
  try {
    return body();
  } finally {
    release();
  }
}

/**
 * Takes the one-computation flag for `what` (refusing a re-entrant call); returns its release.
 * `wakeWorkers`: a batch whose kernels will be split between threads (see setComputing).
 */
function claim(what: string, wakeWorkers = false): () => void {
  if (running !== undefined) {
    throw new UnsupportedError(
      `jacobian-wasm was called re-entrantly: ${what} was asked for while ${running} was running, from inside its onChunk callback, ` +
        `a quasiLinear forward or between the chunks of a streamed write: every computation shares one WebAssembly memory, so the inner call would overwrite ` +
        `the outer one's buffers; copy what you need (rows.data.slice()) and make the call after the outer one returns`,
    );
  }
  running = what;
  setComputing(true, wakeWorkers);
  return () => {
    running = undefined;
    setComputing(false);
  };
}

/** Checks that `x` is a batch: a tensor with a leading batch dim and as many values as its shape says. */
export function checkBatch(x: Tensor, what = "input"): { N: number; sampleShape: number[] } {
  if (!x || !Array.isArray(x.shape) || !(x.data instanceof Float32Array)) {
    throw new TypeError(`${what} must be a tensor { shape: number[], data: Float32Array }`);
  }
  if (x.shape.length < 1 || x.shape[0] < 1) {
    throw new ShapeError(`${what}: expected a batch (N, ...) with N >= 1, got shape ${formatShape(x.shape)}`);
  }
  if (x.data.length !== numel(x.shape)) {
    throw new ShapeError(`${what}: shape ${formatShape(x.shape)} needs ${numel(x.shape)} values, data has ${x.data.length}`);
  }
  return { N: x.shape[0], sampleShape: x.shape.slice(1) };
}

/** A ValueError naming the first NaN or infinity in `values`, by its index in `shape`. */
export function checkFinite(values: Float32Array, shape: readonly number[], what: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) {
      throw new ValueError(`${what} holds ${v} at index [${unravel(i, shape).join(", ")}]`);
    }
  }
}

/** The multi-index of flat index i in a row-major shape. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return index;
}

const RUNNING: Record<PlanMode, string> = {
  "forward": "a forward pass",
  "per-sample": "a per-sample computation (jacobian, perSampleGradients or a quantity)",
  "summed": "a summed gradient",
};

/**
 * A batch as it runs: in one plan when it fits in the memory limit (`setMemoryLimit`), else in
 * runs of `samplesPerRun` samples, each in a plan of its own size, one after the other. A
 * computation reads the batch's sizes here, then takes each run in turn after its forward pass.
 */
export class BatchRuns {
  /** Samples in the batch. */
  readonly N: number;
  /** Backward rows per sample. */
  readonly K: number;
  /** Backward rows of the batch, N·K. */
  readonly R: number;
  /** Parameters (columns of J). */
  readonly D: number;
  readonly samplesPerRun: number;
  /** The per-sample output shape. */
  readonly outShape: readonly number[];
  /** The end of the largest run's memory: a computation may keep its accumulators above it. */
  readonly end: number;
  /** The plan of the first run (its steps stand for every run's: same network, other sizes). */
  readonly firstPlan: Plan;
  private readonly sampleShape: number[];

  constructor(
    private readonly net: Module,
    private readonly x: Tensor,
    K: number,
    private readonly mode: PlanMode,
  ) {
    const { N, sampleShape } = checkBatch(x);
    const cache = planCache(net);
    cache.outputShape(net, sampleShape, N); // a shape the network rejects fails here, explained
    this.samplesPerRun = cache.samplesPerRun(net, sampleShape, N, K, mode, memoryLimit());
    this.N = N;
    this.K = K;
    this.R = N * K;
    this.sampleShape = sampleShape;
    this.firstPlan = cache.get(net, sampleShape, this.samplesPerRun, K, mode);
    const last = N % this.samplesPerRun;
    const lastEnd = last === 0 ? 0 : cache.get(net, sampleShape, last, K, mode).end;
    this.end = Math.max(this.firstPlan.end, lastEnd);
    this.D = this.firstPlan.D;
    this.outShape = this.firstPlan.outShape;
  }

  /** Each run in turn: its plan prepared, its samples loaded and run forward, then `body`. */
  forEach(body: (plan: Plan, firstSample: number) => void): void {
    for (const [plan, first] of this.runs()) body(plan, first);
  }

  /**
   * `forEach` as a generator: each run's plan (prepared, loaded, run forward) and first sample,
   * one per `next()`. It holds the library from the first `next()` until it finishes or is
   * returned (a `for...of` that breaks or throws returns it), so a streamed write that hands
   * the event loop a turn between chunks cannot have its memory overwritten by a call made then.
   */
  *runs(): Generator<[plan: Plan, firstSample: number], void, undefined> {
    const release = claim(RUNNING[this.mode], this.N >= 2);
    try {
      yield* this.eachRun();
    } finally {
      release();
    }
  }

  private *eachRun(): Generator<[plan: Plan, firstSample: number], void, undefined> {
    const cache = planCache(this.net);
    const width = numel(this.sampleShape);
    for (let first = 0; first < this.N; first += this.samplesPerRun) {
      const samples = Math.min(this.samplesPerRun, this.N - first);
      const plan = cache.get(this.net, this.sampleShape, samples, this.K, this.mode);
      plan.prepare();
      plan.writeInput(this.x.data, first);
      // Checked in WASM memory, after the copy: a SIMD scan instead of a JS loop over the batch.
      const bad: number = kernels().first_nonfinite(plan.inputPtr, samples * width);
      if (bad >= 0) {
        const at = first * width + bad;
        throw new ValueError(`input holds ${this.x.data[at]} at index [${unravel(at, this.x.shape).join(", ")}]`);
      }
      plan.forward();
      checkForwardFinite(plan, first);
      yield [plan, first];
    }
  }
}

/**
 * Refuses a run whose output holds NaN or ±Infinity: the input was finite, so a layer's
 * forward pass overflowed float32 (|value| > 3.4e38); the error names the first such layer.
 * One SIMD scan of the output; the layers are scanned only when it fails.
 */
function checkForwardFinite(plan: Plan, first: number): void {
  const k = kernels();
  const outWidth = numel(plan.outShape);
  if (k.first_nonfinite(plan.outputPtr, plan.N * outWidth) < 0) return;
  for (const step of plan.allSteps) {
    if (step.output === undefined) continue;
    const width = numel(step.outShape);
    const bad: number = k.first_nonfinite(step.output, plan.N * width);
    if (bad < 0) continue;
    const value = arena.f32()[(step.output >>> 2) + bad];
    const sample = first + Math.floor(bad / width);
    throw new ValueError(
      `${step.label}: its output holds ${value} at [${[sample, ...unravel(bad % width, step.outShape)].join(", ")}] for a finite ` +
        `input: its forward pass overflowed float32 (values beyond ±3.4e38); scale the input or this layer's parameters down`,
    );
  }
  const bad: number = k.first_nonfinite(plan.outputPtr, plan.N * outWidth);
  const sample = first + Math.floor(bad / outWidth);
  throw new ValueError(
    `the network's output holds ${arena.f32()[(plan.outputPtr >>> 2) + bad]} at [${[sample, ...unravel(bad % outWidth, plan.outShape)].join(", ")}] ` +
      `for a finite input: its forward pass overflowed float32 (values beyond ±3.4e38); scale the input or the parameters down`,
  );
}

/** The network's output for the batch, `[N, ...outShape]`, run by run. */
export function runOutput(net: Module, x: Tensor): Tensor {
  const runs = new BatchRuns(net, x, 1, "forward");
  const width = numel(runs.outShape);
  const data = new Float32Array(runs.N * width);
  runs.forEach((plan, first) => {
    const start = plan.outputPtr >>> 2;
    data.set(arena.f32().subarray(start, start + plan.N * width), first * width);
  });
  return { shape: [runs.N, ...runs.outShape], data };
}
