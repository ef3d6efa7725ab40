// Placing test data in the kernels' WebAssembly memory, with guard bands between buffers so
// that a kernel writing outside its outputs is caught.
import assert from "node:assert/strict";
import { arena } from "../../src/wasm.ts";

const GUARD_FLOATS = 8;
/** What the guard bands (and unwritten parts of outputs) hold. */
export const SENTINEL = Math.fround(-1234567.875);

/** A bump allocator over the arena: every buffer is preceded and followed by a guard band. */
export class WasmBuffers {
  #next: number;
  #guards: number[] = [];

  constructor() {
    this.#next = arena.base();
  }

  /** A buffer of `count` floats filled with SENTINEL; returns its byte offset. */
  alloc(count: number): number {
    const start = this.#next + GUARD_FLOATS * 4;
    const end = start + count * 4;
    arena.ensure(end + GUARD_FLOATS * 4);
    const f32 = arena.f32();
    f32.fill(SENTINEL, this.#next / 4, end / 4 + GUARD_FLOATS);
    this.#guards.push(this.#next / 4, end / 4);
    this.#next = end;
    return start;
  }

  /** A buffer holding a copy of `data` (floats); returns its byte offset. */
  put(data: ArrayLike<number>): number {
    const at = this.alloc(data.length);
    arena.f32().set(data, at / 4);
    return at;
  }

  /** A buffer holding a copy of `data` (ints); returns its byte offset. */
  putInts(data: ArrayLike<number>): number {
    const at = this.alloc(data.length);
    arena.i32().set(data, at / 4);
    return at;
  }

  /** A copy of `count` floats at byte offset `at`. */
  read(at: number, count: number): Float32Array {
    return arena.f32().slice(at / 4, at / 4 + count);
  }

  /** Fails if any kernel wrote into a guard band. */
  assertGuardsIntact(): void {
    const f32 = arena.f32();
    for (const start of this.#guards) {
      for (let i = start; i < start + GUARD_FLOATS; i++) {
        if (f32[i] !== SENTINEL) assert.fail(`a kernel wrote outside its buffers (float ${i})`);
      }
    }
  }
}

/** A small deterministic generator (mulberry32), so fast-check only has to shrink a seed. */
export function randomFloats(seed: number, count: number, scale = 1): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const unit = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = (2 * unit - 1) * scale;
  }
  return out;
}

/** Elementwise |v|, the input of a reference run that bounds the rounding error. */
export function absolute(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values, Math.abs);
}

/**
 * Asserts |actual − expected| ≤ (terms + 8)·2⁻²³·magnitude elementwise, where magnitude is
 * the same computation over absolute values: the worst-case float32 summation error, so the
 * check is exact enough to catch any indexing mistake and never flaky.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  magnitude: ArrayLike<number>,
  terms: number,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const unit = (terms + 8) * 2 ** -23;
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= unit * magnitude[i] + 1e-30)) {
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (tolerance ${unit * magnitude[i]})`,
      );
    }
  }
}
