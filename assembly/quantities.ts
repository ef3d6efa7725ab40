// Reductions of chunks of J rows for the quantities of src/quantities.ts (per-sample norms,
// gradient moments). A chunk is `rows` rows of `ld` floats, still in cache when these run;
// sums that span rows or long rows are kept in float64 so that a batch of thousands of
// samples or a row of millions of columns adds no more than float32 rounding of the terms.

/** Σ src[0..count)² in float64: float32 squares summed four lanes wide over blocks of 64, each block added in float64. */
function sum_squares(src: usize, count: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= count) {
    const end = min(count & ~3, i + 64);
    let acc = f32x4.splat(0);
    for (; i < end; i += 4) {
      const v = v128.load(src + (<usize>i << 2));
      acc = f32x4.add(acc, f32x4.mul(v, v));
    }
    const wide = f64x2.add(f64x2.promote_low_f32x4(acc), f64x2.promote_low_f32x4(i32x4.shuffle(acc, acc, 2, 3, 0, 1)));
    total += f64x2.extract_lane(wide, 0) + f64x2.extract_lane(wide, 1);
  }
  for (; i < count; i++) {
    const v = <f64>load<f32>(src + (<usize>i << 2));
    total += v * v;
  }
  return total;
}

/**
 * out[r·P + p] (+)= Σ_{c ∈ [starts[p], starts[p + 1])} J[r, c]² for r < rows and p < P (float64
 * out, i32 starts of P + 1 columns): each row's squared norm per parameter tensor.
 */
export function rows_segment_sq_norms(J: usize, rows: i32, ld: i32, starts: usize, P: i32, out: usize, accumulate: i32): void {
  for (let r = 0; r < rows; r++) {
    const row = J + (<usize>r * <usize>ld << 2);
    for (let p = 0; p < P; p++) {
      const from = load<i32>(starts + (<usize>p << 2));
      const to = load<i32>(starts + (<usize>(p + 1) << 2));
      const at = out + (<usize>(r * P + p) << 3);
      const value = sum_squares(row + (<usize>from << 2), to - from);
      store<f64>(at, accumulate != 0 ? load<f64>(at) + value : value);
    }
  }
}

/**
 * sum[c] += Σ_r J[r, c] and squares[c] += Σ_r J[r, c]² for c < D, over the chunk's rows
 * (float64 accumulators of D): four columns at a time, held in registers down the rows.
 */
export function column_moments(J: usize, rows: i32, ld: i32, D: i32, sum: usize, squares: usize): void {
  const ldBytes = <usize>ld << 2;
  let c = 0;
  for (; c + 4 <= D; c += 4) {
    const s = sum + (<usize>c << 3);
    const q = squares + (<usize>c << 3);
    let s0 = v128.load(s), s1 = v128.load(s + 16);
    let q0 = v128.load(q), q1 = v128.load(q + 16);
    let at = J + (<usize>c << 2);
    for (let r = 0; r < rows; r++, at += ldBytes) {
      const v = v128.load(at);
      const lo = f64x2.promote_low_f32x4(v);
      const hi = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
      s0 = f64x2.add(s0, lo);
      s1 = f64x2.add(s1, hi);
      q0 = f64x2.add(q0, f64x2.mul(lo, lo));
      q1 = f64x2.add(q1, f64x2.mul(hi, hi));
    }
    v128.store(s, s0);
    v128.store(s + 16, s1);
    v128.store(q, q0);
    v128.store(q + 16, q1);
  }
  for (; c < D; c++) {
    let sc = load<f64>(sum + (<usize>c << 3));
    let qc = load<f64>(squares + (<usize>c << 3));
    for (let r = 0; r < rows; r++) {
      const v = <f64>load<f32>(J + ((<usize>r * <usize>ld + <usize>c) << 2));
      sc += v;
      qc += v * v;
    }
    store<f64>(sum + (<usize>c << 3), sc);
    store<f64>(squares + (<usize>c << 3), qc);
  }
}
