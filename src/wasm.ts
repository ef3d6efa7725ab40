/**
 * The one WebAssembly instance every computation runs in: its memory, its kernels, and an
 * arena that hands out byte ranges of that memory.
 *
 * Nothing is compiled at import, so importing can never wait on a host: the first call that
 * needs the kernels compiles the embedded bytes synchronously (about 120 KB, which every host
 * that compiles WebAssembly at all compiles synchronously, browsers' main threads included).
 * `await initialize()` does it ahead of time, asynchronously; `await initialize(module)` takes
 * a precompiled `WebAssembly.Module`, for hosts that forbid compiling from bytes (workerd,
 * Cloudflare Workers), where the first call otherwise fails with an error that says so.
 */
import { baselineThreadsWasmBase64, baselineWasmBase64, relaxedThreadsWasmBase64, relaxedWasmBase64 } from "./wasm/kernels.generated.ts";
import { MemoryError, UnsupportedError, ValueError } from "./errors.ts";
import { BLOCK_BYTES, threadsAvailable, WorkerPool } from "./threads/pool.ts";
import { closeThreads, isComputing, parallelKernels } from "./threads/parallel.ts";
import { startWebPool, webWorkersAvailable } from "./threads/web_workers.ts";

/** The kernels' exports. Pointers are byte offsets into `memory`, sizes are element counts. */
// deno-lint-ignore no-explicit-any
export type Kernels = Record<string, any> & {
  readonly memory: WebAssembly.Memory;
  heapBase(): number;
};

/**
 * Which compiled build of the kernels is running: `"relaxed"` (relaxed SIMD, where the host
 * has it) or `"baseline"` (SIMD128 only). `JACOBIAN_WASM_SIMD` in the environment forces one.
 *
 * @example
 * ```ts
 * import { simdBuild } from "jacobian-wasm";
 * import type { SimdBuild } from "jacobian-wasm";
 * const build: SimdBuild = simdBuild();
 * ```
 */
export type SimdBuild = "relaxed" | "baseline";

interface Loaded {
  kernels: Kernels;
  build: SimdBuild;
  /** The module it was instantiated from when `initialize(module)` gave one. */
  module?: WebAssembly.Module;
  /** Threads the memory is laid out for: 1 for the plain build; the workers start on first use. */
  threads: number;
  /** Bytes above the static data kept for the workers' control blocks and scratch copies. */
  reserved: number;
}

let loaded: Loaded | undefined;
/** Counts loads: plans laid out for one load are not valid in the next (see `kernelsGeneration`). */
let generation = 0;
/** Set by the `jacobian-wasm/precompiled` entry: never compile (or validate) the embedded bytes. */
let precompiledOnly = false;

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The relaxed-SIMD build where the runtime validates it, the baseline SIMD build otherwise. */
export function preferredBuild(): SimdBuild {
  const forced = readForcedBuild();
  if (forced) return forced;
  return WebAssembly.validate(decodeBase64(relaxedWasmBase64)) ? "relaxed" : "baseline";
}

/** The imports the kernels take: an abort that names the kernel's source position. */
const IMPORTS = {
  env: {
    abort(_message: number, _file: number, line: number, column: number) {
      throw new Error(`jacobian-wasm kernel aborted at ${line}:${column}`);
    },
  },
};

/** `loaded`, read anew (after an await, another call may have set it). */
function loadedNow(): Loaded | undefined {
  return loaded;
}

function load(instance: WebAssembly.Instance, build: SimdBuild, module?: WebAssembly.Module): SimdBuild {
  loaded = { kernels: instance.exports as unknown as Kernels, build, module, threads: 1, reserved: 0 };
  generation++;
  arena.reset();
  return build;
}

/**
 * Which load of the kernels is running: a plan cache built under another (before `setThreads`
 * changed the build or the memory's layout) is dropped rather than used.
 */
export function kernelsGeneration(): number {
  return generation;
}

/** An environment variable on node, bun or deno; undefined where unset, empty or not readable (Deno without --allow-env). */
function environmentVariable(name: string): string | undefined {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  let value: string | undefined;
  try {
    value = g.process?.env?.[name] ?? g.Deno?.env?.get?.(name);
  } catch {
    value = undefined;
  }
  return value === "" ? undefined : value;
}

