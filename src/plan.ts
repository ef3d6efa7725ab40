/**
 * A plan is everything one (network, input shape, backward rows per sample) needs: the byte
 * layout of parameters, activations, caches, gradients, J and workspace in the WASM memory,
 * and the network compiled to steps with those pointers fixed. Built once, cached by shape,
 * so a repeated call allocates nothing and recomputes nothing.
 *
 * Every plan lays itself out from the same base address: computations run one at a time,
 * so plans share the memory, which only ever grows to the largest plan's size.
 */
import type { Module, Step } from "./layers/module.ts";
import type { Tensor } from "./tensor.ts";
import { formatShape, numel } from "./tensor.ts";
import { align, arena, formatBytes, kernels, kernelsGeneration, MAX_BYTES } from "./wasm.ts";
import { finishTapes, postTapes, recordCalls, setWorkspace, threadCount, threadsWorthUsing } from "./threads/parallel.ts";
import { MemoryError, ShapeError, UnsupportedError } from "./errors.ts";
import { explainInputMismatch } from "./expected_input.ts";

/** A pointer decided after compilation (the shared workspace): steps read `.ptr` when they run. */
export interface Slot {
  ptr: number;
}

/** What a plan computes beyond the forward pass. */
export type PlanMode =
  | "forward" // output only
  | "per-sample" // J: one row per backward row (R = N·K)
  | "summed"; // the ordinary gradient, summed over rows (the naive reference path)

/** Hands out memory to the steps of one plan while they compile. */
export class PlanBuilder {
  /** Forward batch. */
  readonly N: number;
  /** Backward rows per sample (K one-hot seeds for a K-output Jacobian, else 1). */
  readonly K: number;
  /** Backward rows, N·K. */
  readonly R: number;
  readonly mode: PlanMode;
  /** Number of parameters (columns of J). */
  readonly D: number;
  /** Where the parameters live: D floats, in `parameters()` order, so column c is at paramsPtr + 4c. */
  readonly paramsPtr: number;
  /** The summed gradient vector (D floats) of "summed" plans. */
  readonly gradientVector: Slot = { ptr: 0 };
  /** The shared scratch area: steps ask for their size, the largest wins. */
  readonly workspace: Slot = { ptr: 0 };
  private workspaceBytes = 0;
  private cursor: number;
  private readonly columns = new Map<Tensor, number>();
  readonly constants: { ptr: number; values: Int32Array }[] = [];

  constructor(parameters: readonly Tensor[], N: number, K: number, mode: PlanMode) {
    this.N = N;
    this.K = K;
    this.R = N * K;
    this.mode = mode;
    let column = 0;
    for (const t of parameters) {
      if (!this.columns.has(t)) {
        this.columns.set(t, column);
        column += t.data.length;
      }
    }
    this.D = column;
    this.paramsPtr = arena.base();
    this.cursor = this.paramsPtr + this.D * 4;
  }

  /** Reserves `bytes` of plan memory, 64-byte aligned (a cache line, and f32x4-aligned). */
  allocate(bytes: number): number {
    this.cursor = align(this.cursor, 64);
    const ptr = this.cursor;
    this.cursor += bytes;
    return ptr;
  }

  /** Reserves `count` floats. */
  floats(count: number): number {
    return this.allocate(count * 4);
  }

  /** An i32 block (geometry) written to memory at the start of every run. */
  constantBlock(values: readonly number[]): number {
    const ptr = this.allocate(values.length * 4);
    this.constants.push({ ptr, values: Int32Array.from(values) });
    return ptr;
  }

  /** Asks for `bytes` of scratch, shared by all steps (valid only during one step call). */
  scratch(bytes: number): Slot {
    this.workspaceBytes = Math.max(this.workspaceBytes, bytes);
    return this.workspace;
  }

  /** Pointer to a parameter's values in WASM memory. */
  parameterPtr(t: Tensor): number {
    return this.paramsPtr + this.column(t) * 4;
  }

