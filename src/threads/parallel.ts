/**
 * How a computation is shared between threads, without any layer knowing: the kernels object
 * the steps call is a facade over the threads build's exports that
 *  - splits the batch kernels of the forward and backward passes by samples (the rules below:
 *    which argument counts the samples and how far each pointer moves per sample), each
 *    thread running the kernel on its own samples with its own copy of the plan's workspace;
 *  - records, instead of running, the calls of a chunk of J's rows while a plan builds a
 *    worker's tape (`recordCalls`), so that each thread makes whole chunks of rows.
 * A split is by samples (or, for a GEMM, by panels of rows of C) only: every output element is
 * computed by one thread with the same kernel, path and order of sums as on one thread, so the
 * results are identical to one thread's, bit for bit.
 */
import type { Call, WorkerPool } from "./pool.ts";

/** The parallel state of the loaded kernels. */
interface Threads {
  /** Threads the memory is laid out for (the calling thread and count − 1 workers). */
  count: number;
  /** The workers, started by the first call that splits (a quick refusal never starts them). */
  pool: WorkerPool | undefined;
  startPool: () => WorkerPool;
  /** Whether a computation is running (see setComputing). */
  active: boolean;
  /** Where calls go while a tape is recorded. */
  recording: Call[] | undefined;
  /** Points the facade's functions at recorders (on) or at the exports and split wrappers (off). */
  setRecording(on: boolean): void;
  /** The running plan's workspace (thread t's copy at ptr + t · stride): only calls given it are split. */
  workspace: { ptr: number; stride: number };
  /** Until when (performance.now()) nothing is split: the workers were found starved (see `contention`). */
  soloUntil: number;
  /** How long the next starved finding keeps this thread alone (doubles while they stay starved). */
  soloMs: number;
  /** Tapes judged so far (see judgeTapes). */
  judged: number;
  /** Recent findings of starved workers, 0 to 1 (see judgeTapes). */
  starvation: number;
  /** When the tapes in flight were posted (performance.now()). */
  postedAt: number;
}

let threads: Threads | undefined;

/** Threads in use: the calling thread and the pool's workers (1 without a pool). */
export function threadCount(): number {
  return threads === undefined ? 1 : threads.count;
}

/** The running plan's workspace and stride (PlanBuilder lays out one copy per thread). */
export function setWorkspace(ptr: number, stride: number): void {
  if (threads !== undefined) threads.workspace = { ptr, stride };
}

function pool(state: Threads): WorkerPool {
  if (state.pool === undefined) {
    state.pool = state.startPool();
    state.pool.setActive(state.active);
  }
  return state.pool;
}

/**
 * When the workers cannot keep up, because other processes hold the cores (a busy machine, a
 * second program computing), a split waits on a thread that is not running, and a computation
 * on threads becomes several times slower than on one (measured: cnn 21 → 108 ms beside other
 * work). So each finished wait is judged from the workers' own clocks (pool.ts, lastTapes): a
 * worker that began its tape over `maxLatencyMs` after it was posted (a wake-up from sleep
 * takes ~0.25 ms here, a thread waiting for a core a time slice of several) or that ran it
 * over `slowerBy` times as long as this thread ran its share, by over `minMs`, is starved; so
 * is this thread, when it ran an equal share (a split call's) that much longer than a worker.
 * The first `warmupTapes` tapes of a pool are not judged: its workers' first calls are slow
 * while their code is compiled and optimised. After three findings in a row, for `soloMs`
 * (from `firstSoloMs`, doubling up to `maxSoloMs` while the finding repeats) this thread
 * computes alone and the workers sleep. Results do not change: a split changes no value.
 */
export const contention = { maxLatencyMs: 2, slowerBy: 1.5, minMs: 0.3, firstSoloMs: 250, maxSoloMs: 4000, warmupTapes: 64 };

/** Whether splitting is worth it now: threads exist and the workers were not found starved lately. */
export function threadsWorthUsing(): boolean {
  return threads !== undefined && threads.count > 1 && performance.now() >= threads.soloUntil;
}

