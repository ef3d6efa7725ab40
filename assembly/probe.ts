// Gather-multiply-scatter kernels of probed quasi-linear layers (src/probing.ts). The
// pattern block (PROBE_PATTERN in docs/kernels.md) lists, per weight i, the (output k,
// input j) pairs it connects, sorted by weight, and per bias i the outputs it is added to.
// The accesses are indexed, so the loops are scalar; rows go four at a time so that each
// pattern entry is loaded once per four rows.

const HEADER_BYTES: usize = 24;

/** The i-th int of the pattern header: 0 P, 1 Q, 2 I, 3 O, 4 nnz, 5 nnzBias. */
// @ts-ignore: decorator
@inline function header(pattern: usize, i: i32): i32 {
  return load<i32>(pattern + (<usize>i << 2));
}

/** weightStarts (P + 1 ints): weight i's pairs are entries [starts[i], starts[i + 1]). */
// @ts-ignore: decorator
@inline function weight_starts(pattern: usize): usize {
  return pattern + HEADER_BYTES;
}

/** weightPairs (nnz pairs of ints: k, j). */
// @ts-ignore: decorator
@inline function weight_pairs(pattern: usize): usize {
  return weight_starts(pattern) + (<usize>(header(pattern, 0) + 1) << 2);
}

/** biasStarts (Q + 1 ints). */
// @ts-ignore: decorator
@inline function bias_starts(pattern: usize): usize {
  return weight_pairs(pattern) + (<usize>header(pattern, 4) << 3);
}

/** biasOutputs (nnzBias ints). */
// @ts-ignore: decorator
@inline function bias_outputs(pattern: usize): usize {
  return bias_starts(pattern) + (<usize>(header(pattern, 1) + 1) << 2);
}

// ---------------------------------------------------------------------------------------
// Forward and input gradient: dst[a] += W_i · src[c] over every pair (a, c) of weight i.
// Forward: dst = y (a = k), src = x (c = j). Input gradient: dst = gx (a = j), src = gy (c = k).
// `dstAt`, `srcAt`: the byte offset within a pair (0 for k, 4 for j) of each index.

function scatter_rows4(
  pattern: usize, W: usize, src: usize, srcRow: usize, dst: usize, dstRow: usize, dstAt: usize, srcAt: usize,
): void {
  const P = header(pattern, 0);
  const starts = weight_starts(pattern);
  const pairs = weight_pairs(pattern);
  const dst2 = dstRow << 1;
  const dst3 = dst2 + dstRow;
  const src2 = srcRow << 1;
  const src3 = src2 + srcRow;
  let t = load<i32>(starts);
  for (let i = 0; i < P; i++) {
    const end = load<i32>(starts + (<usize>(i + 1) << 2));
    const w = load<f32>(W + (<usize>i << 2));
    for (; t < end; t++) {
      const e = pairs + (<usize>t << 3);
      const d = dst + (<usize>load<i32>(e + dstAt) << 2);
      const s = src + (<usize>load<i32>(e + srcAt) << 2);
      store<f32>(d, load<f32>(d) + w * load<f32>(s));
      store<f32>(d + dstRow, load<f32>(d + dstRow) + w * load<f32>(s + srcRow));
      store<f32>(d + dst2, load<f32>(d + dst2) + w * load<f32>(s + src2));
      store<f32>(d + dst3, load<f32>(d + dst3) + w * load<f32>(s + src3));
    }
  }
}

function scatter_row(pattern: usize, W: usize, src: usize, dst: usize, dstAt: usize, srcAt: usize): void {
  const P = header(pattern, 0);
  const starts = weight_starts(pattern);
  const pairs = weight_pairs(pattern);
  let t = load<i32>(starts);
  for (let i = 0; i < P; i++) {
    const end = load<i32>(starts + (<usize>(i + 1) << 2));
    const w = load<f32>(W + (<usize>i << 2));
    for (; t < end; t++) {
      const e = pairs + (<usize>t << 3);
      const d = dst + (<usize>load<i32>(e + dstAt) << 2);
      store<f32>(d, load<f32>(d) + w * load<f32>(src + (<usize>load<i32>(e + srcAt) << 2)));
    }
  }
}