  /** Column of a parameter's first element in J (and in the gradient vector). */
  column(t: Tensor): number {
    const c = this.columns.get(t);
    if (c === undefined) throw new Error("internal: a step asked for a parameter the network does not list");
    return c;
  }

  /** Byte offset, from the start of a J row, of a parameter's first column. */
  columnBytes(t: Tensor): number {
    return this.column(t) * 4;
  }

  /** Bytes from one thread's copy of the workspace to the next (set by `finish`). */
  workspaceStride = 0;

  /** Places the workspace last, one copy per thread; returns the end of the plan's memory. */
  finish(): number {
    if (this.mode === "summed") this.gradientVector.ptr = this.floats(this.D);
    this.workspaceStride = align(this.workspaceBytes, 64);
    this.workspace.ptr = this.allocate(this.workspaceStride * threadCount());
    return align(this.cursor, 64);
  }
}

/**
 * J is produced in chunks of rows small enough to stay in cache (about 1 MiB), each copied
 * out as soon as it is complete: the full N × D matrix is written to memory once, by the copy
 * to its destination, never twice.
 */
const CHUNK_BYTES = 1 << 20;

/** For tests: smaller chunks make the chunk loop (and its split between threads) run on small networks. */
export const chunkTuning = { bytes: CHUNK_BYTES };

/** Where the rows of J go: called once per chunk with rows [firstRow, firstRow + rows), row stride D. */
export type RowSink = (firstRow: number, rows: number, chunk: Float32Array) => void;

const NO_STEPS: ReadonlySet<Step> = new Set();

/** A compiled network for one input shape: run it forward, then backward one of two ways. */
export class Plan {
  readonly key: string;
  readonly N: number;
  readonly K: number;
  readonly R: number;
  readonly D: number;
  readonly mode: PlanMode;
  readonly sampleShape: readonly number[];
  readonly outShape: readonly number[];
  readonly inputPtr: number;
  readonly outputPtr: number;
  /** Where the last step's output gradient goes: the caller seeds it (loss gradient or one-hot rows). */
  readonly seedPtr: number;
  /** The summed gradient vector ("summed" plans). */
  readonly gradientPtr: number;
  /** Samples per chunk of J ("per-sample" plans), and where the chunk is built (thread t's at chunkPtr + t · chunkStride). */
  readonly chunkSamples: number;
  readonly chunkPtr: number;
  readonly chunkStride: number;
  /** Threads that make chunks of J's rows: one chunk buffer each (1: chunks are made here only). */
  readonly threads: number;
  private readonly workspace: Slot;
  private readonly workspaceStride: number;
  readonly end: number;
  private readonly steps: Step[];
  private readonly parameters: Tensor[];
  private readonly paramsPtr: number;
  private readonly constants: { ptr: number; values: Int32Array }[];
  /** Backward stops at the first step with parameters: nothing before it needs gradients. */
  private readonly firstTrainable: number;
  private readonly trainable: Step[];
  /** A step whose backward pass is not needed (see the constructor), or -1; tests read it. */
  readonly skippedBackward: number;
  /** Where the steps' `gradient()` adds: the gradient vector of "summed" plans, else set per call (`addGradients`). */
  private readonly gradientSlot: Slot;

