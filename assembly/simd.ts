// Private SIMD helpers shared by the kernels (not exported from index.ts).

/** a·b + c over f32x4: fused (relaxed_madd) in the relaxed-SIMD build, mul then add otherwise. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** Sum of the four lanes. */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const pairs = f32x4.add(v, f32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(pairs, 0) + f32x4.extract_lane(pairs, 1);
}

/** dst[0..count) = value (float32 elements). */
export function fill_f32(dst: usize, count: i32, value: f32): void {
  const splat = f32x4.splat(value);
  let i = 0;
  for (; i + 4 <= count; i += 4) v128.store(dst + (<usize>i << 2), splat);
  for (; i < count; i++) store<f32>(dst + (<usize>i << 2), value);
}

/** dst[0..count) += src[0..count) (float32 elements). */
export function add_f32(dst: usize, src: usize, count: i32): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(dst + at, f32x4.add(v128.load(dst + at), v128.load(src + at)));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(dst + at, load<f32>(dst + at) + load<f32>(src + at));
  }
}

/** Σ src[0..count) (float32 elements), four lanes then the tail. */
export function sum_f32(src: usize, count: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= count; i += 4) acc = f32x4.add(acc, v128.load(src + (<usize>i << 2)));
  let s = hsum(acc);
  for (; i < count; i++) s += load<f32>(src + (<usize>i << 2));
  return s;
}
