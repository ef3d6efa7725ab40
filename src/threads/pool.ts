/**
 * The worker threads: each instantiates the threads build of the kernels over the one shared
 * WebAssembly memory and waits, blocked in `Atomics.wait` on its control block in that memory,
 * for a tape of kernel calls to run. The calling thread writes the tapes, wakes the workers,
 * runs its own share, then blocks until every worker is done: a computation stays synchronous,
 * and no message crosses between threads after start-up.
 *
 * Control block of worker w, at `control + w · BLOCK_BYTES` (Int32 words, then the tape):
 *   [0] sequence number of the last tape posted (the worker waits on it; −1: stop)
 *   [1] sequence number of the last tape finished (the caller waits on it)
 *   [2] result of the tape's last call (for kernels that return an i32)
 *   [3] 1 when a call threw (the message is in the worker's console; the caller throws)
 *   [4] 1 once the worker has instantiated the kernels (start-up)
 *   [5] 1 while a computation runs: the worker spins between tapes instead of sleeping
 *   Float64 word [4] (byte 32): when the worker began its last tape, [5] when it ended it, in ms
 *   since the epoch (performance.timeOrigin + now(), comparable between threads)
 *   tape at +TAPE_OFFSET: Float64 words: call count, then per call: export index, argc, args.
 * One call is not a kernel: index TOUCH_PAGES writes a zero to every page of [from, to) of
 * the SharedArrayBuffer last posted to the worker's port (see `touchPages`).
 */
import { workerSource } from "./worker_source.ts";

/** Bytes of one worker's control block: 64 of header, the rest its tape. */
export const BLOCK_BYTES = 64 * 1024;
const TAPE_OFFSET = 64;
const TAPE_WORDS = (BLOCK_BYTES - TAPE_OFFSET) / 8;

const SEQ = 0, DONE = 1, RESULT = 2, FAILED = 3, READY = 4, ACTIVE = 5;
/** Float64 words of the header: when the last tape began and ended (worker_source.ts writes them). */
const BEGAN = 4, ENDED = 5;

/** The current time in ms since the epoch, as every thread of the process reads it. */
const epochNow = () => performance.timeOrigin + performance.now();

/** The tape's "export index" of the page-touching call (worker_source.ts knows it too). */
const TOUCH_PAGES = -1;

/** Bytes of a memory page: one write in each faults the whole page in. */
export const PAGE_BYTES = 4096;

/**
 * How long a waiting thread spins on its control word during a computation before it sleeps
 * in `Atomics.wait`: a computation posts its calls microseconds apart, and a wake-up from
 * sleep costs hundreds of microseconds on these virtual machines.
 */
const SPIN_MS = 5;

/** One kernel call: the export's index in `WebAssembly.Module.exports` order, and its arguments. */
export type Call = readonly [fn: number, args: readonly number[]];

/** A started worker: how to reach its control block, and how to stop it. */
interface Started {
  /** Int32 index of its control block's header. */
  header: number;
  /** Float64 index of its tape. */
  tape: number;
  sequence: number;
  /** When it ended its last tape (ms since the epoch): within SPIN_MS of it, during a computation, it is spinning. */
  ended: number;
  /** Whether it was spinning, awake, when its last tape was posted. */
  awake: boolean;
  /** Where a SharedArrayBuffer for TOUCH_PAGES is posted (the worker takes it with receiveMessageOnPort): node:worker_threads only. */
  port?: WorkerPort;
  stop(): void;
}

/** This side of a channel to a worker. */
export interface WorkerPort {
  postMessage(value: unknown): void;
  close(): void;
}

// deno-lint-ignore no-explicit-any
type NodeWorker = { postMessage(value: unknown, transfer?: unknown[]): void; unref(): void; terminate(): unknown; on(event: string, listener: (...args: any[]) => void): void };
type NodePort = WorkerPort & { unref(): void };