  constructor(net: Module, sampleShape: readonly number[], N: number, K: number, mode: PlanMode, key: string) {
    this.key = key;
    refuseTiedParameters(net);
    this.parameters = net.parameters().map(([, t]) => t);
    const builder = new PlanBuilder(this.parameters, N, K, mode);
    const inputPtr = builder.floats(N * numel(sampleShape));
    const compiled = net.compile({ builder, path: "", input: inputPtr, inShape: sampleShape });
    this.steps = compiled.steps;
    const last = this.steps[this.steps.length - 1];
    if (last !== undefined && last.output === undefined) last.output = compiled.output;
    this.outShape = compiled.outShape;
    this.inputPtr = inputPtr;
    this.outputPtr = compiled.output;
    this.firstTrainable = this.steps.findIndex((s) => s.hasParameters);
    this.trainable = this.steps.filter((s) => s.hasParameters);
    this.seedPtr = mode === "forward"
      ? 0
      : placeGradients(builder, this.steps, numel(sampleShape), { from: this.firstTrainable + 1 }).seed;
    // A convolution that is the first step with parameters, right before max pooling, takes its
    // per-sample weight gradients from the pooled gradient: the pooling's backward (a dense
    // gradient as large as the convolution's output) is never needed.
    // (A network without parameters has no such step: firstTrainable is -1.)
    const next = this.steps[this.firstTrainable + 1];
    this.skippedBackward = mode === "per-sample" && this.firstTrainable >= 0 && next !== undefined &&
        this.steps[this.firstTrainable].perSampleThroughMaxPool?.(builder, next) === true
      ? this.firstTrainable + 1
      : -1;
    this.D = builder.D;
    this.R = builder.R;
    this.chunkSamples = 0;
    this.chunkPtr = 0;
    this.chunkStride = 0;
    this.threads = 1;
    if (mode === "per-sample") {
      this.chunkSamples = Math.max(1, Math.min(N, Math.floor(chunkTuning.bytes / (K * Math.max(1, this.D) * 4))));
      this.chunkStride = align(this.chunkSamples * K * this.D * 4, 64);
      // A chunk per thread when there are chunks to share and they are cache-sized (a sample
      // whose rows alone are larger is made on this thread: a copy per thread would not fit).
      if (N > this.chunkSamples && this.chunkStride <= 2 * chunkTuning.bytes) this.threads = threadCount();
      // This thread's chunk, then two sets of one per worker (see chunksOnThreads).
      this.chunkPtr = builder.allocate(this.chunkStride * (2 * this.threads - 1));
    }
    this.end = builder.finish();
    this.workspace = builder.workspace;
    this.workspaceStride = builder.workspaceStride;
    this.gradientPtr = builder.gradientVector.ptr;
    this.gradientSlot = builder.gradientVector;
    this.N = N;
    this.K = K;
    this.mode = mode;
    this.sampleShape = [...sampleShape];
    this.paramsPtr = builder.paramsPtr;
    this.constants = builder.constants;
  }

  /** Grows the memory to this plan and writes its constants and the current parameter values. */
  prepare(): void {
    arena.ensure(this.end);
    const i32 = arena.i32();
    for (const { ptr, values } of this.constants) i32.set(values, ptr >>> 2);
    const f32 = arena.f32();
    let offset = this.paramsPtr >>> 2;
    for (const t of this.parameters) {
      f32.set(t.data, offset);
      offset += t.data.length;
    }
  }

  /** Copies `count` samples of input, starting at sample `first` of `x`, into the input buffer. */
  writeInput(x: Float32Array, first = 0): void {
    const width = numel(this.sampleShape);
    arena.f32().set(x.subarray(first * width, (first + this.N) * width), this.inputPtr >>> 2);
  }

  forward(): void {
    setWorkspace(this.workspace.ptr, this.workspaceStride);
    for (const step of this.steps) step.forward();
  }

  /** The steps with parameters, in order (a quantity may take some of them another way). */
  /** The steps in forward order (to find the one whose output first overflowed). */
  get allSteps(): readonly Step[] {
    return this.steps;
  }

  get trainableSteps(): readonly Step[] {
    return this.trainable;
  }

  /**
   * Backward from the seeded output gradient through every step, then each row's per-sample
   * gradient, one cache-sized chunk of rows at a time, handed to `sink`. Steps in `skip` write
   * nothing (their columns of the chunk hold whatever was there); every step's output gradient
   * stays in place afterwards, for a quantity that takes those steps another way, and is
   * already in place when `beforeRows` runs (before the first chunk).
   */
  backwardPerSample(sink: RowSink, skip: ReadonlySet<Step> = NO_STEPS, beforeRows?: () => void): void {
    for (const { firstRow, rows, chunk } of this.perSampleChunks(skip, beforeRows)) sink(firstRow, rows, chunk);
  }

