/**
 * The rows `npm run bench -- --json` prints, one JSON object per line. The keys named in
 * issue 3 (`case`, `N`, `D`, `runtime`, `median_ms`, `cold_ms`, `m`, `n`, `k`, `gflops`,
 * `peer_gflops`) are a contract: add keys freely, never rename these.
 */
import type { RuntimeName } from "./measure.ts";

/** Where a row was measured. */
export interface Where {
  runtime: RuntimeName;
  runtime_version: string;
  /** Our kernels' SIMD build: "relaxed" (FMA) or "baseline". */
  build: string;
  /** Threads our computations ran on (`threads()`: the calling thread and its workers). */
  threads: number;
  /** The machine's 1-minute load average when the row was measured (other jobs share it). */
  load_avg_1m: number;
  /** GLIBC_TUNABLES of the measuring process, or null (README, "Large results"). */
  glibc_tunables: string | null;
}

/** One of the public cases (docs/bench_cases.md), timed through the public API. */
export interface CaseRow extends Where {
  case: "seed3d" | "mlp" | "cnn";
  /** "fresh": a new result array per call (the default API); "out": a caller's reused buffer. */
  variant: "fresh" | "out";
  N: number;
  D: number;
  median_ms: number;
  /** The first call on a fresh network: builds the plan for the shape and grows WASM memory. */
  cold_ms: number;
  samples: number;
  /** Our naive loop (`jacobianNaive` / `perSampleGradientsNaive`), scaled to N. */
  naive_ms: number;
  /** Samples the naive loop was timed on; naive_ms = median × N / naive_timed_n. */
  naive_timed_n: number;
  naive_scaled: boolean;
  /** naive_ms / median_ms. */
  speedup: number;
}

/** A peer's per-sample loop on a public case (TF.js: one `tf.grads` per sample). */
export interface PeerLoopRow extends Where {
  case: "mlp";
  variant: "tfjs-loop";
  peer: string;
  N: number;
  D: number;
  /** Scaled to N from `timed_n` samples; null when TF.js could not run. */
  median_ms: number | null;
  timed_n: number;
  scaled: boolean;
  /** Our one pass ("fresh" result), timed interleaved with the peer. */
  ours_ms: number | null;
  /** median_ms / ours_ms. */
  ours_speedup: number | null;
  /** The same with a reused `out` buffer, where the API has it. */
  ours_out_ms?: number;
  ours_out_speedup?: number;
  peer_error?: string;
}

/** Square GEMM, ours (`gemm_nn`, packing included) against TF.js's WASM backend. */
export interface GemmRow extends Where {
  case: "gemm";
  kernel: "gemm_nn";
  m: number;
  n: number;
  k: number;
  median_ms: number;
  gflops: number;
  peer: string;
  /** `tf.matMul(a, b)` on tensors created once (XNNPACK caches B's packing per tensor). */
  peer_gflops: number | null;
  /** The same with B uploaded as a new tensor per call: upload and B's packing included. */
  peer_gflops_new_b: number | null;
  /** gflops / peer_gflops. */
  ratio: number | null;
  peer_error?: string;
}

/** Speedup of one pass over our naive loop as the batch grows. */
export interface ScalingRow extends Where {
  case: "seed3d-scaling" | "mlp-scaling";
  /** "out" where the API takes a reused buffer (one pass and naive loop alike), else "fresh". */
  variant: "fresh" | "out";
  N: number;
  D: number;
  median_ms: number;
  naive_ms: number;
  naive_timed_n: number;
  speedup: number;
}

/**
 * PyTorch's times for a public case (`torch_peer.py`). It runs before the first runtime's
 * cases, between runtimes and after the last: each runtime is compared with the faster of
 * the PyTorch runs just before and just after its own.
 */
export interface TorchRow {
  case: "seed3d" | "mlp" | "cnn";
  variant: "torch";
  runtime: "python";
  peer: string;
  /** The runtime whose cases ran just before this PyTorch run (null: it ran first). */
  ran_after: RuntimeName | null;
  /** The runtime whose cases ran just after it (null: it ran last). */
  ran_before: RuntimeName | null;
  load_avg_1m: number;
  glibc_tunables: string | null;
  N: number;
  D: number;
  functorch_ms: number;
  loop_ms: number;
  threads: number;
}

/** The quantities computed without forming J (src/quantities.ts). */
export type QuantityVariant = "clipped_sum" | "batch_l2";

/**
 * `clippedGradientSum` (C = `max_norm`) or `batchL2` on a public case (seed3d: the output's
 * Jacobian, no target; mlp, cnn: cross-entropy, reduction sum), timed in the same `medians`
 * call as the case's "fresh" and "out" rows (interleaved), so the ratios are same-run.
 */