// JACOBIAN_WASM_SIMD=baseline|relaxed forces a build (tests use it to cover both).
function readForcedBuild(): SimdBuild | undefined {
  const value = environmentVariable("JACOBIAN_WASM_SIMD");
  if (value === undefined) return undefined;
  if (value !== "baseline" && value !== "relaxed") {
    throw new TypeError(`JACOBIAN_WASM_SIMD must be "baseline" or "relaxed", got "${value}"`);
  }
  return value;
}

/**
 * The bytes of one embedded build, for hosts that precompile modules themselves (default: the
 * build this host supports).
 *
 * @example
 * ```ts
 * import { wasmBytes } from "jacobian-wasm";
 * const bytes = wasmBytes("baseline"); // a WebAssembly binary, about 120 KB
 * const module = await WebAssembly.compile(bytes); // what `initialize(module, "baseline")` takes
 * ```
 */
export function wasmBytes(build: SimdBuild = preferredBuild()): Uint8Array<ArrayBuffer> {
  return decodeBase64(build === "relaxed" ? relaxedWasmBase64 : baselineWasmBase64);
}

/**
 * Loads the kernels ahead of the first call; idempotent. Without a module it compiles the
 * embedded build the host supports (`simdBuild()` says which; `build` forces one), synchronously
 * (a few milliseconds): an asynchronous compile can stay pending forever on a host that forbids
 * it (workerd at start-up), where this rejects at once with an error saying what to do. With a
 * `WebAssembly.Module` (precompiled by the host's bundler, e.g. `import kernels from
 * "jacobian-wasm/kernels.baseline.wasm"` in a worker) it instantiates that instead, and
 * `build` says which build it is (default "baseline"). The same module again is a no-op;
 * another module once the kernels are loaded is an error (the networks' plans live in the
 * loaded kernels' memory). In a dedicated worker of a cross-origin-isolated page it also starts
 * the threads (`setThreads`, else `navigator.hardwareConcurrency`), which a browser can only do
 * asynchronously: until it resolves, computations run on one thread.
 *
 * @example
 * ```ts
 * import { initialize } from "jacobian-wasm";
 * await initialize(); // optional: the first call compiles the kernels itself
 * ```
 */
export async function initialize(
  module?: WebAssembly.Module,
  build?: SimdBuild,
): Promise<SimdBuild> {
  if (module === undefined) {
    // In a browser's worker the threads start here (see startWebThreads), not on first use.
    const webThreads = webThreadsWanted();
    if (loaded && (webThreads === 1 || loaded.threads === webThreads || loaded.module !== undefined)) return loaded.build;
    if (precompiledOnly) throw notLoaded("initialize() was called without a module");
    if (build !== undefined && build !== "baseline" && build !== "relaxed") {
      throw new TypeError(`initialize: build must be "baseline" or "relaxed", got ${JSON.stringify(build)}`);
    }
    if (webThreads > 1) return startWebThreads(loaded?.build ?? build ?? preferredBuild(), webThreads);
    return loadEmbedded(build ?? preferredBuild());
  }
  if (!(module instanceof WebAssembly.Module)) {
    throw new TypeError(`initialize: expected a WebAssembly.Module, got ${module === null ? "null" : typeof module}`);
  }
  if (build !== undefined && build !== "baseline" && build !== "relaxed") {
    throw new TypeError(`initialize: build must be "baseline" or "relaxed", got ${JSON.stringify(build)}`);
  }
  if (loaded) {
    if (loaded.module === module) return loaded.build;
    throw new Error(
      `initialize: the kernels are already loaded (${loaded.build} build${loaded.module ? ", from another module" : ", compiled from the embedded bytes"}); ` +
        "a precompiled module must be given before the first computation",
    );
  }
  const instance = await WebAssembly.instantiate(module, IMPORTS);
  return loadedNow() ? initialize(module, build) : load(instance, build ?? "baseline", module);
}

/**
 * Whether the kernels are loaded (by `initialize`, or by the first call that needed them).
 *
 * @example
 * ```ts
 * import { initialize, isInitialized } from "jacobian-wasm";
 * if (!isInitialized()) await initialize();
 * isInitialized(); // true
 * ```
 */
