/**
 * The pool's workers in a browser: nested Web Workers of a dedicated worker whose page is
 * cross-origin isolated (`crossOriginIsolated`: COOP `same-origin` and COEP `require-corp`),
 * the one place of a browser with `SharedArrayBuffer` and a thread allowed to block in
 * `Atomics.wait`. Each is a classic worker made from a Blob URL of worker_source.ts' code (the
 * package ships no worker file), and runs the same tape loop as node's.
 *
 * They start asynchronously: measured in Chromium, a dedicated worker that blocks in
 * `Atomics.wait` right after `new Worker(blobUrl)` waits for ever (5 s timed out, the nested
 * worker at READY 0; it started at once when the parent returned to its event loop): a nested
 * worker's start-up runs through its parent's event loop. Once started, workers and caller
 * meet only in the shared memory, as on node. So here the pool starts in `await initialize()`
 * (wasm.ts), and the threads build is loaded only once its workers are ready: until then the
 * plain build runs, on one thread, and `threads()` says 1.
 */
import { WorkerPool } from "./pool.ts";
import type { WorkerBackend } from "./pool.ts";
import { webWorkerSource } from "./worker_source.ts";

// deno-lint-ignore no-explicit-any
const web = globalThis as any;

/**
 * Whether this is a dedicated worker of a cross-origin-isolated page (shared memory, blocking
 * waits, nested workers) without `node:worker_threads` (node, deno and bun use pool.ts' own).
 */
export function webWorkersAvailable(): boolean {
  if (typeof SharedArrayBuffer !== "function" || typeof Atomics?.wait !== "function") return false;
  if (web.crossOriginIsolated !== true || typeof web.Worker !== "function" || typeof web.Blob !== "function") return false;
  if (typeof web.DedicatedWorkerGlobalScope !== "function" || !(globalThis instanceof web.DedicatedWorkerGlobalScope)) return false;
  return typeof web.process?.getBuiltinModule !== "function";
}

/** Waits until `int32[index]` may have changed from `value`, or `ms` passed, without blocking this thread. */
async function waitWithoutBlocking(int32: Int32Array, index: number, value: number, ms: number): Promise<void> {
  // deno-lint-ignore no-explicit-any
  const waitAsync = (Atomics as any).waitAsync;
  if (typeof waitAsync === "function") {
    const waiting = waitAsync(int32, index, value, ms);
    if (waiting.async) await waiting.value;
  } else {
    await new Promise((resolve) => setTimeout(resolve, Math.min(ms, 5)));
  }
}

/**
 * Starts `count` Web Workers over `memory` (as `WorkerPool`'s constructor says) and resolves
 * once every one is ready; rejects, stopping them, if one fails to load or instantiate the
 * kernels, or is not ready within `timeoutMs`.
 */
export async function startWebPool(
  memory: WebAssembly.Memory,
  module: WebAssembly.Module,
  count: number,
  control: number,
  scratchDelta: (worker: number) => number,
  timeoutMs = 20_000,
): Promise<WorkerPool> {
  const url = URL.createObjectURL(new Blob([webWorkerSource], { type: "text/javascript" }));
  const problems: string[] = [];
  const backend: WorkerBackend = {
    blocking: false,
    spawn(start) {
      const worker = new web.Worker(url, { name: "jacobian-wasm" });
      // A worker that fails to load (a Content-Security-Policy without blob: workers, say) never sets READY.
      worker.onerror = (event: { message?: string; preventDefault(): void }) => {
        event.preventDefault();
        problems.push(event.message || "the worker's script failed to load");
      };
      worker.postMessage(start);
      return { stop: () => worker.terminate() };
    },
  };
  let pool: WorkerPool | undefined;
  try {
    pool = new WorkerPool(memory, module, count, control, scratchDelta, timeoutMs, backend);
    const int32 = new Int32Array(memory.buffer as unknown as SharedArrayBuffer);
    const deadline = performance.now() + timeoutMs;
    for (let word: number; (word = pool.startingWord()) >= 0;) {
      if (problems.length > 0) throw new Error(`a worker thread could not start: ${problems[0]}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`a worker thread did not start within ${timeoutMs} ms`);
      await waitWithoutBlocking(int32, word, 0, Math.min(left, 50));
    }
    return pool;
  } catch (error) {
    pool?.close();
    throw error;
  } finally {
    URL.revokeObjectURL(url); // each worker has fetched it by the time it is ready (or failed)
  }
}