/** y[n, k] += b_i for every output k of bias i, for rows n < rows (y rows `yRow` bytes apart). */
function add_bias(pattern: usize, rows: i32, b: usize, y: usize, yRow: usize): void {
  const Q = header(pattern, 1);
  const starts = bias_starts(pattern);
  const outputs = bias_outputs(pattern);
  for (let n = 0; n < rows; n++) {
    const yn = y + <usize>n * yRow;
    let t = load<i32>(starts);
    for (let i = 0; i < Q; i++) {
      const end = load<i32>(starts + (<usize>(i + 1) << 2));
      const bi = load<f32>(b + (<usize>i << 2));
      for (; t < end; t++) {
        const d = yn + (<usize>load<i32>(outputs + (<usize>t << 2)) << 2);
        store<f32>(d, load<f32>(d) + bi);
      }
    }
  }
}

/** y (N × O) = the layer applied to x (N × I): y[n, k] = Σ_(i,k,j) W_i x[n, j] + Σ_(i,k) b_i (b = 0: none). */
export function probe_forward(pattern: usize, N: i32, x: usize, W: usize, b: usize, y: usize): void {
  const xRow = <usize>header(pattern, 2) << 2;
  const yRow = <usize>header(pattern, 3) << 2;
  memory.fill(y, 0, <usize>N * yRow);
  let n = 0;
  for (; n + 4 <= N; n += 4) scatter_rows4(pattern, W, x + <usize>n * xRow, xRow, y + <usize>n * yRow, yRow, 0, 4);
  for (; n < N; n++) scatter_row(pattern, W, x + <usize>n * xRow, y + <usize>n * yRow, 0, 4);
  if (b != 0) add_bias(pattern, N, b, y, yRow);
}

/** gx (R × I) = gy (R × O) through the layer's transpose: gx[r, j] = Σ_(i,k,j) W_i gy[r, k]. */
export function probe_backward_input(pattern: usize, R: i32, gy: usize, W: usize, gx: usize): void {
  const xRow = <usize>header(pattern, 2) << 2;
  const yRow = <usize>header(pattern, 3) << 2;
  memory.fill(gx, 0, <usize>R * xRow);
  let r = 0;
  for (; r + 4 <= R; r += 4) scatter_rows4(pattern, W, gy + <usize>r * yRow, yRow, gx + <usize>r * xRow, xRow, 4, 0);
  for (; r < R; r++) scatter_row(pattern, W, gy + <usize>r * yRow, gx + <usize>r * xRow, 4, 0);
}

// ---------------------------------------------------------------------------------------
// Per-sample parameter gradients: a gather-reduce per weight, Σ_(k,j) gy[r, k] · x[r / K, j].
// `mode` 0 stores row q's value at out + q·outRow + 4i (J rows); 1 adds the rows' sum at out + 4i.

function contract_rows4(
  pattern: usize, g: usize, gRow: usize, x0: usize, x1: usize, x2: usize, x3: usize, out: usize, outRow: usize, mode: i32,
): void {
  const P = header(pattern, 0);
  const starts = weight_starts(pattern);
  const pairs = weight_pairs(pattern);
  const g2 = gRow << 1;
  const g3 = g2 + gRow;
  let t = load<i32>(starts);
  for (let i = 0; i < P; i++) {
    const end = load<i32>(starts + (<usize>(i + 1) << 2));
    let a0: f32 = 0;
    let a1: f32 = 0;
    let a2: f32 = 0;
    let a3: f32 = 0;
    for (; t < end; t++) {
      const e = pairs + (<usize>t << 3);
      const gk = g + (<usize>load<i32>(e) << 2);
      const j = <usize>load<i32>(e, 4) << 2;
      a0 += load<f32>(gk) * load<f32>(x0 + j);
      a1 += load<f32>(gk + gRow) * load<f32>(x1 + j);
      a2 += load<f32>(gk + g2) * load<f32>(x2 + j);
      a3 += load<f32>(gk + g3) * load<f32>(x3 + j);
    }
    const at = out + (<usize>i << 2);
    if (mode == 0) {
      store<f32>(at, a0);
      store<f32>(at + outRow, a1);
      store<f32>(at + (outRow << 1), a2);
      store<f32>(at + outRow * 3, a3);
    } else {
      store<f32>(at, load<f32>(at) + ((a0 + a1) + (a2 + a3)));
    }
  }
}