  /**
   * `backwardPerSample` as a generator: the backward pass on the first `next()`, then one chunk
   * of rows per `next()`, so that a caller can hand the event loop a turn between chunks (the
   * CLI does, for its signal handlers). A chunk is a view of WASM memory, valid until the next.
   */
  *perSampleChunks(skip: ReadonlySet<Step> = NO_STEPS, beforeRows?: () => void): Generator<{ firstRow: number; rows: number; chunk: Float32Array }, void, undefined> {
    this.backward();
    beforeRows?.();
    const steps = skip.size === 0 ? this.trainable : this.trainable.filter((step) => !skip.has(step));
    if (steps.length === 0) return;
    const rowFloats = this.K * this.D;
    const chunk = this.chunkPtr;
    const view = (first: number, samples: number, at: number) => ({
      firstRow: first * this.K,
      rows: samples * this.K,
      chunk: arena.f32().subarray(at >>> 2, (at >>> 2) + samples * rowFloats),
    });
    if (this.threads > 1 && this.N > this.chunkSamples && threadsWorthUsing()) {
      yield* this.chunksOnThreads(steps, view);
      return;
    }
    for (let first = 0; first < this.N; first += this.chunkSamples) {
      const samples = Math.min(this.chunkSamples, this.N - first);
      for (const step of steps) step.perSample(first, samples, chunk);
      yield view(first, samples, chunk);
    }
  }

  /**
   * The chunks of J's rows made by every thread, in groups of one chunk a thread: this thread
   * makes the first chunk of a group, worker w the (w + 1)-th, from a tape of the calls its
   * chunk takes (recorded with its own chunk buffer and workspace). The workers' buffers come
   * in two sets: while a group's chunks are handed on, the workers already make the next
   * group's in the other set.
   *
   * Chunks hold `chunkSamples` samples, but in the last group, where the samples left are shared
   * evenly: 128 samples in chunks of 10 on 2 threads would leave a worker waiting for the 13th.
   * Where chunks start changes no value: every sample's rows are made by the same calls.
   */
  private *chunksOnThreads(
    steps: readonly Step[],
    view: (first: number, samples: number, at: number) => { firstRow: number; rows: number; chunk: Float32Array },
  ): Generator<{ firstRow: number; rows: number; chunk: Float32Array }, void, undefined> {
    const threads = this.threads;
    const workers = threads - 1;
    const most = this.chunkSamples;
    const ownWorkspace = this.workspace.ptr;
    /** Worker w's buffer in set `set`: after this thread's own, which is buffer 0. */
    const bufferOf = (set: number, w: number) => this.chunkPtr + (1 + set * workers + w) * this.chunkStride;
    /** The next group from sample `first` on: its first sample and each thread's samples (this thread's first). */
    const groupFrom = (first: number) => {
      const samples = Math.min(this.N - first, threads * most);
      const perThread = Math.ceil(samples / threads);
      const sizes = new Array<number>(threads).fill(0);
      let left = samples;
      for (let t = 0; t < threads; t++) left -= sizes[t] = Math.min(perThread, left);
      return { first, sizes };
    };
    type Group = ReturnType<typeof groupFrom>;
    const startOf = (group: Group, t: number) => group.first + group.sizes.slice(0, t).reduce((a, b) => a + b, 0);
    const post = (group: Group, set: number) => {
      const tapes = group.sizes.slice(1).map((samples, w) => {
        if (samples === 0) return [];
        this.workspace.ptr = ownWorkspace + (w + 1) * this.workspaceStride;
        try {
          return recordCalls(() => {
            for (const step of steps) step.perSample(startOf(group, w + 1), samples, bufferOf(set, w));
          });
        } finally {
          this.workspace.ptr = ownWorkspace;
        }
      });
      postTapes(tapes);
    };
    try {
      let group: Group | undefined = groupFrom(0);
      post(group, 0);
      for (let set = 0; group !== undefined; set = 1 - set) {
        const own = group.sizes[0];
        for (const step of steps) if (own > 0) step.perSample(group.first, own, this.chunkPtr);
        finishTapes();
        const end: number = startOf(group, threads);
        const next = end < this.N ? groupFrom(end) : undefined;
        if (next !== undefined) post(next, 1 - set);
        if (own > 0) yield view(group.first, own, this.chunkPtr);
        for (let w = 0; w < workers; w++) if (group.sizes[w + 1] > 0) yield view(startOf(group, w + 1), group.sizes[w + 1], bufferOf(set, w));
        group = next;
      }
    } finally {
      finishTapes(); // a consumer that stopped early: no worker may still write when we return
    }
  }

