/**
 * A tensor is a shape and a row-major Float32Array: nothing else.
 */
import { ShapeError } from "./errors.ts";

/**
 * A row-major float32 tensor. `data.length` equals the product of `shape`. Any object of
 * this shape is a tensor: the library has no tensor class.
 *
 * @example
 * ```ts
 * import { Linear } from "jacobian-wasm";
 * import type { Tensor } from "jacobian-wasm";
 * const x: Tensor = { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }; // x[1][0] = data[1 * 3 + 0] = 4
 * const y: Tensor = new Linear(3, 1).forward(x); // shape [2, 1]
 * ```
 */
export interface Tensor {
  /** The sizes of the dims, outermost first; for a batch, `shape[0]` is N. */
  readonly shape: readonly number[];
  /** The values, row-major (the last dim varies fastest). */
  readonly data: Float32Array;
}

/**
 * Number of elements of a shape (1 for the empty shape).
 *
 * @example
 * ```ts
 * import { numel } from "jacobian-wasm";
 * numel([2, 3, 4]); // 24
 * numel([]); // 1: a scalar
 * ```
 */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `(8, 3, 32, 32)`: how shapes appear in messages. */
export function formatShape(shape: readonly number[]): string {
  return `(${shape.join(", ")}${shape.length === 1 ? "," : ""})`;
}

/**
 * Wraps `data` as a tensor of `shape`, copying nothing.
 *
 * @example
 * ```ts
 * import { tensor } from "jacobian-wasm";
 * const x = tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 * ```
 */
export function tensor(data: Float32Array | readonly number[], shape: readonly number[]): Tensor {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ShapeError(`tensor: shape ${formatShape(shape)} must hold non-negative integers`);
    }
  }
  const values = data instanceof Float32Array ? data : Float32Array.from(data);
  if (values.length !== numel(shape)) {
    throw new ShapeError(
      `tensor: shape ${formatShape(shape)} holds ${numel(shape)} elements, data has ${values.length}`,
    );
  }
  return { shape: [...shape], data: values };
}

/**
 * A tensor of zeros.
 *
 * @example
 * ```ts
 * import { zeros } from "jacobian-wasm";
 * const z = zeros([2, 3]); // data: Float32Array(6) of 0
 * ```
 */
export function zeros(shape: readonly number[]): Tensor {
  return tensor(new Float32Array(numel(shape)), shape);
}

/**
 * A tensor of standard normal samples; the same seed gives the same numbers on every runtime.
 *
 * @example
 * ```ts
 * import { randn } from "jacobian-wasm";
 * const x = randn([4, 784], 42);
 * ```
 */
export function randn(shape: readonly number[], seed: number = Date.now()): Tensor {
  const out = new Float32Array(numel(shape));
  const next = mulberry32(seed >>> 0);
  for (let i = 0; i < out.length; i += 2) {
    // Box-Muller: two normals per pair of uniforms; 1 - u keeps the log finite.
    const u = 1 - next();
    const v = next();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return { shape: [...shape], data: out };
}

/** Uniform samples in [low, high), seeded like `randn`. */
export function uniform(shape: readonly number[], low: number, high: number, seed: number): Tensor {
  const out = new Float32Array(numel(shape));
  const next = mulberry32(seed >>> 0);
  for (let i = 0; i < out.length; i++) out[i] = low + (high - low) * next();
  return { shape: [...shape], data: out };
}

/** A small, fast, seedable PRNG returning uniforms in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
