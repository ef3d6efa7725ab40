// Reductions of chunks of J rows for the quantities of src/quantities.ts (per-sample norms,
// gradient moments). A chunk is `rows` rows of `ld` floats, still in cache when these run;
// sums that span rows or long rows are kept in float64 so that a batch of thousands of
// samples or a row of millions of columns adds no more than float32 rounding of the terms.

/** Σ src[0..count)² in float64 (see `dot`). */
function sum_squares(src: usize, count: i32): f64 {
  return dot(src, src, count);
}

/**
 * out[r·stride + slot_p] = Σ_{c ∈ [from_p, to_p)} J[r, c]² for r < rows and each of the
 * `count` segments (i32 triples from, to, slot at `segments`; float64 out): each row's squared
 * norm per parameter tensor, for the tensors whose columns the chunk holds.
 */
export function rows_segment_sq_norms(J: usize, rows: i32, ld: i32, segments: usize, count: i32, out: usize, stride: i32): void {
  for (let r = 0; r < rows; r++) {
    const row = J + (<usize>r * <usize>ld << 2);
    for (let p = 0; p < count; p++) {
      const triple = segments + <usize>(12 * p);
      const from = load<i32>(triple);
      const to = load<i32>(triple + 4);
      const slot = load<i32>(triple + 8);
      store<f64>(out + (<usize>(r * stride + slot) << 3), sum_squares(row + (<usize>from << 2), to - from));
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

/** Σ a[i]·b[i] over count floats: float32 products summed four lanes wide over blocks of 64, each block added in float64. */
function dot(a: usize, b: usize, count: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= count) {
    const end = min(count & ~3, i + 64);
    let acc = f32x4.splat(0);
    for (; i < end; i += 4) {
      const at = <usize>i << 2;
      acc = f32x4.add(acc, f32x4.mul(v128.load(a + at), v128.load(b + at)));
    }
    const wide = f64x2.add(f64x2.promote_low_f32x4(acc), f64x2.promote_low_f32x4(i32x4.shuffle(acc, acc, 2, 3, 0, 1)));
    total += f64x2.extract_lane(wide, 0) + f64x2.extract_lane(wide, 1);
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    total += <f64>load<f32>(a + at) * <f64>load<f32>(b + at);
  }
  return total;
}

/**
 * Linear's per-sample squared gradient norms without the gradients (one backward row per
 * sample): ∂/∂W of row r is Σ_s gy[r, s] ⊗ x[r, s], whose squared norm is
 * Σ_{s,t} (gy[r,s]·gy[r,t]) (x[r,s]·x[r,t]); ∂/∂b is Σ_s gy[r, s], of squared norm
 * Σ_{s,t} gy[r,s]·gy[r,t]. Written (float64) to weightOut and biasOut (0: no bias), `stride`
 * float64s apart per row.
 */
export function linear_sq_norms(
  R: i32, S: i32, in_: i32, out: i32, x: usize, gy: usize, weightOut: usize, biasOut: usize, stride: i32,
): void {
  const xRow = <usize>in_ << 2;
  const gRow = <usize>out << 2;
  for (let r = 0; r < R; r++) {
    const xr = x + <usize>r * <usize>S * xRow;
    const gr = gy + <usize>r * <usize>S * gRow;
    let weight: f64 = 0;
    let bias: f64 = 0;
    for (let s = 0; s < S; s++) {
      const gs = gr + <usize>s * gRow;
      const xs = xr + <usize>s * xRow;
      const gg = sum_squares(gs, out);
      weight += gg * sum_squares(xs, in_);
      bias += gg;
      for (let t = s + 1; t < S; t++) {
        const g2 = 2 * dot(gs, gr + <usize>t * gRow, out);
        weight += g2 * dot(xs, xr + <usize>t * xRow, in_);
        bias += g2;
      }
    }
    const at = <usize>r * <usize>stride << 3;
    store<f64>(weightOut + at, weight);
    if (biasOut != 0) store<f64>(biasOut + at, bias);
  }
}

/**
 * acc[c] += Σ_r w[r]·J[r, c] for c in each of the `count` segments (i32 triples from, to,
 * slot at `segments`, as rows_segment_sq_norms; the slot is not read): the clipped sum's
 * weighted rows, added while the chunk is in cache. Sixteen columns at a time are held in
 * registers down the chunk's rows, so each accumulator is read and written once per chunk.
 */
export function rows_weighted_segment_sum(J: usize, rows: i32, ld: i32, w: usize, segments: usize, count: i32, acc: usize): void {
  const ldBytes = <usize>ld << 2;
  for (let p = 0; p < count; p++) {
    const triple = segments + <usize>(12 * p);
    const from = load<i32>(triple);
    const to = load<i32>(triple + 4);
    let c = from;
    for (; c + 16 <= to; c += 16) {
      const a = acc + (<usize>c << 2);
      let a0 = v128.load(a), a1 = v128.load(a, 16), a2 = v128.load(a, 32), a3 = v128.load(a, 48);
      let at = J + (<usize>c << 2);
      for (let r = 0; r < rows; r++, at += ldBytes) {
        const wr = f32x4.splat(load<f32>(w + (<usize>r << 2)));
        a0 = f32x4.add(a0, f32x4.mul(wr, v128.load(at)));
        a1 = f32x4.add(a1, f32x4.mul(wr, v128.load(at, 16)));
        a2 = f32x4.add(a2, f32x4.mul(wr, v128.load(at, 32)));
        a3 = f32x4.add(a3, f32x4.mul(wr, v128.load(at, 48)));
      }
      v128.store(a, a0);
      v128.store(a, a1, 16);
      v128.store(a, a2, 32);
      v128.store(a, a3, 48);
    }
    for (; c + 4 <= to; c += 4) {
      const a = acc + (<usize>c << 2);
      let a0 = v128.load(a);
      let at = J + (<usize>c << 2);
      for (let r = 0; r < rows; r++, at += ldBytes) a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(w + (<usize>r << 2))), v128.load(at)));
      v128.store(a, a0);
    }
    for (; c < to; c++) {
      const a = acc + (<usize>c << 2);
      let s = load<f32>(a);
      for (let r = 0; r < rows; r++) s += load<f32>(w + (<usize>r << 2)) * load<f32>(J + ((<usize>r * <usize>ld + <usize>c) << 2));
      store<f32>(a, s);
    }
  }
}

/** x[r, i] *= w[r] for r < rows, i < width (rows of `width` floats, contiguous). */
export function scale_rows(x: usize, rows: i32, width: i32, w: usize): void {
  for (let r = 0; r < rows; r++) {
    const row = x + (<usize>r * <usize>width << 2);
    const wr = load<f32>(w + (<usize>r << 2));
    const splat = f32x4.splat(wr);
    let i = 0;
    for (; i + 4 <= width; i += 4) v128.store(row + (<usize>i << 2), f32x4.mul(splat, v128.load(row + (<usize>i << 2))));
    for (; i < width; i++) store<f32>(row + (<usize>i << 2), wr * load<f32>(row + (<usize>i << 2)));
  }
}
