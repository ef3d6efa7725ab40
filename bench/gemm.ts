/**
 * Square GEMM (m = n = k), ours against TF.js's WASM backend, in the same process.
 *
 * Ours is `gemm_nn` on matrices in WASM memory; it packs A and B panels on every call, so
 * packing is included. TF.js's is `tf.matMul` on tensors created once; XNNPACK caches B's
 * packed weights per tensor, so `peer_gflops_new_b` also times it with a new B each call.
 * Both on one thread (TF.js's backend runs one here): ours with `setThreads(1)` for the rows.
 */
import { arena, kernels, setThreads, simdBuild, threads } from "../src/wasm.ts";
import { currentRuntime, type Effort, glibcTunables, loadAverage, medians, runtimeVersion, significant } from "./measure.ts";
import type { GemmRow } from "./rows.ts";
import { describeError, loadTfjs, matMulTask } from "./tfjs.ts";

export const GEMM_SIZES = [256, 512];

/** GFLOP/s of one m×m×m product taking `ms`. */
function gflops(m: number, ms: number): number {
  return significant((2 * m ** 3) / (ms * 1e6), 4);
}

export async function gemmRows(effort: Effort): Promise<GemmRow[]> {
  const before = threads();
  setThreads(1);
  try {
    return await gemmRowsOnOneThread(effort);
  } finally {
    setThreads(before === 1 ? 1 : undefined);
  }
}

async function gemmRowsOnOneThread(effort: Effort): Promise<GemmRow[]> {
  const rows: GemmRow[] = [];
  let peerError: string | undefined;
  const tfjs = await loadTfjs().catch((error) => {
    peerError = describeError(error);
    return undefined;
  });
  for (const m of GEMM_SIZES) {
    const ours = gemmTask(m);
    let timings = medians([ours], effort);
    let peer: number | null = null;
    let peerNewB: number | null = null;
    let error = peerError;
    if (tfjs) {
      try {
        // Ours and TF.js's interleaved, so that a busy spell on the machine hits both.
        const task = matMulTask(tfjs, m);
        timings = medians([ours, task.run, task.runNewB], effort);
        peer = gflops(m, timings[1].median_ms);
        peerNewB = gflops(m, timings[2].median_ms);
        task.dispose();
      } catch (e) {
        error = describeError(e);
      }
    }
    const ourMs = timings[0].median_ms;
    const ourGflops = gflops(m, ourMs);
    rows.push({
      case: "gemm",
      kernel: "gemm_nn",
      m,
      n: m,
      k: m,
      runtime: currentRuntime(),
      runtime_version: runtimeVersion(),
      build: simdBuild(),
      threads: threads(),
      load_avg_1m: loadAverage(),
      glibc_tunables: glibcTunables(),
      median_ms: ourMs,
      gflops: ourGflops,
      peer: tfjs?.name ?? "tfjs-wasm",
      peer_gflops: peer,
      peer_gflops_new_b: peerNewB,
      ratio: peer === null ? null : significant(ourGflops / peer, 3),
      ...(error === undefined ? {} : { peer_error: error }),
    });
  }
  return rows;
}

/** `gemm_nn` on random m×m matrices laid out from the arena's base (nothing else runs meanwhile). */
function gemmTask(m: number): () => void {
  const k = kernels();
  const A = arena.base();
  const B = A + m * m * 4;
  const C = B + m * m * 4;
  arena.ensure(C + m * m * 4);
  const f32 = arena.f32();
  for (let i = A >>> 2; i < C >>> 2; i++) f32[i] = Math.random() - 0.5;
  return () => k.gemm_nn(m, m, m, A, m, B, m, C, m, 0);
}