export function isInitialized(): boolean {
  return loaded !== undefined;
}

function notLoaded(why: string): Error {
  return new Error(
    `jacobian-wasm: the WebAssembly kernels are not loaded (${why}). ` +
      "Where the host forbids compiling WebAssembly from bytes (workerd, Cloudflare Workers), " +
      "import the precompiled module and call `await initialize(module, build)` first: " +
      '`import kernels from "jacobian-wasm/kernels.baseline.wasm"; await initialize(kernels, "baseline");`. ' +
      "Elsewhere, `await initialize()` compiles them asynchronously.",
  );
}

/** The kernels, compiled from the embedded bytes on first use when nothing loaded them before. */
export function kernels(): Kernels {
  if (loaded) return loaded.kernels;
  if (precompiledOnly) throw notLoaded("the jacobian-wasm/precompiled entry never compiles the embedded bytes");
  loadEmbedded(preferredBuild());
  return loaded!.kernels;
}

/** Compiles and instantiates an embedded build, synchronously: it never waits on the host. */
function loadEmbedded(build: SimdBuild): SimdBuild {
  const threads = threadsWanted();
  if (threads > 1) {
    try {
      return loadThreaded(build, threads);
    } catch (error) {
      // Asked for (setThreads, JACOBIAN_WASM_THREADS): say why not. By default: one thread.
      if (threadsSet !== undefined || readThreadsVariable() !== undefined) {
        throw new UnsupportedError(`${threads} threads could not start here: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(new WebAssembly.Module(wasmBytes(build)), IMPORTS);
  } catch (error) {
    throw notLoaded(`compiling them here failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  return load(instance, build);
}

/**
 * The threads build over a new shared memory, and `threads − 1` workers over the same memory
 * (started by the first call that splits).
 */
function loadThreaded(build: SimdBuild, threads: number): SimdBuild {
  const laid = layOutThreaded(build, threads);
  return installThreaded(laid, () => new WorkerPool(laid.memory, laid.module, laid.workers, laid.control, laid.scratchDelta));
}

/** The threads build instantiated over its shared memory, laid out for its workers; not yet loaded. */
interface Threaded {
  build: SimdBuild;
  threads: number;
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  exports: Kernels;
  workers: number;
  control: number;
  scratchDelta: (worker: number) => number;
  reserved: number;
}

/**
 * Above the static data: each worker's control block, then each worker's copy of the static
 * scratch (its kernels' packing buffers are moved there), then the plans.
 */
function layOutThreaded(build: SimdBuild, threads: number): Threaded {
  const bytes = decodeBase64(build === "relaxed" ? relaxedThreadsWasmBase64 : baselineThreadsWasmBase64);
  let module: WebAssembly.Module;
  let instance: WebAssembly.Instance | undefined;
  let memory: WebAssembly.Memory | undefined;
  try {
    module = new WebAssembly.Module(bytes);
    // The module declares the pages its static data needs; a smaller memory does not link.
    for (let pages = 64; instance === undefined; pages *= 2) {
      memory = new WebAssembly.Memory({ initial: pages, maximum: 65536, shared: true });
      try {
        instance = new WebAssembly.Instance(module, { env: { ...IMPORTS.env, memory } });
      } catch (error) {
        if (!(error instanceof WebAssembly.LinkError) || pages >= 4096) throw error;
      }
    }
  } catch (error) {
    throw notLoaded(`compiling them here failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  const exports = instance.exports as unknown as Kernels;
  const staticBytes = align(exports.heapBase(), 64);
  const workers = threads - 1;
  const control = staticBytes;
  const scratch = control + workers * BLOCK_BYTES;
  const reserved = workers * (BLOCK_BYTES + staticBytes);
  const have = memory!.buffer.byteLength;
  if (scratch + workers * staticBytes > have) memory!.grow(Math.ceil((scratch + workers * staticBytes - have) / PAGE));
  return { build, threads, module, memory: memory!, exports, workers, control, scratchDelta: (w) => scratch + w * staticBytes, reserved };
}

/** Makes `laid` the loaded kernels (parallelKernels makes it the parallel state: only now, synchronously). */
function installThreaded(laid: Threaded, startPool: () => WorkerPool): SimdBuild {
  const kernels = parallelKernels(laid.exports, laid.module, laid.threads, startPool) as Kernels;
  loaded = { kernels, build: laid.build, threads: laid.threads, reserved: laid.reserved };
  generation++;
  arena.reset();
  return laid.build;
}

/** The threads `await initialize()` starts in a browser's worker (web_workers.ts); 1 where none can start. */
function webThreadsWanted(): number {
  if (precompiledOnly || !webWorkersAvailable() || (webStartFailed && threadsSet === undefined)) return 1;
  return Math.min(threadsSet ?? machineCores(), MAX_THREADS);
}

/** Set when the default threads could not start in a browser's worker: later initialize() calls do not try again (each try may take the start-up timeout). */
let webStartFailed = false;

/** The pending start of a browser's workers, and for how many threads (concurrent initialize() calls share it). */
let webStart: { threads: number; done: Promise<SimdBuild> } | undefined;

/**
 * In a browser's worker: lays out the threads build, awaits its workers' start-up (it cannot
 * be waited for blocked, see web_workers.ts), then loads it in place of whatever ran meanwhile
 * (the plain build, on one thread: plans laid out for it are rebuilt, as after setThreads). A
 * failure is an UnsupportedError where threads were asked for (setThreads), else one thread.
 */
function startWebThreads(build: SimdBuild, threads: number): Promise<SimdBuild> {
  if (webStart?.threads === threads) return webStart.done;
  const done = (async () => {
    let laid: Threaded;
    let pool: WorkerPool;
    try {
      laid = layOutThreaded(build, threads);
      pool = await startWebPool(laid.memory, laid.module, laid.workers, laid.control, laid.scratchDelta);
    } catch (error) {
      if (threadsSet !== undefined) {
        throw new UnsupportedError(`${threads} threads could not start here: ${error instanceof Error ? error.message : String(error)}`);
      }
      webStartFailed = true;
      return loadedNow()?.build ?? loadEmbedded(build);
    }
    // Meanwhile setThreads may have asked for another number, or initialize(module) loaded a
    // module. (No computation runs now: they are synchronous, and this resumes between tasks.)
    const now = loadedNow();
    if (now?.module !== undefined) {
      pool.close();
      return now.build;
    }
    if (webThreadsWanted() !== threads) {
      pool.close();
      return initialize();
    }
    if (now !== undefined) unload();
    return installThreaded(laid, () => pool);
  })();
  const start = { threads, done };
  webStart = start;
  const forget = () => {
    if (webStart === start) webStart = undefined;
  };
  done.then(forget, forget);
  return done;
}

/** Stops the workers and forgets the kernels: the next call loads them as `threadsWanted()` says. */
function unload(): void {
  closeThreads();
  loaded = undefined;
}

/** For the `jacobian-wasm/precompiled` entry: the kernels come only from `initialize(module)`. */
export function requirePrecompiled(): void {
  precompiledOnly = true;
}

/**
 * Which build is loaded (loading the kernels first if nothing did).
 *
 * @example
 * ```ts
 * import { simdBuild } from "jacobian-wasm";
 * const build = simdBuild(); // "relaxed" where the host has relaxed SIMD, else "baseline"
 * ```
 */
export function simdBuild(): SimdBuild {
  kernels();
  return loaded!.build;
}

/** Set by `setThreads` (undefined: `JACOBIAN_WASM_THREADS`, else the machine's cores). */
let threadsSet: number | undefined;
/** The most threads `setThreads` and `JACOBIAN_WASM_THREADS` accept. */
const MAX_THREADS = 64;

/** The cores this process may use (os.availableParallelism, navigator.hardwareConcurrency), at least 1. */
function machineCores(): number {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  try {
    const os = g.process?.getBuiltinModule?.("node:os");
    if (typeof os?.availableParallelism === "function") return Math.max(1, os.availableParallelism());
  } catch {
    // not a host with node:os
  }
  const cores = g.navigator?.hardwareConcurrency;
  return typeof cores === "number" && cores >= 1 ? Math.floor(cores) : 1;
}

// JACOBIAN_WASM_THREADS=n asks for n threads (1: the plain build, no workers).
function readThreadsVariable(): number | undefined {
  const value = environmentVariable("JACOBIAN_WASM_THREADS");
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
    throw new TypeError(`JACOBIAN_WASM_THREADS must be an integer from 1 to ${MAX_THREADS}, got "${value}"`);
  }
  return n;
}

/** Threads the next load asks for: `setThreads`, else the variable, else the cores; 1 where no pool can run. */
function threadsWanted(): number {
  if (precompiledOnly || !threadsAvailable()) return 1;
  return Math.min(threadsSet ?? readThreadsVariable() ?? machineCores(), MAX_THREADS);
}

/**
 * How many threads the computations run on: the calling thread and `threads() − 1` workers
 * sharing its WebAssembly memory (loading the kernels first if nothing did). By default the
 * machine's cores where threads can run (node, deno and bun: `SharedArrayBuffer`, atomics and
 * `node:worker_threads`; a browser's dedicated worker of a cross-origin-isolated page, once
 * `await initialize()` has started them), 1 elsewhere (a browser's main thread, a page that is
 * not cross-origin isolated, workerd); `JACOBIAN_WASM_THREADS` or `setThreads` choose another
 * number.
 *
 * @example
 * ```ts
 * import { threads } from "jacobian-wasm";
 * const running: number = threads(); // e.g. 2 on a 2-core machine, 1 in a browser
 * ```
 */
export function threads(): number {
  kernels();
  return loaded!.threads;
}

/**
 * Sets how many threads the computations run on (1 to 64; `undefined`: back to
 * `JACOBIAN_WASM_THREADS` or the machine's cores). More than 1 needs a host where threads can
 * run (see `threads`): elsewhere it is an `UnsupportedError`. Changing the number reloads the
 * kernels: every plan is rebuilt on its next call and the workers of the old number are
 * stopped. Results are the same for any number (work is split by samples). Returns the
 * number in force. Not callable during a computation (from `onChunk`, say). In a browser's
 * worker, where workers start only asynchronously, more than 1 takes effect at the next
 * `await initialize()` (until then the number in force stays); 1 takes effect at once.
 *
 * @example
 * ```ts
 * import { setThreads, threads } from "jacobian-wasm";
 * setThreads(1); // one thread, no workers
 * threads(); // 1
 * setThreads(undefined); // back to the default
 * ```
 */
export function setThreads(n: number | undefined): number {
  if (n !== undefined && (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_THREADS)) {
    throw new ValueError(`setThreads: n must be an integer from 1 to ${MAX_THREADS} (or undefined for the default), got ${showNumber(n)}`);
  }
  if (n !== undefined && n > 1 && (precompiledOnly || !(threadsAvailable() || webWorkersAvailable()) || (loaded !== undefined && loaded.module !== undefined))) {
    throw new UnsupportedError(
      `setThreads(${n}): threads need SharedArrayBuffer, Atomics.wait on the calling thread and worker threads ` +
        `(node, deno, bun; in a browser, a dedicated worker of a cross-origin-isolated page)${loaded?.module !== undefined || precompiledOnly ? ", and the embedded kernels (not a precompiled module)" : ""}; this host runs one thread`,
    );
  }
  if (isComputing()) {
    throw new UnsupportedError(
      `setThreads(${n}) was called during a computation (from its onChunk callback or a quasiLinear forward): ` +
        "changing the number of threads reloads the kernels under it; call it after the computation returns",
    );
  }
  const previous = threadsSet;
  threadsSet = n;
  // In a browser's worker, more than one thread starts only in `await initialize()` (the workers
  // start asynchronously): until then the threads in force stay. One thread is at once.
  const wanted = webWorkersAvailable() ? (webThreadsWanted() === 1 ? 1 : loaded?.threads) : threadsWanted();
  if (loaded !== undefined && loaded.module === undefined && wanted !== loaded.threads) {
    const build = loaded.build;
    unload();
    try {
      loadEmbedded(build);
    } catch (error) {
      threadsSet = previous;
      loadEmbedded(build);
      throw error;
    }
  }
  return loaded === undefined ? threadsWanted() : threads();
}

function showNumber(value: unknown): string {
  return typeof value === "number" ? String(value) : typeof value === "string" ? JSON.stringify(value) : typeof value;
}

const PAGE = 65536;
/** The most a 32-bit WebAssembly memory can hold. */
export const MAX_BYTES = 4 * 1024 * 1024 * 1024 - PAGE;
const DEFAULT_LIMIT = 1024 ** 3;
let limit = DEFAULT_LIMIT;

/**
 * Caps the WebAssembly memory a batch's plan may take (default 1 GiB; at most 4 GiB − 64 KiB).
 * A batch whose activations, caches and gradients would need more runs in runs of as many
 * samples as fit, one after the other, with the same results; a sample that alone needs more
 * runs alone (up to the 4 GiB a WebAssembly memory can hold). `undefined` restores the
 * default. The memory never shrinks, so the cap is also about what the process keeps
 * resident for a large batch. Returns the cap in force.
 *
 * @example
 * ```ts
 * import { setMemoryLimit } from "jacobian-wasm";
 * setMemoryLimit(256 * 1024 * 1024); // batches needing more run in runs that fit in 256 MiB
 * setMemoryLimit(undefined); // back to 1 GiB
 * ```
 */
export function setMemoryLimit(bytes: number | undefined): number {
  if (bytes === undefined) return (limit = DEFAULT_LIMIT);
  if (typeof bytes !== "number" || !Number.isFinite(bytes) || bytes < PAGE || bytes > MAX_BYTES) {
    throw new ValueError(`setMemoryLimit: bytes must be between ${PAGE} (64 KiB) and ${MAX_BYTES} (4 GiB − 64 KiB), got ${bytes}`);
  }
  return (limit = Math.floor(bytes));
}

/**
 * The cap on a plan's memory in bytes (see `setMemoryLimit`).
 *
 * @example
 * ```ts
 * import { memoryLimit } from "jacobian-wasm";
 * memoryLimit(); // 1073741824 (1 GiB) unless setMemoryLimit changed it
 * ```
 */
export function memoryLimit(): number {
  return limit;
}

/**
 * The WASM memory above the module's static data. Plans lay out their buffers from
 * `base()` upward; every computation is sequential, so all plans share the same range and
 * the memory only ever grows to the largest plan.
 */
export const arena = {
  f32View: new Float32Array(0),
  i32View: new Int32Array(0),

  reset(): void {
    this.f32View = new Float32Array(0);
    this.i32View = new Int32Array(0);
  },

  /** First usable byte, 64-byte aligned (above what the worker threads keep, when there are any). */
  base(): number {
    const k = kernels();
    return align(k.heapBase(), 64) + loaded!.reserved;
  },

  /** Grows the memory so that bytes [0, end) exist. */
  ensure(end: number): void {
    if (end > MAX_BYTES) {
      throw new MemoryError(
        `jacobian-wasm needs ${formatBytes(end)} of WebAssembly memory, more than the 4 GiB a ` +
          `32-bit WebAssembly memory can hold: use a smaller batch`,
      );
    }
    const memory = kernels().memory;
    const have = memory.buffer.byteLength;
    if (end > have) memory.grow(Math.ceil((end - have) / PAGE));
  },

  /** A Float32Array over the whole memory, renewed after growth detaches the old one. */
  f32(): Float32Array {
    const buffer = kernels().memory.buffer;
    // A WebAssembly.Memory that is not shared has an ArrayBuffer (Deno's libs type it wider).
    if (this.f32View.buffer !== buffer) this.f32View = new Float32Array(buffer as ArrayBuffer);
    return this.f32View;
  },

  i32(): Int32Array {
    const buffer = kernels().memory.buffer;
    if (this.i32View.buffer !== buffer) this.i32View = new Int32Array(buffer as ArrayBuffer);
    return this.i32View;
  },

  /** Bytes of WASM memory now (tests use it to check that repeated calls do not grow it). */
  byteLength(): number {
    return kernels().memory.buffer.byteLength;
  },
};

export function align(bytes: number, to: number): number {
  return Math.ceil(bytes / to) * to;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${bytes} bytes`;
}