/** Judges the tapes that just finished, after `ownMs` of this thread's own share (see `contention`). */
function judgeTapes(state: Threads, ownMs: number, equalShares: boolean): void {
  if (++state.judged <= contention.warmupTapes) return;
  const { latencyMs, runMs } = state.pool!.lastTapes;
  const slower = (a: number, b: number) => a > contention.slowerBy * b && a - b > contention.minMs;
  // Of equal shares (a split call's), this thread's taking much longer means it lost its core.
  const starved = latencyMs > contention.maxLatencyMs || slower(runMs, ownMs) || (equalShares && slower(ownMs, runMs));
  // One slow tape is no finding: a worker's first calls run before its code is optimised, and
  // a virtual machine stalls a thread now and then. Three in a row are.
  state.starvation = 0.7 * state.starvation + (starved ? 0.3 : 0);
  if (state.starvation > 0.6) {
    state.soloUntil = performance.now() + state.soloMs;
    state.soloMs = Math.min(contention.maxSoloMs, 2 * state.soloMs);
    state.starvation = 0.45; // when the workers are tried again, one more slow tape is enough
    state.pool!.setActive(false); // the workers sleep instead of spinning on a core another thread needs
  } else if (!starved && state.starvation < 0.1) {
    state.soloMs = contention.firstSoloMs;
  }
}

/** Whether a computation is running (setThreads may not reload the kernels under it). */
let computing = false;

export function isComputing(): boolean {
  return computing;
}

/**
 * Says a computation starts or ends: the workers spin between its calls, and sleep after.
 * `wake`: the computation is a batch that will be split, so wake the workers at once.
 */
export function setComputing(active: boolean, wake = false): void {
  computing = active;
  if (threads === undefined) return;
  // While the workers are found starved, they sleep through the computation (nothing is split).
  const use = active && threadsWorthUsing();
  threads.active = use;
  threads.pool?.setActive(use, wake);
}

/** Runs `body` with every kernel call recorded instead of run; returns the calls, in order. */
export function recordCalls(body: () => void): Call[] {
  const state = threads!;
  const calls: Call[] = [];
  state.recording = calls;
  state.setRecording(true);
  try {
    body();
  } finally {
    state.recording = undefined;
    state.setRecording(false);
  }
  return calls;
}

/** Starts `tapes[w]` on worker w and returns at once; `finishTapes` waits for them. */
export function postTapes(tapes: readonly (readonly Call[])[]): void {
  const state = threads!;
  pool(state).post(tapes);
  state.postedAt = performance.now();
}

/** Waits for the tapes `postTapes` started (nothing to wait for: returns at once), timing the wait. */
export function finishTapes(): void {
  const state = threads;
  if (state?.pool?.busy !== true) return;
  const waiting = performance.now();
  state.pool.finish();
  judgeTapes(state, waiting - state.postedAt, false);
}

/**
 * A fresh result is backed by a SharedArrayBuffer, its pages faulted in by every thread, from
 * `minBytes` on: 32 MiB, glibc's largest mmap threshold, above which every new array is new
 * pages. Below it, an ordinary array often reuses pages the process freed before, and is the
 * faster (cnn's 13 MB result on 2 threads, node: 26 ms ordinary, 44 ms shared; mlp's 240 MB:
 * 761 ms ordinary, 534 ms shared).
 */
export const freshTuning = { minBytes: 32 * 2 ** 20 };

/**
 * Whether a SharedArrayBuffer that every thread touched is freed as soon as an ArrayBuffer
 * would be. V8 does not count a SharedArrayBuffer's memory towards its garbage collector's
 * limits, in this isolate or in a worker's that received it: a loop of fresh results would
 * hold each one until some unrelated collection. An untouched ArrayBuffer of the same size
 * beside it (`accounted`; calloc maps it without a page) makes each isolate collect as it
 * would for the ordinary array: on node, resident memory stays at two results' worth, as
 * with ordinary arrays. Deno's and bun's workers still hold several (up to 1.9 and 3.3 GB
 * for a 240 MB result, measured), so there results stay ordinary.
 */
function sharedResultsFreed(): boolean {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  return typeof g.process?.versions?.node === "string" && g.Deno === undefined && g.Bun === undefined;
}

/** Untouched ArrayBuffers that make the collector see each shared result's size (see sharedResultsFreed). */
const accounted = new WeakMap<SharedArrayBuffer, ArrayBuffer>();

/**
 * `length` floats of new memory for a result: with threads on node and from
 * `freshTuning.minBytes` on, in a SharedArrayBuffer whose pages every thread faults in at once
 * (pool.ts, touchPages); else an ordinary Float32Array. On these VMs a fresh page costs a
 * fault of several µs, which is most of the time a large result takes when it is not written
 * into an `out` of the caller's.
 */