/** What the pool takes from `node:worker_threads`. */
interface WorkerThreads {
  Worker: new (source: string, options: { eval: true }) => NodeWorker;
  MessageChannel: new () => { port1: NodePort; port2: NodePort };
}

/** `node:worker_threads` where the host has it (node, deno and bun all do), else undefined. */
function workerThreads(): WorkerThreads | undefined {
  // deno-lint-ignore no-explicit-any
  const process = (globalThis as any).process;
  if (typeof process?.getBuiltinModule !== "function") return undefined;
  try {
    const module = process.getBuiltinModule("node:worker_threads");
    return typeof module?.Worker === "function" && typeof module?.MessageChannel === "function" ? module : undefined;
  } catch {
    return undefined;
  }
}

/** What a worker is sent to start (worker_source.ts' `runTapes` takes it). */
export interface WorkerStart {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: number;
  delta: number;
  tapeOffset: number;
  spinMs: number;
  /** The worker's end of a channel for TOUCH_PAGES' buffers (node:worker_threads only). */
  port?: unknown;
}

/**
 * How a pool makes its workers: `node:worker_threads` (below, the default), or a browser's
 * Web Workers (web_workers.ts). `blocking`: whether the constructor may wait for them blocked in
 * `Atomics.wait`; a backend that may not (a worker cannot start while its parent blocks) has its
 * caller await `startingWord()` instead.
 */
export interface WorkerBackend {
  /** Starts one worker and sends it `start`; returns how to stop it and, where the worker can take a buffer synchronously, a port to post it to. */
  spawn(start: WorkerStart): { stop(): void; port?: WorkerPort };
  readonly blocking: boolean;
}

function nodeBackend(): WorkerBackend {
  const threads = workerThreads();
  if (threads === undefined) throw new Error("internal: WorkerPool without node:worker_threads");
  const { Worker, MessageChannel } = threads;
  return {
    blocking: true,
    spawn(start) {
      const worker = new Worker(workerSource, { eval: true });
      worker.unref(); // an idle pool never keeps a script from exiting
      worker.on("error", () => {}); // reported through the control block instead
      const { port1, port2 } = new MessageChannel();
      port1.unref();
      worker.postMessage({ ...start, port: port2 }, [port2]);
      const stop = () => {
        port1.close();
        void worker.terminate();
      };
      return { stop, port: port1 };
    },
  };
}

/** Whether this host can run the pool: shared memory, a thread that may block, worker threads. */
export function threadsAvailable(): boolean {
  if (typeof SharedArrayBuffer !== "function" || typeof Atomics?.wait !== "function") return false;
  return workerThreads() !== undefined;
}

/** The workers of one shared memory. */
export class WorkerPool {
  private readonly workers: Started[] = [];
  private int32: Int32Array<SharedArrayBuffer>;
  private float64: Float64Array<SharedArrayBuffer>;