  /**
   * Adds the given trainable steps' gradients, summed over the rows of their output gradients
   * as they stand (a quantity may have scaled them), into the D floats at `vector`, at the
   * steps' own columns. Safe for steps whose `gradient()` reads only gy and the forward pass's
   * activations (those with `squaredNorms`); after `backwardPerSample`, K = 1.
   */
  addGradients(steps: readonly Step[], vector: number): void {
    const saved = this.gradientSlot.ptr;
    this.gradientSlot.ptr = vector;
    try {
      for (const step of steps) step.gradient();
    } finally {
      this.gradientSlot.ptr = saved;
    }
  }

  /** Backward from the seeded output gradient, the ordinary way: the gradient summed over rows. */
  backwardSummed(): void {
    arena.f32().fill(0, this.gradientPtr >>> 2, (this.gradientPtr >>> 2) + this.D);
    this.backward();
    for (const step of this.trainable) step.gradient();
  }

  /**
   * The backward pass down to the first step with parameters. Every step with parameters
   * keeps its output gradient to the end, so their parameter gradients are taken afterwards.
   */
  private backward(): void {
    setWorkspace(this.workspace.ptr, this.workspaceStride);
    for (let i = this.steps.length - 1; i > this.firstTrainable; i--) {
      if (i !== this.skippedBackward) this.steps[i].backward();
    }
    // A block (Residual, Parallel) needs its inner backward pass for its own parameters.
    if (this.firstTrainable >= 0 && this.steps[this.firstTrainable].innerBackward) this.steps[this.firstTrainable].backward();
  }
}

/**
 * A module with parameters used at two places would need its per-sample gradients summed
 * over both uses: not supported, so refused rather than silently wrong.
 */
function refuseTiedParameters(net: Module): void {
  const seen = new Map<Module, string>();
  net.visit("", (prefix, module) => {
    if (module.ownParameters().length === 0) return;
    const path = prefix.replace(/\.$/, "");
    const first = seen.get(module);
    if (first !== undefined) {
      throw new UnsupportedError(
        `${module.typeName} at ${path || "the root"} is the same module as at ${first || "the root"}: ` +
          `shared (tied) parameters are not supported`,
      );
    }
    seen.set(module, path);
  });
}

/**
 * Gives the steps of a chain their output-gradient (gy) and input-gradient (gx) buffers, for
 * boundaries `from` (0 = the chain's input) to the chain's output; returns the buffer of the
 * output gradient (`seed`, or a new one) and of the input gradient (0 unless from = 0).
 *
 * A step with parameters keeps its gy to the end of the backward pass (parameter gradients
 * are taken afterwards); the other boundaries ping-pong between two areas; an aliasing step
 * (Flatten) reads and writes the same buffer.
 */