export function freshFloats(length: number): Float32Array {
  const state = threads;
  const bytes = length * 4;
  if (!threadsWorthUsing() || bytes < freshTuning.minBytes || state!.pool?.busy === true || !sharedResultsFreed()) {
    return new Float32Array(length);
  }
  const buffer = new SharedArrayBuffer(bytes);
  accounted.set(buffer, new ArrayBuffer(bytes));
  pool(state!).touchPages(buffer);
  return new Float32Array(buffer);
}

/** Stops the workers, if they started, and forgets the parallel state (the kernels are unloaded). */
export function closeThreads(): void {
  threads?.pool?.close();
  threads = undefined;
}

// deno-lint-ignore no-explicit-any
type Exports = Record<string, any>;

/**
 * The kernels as the steps see them with a pool: every function passes through (recorded while
 * a tape is being made), and the kernels with a rule are split when their batch is large enough.
 */
export function parallelKernels(exports: Exports, module: WebAssembly.Module, count: number, startPool: () => WorkerPool): Exports {
  const index = new Map(WebAssembly.Module.exports(module).map(({ name }, i) => [name, i]));
  const facade: Exports = {};
  const running: [string, (...args: number[]) => number][] = [];
  const recorders: [string, (...args: number[]) => number][] = [];
  const state: Threads = {
    count, pool: undefined, startPool, active: false, recording: undefined, workspace: { ptr: -1, stride: 0 },
    soloUntil: 0, soloMs: contention.firstSoloMs, starvation: 0, judged: 0, postedAt: 0,
    // While a tape is recorded every function records; otherwise a kernel without a split rule
    // is the export itself (no wrapper on the path of the many small calls of a small batch).
    setRecording(on: boolean) {
      for (const [name, fn] of on ? recorders : running) facade[name] = fn;
    },
  };
  threads = state;
  for (const [name, value] of Object.entries(exports)) {
    if (typeof value !== "function") {
      facade[name] = value;
      continue;
    }
    const fn = value as (...args: number[]) => number;
    const id = index.get(name)!;
    recorders.push([name, (...args: number[]): number => {
      state.recording!.push([id, args]);
      return 0;
    }]);
    const rule = SPLITS[name];
    if (rule === undefined) {
      running.push([name, fn]);
      continue;
    }
    const split = (args: number[]): number => {
      // While workers make the next chunks of J (postTapes), a call runs whole, here; so it does
      // while the workers are found starved.
      if (state.pool?.busy !== true && performance.now() >= state.soloUntil) {
        const parts = rule(args, count, state.workspace, exports);
        if (parts !== undefined) return runParts(state, id, fn, parts, name === "first_nonfinite" ? args : undefined);
      }
      return fn(...args);
    };
    running.push([name, splitting(fn, SAMPLES_ARGUMENT[name] ?? 0, split)]);
  }
  state.setRecording(false);
  return facade;
}

/**
 * A kernel's wrapper that hands calls of two or more samples to `split` and calls `fn` directly
 * with the rest (a call of one sample or row is never split: most calls of small batches end
 * here). Written out per arity: a call through `...args` costs a wrapped kernel of a naive
 * loop (thousands of one-sample calls) more than the kernel.
 */
function splitting(fn: (...args: number[]) => number, countArg: number, split: (args: number[]) => number): (...args: number[]) => number {
  const at = (a: number, b: number) => (countArg === 0 ? a : b);
  switch (fn.length) {
    case 2:
      return (a: number, b: number) => (at(a, b) < 2 ? fn(a, b) : split([a, b]));
    case 6:
      return (a: number, b: number, c: number, d: number, e: number, f: number) => (at(a, b) < 2 ? fn(a, b, c, d, e, f) : split([a, b, c, d, e, f]));
    case 7:
      return (a: number, b: number, c: number, d: number, e: number, f: number, g: number) =>
        at(a, b) < 2 ? fn(a, b, c, d, e, f, g) : split([a, b, c, d, e, f, g]);
    case 10:
      return (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number) =>
        at(a, b) < 2 ? fn(a, b, c, d, e, f, g, h, i, j) : split([a, b, c, d, e, f, g, h, i, j]);
    default:
      return (...args: number[]) => (args[countArg] < 2 ? fn(...args) : split(args));
  }
}