function contract_row(pattern: usize, g: usize, x: usize, out: usize, mode: i32): void {
  const P = header(pattern, 0);
  const starts = weight_starts(pattern);
  const pairs = weight_pairs(pattern);
  let t = load<i32>(starts);
  for (let i = 0; i < P; i++) {
    const end = load<i32>(starts + (<usize>(i + 1) << 2));
    let a: f32 = 0;
    for (; t < end; t++) {
      const e = pairs + (<usize>t << 3);
      a += load<f32>(g + (<usize>load<i32>(e) << 2)) * load<f32>(x + (<usize>load<i32>(e, 4) << 2));
    }
    const at = out + (<usize>i << 2);
    store<f32>(at, mode == 0 ? a : load<f32>(at) + a);
  }
}

/** Bias: out(+)= Σ_(i,k) gy[r, k] per bias i, for one row (mode as above, one row). */
function contract_bias_row(pattern: usize, g: usize, out: usize, mode: i32): void {
  const Q = header(pattern, 1);
  const starts = bias_starts(pattern);
  const outputs = bias_outputs(pattern);
  let t = load<i32>(starts);
  for (let i = 0; i < Q; i++) {
    const end = load<i32>(starts + (<usize>(i + 1) << 2));
    let a: f32 = 0;
    for (; t < end; t++) a += load<f32>(g + (<usize>load<i32>(outputs + (<usize>t << 2)) << 2));
    const at = out + (<usize>i << 2);
    store<f32>(at, mode == 0 ? a : load<f32>(at) + a);
  }
}

/**
 * J row r ← ∂/∂W_i = Σ_(k,j) gy[r, k] · x[r / K, j] (P floats at jw + r·ldJ·4) and
 * ∂/∂b_i = Σ_k gy[r, k] (Q floats at jb + r·ldJ·4; jb = 0: no bias).
 */
export function probe_weight_per_sample(
  pattern: usize, R: i32, K: i32, x: usize, gy: usize, jw: usize, jb: usize, ldJ: i32,
): void {
  const xRow = <usize>header(pattern, 2) << 2;
  const gRow = <usize>header(pattern, 3) << 2;
  const ldJBytes = <usize>ldJ << 2;
  let r = 0;
  if (jw != 0) {
    for (; r + 4 <= R; r += 4) {
      contract_rows4(
        pattern, gy + <usize>r * gRow, gRow,
        x + <usize>(r / K) * xRow, x + <usize>((r + 1) / K) * xRow, x + <usize>((r + 2) / K) * xRow, x + <usize>((r + 3) / K) * xRow,
        jw + <usize>r * ldJBytes, ldJBytes, 0,
      );
    }
    for (; r < R; r++) contract_row(pattern, gy + <usize>r * gRow, x + <usize>(r / K) * xRow, jw + <usize>r * ldJBytes, 0);
  }
  if (jb != 0) {
    for (r = 0; r < R; r++) contract_bias_row(pattern, gy + <usize>r * gRow, jb + <usize>r * ldJBytes, 0);
  }
}

/** gW (+)= Σ_r of the weight rows above (P floats), gb (+)= Σ_r of the bias rows (Q floats; gb = 0: none). */
export function probe_weight_grad(
  pattern: usize, R: i32, K: i32, x: usize, gy: usize, gW: usize, gb: usize, accumulate: i32,
): void {
  const xRow = <usize>header(pattern, 2) << 2;
  const gRow = <usize>header(pattern, 3) << 2;
  if (accumulate == 0) {
    memory.fill(gW, 0, <usize>header(pattern, 0) << 2);
    if (gb != 0) memory.fill(gb, 0, <usize>header(pattern, 1) << 2);
  }
  let r = 0;
  for (; r + 4 <= R; r += 4) {
    contract_rows4(
      pattern, gy + <usize>r * gRow, gRow,
      x + <usize>(r / K) * xRow, x + <usize>((r + 1) / K) * xRow, x + <usize>((r + 2) / K) * xRow, x + <usize>((r + 3) / K) * xRow,
      gW, 0, 1,
    );
  }
  for (; r < R; r++) contract_row(pattern, gy + <usize>r * gRow, x + <usize>(r / K) * xRow, gW, 1);
  if (gb != 0) {
    for (r = 0; r < R; r++) contract_bias_row(pattern, gy + <usize>r * gRow, gb, 1);
  }
}