export function placeGradients(
  builder: PlanBuilder,
  steps: readonly Step[],
  inputWidth: number,
  options: { from: number; seed?: number },
): { seed: number; input: number } {
  const R = builder.R;
  const widths = [inputWidth, ...steps.map((s) => numel(s.outShape))];
  // Boundary j is the input of step j and the output of step j - 1; boundaries joined by an
  // aliasing step share one buffer (a group).
  const groups: { boundaries: number[]; dedicated: boolean }[] = [];
  for (let j = steps.length; j >= Math.max(options.from, 0); j--) {
    const joined = j < steps.length && steps[j].aliasesInput && groups.length > 0;
    if (!joined) groups.push({ boundaries: [], dedicated: false });
    const group = groups[groups.length - 1];
    group.boundaries.push(j);
    // The chain's output is the caller's (seed); its input gradient is read after the chain's
    // backward pass: both must not be overwritten by the ping-pong.
    if (j === 0 || (j > 0 && steps[j - 1].hasParameters) || (j === steps.length && options.seed !== undefined)) {
      group.dedicated = true;
    }
  }
  const shared = groups.filter((g) => !g.dedicated);
  const widest = Math.max(0, ...shared.map((g) => widths[g.boundaries[0]]));
  const pingPong = shared.length === 0 ? [] : [builder.floats(R * widest), builder.floats(R * widest)];
  const buffers = new Map<number, number>();
  let turn = 0;
  for (const group of groups) {
    const isSeed = group.boundaries.includes(steps.length) && options.seed !== undefined;
    let ptr: number;
    if (isSeed) ptr = options.seed!;
    else if (group.dedicated) ptr = builder.floats(R * widths[group.boundaries[0]]);
    else {
      ptr = pingPong[turn];
      turn = 1 - turn;
    }
    for (const j of group.boundaries) buffers.set(j, ptr);
  }
  // Steps before `from` run no backward; their buffers stay 0.
  steps.forEach((step, i) => {
    step.gy = buffers.get(i + 1) ?? 0;
    step.gx = buffers.get(i) ?? 0;
  });
  for (const step of steps) if (step.gy !== 0) step.placeGradients?.(builder);
  const seed = buffers.get(steps.length) ?? options.seed ?? builder.floats(R * widths[steps.length]);
  return { seed, input: options.from <= 0 ? buffers.get(0) ?? seed : 0 };
}

/** Plans of one network, keyed by input shape and mode, least recently used evicted first. */
export class PlanCache {
  private readonly plans = new Map<string, Plan>();
  /** Plans built so far (tests read it to check that a repeated call builds none). */
  built = 0;

  /** Per-sample output shapes by per-sample input shape, so a repeated call walks no layers. */
  private readonly outputShapes = new Map<string, readonly number[]>();

  /** The load of the kernels the plans were laid out under (`kernelsGeneration`). */
  private generation = -1;

  constructor(readonly capacity = 8) {}

  /**
   * The network's per-sample output shape for a per-sample input shape (checked layer by layer
   * once): where a network first meets a batch's shape. A shape it rejects is a ShapeError that
   * names the batch's shape (N samples, when given), the input shape the network takes and the
   * first layer to disagree (src/expected_input.ts).
   */
  outputShape(net: Module, sampleShape: readonly number[], N?: number): readonly number[] {
    const key = sampleShape.join("x");
    let shape = this.outputShapes.get(key);
    if (!shape) {
      try {
        shape = net.outputShape(sampleShape);
      } catch (error) {
        throw error instanceof ShapeError ? explainInputMismatch(net, sampleShape, error, N) : error;
      }
      if (this.outputShapes.size >= this.capacity) this.outputShapes.delete(this.outputShapes.keys().next().value!);
      this.outputShapes.set(key, shape);
    }
    return shape;
  }

  get(net: Module, sampleShape: readonly number[], N: number, K: number, mode: PlanMode): Plan {
    // Plans laid out under another load of the kernels (setThreads changed it) are not valid.
    kernels();
    if (this.generation !== kernelsGeneration()) {
      this.plans.clear();
      this.runSizes.clear();
      this.generation = kernelsGeneration();
    }
    const key = `${N}x${sampleShape.join("x")}|${K}|${mode}`;
    let plan = this.plans.get(key);
    if (plan) {
      this.plans.delete(key); // re-insert: most recently used last
    } else {
      this.outputShape(net, sampleShape, N); // a shape the network rejects fails here, explained
      plan = new Plan(net, sampleShape, N, K, mode, key);
      this.built++;
      if (this.plans.size >= this.capacity) this.plans.delete(this.plans.keys().next().value!);
    }
    this.plans.set(key, plan);
    return plan;
  }