/** Part 0 here, the others on workers 0.., each one call; first_nonfinite's results combined. */
function runParts(state: Threads, id: number, fn: (...args: number[]) => number, parts: number[][], scan: number[] | undefined): number {
  let own = 0;
  const started = performance.now();
  let ownDone = started;
  const results = pool(state).run(parts.slice(1).map((args) => [[id, args] as const]), () => {
    own = fn(...parts[0]);
    ownDone = performance.now();
  });
  judgeTapes(state, ownDone - started, true);
  if (scan === undefined) return own;
  // The first non-finite value: in the earliest part that found one, at its offset.
  if (own >= 0) return own;
  for (let p = 1; p < parts.length; p++) {
    if (results[p - 1] >= 0) return (parts[p][0] - scan[0]) / 4 + results[p - 1];
  }
  return -1;
}

/** A rule: the per-thread argument lists for a call, or undefined to run it whole here. */
type Split = (args: number[], threads: number, workspace: { ptr: number; stride: number }, exports: Exports) => number[][] | undefined;

/** [first, end) of each of `parts` near-equal shares of `units`, in multiples of `step`. */
function shares(units: number, parts: number, step = 1): [number, number][] {
  const steps = Math.ceil(units / step);
  const out: [number, number][] = [];
  for (let p = 0; p < parts; p++) {
    const first = Math.min(units, Math.floor((steps * p) / parts) * step);
    const end = Math.min(units, Math.floor((steps * (p + 1)) / parts) * step);
    if (end > first) out.push([first, end]);
  }
  return out;
}

/**
 * A call is split only when each thread gets at least `minFloats` floats of output to compute
 * (below, waking a worker costs more than it saves). Tests lower it to split every call.
 */
export const splitTuning = { minFloats: 16384 };

let geometryView = new Int32Array(0);

function i32At(exports: Exports, pointer: number, i: number): number {
  const buffer = (exports.memory as WebAssembly.Memory).buffer;
  if ((geometryView.buffer as unknown) !== buffer) geometryView = new Int32Array(buffer as ArrayBuffer);
  return geometryView[(pointer >>> 2) + i];
}

/** Which argument of each split kernel counts its samples, rows or elements (SPLITS' `count`). */
const SAMPLES_ARGUMENT: Record<string, number> = {
  gemm_nn: 0, gemm_nt: 0, gemm_tn: 0, linear_forward: 0, linear_backward_input: 0,
  act_forward: 1, act_backward: 1, conv_forward: 1, conv_backward_input: 1, maxpool_forward: 1, maxpool_backward: 1, first_nonfinite: 1,
};

/**
 * Splits a call over samples: `count` is the argument holding the samples (or rows) to share,
 * `step` the granularity (K rows per sample), `moves` each pointer argument's bytes per unit of
 * `count` (per sample: `perSample` divides by K), `work` the workspace argument, if any.
 */
function bySamples(
  args: number[],
  threads: number,
  workspace: { ptr: number; stride: number },
  count: number,
  step: number,
  moves: readonly (readonly [arg: number, bytesPerUnit: number])[],
  outFloatsPerUnit: number,
  work?: number,
): number[][] | undefined {
  const units = args[count];
  // A workspace that is not the running plan's (a kernel called directly) has no copy per thread.
  if (work !== undefined && args[work] !== workspace.ptr) return undefined;
  const least = splitTuning.minFloats;
  if (units * outFloatsPerUnit < 2 * least || units < 2 * step) return undefined;
  const parts = Math.min(threads, Math.floor((units * outFloatsPerUnit) / least));
  const ranges = shares(units, parts, step);
  if (ranges.length < 2) return undefined;
  return ranges.map(([first, end], p) => {
    const part = args.slice();
    part[count] = end - first;
    for (const [arg, bytes] of moves) if (part[arg] !== 0) part[arg] += first * bytes;
    if (work !== undefined && p > 0) part[work] += p * workspace.stride;
    return part;
  });
}

/** Conv geometry: input floats per sample (C_in·D·H·W) and output floats per sample (C_out·L). */
function convWidths(exports: Exports, geom: number): [inWidth: number, outWidth: number] {
  const g = (i: number) => i32At(exports, geom, i);
  return [g(1) * g(3) * g(4) * g(5), g(2) * g(6) * g(7) * g(8)];
}

/** Pool geometry: input floats per sample (C·D·H·W) and output floats per sample (C·oD·oH·oW). */
function poolWidths(exports: Exports, geom: number): [inWidth: number, outWidth: number] {
  const g = (i: number) => i32At(exports, geom, i);
  return [g(0) * g(1) * g(2) * g(3), g(0) * g(4) * g(5) * g(6)];
}