export interface QuantityRow extends Where {
  case: "seed3d" | "mlp" | "cnn";
  variant: QuantityVariant;
  N: number;
  D: number;
  median_ms: number;
  /** The first call on a fresh network (its plan built; WASM memory already grown by the J calls before it). */
  cold_ms: number;
  samples: number;
  /** C of clipped_sum; null for batch_l2. */
  max_norm: number | null;
  /**
   * "reused": the timed calls work in WASM memory grown before them (the arena never
   * shrinks); each returns a new result of `result_bytes` only ([D] + [N] floats, [N, P]).
   */
  memory: "reused";
  result_bytes: number;
  /** N · D · 4: the J the quantity does not form. */
  j_bytes: number;
  /** The case's "fresh" row's median (J materialised in a new array per call, N·D·4 bytes of fresh memory), same run. */
  fresh_ms: number;
  /** The case's "out" row's median (J written into a reused buffer), same run; null where the API has no `out`. */
  out_ms: number | null;
  /** fresh_ms / median_ms: against a new J per call (fresh memory for J against reused here). */
  vs_fresh: number;
  /** out_ms / median_ms: against J in a reused buffer (reused memory on both sides: the like-for-like ratio). */
  vs_out: number | null;
}

/**
 * The quantities on a network whose J would not fit (N · D · 4 > 2 GiB), with the process's
 * peak resident memory while it ran. "stream": J's rows produced chunk by chunk and dropped
 * (`perSampleGradients(…, { onChunk })`), the least any J-based route must do.
 */
export interface BigQuantityRow extends Where {
  case: "mlp-big";
  variant: QuantityVariant | "stream";
  /** The network in PyTorch notation and the objective. */
  network: string;
  N: number;
  D: number;
  /** N · D · 4: what J would take. */
  j_bytes: number;
  median_ms: number;
  /** The first call on a fresh network (`cold_memory`: whether it had to grow WASM memory). */
  cold_ms: number;
  samples: number;
  max_norm: number | null;
  /** The timed calls: "reused" (WASM memory grown by the cold call or before). */
  memory: "reused";
  /** "fresh": the cold call grew the WASM memory; "reused": it fitted in memory already there. */
  cold_memory: "fresh" | "reused";
  result_bytes: number;
  /** WASM memory before this variant's cold call and after its calls (arena.byteLength()). */
  wasm_bytes_before: number;
  wasm_bytes: number;
  /** Resident memory of the process just before this variant's calls (peak reset there). */
  rss_before_bytes: number;
  /** Peak resident memory over this variant's cold call and a few warm ones; null if unknown. */
  peak_rss_bytes: number | null;
  /** How the peak was read: "VmHWM" (reset through /proc/self/clear_refs first), "maxRSS" (process lifetime), or "rss" (sampled after each call). */
  peak_rss_source: "VmHWM" | "maxRSS" | "rss";
}

/**
 * The memory soak (bench/soak.ts): `calls` calls with batch sizes 1-300 and four input shapes
 * after `warm_up_calls`, on one network ("one-network") or on a new network every 3 calls
 * ("new-networks", the old ones dropped), with nothing collected by force during them.
 */
export interface SoakRow extends Where {
  case: "soak";
  variant: "one-network" | "new-networks";
  /** The network in PyTorch notation and the calls' mix. */
  network: string;
  calls: number;
  warm_up_calls: number;
  /** Networks created over the warm-up and the calls. */
  networks: number;
  /** Wall time of the calls over their number. */
  mean_ms: number;
  /** Resident memory of the process after the warm-up and after the calls (no forced collection). */
  rss_after_warm_up_bytes: number;
  rss_bytes: number;
  /** The largest resident memory read (every 250 calls) over the calls. */
  peak_rss_bytes: number;
  /** Resident memory after a full collection at the end; null where none can be forced. */
  rss_after_gc_bytes: number | null;
  /** rss_bytes / rss_after_warm_up_bytes - 1. */
  rss_growth: number;
  /** WASM memory after the warm-up and after the calls (arena.byteLength()). */
  wasm_bytes_after_warm_up: number;
  wasm_bytes: number;
  /** Plans the one network built over the warm-up and the calls (null for new-networks). */
  plans_built: number | null;
  /** Plans cached for the last network at the end, and the most its cache holds. */
  plans_cached: number;
  plan_cache_capacity: number;
}

export type Row = CaseRow | PeerLoopRow | GemmRow | ScalingRow | TorchRow | QuantityRow | BigQuantityRow | SoakRow;