  /**
   * Starts `count` workers over `memory`, worker w's scratch moved by `scratchDelta(w)` bytes
   * and its control block at `control + w · BLOCK_BYTES`; returns when all are ready (or
   * throws, stopping those that started, if one is not ready within `timeoutMs`).
   */
  constructor(
    readonly memory: WebAssembly.Memory,
    readonly module: WebAssembly.Module,
    count: number,
    control: number,
    scratchDelta: (worker: number) => number,
    timeoutMs = 20_000,
    backend: WorkerBackend = nodeBackend(),
  ) {
    this.int32 = new Int32Array(memory.buffer as unknown as SharedArrayBuffer);
    this.float64 = new Float64Array(memory.buffer as unknown as SharedArrayBuffer);
    try {
      for (let w = 0; w < count; w++) {
        const at = control + w * BLOCK_BYTES;
        const header = at >>> 2;
        this.int32.fill(0, header, header + TAPE_OFFSET / 4);
        const { stop, port } = backend.spawn({ module, memory, control: at, delta: scratchDelta(w), tapeOffset: TAPE_OFFSET, spinMs: SPIN_MS });
        this.workers.push({ header, tape: (at + TAPE_OFFSET) >>> 3, sequence: 0, ended: 0, awake: false, port, stop });
      }
      const deadline = performance.now() + timeoutMs;
      for (let word: number; backend.blocking && (word = this.startingWord()) >= 0;) {
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`a worker thread did not start within ${timeoutMs} ms`);
        Atomics.wait(this.int32, word, 0, Math.min(left, 100));
      }
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /**
   * Start-up: the Int32 index of the READY word of the first worker not yet ready (it is 0
   * until the worker is; wait on it), or −1 when all are. Throws if one could not instantiate
   * the kernels.
   */
  startingWord(): number {
    for (const worker of this.workers) {
      if (Atomics.load(this.int32, worker.header + READY) === 0) return worker.header + READY;
      if (Atomics.load(this.int32, worker.header + FAILED) !== 0) throw new Error("a worker thread could not instantiate the kernels");
    }
    return -1;
  }

  /** Workers in the pool (threads − 1: the calling thread is the other one). */
  get size(): number {
    return this.workers.length;
  }

  /** Views of the memory, renewed after it grew (a grown shared memory has a new buffer object). */
  private views(): void {
    if ((this.int32.buffer as unknown) !== this.memory.buffer) {
      this.int32 = new Int32Array(this.memory.buffer as unknown as SharedArrayBuffer);
      this.float64 = new Float64Array(this.memory.buffer as unknown as SharedArrayBuffer);
    }
  }

  /** Workers given a tape by `post` and not yet waited for by `finish`. */
  private pending: number[] = [];

  /**
   * Posts `tapes[w]` to worker w (an empty tape posts nothing), runs `own` on this thread, then
   * waits for the workers. Returns each tape's last call's result (0 for an empty tape).
   */
  run(tapes: readonly (readonly Call[])[], own: () => void): number[] {
    this.post(tapes);
    let ownError: unknown;
    try {
      own();
    } catch (error) {
      ownError = error;
    }
    const results = this.finish(tapes.length);
    if (ownError !== undefined) throw ownError;
    return results;
  }

  /** Posts `tapes[w]` to worker w and returns at once; `finish` waits for them. */
  post(tapes: readonly (readonly Call[])[]): void {
    if (this.pending.length > 0) throw new Error("internal: tapes posted before the last ones finished");
    this.views();
    for (let w = 0; w < tapes.length && w < this.workers.length; w++) {
      const tape = tapes[w];
      if (tape.length === 0) continue;
      const worker = this.workers[w];
      let word = worker.tape;
      const end = worker.tape + TAPE_WORDS;
      this.float64[word++] = tape.length;
      for (const [fn, args] of tape) {
        if (word + 2 + args.length > end) throw new Error("internal: a worker's tape overflowed its control block");
        this.float64[word++] = fn;
        this.float64[word++] = args.length;
        for (const a of args) this.float64[word++] = a;
      }
      worker.sequence++;
      Atomics.store(this.int32, worker.header + SEQ, worker.sequence);
      Atomics.notify(this.int32, worker.header + SEQ);
      this.pending.push(w);
      // A worker that sleeps takes a wake-up to begin (from 0.25 to several ms on these VMs): only
      // one that should be spinning is judged by when it began.
      worker.awake = this.active && epochNow() - worker.ended < SPIN_MS;
      this.postedAt = epochNow();
    }
  }

  /** Whether a computation runs (the workers spin between its tapes). */
  private active = false;

  /** When the tapes in flight were posted (ms since the epoch). */
  private postedAt = 0;

  /**
   * Of the tapes `finish` last waited for: the longest a spinning worker took to begin one after
   * it was posted (a worker that had no core), and the longest one ran, in ms.
   */
  readonly lastTapes = { latencyMs: 0, runMs: 0 };

  /** Whether tapes are posted and not yet finished. */
  get busy(): boolean {
    return this.pending.length > 0;
  }

  /** Waits for the posted tapes; returns each worker's last result (`count` of them, 0 where nothing was posted). */
  finish(count = this.workers.length): number[] {
    this.views();
    const results = new Array<number>(count).fill(0);
    let failed = false;
    let latencyMs = 0, runMs = 0;
    for (const w of this.pending) {
      const worker = this.workers[w];
      const spinUntil = performance.now() + SPIN_MS;
      while (Atomics.load(this.int32, worker.header + DONE) !== worker.sequence && performance.now() < spinUntil) { /* spin */ }
      for (;;) {
        const done = Atomics.load(this.int32, worker.header + DONE);
        if (done === worker.sequence) break;
        Atomics.wait(this.int32, worker.header + DONE, done, 1000);
      }
      if (w < count) results[w] = this.int32[worker.header + RESULT];
      const began = this.float64[(worker.header >>> 1) + BEGAN];
      worker.ended = this.float64[(worker.header >>> 1) + ENDED];
      if (worker.awake) latencyMs = Math.max(latencyMs, began - this.postedAt);
      runMs = Math.max(runMs, worker.ended - began);
      if (this.int32[worker.header + FAILED] !== 0) {
        this.int32[worker.header + FAILED] = 0;
        failed = true;
      }
    }
    this.pending = [];
    this.lastTapes.latencyMs = latencyMs;
    this.lastTapes.runMs = runMs;
    if (failed) throw new Error("jacobian-wasm: a kernel failed on a worker thread");
    return results;
  }

  /**
   * Marks a computation as running (workers spin between its tapes) or over (they sleep):
   * idle workers take no CPU. `wake`: wake them now, for a computation that will split.
   */
  setActive(active: boolean, wake = false): void {
    this.views();
    this.active = active;
    for (const worker of this.workers) {
      Atomics.store(this.int32, worker.header + ACTIVE, active ? 1 : 0);
      // Wake a sleeping worker now, so that it spins, awake, by the first tape of the computation
      // (only for one that will split: a spinning worker slows this thread down, on these VMs).
      if (active && wake) Atomics.notify(this.int32, worker.header + SEQ);
    }
  }

  /**
   * Faults in every page of `buffer`, the threads in parallel (worker w the (w + 2)-th share of
   * the pages, this thread the first), by writing a zero to each: the buffer must be new, with
   * nothing in it yet. A fresh page costs a fault of several microseconds on a virtual machine,
   * and a fresh result of hundreds of MB is mostly that: faulted by every thread, it is ready
   * sooner than the computation could fault it alone.
   */
  touchPages(buffer: SharedArrayBuffer): void {
    const pages = Math.ceil(buffer.byteLength / PAGE_BYTES);
    const threads = this.workers.length + 1;
    const share = (t: number) => [Math.floor((pages * t) / threads) * PAGE_BYTES, Math.min(buffer.byteLength, Math.floor((pages * (t + 1)) / threads) * PAGE_BYTES)];
    const tapes: Call[][] = [];
    for (let w = 0; w < this.workers.length; w++) {
      const [from, to] = share(w + 1);
      if (to <= from) tapes.push([]);
      else {
        const port = this.workers[w].port;
        if (port === undefined) throw new Error("internal: touchPages on workers without a port");
        port.postMessage(buffer);
        tapes.push([[TOUCH_PAGES, [from, to]]]);
      }
    }
    this.run(tapes, () => {
      const [from, to] = share(0);
      const bytes = new Uint8Array(buffer);
      for (let at = from; at < to; at += PAGE_BYTES) bytes[at] = 0;
    });
  }

  /** Stops every worker (they are also unref'd: a script exits without this). */
  close(): void {
    for (const worker of this.workers) {
      Atomics.store(this.int32, worker.header + SEQ, -1);
      Atomics.notify(this.int32, worker.header + SEQ);
      worker.stop();
    }
    this.workers.length = 0;
  }
}
