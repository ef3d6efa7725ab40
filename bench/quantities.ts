/**
 * The quantities that need per-sample gradients but not J itself (`clippedGradientSum`,
 * `batchL2`), next to materialising J: on the public cases, timed in the same interleaved
 * `medians` call as the case's "fresh" and "out" rows (bench/cases.ts); and on a network
 * whose J would take over 2 GiB (`mlp-big`), with the process's peak resident memory.
 */
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { batchL2, clippedGradientSum, Linear, manualSeed, perSampleGradients, randn, ReLU, Sequential } from "../mod.ts";
import type { Module, Target, Tensor } from "../mod.ts";
import { arena } from "../src/wasm.ts";
import { type Effort, medians, progress, significant, type Timing, timeOnce, uniformClasses } from "./measure.ts";
import type { BigQuantityRow, QuantityRow, QuantityVariant, Where } from "./rows.ts";

/** C of the clipped sum in every row. */
export const MAX_NORM = 1;
export const QUANTITY_VARIANTS: readonly QuantityVariant[] = ["clipped_sum", "batch_l2"];

/** A quantity's call on one network, its cold time (first call on that network) and result size. */
export interface QuantityTask {
  variant: QuantityVariant;
  run: () => unknown;
  cold_ms: number;
  result_bytes: number;
}

const CE = { loss: "cross_entropy", reduction: "sum" } as const;

function resultBytes(result: unknown): number {
  if (result && typeof result === "object" && "gradient" in result) {
    const { gradient, norms } = result as { gradient: Tensor; norms: Tensor };
    return gradient.data.byteLength + norms.data.byteLength;
  }
  return (result as Tensor).data.byteLength;
}

/** The call of `variant`: the loss's gradients with a target, the output's Jacobian without. */
function quantityCall(variant: QuantityVariant | "stream", net: Module, x: Tensor, target: Target | undefined): () => unknown {
  if (variant === "clipped_sum") {
    return target === undefined
      ? () => clippedGradientSum(net, x, undefined, { maxNorm: MAX_NORM })
      : () => clippedGradientSum(net, x, target, { ...CE, maxNorm: MAX_NORM });
  }
  if (variant === "batch_l2") return target === undefined ? () => batchL2(net, x) : () => batchL2(net, x, target, CE);
  if (target === undefined) throw new Error("stream: only with a target here");
  return () => perSampleGradients(net, x, target, { ...CE, onChunk: () => {} });
}

/**
 * One task per quantity, each on its own fresh network (`makeNet` seeds it: same weights),
 * its cold call timed here: the plan is built then (WASM memory is whatever earlier calls grew).
 */
export function quantityTasks(makeNet: () => Module, x: Tensor, target: Target | undefined): QuantityTask[] {
  return QUANTITY_VARIANTS.map((variant) => {
    const run = quantityCall(variant, makeNet(), x, target);
    let result: unknown;
    const cold = timeOnce(() => (result = run()));
    return { variant, run, cold_ms: cold, result_bytes: resultBytes(result) };
  });
}

/** The rows of the quantity tasks, with the ratios against the J rows timed in the same call. */
export function quantityRows(
  base: Where & { case: QuantityRow["case"]; N: number; D: number },
  tasks: QuantityTask[],
  timings: Timing[],
  fresh: Timing,
  out: Timing | undefined,
): QuantityRow[] {
  const rows = tasks.map((task, i): QuantityRow => ({
    ...base,
    variant: task.variant,
    median_ms: timings[i].median_ms,
    cold_ms: task.cold_ms,
    samples: timings[i].samples,
    max_norm: task.variant === "clipped_sum" ? MAX_NORM : null,
    memory: "reused",
    result_bytes: task.result_bytes,
    j_bytes: base.N * base.D * 4,
    fresh_ms: fresh.median_ms,
    out_ms: out?.median_ms ?? null,
    vs_fresh: significant(fresh.median_ms / timings[i].median_ms, 4),
    vs_out: out ? significant(out.median_ms / timings[i].median_ms, 4) : null,
  }));
  progress(`${base.case}: ` + rows.map((r) => `${r.variant} ${r.median_ms} ms (cold ${r.cold_ms} ms; ` +
    `J fresh / this ${r.vs_fresh}x${r.vs_out === null ? "" : `, J out / this ${r.vs_out}x`})`).join(", "));
  return rows;
}

// ------------------------------------------------------------------ peak resident memory

