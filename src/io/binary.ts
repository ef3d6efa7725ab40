/**
 * Byte-level helpers shared by the `.npy` and `.safetensors` readers: half-precision decoding
 * and the host's byte order. Internal: not re-exported from `mod.ts`.
 */

/** Whether typed arrays on this host are little-endian (every current JS engine; checked anyway). */
export const hostIsLittleEndian: boolean = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The value of an IEEE 754 binary16 number given its 16 bits (`Float16Array` is not on every
 * runtime yet). Exact: every half-precision value is a float32 value.
 *
 * @example
 * ```ts
 * import { float16BitsToNumber } from "./binary.ts";
 * float16BitsToNumber(0x3c00); // 1
 * ```
 */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * The value of a bfloat16 number given its 16 bits: the upper half of a float32.
 *
 * @example
 * ```ts
 * import { bfloat16BitsToNumber } from "./binary.ts";
 * bfloat16BitsToNumber(0x3f80); // 1
 * ```
 */
export function bfloat16BitsToNumber(bits: number): number {
  scratchUint32[0] = (bits & 0xffff) << 16;
  return scratchFloat32[0];
}

const scratchFloat32 = new Float32Array(1);
const scratchUint32 = new Uint32Array(scratchFloat32.buffer);

/**
 * `[2, 1]`: the multi-index of element `flat` of a row-major array of `shape`, for messages.
 *
 * @example
 * ```ts
 * import { formatIndex } from "./binary.ts";
 * formatIndex(5, [2, 3]); // "[1, 2]"
 * ```
 */
export function formatIndex(flat: number, shape: readonly number[]): string {
  const index: number[] = new Array(shape.length);
  let rest = flat;
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    const size = shape[axis];
    index[axis] = size > 0 ? rest % size : 0;
    rest = size > 0 ? Math.floor(rest / size) : 0;
  }
  return `[${index.join(", ")}]`;
}
