/**
 * The memory soak's workload (tests/soak.test.ts, bench/soak.ts): calls of `jacobian` and
 * `perSampleGradients` with batch sizes 1-300 and four input shapes, on one network or on
 * networks created and dropped, and the process's memory read between them.
 *
 * The inputs are views of one 300-sample buffer per shape, so the workload itself keeps
 * nothing per call: what the process keeps is the library's (and the results' garbage).
 */
import { AdaptiveAvgPool2d, Conv2d, Flatten, jacobian, Linear, perSampleGradients, randn, ReLU, Sequential } from "../../mod.ts";
import type { Module, Tensor } from "../../mod.ts";
import { runInNewContext } from "node:vm";
import { setFlagsFromString } from "node:v8";

export const MAX_BATCH = 300;
/** Per-sample input shapes the soak network takes (adaptive pooling makes any H, W fit). */
export const SHAPES: readonly (readonly number[])[] = [[2, 6, 6], [2, 8, 8], [2, 5, 7], [2, 9, 4]];
const CLASSES = 3;

/** Conv2d → ReLU → AdaptiveAvgPool2d(2) → Linear: 127 parameters, 3 outputs, any spatial size. */
export function soakNetwork(): Sequential {
  return new Sequential(new Conv2d(2, 4, 3, { padding: 1 }), new ReLU(), new AdaptiveAvgPool2d(2), new Flatten(), new Linear(16, CLASSES));
}

/** What one call computed: its shape and batch, and the result. */
export interface SoakCall {
  shape: number;
  N: number;
  kind: "jacobian" | "perSampleGradients";
  result: Tensor;
}

/** Draws (shape, batch size, kind) from a seeded generator and makes the call. */
export class SoakWorkload {
  private state: number;
  private readonly inputs = SHAPES.map((shape, i) => randn([MAX_BATCH, ...shape], 100 + i));
  private readonly labels = Int32Array.from({ length: MAX_BATCH }, (_, n) => (n * 7) % CLASSES);

  constructor(seed = 1) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1), mulberry32. */
  private random(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** The first N samples of shape `shape` (a view: nothing is copied). */
  input(shape: number, N: number): Tensor {
    const x = this.inputs[shape];
    const width = x.data.length / MAX_BATCH;
    return { shape: [N, ...SHAPES[shape]], data: x.data.subarray(0, N * width) };
  }

  /** One call with the given shape, batch and kind (per-sample gradients of cross-entropy, summed). */
  callWith(net: Module, shape: number, N: number, kind: SoakCall["kind"]): SoakCall {
    const x = this.input(shape, N);
    const result = kind === "jacobian"
      ? jacobian(net, x)
      : perSampleGradients(net, x, { shape: [N], data: this.labels.subarray(0, N) }, { loss: "cross_entropy", reduction: "sum" });
    return { shape, N, kind, result };
  }

  /** One call with a random shape, a random batch size in 1-300 and a random kind. */
  call(net: Module): SoakCall {
    const shape = Math.floor(this.random() * SHAPES.length);
    const N = 1 + Math.floor(this.random() * MAX_BATCH);
    return this.callWith(net, shape, N, this.random() < 0.5 ? "jacobian" : "perSampleGradients");
  }

  /**
   * Every shape and kind at the largest batch: the largest plans, so the WASM memory has
   * grown to all it will ever need for this workload (a plan's memory grows with N).
   */
  largest(net: Module): SoakCall[] {
    const calls: SoakCall[] = [];
    for (let shape = 0; shape < SHAPES.length; shape++) {
      for (const kind of ["jacobian", "perSampleGradients"] as const) calls.push(this.callWith(net, shape, MAX_BATCH, kind));
    }
    return calls;
  }
}

// deno-lint-ignore no-explicit-any
const runtime = globalThis as any;

/** Resident memory of this process in bytes (Deno.memoryUsage on deno, process.memoryUsage on node and bun). */
export function residentBytes(): number {
  return runtime.Deno ? runtime.Deno.memoryUsage().rss : runtime.process.memoryUsage().rss;
}

/**
 * A full garbage collection, where one can be had: Bun.gc, a `gc` the runtime exposes, or
 * V8's, exposed through `--expose-gc` set at run time (node and deno, whose test runners do
 * not pass the flag). Undefined where none can.
 */
export function fullGc(): (() => void) | undefined {
  if (runtime.Bun?.gc) return () => runtime.Bun.gc(true);
  if (typeof runtime.gc === "function") return () => runtime.gc();
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc");
    if (typeof gc === "function") return () => gc();
  } catch {
    // not V8, or the flag cannot be set now
  }
  return undefined;
}

/** Lets the current job end, so that WeakRefs read in it can be cleared by the next collection. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