/** Resets the kernel's peak-RSS mark of this process (Linux ≥ 4.0: "5" > /proc/self/clear_refs). */
function resetPeak(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

function statusKb(field: "VmHWM" | "VmRSS"): number | null {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function rss(): number {
  return statusKb("VmRSS") ?? process.memoryUsage().rss;
}

/** Lifetime peak from getrusage (node, bun; kB on Linux), or null. */
function maxRss(): number | null {
  try {
    const usage = (process as { resourceUsage?: () => { maxRSS: number } }).resourceUsage?.();
    return usage && usage.maxRSS > 0 ? usage.maxRSS * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Peak resident memory over `calls`: VmHWM after resetting it (Linux), else getrusage's
 * lifetime maximum, else the largest RSS seen after each call.
 */
function peakOver(calls: () => void): { peak: number | null; source: BigQuantityRow["peak_rss_source"] } {
  const reset = resetPeak();
  let sampled = rss();
  calls();
  sampled = Math.max(sampled, rss());
  if (reset) {
    const hwm = statusKb("VmHWM");
    if (hwm !== null) return { peak: hwm, source: "VmHWM" };
  }
  const lifetime = maxRss();
  if (lifetime !== null) return { peak: lifetime, source: "maxRSS" };
  return { peak: sampled, source: "rss" };
}

// ------------------------------------------------------------------ the big network

export const BIG = { N: 2048, layers: [1024, 256, 256, 10] } as const;
const BIG_NETWORK = "Sequential(Linear(1024,256), ReLU(), Linear(256,256), ReLU(), Linear(256,10)); cross-entropy, reduction sum";

function bigNetwork(): Module {
  manualSeed(5);
  const [a, b, c, d] = BIG.layers;
  return new Sequential(new Linear(a, b), new ReLU(), new Linear(b, c), new ReLU(), new Linear(c, d));
}

/**
 * `batch_l2`, `clipped_sum` and (for scale) `stream` on the 1024-256-256-10 MLP at N = 2048,
 * where J is 2048 × 330,762 floats = 2.52 GiB and is never formed. Per variant, in this
 * order: the peak-RSS mark is reset, then its cold call (fresh network) and 3 warm calls run,
 * and the peak is read; then the three are timed interleaved (`medians`).
 */
export function bigRows(effort: Effort, where: () => Where): BigQuantityRow[] {
  const { N } = BIG;
  const x = randn([N, BIG.layers[0]], 9);
  const target = uniformClasses(N, BIG.layers[3], 4);
  const D = bigNetwork().parameters().reduce((s, [, p]) => s + p.data.length, 0);
  const jBytes = N * D * 4;
  progress(`mlp-big: N = ${N}, D = ${D}: J would be ${(jBytes / 2 ** 30).toFixed(2)} GiB (not formed)`);
  const variants: (QuantityVariant | "stream")[] = [...QUANTITY_VARIANTS, "stream"];
  const prepared = variants.map((variant) => {
    const run = quantityCall(variant, bigNetwork(), x, target);
    const wasmBefore = arena.byteLength();
    const rssBefore = rss();
    let cold = 0;
    let result: unknown;
    const { peak, source } = peakOver(() => {
      cold = timeOnce(() => (result = run()));
      for (let i = 0; i < 3; i++) run();
    });
    return {
      variant,
      run,
      cold,
      wasmBefore,
      rssBefore,
      peak,
      source,
      coldMemory: (arena.byteLength() > wasmBefore ? "fresh" : "reused") as "fresh" | "reused",
      resultBytes: variant === "stream" ? 0 : resultBytes(result),
    };
  });
  const timings = medians(prepared.map((p) => p.run), effort);
  const rows = prepared.map((p, i): BigQuantityRow => ({
    case: "mlp-big",
    variant: p.variant,
    network: BIG_NETWORK,
    N,
    D,
    ...where(),
    j_bytes: jBytes,
    median_ms: timings[i].median_ms,
    cold_ms: p.cold,
    samples: timings[i].samples,
    max_norm: p.variant === "clipped_sum" ? MAX_NORM : null,
    memory: "reused",
    cold_memory: p.coldMemory,
    result_bytes: p.resultBytes,
    wasm_bytes_before: p.wasmBefore,
    wasm_bytes: arena.byteLength(),
    rss_before_bytes: p.rssBefore,
    peak_rss_bytes: p.peak,
    peak_rss_source: p.source,
  }));
  const mib = (b: number | null) => (b === null ? "?" : `${(b / 2 ** 20).toFixed(0)} MiB`);
  progress(`mlp-big: ` + rows.map((r) => `${r.variant} ${r.median_ms} ms (cold ${r.cold_ms} ms, ${r.cold_memory}), ` +
    `peak RSS ${mib(r.peak_rss_bytes)} (before ${mib(r.rss_before_bytes)}; ${r.peak_rss_source}), WASM ${mib(r.wasm_bytes)}`).join("; "));
  return rows;
}
