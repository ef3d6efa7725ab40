/**
 * Timing and environment helpers shared by the benchmark modules. Every median comes from
 * tinybench; the first (cold) call of a case is timed by hand, before tinybench sees the task.
 */
import { Bench } from "tinybench";
import os from "node:os";
import process from "node:process";

/** The JavaScript runtimes the benchmark runs on. */
export type RuntimeName = "node" | "deno" | "bun";
export const RUNTIMES: readonly RuntimeName[] = ["node", "deno", "bun"];

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

/** Which runtime this process is. */
export function currentRuntime(): RuntimeName {
  if (globals.Deno !== undefined) return "deno";
  if (process.versions.bun !== undefined) return "bun";
  return "node";
}

/** The runtime's own version string (Deno's and Bun's, not the Node version they emulate). */
export function runtimeVersion(): string {
  const runtime = currentRuntime();
  if (runtime === "deno") return globals.Deno.version.deno;
  if (runtime === "bun") return process.versions.bun!;
  return process.versions.node;
}

/** The 1-minute load average (the machine is shared: this says how busy it was). */
export function loadAverage(): number {
  try {
    return Number(os.loadavg()[0].toFixed(2));
  } catch {
    return NaN;
  }
}

/**
 * The GLIBC_TUNABLES this process started with (null: none). glibc reads them at start; the
 * README's "Large results" uses one (the memcpy non-temporal threshold) that changes how fast
 * results are copied out, so every row says what it ran under.
 */
export function glibcTunables(): string | null {
  try {
    return process.env.GLIBC_TUNABLES ?? null;
  } catch {
    return null;
  }
}

/** How hard to try: `quick` cuts the time budgets and the batch sizes swept. */
export interface Effort {
  quick: boolean;
  /** Milliseconds of timed calls per measurement (tinybench's iterations are sized to it). */
  budgetMs: number;
  minIterations: number;
}

export function effort(quick: boolean): Effort {
  return quick ? { quick, budgetMs: 400, minIterations: 4 } : { quick, budgetMs: 1000, minIterations: 6 };
}

/** A median over tinybench samples, and how many samples it is the median of. */
export interface Timing {
  median_ms: number;
  samples: number;
}

/**
 * Median latency of each task, timed by tinybench in interleaved rounds (A, B, C, A, B, C, …)
 * so that a busy spell on a shared machine hits all of them alike: their ratios are what the
 * benchmark reports. Each task gets untimed warm-up calls first (tier-up, caches, plan), then
 * about `budgetMs` of timed calls in all, at least `minIterations`.
 */
export function medians(tasks: (() => unknown)[], effort: Effort, budgetMs = effort.budgetMs): Timing[] {
  const rounds = effort.quick ? 2 : 3;
  const perRound = tasks.map((fn) => {
    // Warm-up, untimed: at least 3 calls and ~budget/10 ms (JIT tier-up of JS glue), at most 50.
    const warmupUntil = performance.now() + Math.min(100, budgetMs / 10);
    let estimate = Infinity;
    for (let calls = 0; calls < 50 && (calls < 3 || performance.now() < warmupUntil); calls++) {
      const start = performance.now();
      fn();
      estimate = Math.max(performance.now() - start, 1e-3);
    }
    const total = Math.max(effort.minIterations, Math.min(300, Math.floor(budgetMs / estimate)));
    return Math.max(1, Math.ceil(total / rounds));
  });
  const pooled: number[][] = tasks.map(() => []);
  for (let round = 0; round < rounds; round++) {
    tasks.forEach((fn, t) => {
      const bench = new Bench({ iterations: perRound[t], time: 0, warmup: false, throws: true, retainSamples: true });
      bench.add("task", fn);
      bench.runSync();
      const result = bench.tasks[0].result;
      if (result.state !== "completed") {
        const error = result.state === "errored" ? result.error : undefined;
        throw error ?? new Error(`tinybench: the task ended in state "${result.state}"`);
      }
      pooled[t].push(...(result.latency.samples ?? [result.latency.p50]));
    });
  }
  return pooled.map((samples) => ({ median_ms: significant(median(samples), 4), samples: samples.length }));
}

/** Median latency of one task (see `medians`). */
export function medianOf(fn: () => unknown, effort: Effort, budgetMs = effort.budgetMs): Timing {
  return medians([fn], effort, budgetMs)[0];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Milliseconds one call of `fn` takes (the cold call: the first on a fresh network). */
export function timeOnce(fn: () => unknown): number {
  const start = performance.now();
  fn();
  return significant(performance.now() - start, 4);
}

/** `value` to `digits` significant digits (timings are not more precise than that). */
export function significant(value: number, digits: number): number {
  if (!Number.isFinite(value)) return value;
  const scale = 10 ** Math.max(0, digits - Math.floor(Math.log10(Math.abs(value) || 1)) - 1);
  return Math.round(value * scale) / scale;
}

/** Class indices uniform in 0..classes-1, the same on every runtime for a seed. */
export function uniformClasses(n: number, classes: number, seed: number): { shape: number[]; data: Int32Array } {
  let state = seed >>> 0;
  const data = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = Math.floor((state / 2 ** 32) * classes);
  }
  return { shape: [n], data };
}

/** Progress goes to stderr so that `--json` output stays one row per line on stdout. */
const started = performance.now();
export function progress(message: string): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`[bench ${currentRuntime()} ${seconds}s] ${message}\n`);
}
