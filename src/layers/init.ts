/**
 * PyTorch's default initialisation, from a seedable generator so results repeat.
 */
import { mulberry32 } from "../tensor.ts";

let next = mulberry32(0x5eed);

/**
 * Seeds the generator that initialises new layers' parameters (PyTorch's `manual_seed`).
 *
 * @example
 * ```ts
 * import { manualSeed, Linear } from "jacobian-wasm";
 * manualSeed(0);
 * const layer = new Linear(3, 2); // the same weights on every run
 * ```
 */
export function manualSeed(seed: number): void {
  next = mulberry32(seed >>> 0);
}

/**
 * U(-1/√fan_in, 1/√fan_in): what PyTorch's `kaiming_uniform_(a=√5)` gives Linear and ConvNd
 * weights, and what it gives their biases.
 */
export function uniformFanIn(count: number, fanIn: number): Float32Array {
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (2 * next() - 1) * bound;
  return out;
}

/** N(0, 1) by Box–Muller: what PyTorch's `normal_()` gives Embedding weights. */
export function standardNormal(count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - next())); // 1 - u ∈ (0, 1]: no log(0)
    const angle = 2 * Math.PI * next();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}
