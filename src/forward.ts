/**
 * Checking a batch against a network and running its forward pass through cached plans, in
 * runs of as many samples as fit in the memory limit: what every computation starts with.
 */
import { ShapeError, ValueError } from "./errors.ts";
import type { Module } from "./layers/module.ts";
import type { Plan, PlanMode } from "./plan.ts";
import { PlanCache } from "./plan.ts";
import type { Tensor } from "./tensor.ts";
import { formatShape, numel } from "./tensor.ts";
import { arena, kernels, memoryLimit } from "./wasm.ts";

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

  constructor(private readonly net: Module, private readonly x: Tensor, K: number, private readonly mode: PlanMode) {
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

  /** `forEach` as a generator: each run's plan (prepared, loaded, run forward) and first sample, one per `next()`. */
  *runs(): Generator<[plan: Plan, firstSample: number], void, undefined> {
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
      yield [plan, first];
    }
  }
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