/**
 * The batch kernels of the forward and backward passes, split by samples. Arguments by
 * position, as assembly/ declares them.
 */
const SPLITS: Record<string, Split> = {
  // gemm_xx(M, N, K, A, lda, B, ldb, C, ldc, accumulate), split into panels of C's rows: A's rows
  // (or, transposed, its columns) and C's rows move; each panel is what one thread would compute.
  gemm_nn: (a, t, s) => bySamples(a, t, s, 0, 8, [[3, a[4] * 4], [7, a[8] * 4]], a[1] * Math.max(1, a[2] / 16)),
  gemm_nt: (a, t, s) => bySamples(a, t, s, 0, 8, [[3, a[4] * 4], [7, a[8] * 4]], a[1] * Math.max(1, a[2] / 16)),
  gemm_tn: (a, t, s) => bySamples(a, t, s, 0, 8, [[3, 4], [7, a[8] * 4]], a[1] * Math.max(1, a[2] / 16)),
  // linear_forward(rows, in, out, x, W, b, y)
  linear_forward: (a, t, s) => bySamples(a, t, s, 0, 1, [[3, a[1] * 4], [6, a[2] * 4]], a[2] * Math.max(1, a[1] / 16)),
  // linear_backward_input(rows, in, out, gy, W, gx)
  linear_backward_input: (a, t, s) => bySamples(a, t, s, 0, 1, [[3, a[2] * 4], [5, a[1] * 4]], a[1] * Math.max(1, a[2] / 16)),
  // act_forward(kind, count, x, y, p1, p2): elementwise, in multiples of 16 floats
  act_forward: (a, t, s) => bySamples(a, t, s, 1, 16, [[2, 4], [3, 4]], 1),
  // act_backward(kind, R, K, width, x, y, gy, gx, p1, p2): x, y per sample (r / K), gy, gx per row
  act_backward: (a, t, s) =>
    a[2] === 1
      ? bySamples(a, t, s, 1, 1, [[4, a[3] * 4], [5, a[3] * 4], [6, a[3] * 4], [7, a[3] * 4]], a[3])
      : perRowsOfSamples(a, t, s, 1, a[2], [[6, a[3] * 4], [7, a[3] * 4]], [[4, a[3] * 4], [5, a[3] * 4]], a[3]),
  // conv_forward(geom, N, x, W, b, y, work)
  conv_forward: (a, t, s, e) => {
    const [inW, outW] = convWidths(e, a[0]);
    return bySamples(a, t, s, 1, 1, [[2, inW * 4], [5, outW * 4]], outW * 8, 6);
  },
  // conv_backward_input(geom, R, gy, W, gx, work)
  conv_backward_input: (a, t, s, e) => {
    const [inW, outW] = convWidths(e, a[0]);
    return bySamples(a, t, s, 1, 1, [[2, outW * 4], [4, inW * 4]], inW * 8, 5);
  },
  // maxpool_forward(geom, N, x, y, argmax, relu)
  maxpool_forward: (a, t, s, e) => {
    const [inW, outW] = poolWidths(e, a[0]);
    return bySamples(a, t, s, 1, 1, [[2, inW * 4], [3, outW * 4], [4, outW * 4]], inW);
  },
  // maxpool_backward(geom, R, K, gy, argmax, gx): argmax per sample, gy and gx per row
  maxpool_backward: (a, t, s, e) => {
    const [inW, outW] = poolWidths(e, a[0]);
    return perRowsOfSamples(a, t, s, 1, a[2], [[3, outW * 4], [5, inW * 4]], [[4, outW * 4]], inW);
  },
  // first_nonfinite(ptr, count): the parts' answers are combined by runParts
  first_nonfinite: (a, t, s) => bySamples(a, t, s, 1, 16, [[0, 4]], 1 / 4),
};

/** bySamples over rows in whole samples of K rows: `perRow` pointers move per row, `perSample` per sample. */
function perRowsOfSamples(
  args: number[],
  threads: number,
  workspace: { ptr: number; stride: number },
  count: number,
  K: number,
  perRow: readonly (readonly [number, number])[],
  perSample: readonly (readonly [number, number])[],
  outFloatsPerRow: number,
): number[][] | undefined {
  return bySamples(args, threads, workspace, count, K, [...perRow, ...perSample.map(([arg, bytes]) => [arg, bytes / K] as const)], outFloatsPerRow);
}
