/**
 * Checking a batch against a network and running its forward pass through a cached plan:
 * what every computation starts with.
 */
import { ShapeError, ValueError } from "./errors.ts";
import type { Module } from "./layers/module.ts";
import type { Plan, PlanMode } from "./plan.ts";
import { PlanCache } from "./plan.ts";
import type { Tensor } from "./tensor.ts";
import { formatShape, numel } from "./tensor.ts";
import { arena, kernels } from "./wasm.ts";

const caches = new WeakMap<Module, PlanCache>();

/** The plan cache of a network (one per root module). */
export function planCache(net: Module): PlanCache {
  let cache = caches.get(net);
  if (!cache) {
    cache = new PlanCache();
    caches.set(net, cache);
  }
  return cache;
}

/** Checks that `x` is a batch: a tensor with a leading batch dim and as many values as its shape says. */
export function checkBatch(x: Tensor, what = "input"): { N: number; sampleShape: number[] } {
  if (!x || !Array.isArray(x.shape) || !(x.data instanceof Float32Array)) {
    throw new TypeError(`${what} must be a tensor { shape: number[], data: Float32Array }`);
  }
  if (x.shape.length < 1 || x.shape[0] < 1) {
    throw new ShapeError(`${what}: expected a batch (N, ...) with N >= 1, got shape ${formatShape(x.shape)}`);
  }
  if (x.data.length !== numel(x.shape)) {
    throw new ShapeError(`${what}: shape ${formatShape(x.shape)} needs ${numel(x.shape)} values, data has ${x.data.length}`);
  }
  return { N: x.shape[0], sampleShape: x.shape.slice(1) };
}

/** A ValueError naming the first NaN or infinity in `values`, by its index in `shape`. */
export function checkFinite(values: Float32Array, shape: readonly number[], what: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) {
      throw new ValueError(`${what} holds ${v} at index [${unravel(i, shape).join(", ")}]`);
    }
  }
}

/** The multi-index of flat index i in a row-major shape. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return index;
}

/** Gets (or builds) the plan for `x`, loads parameters and input, and runs the forward pass. */
export function runForward(net: Module, x: Tensor, K: number, mode: PlanMode): Plan {
  const { N, sampleShape } = checkBatch(x);
  const plan = planCache(net).get(net, sampleShape, N, K, mode);
  plan.prepare();
  plan.writeInput(x.data);
  // Checked in WASM memory, after the copy: a SIMD scan instead of a JS loop over the batch.
  const bad: number = kernels().first_nonfinite(plan.inputPtr, x.data.length);
  if (bad >= 0) throw new ValueError(`input holds ${x.data[bad]} at index [${unravel(bad, x.shape).join(", ")}]`);
  plan.forward();
  return plan;
}

/** Copies the plan's output (N rows) out of WASM memory. */
export function readOutput(plan: Plan): Tensor {
  const count = plan.N * numel(plan.outShape);
  const start = plan.outputPtr >>> 2;
  return { shape: [plan.N, ...plan.outShape], data: arena.f32().slice(start, start + count) };
}
