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

/**
 * The 4×4 transpose of rows (r0 … r3): lane k of every row, in row order, to at + k·step, for
 * k = 0 … 3 (packing a GEMM panel, a frame channel-last or by phases, a Winograd output group).
 */
// @ts-ignore: decorator
@inline export function store_transposed(r0: v128, r1: v128, r2: v128, r3: v128, at: usize, step: usize): void {
  const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
  const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5), t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
  v128.store(at, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
  v128.store(at + step, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
  v128.store(at + 2 * step, i32x4.shuffle(t1, t3, 0, 1, 4, 5));
  v128.store(at + 3 * step, i32x4.shuffle(t1, t3, 2, 3, 6, 7));
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

/**
 * The 4×8 register tile that every GEMM-like kernel here runs: c[4 × 8] (+)= Σ_k a_k ⊗ b_k over
 * k < depth, a_k the 4 floats at a + k·aStep (one per row of c), b_k the 8 at b + k·bStep; row
 * i of c at c + i·ldc (bytes). Eight f32x4 accumulators. The rows of a are broadcast by
 * load-splat in the baseline build (fastest on Node 20's V8) and by one load and four shuffles
 * in the relaxed build (V8 14 with FMA: 53 against 41 GFLOP/s in isolation; JSC 35 against 32).
 */
// @ts-ignore: decorator
@inline export function tile_4x8(
  depth: i32, a: usize, aStep: usize, b: usize, bStep: usize, c: usize, ldc: usize, add: bool,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  for (let k = 0; k < depth; k++) {
    const b0 = v128.load(b);
    const b1 = v128.load(b, 16);
    let a0: v128, a1: v128, a2: v128, a3: v128;
    if (ASC_FEATURE_RELAXED_SIMD) {
      const column = v128.load(a);
      a0 = i32x4.shuffle(column, column, 0, 0, 0, 0);
      a1 = i32x4.shuffle(column, column, 1, 1, 1, 1);
      a2 = i32x4.shuffle(column, column, 2, 2, 2, 2);
      a3 = i32x4.shuffle(column, column, 3, 3, 3, 3);
    } else {
      a0 = v128.load32_splat(a);
      a1 = v128.load32_splat(a, 4);
      a2 = v128.load32_splat(a, 8);
      a3 = v128.load32_splat(a, 12);
    }
    c00 = madd(a0, b0, c00);
    c01 = madd(a0, b1, c01);
    c10 = madd(a1, b0, c10);
    c11 = madd(a1, b1, c11);
    c20 = madd(a2, b0, c20);
    c21 = madd(a2, b1, c21);
    c30 = madd(a3, b0, c30);
    c31 = madd(a3, b1, c31);
    a += aStep;
    b += bStep;
  }
  store_pair(c, add, c00, c01);
  store_pair(c + ldc, add, c10, c11);
  store_pair(c + 2 * ldc, add, c20, c21);
  store_pair(c + 3 * ldc, add, c30, c31);
}

/** c[0..8) (+)= (lo, hi). */
// @ts-ignore: decorator
@inline function store_pair(c: usize, add: bool, lo: v128, hi: v128): void {
  if (add) {
    lo = f32x4.add(lo, v128.load(c));
    hi = f32x4.add(hi, v128.load(c, 16));
  }
  v128.store(c, lo);
  v128.store(c, hi, 16);
}