  /** Samples per run by batch, remembered so that a repeated call sizes nothing. */
  private readonly runSizes = new Map<string, number>();

  /**
   * How many samples of a batch of N run at a time: N when the batch's plan fits in `limit`
   * bytes of WebAssembly memory (the plan is then the one `get` returns for N), else the most
   * that fit, found from the plans of one and two samples and checked on the plan it picks;
   * never fewer than one (a sample larger than the limit runs alone). Samples never mix in a
   * plan (batch statistics are refused), so runs of a batch give the batch's results. A
   * MemoryError when one sample alone does not fit in a WebAssembly memory at all.
   */
  samplesPerRun(net: Module, sampleShape: readonly number[], N: number, K: number, mode: PlanMode, limit: number): number {
    const key = `${N}x${sampleShape.join("x")}|${K}|${mode}|${limit}`;
    const known = this.runSizes.get(key);
    if (known !== undefined) return known;
    let size = N;
    const whole = this.get(net, sampleShape, N, K, mode);
    if (whole.end > limit) {
      this.plans.delete(whole.key); // never run: a batch that does not fit runs in smaller plans
      size = this.largestFitting(net, sampleShape, N, K, mode, limit, whole.end);
    }
    if (this.runSizes.size >= 4 * this.capacity) this.runSizes.delete(this.runSizes.keys().next().value!);
    this.runSizes.set(key, size);
    return size;
  }

  private largestFitting(net: Module, sampleShape: readonly number[], N: number, K: number, mode: PlanMode, limit: number, wholeEnd: number): number {
    const one = this.get(net, sampleShape, 1, K, mode);
    if (one.end > MAX_BYTES) {
      throw new MemoryError(
        `one sample of shape ${formatShape(sampleShape)} alone needs ${formatBytes(one.end)} of WebAssembly memory ` +
          `(${K === 1 ? "" : `its ${K} rows of J are ${formatBytes(K * one.D * 4)}; `}the batch of ${N} would need ${formatBytes(wholeEnd)}), ` +
          `more than the 4 GiB a 32-bit WebAssembly memory can hold`,
      );
    }
    if (one.end >= limit) return 1;
    // Everything but J's chunk grows in proportion to the samples (activations, caches,
    // gradients): its growth from one sample to two, with the chunk taken out, bounds the
    // rest; the chunk is a few rows of J, at most about 1 MiB.
    const chunkBytes = (plan: Plan) => plan.chunkStride * (2 * plan.threads - 1);
    const two = N >= 2 ? this.get(net, sampleShape, 2, K, mode) : one;
    const perSample = Math.max(0, two.end - chunkBytes(two) - (one.end - chunkBytes(one)));
    const fixed = one.end - perSample;
    const chunkCap = (chunkTuning.bytes + K * one.D * 4 + 64) * (2 * one.threads - 1);
    let size = perSample === 0 ? N : Math.max(1, Math.min(N, Math.floor((limit - fixed - chunkCap) / perSample)));
    for (;;) {
      if (size <= 2) return size === 2 && two.end > limit ? 1 : size;
      const plan = this.get(net, sampleShape, size, K, mode);
      if (plan.end <= limit) return size;
      this.plans.delete(plan.key);
      size = Math.floor(size * 0.9);
    }
  }

  /** Forgets every plan (after the network's structure changed). */
  clear(): void {
    this.plans.clear();
    this.outputShapes.clear();
    this.runSizes.clear();
  }

  get size(): number {
    return this.plans.size;
  }
}

