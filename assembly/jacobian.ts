// Forward, input-gradient and per-sample weight-gradient kernels of Linear (the convolution
// kernels are in conv.ts). Row r of a backward buffer belongs to sample r / K of the forward
// caches; J rows are `ldJ` floats apart.
import { gemm_nn, gemm_nt, gemm_tn } from "./gemm";
import { add_f32, fill_f32 } from "./simd";

// ---------------------------------------------------------------------------------------
// Linear: W (out × in), b (out); x (N, S, in), gy (R, S, out).

/** y[rows×out] = x[rows×in] · Wᵀ + b (b = 0: no bias). */
export function linear_forward(rows: i32, in_: i32, out: i32, x: usize, W: usize, b: usize, y: usize): void {
  if (b != 0) {
    const rowBytes = <usize>out << 2;
    for (let r = 0; r < rows; r++) memory.copy(y + <usize>r * rowBytes, b, rowBytes);
  }
  gemm_nt(rows, out, in_, x, in_, W, in_, y, out, b != 0 ? 1 : 0);
}

/** gx[rows×in] = gy[rows×out] · W. */
export function linear_backward_input(rows: i32, in_: i32, out: i32, gy: usize, W: usize, gx: usize): void {
  gemm_nn(rows, in_, out, gy, out, W, in_, gx, in_, 0);
}

/**
 * J row r ← ∂/∂W = Σ_s gy[r, s]ᵀ ⊗ x[r / K, s] (out × in at jw + r·ldJ·4) and
 * ∂/∂b = Σ_s gy[r, s] (at jb + r·ldJ·4; jb = 0: no bias).
 */
export function linear_weight_per_sample(
  R: i32, K: i32, S: i32, in_: i32, out: i32, x: usize, gy: usize, jw: usize, jb: usize, ldJ: i32,
): void {
  const xSample = <usize>S * <usize>in_ << 2;
  const gyRow = <usize>S * <usize>out << 2;
  const ldJBytes = <usize>ldJ << 2;
  for (let r = 0; r < R; r++) {
    const xr = x + <usize>(r / K) * xSample;
    const gr = gy + <usize>r * gyRow;
    if (jw != 0) {
      const Jr = jw + <usize>r * ldJBytes;
      if (S == 1) outer_product(out, in_, gr, xr, Jr);
      else gemm_tn(out, in_, S, gr, out, xr, in_, Jr, in_, 0);
    }
    if (jb != 0) {
      const Jb = jb + <usize>r * ldJBytes;
      memory.copy(Jb, gr, <usize>out << 2);
      for (let s = 1; s < S; s++) add_f32(Jb, gr + (<usize>(s * out) << 2), out);
    }
  }
}

/** J[rows×cols] = u[rows] ⊗ v[cols], J contiguous. */
function outer_product(rows: i32, cols: i32, u: usize, v: usize, J: usize): void {
  const rowBytes = <usize>cols << 2;
  for (let i = 0; i < rows; i++) {
    const ui = load<f32>(u + (<usize>i << 2));
    const scale = f32x4.splat(ui);
    const dst = J + <usize>i * rowBytes;
    let j = 0;
    for (; j + 8 <= cols; j += 8) {
      const at = <usize>j << 2;
      v128.store(dst + at, f32x4.mul(scale, v128.load(v + at)));
      v128.store(dst + at, f32x4.mul(scale, v128.load(v + at, 16)), 16);
    }
    for (; j + 4 <= cols; j += 4) {
      const at = <usize>j << 2;
      v128.store(dst + at, f32x4.mul(scale, v128.load(v + at)));
    }
    for (; j < cols; j++) {
      const at = <usize>j << 2;
      store<f32>(dst + at, ui * load<f32>(v + at));
    }
  }
}

/** gW (+)= Σ_r Σ_s gy[r, s]ᵀ ⊗ x[r / K, s]; gb (+)= Σ_r Σ_s gy[r, s] (gb = 0: none). */
export function linear_weight_grad(
  R: i32, K: i32, S: i32, in_: i32, out: i32, x: usize, gy: usize, gW: usize, gb: usize, accumulate: i32,
): void {
  let acc = accumulate;
  if (K == 1 || S == 1) {
    // For a fixed k the rows n·K + k form one strided (N·S × out) matrix: one GEMM per k.
    const N = K > 0 ? R / K : 0;
    const lda = S == 1 ? K * out : out;
    for (let k = 0; k < K; k++) {
      gemm_tn(out, in_, N * S, gy + (<usize>(k * S * out) << 2), lda, x, in_, gW, in_, acc);
      acc = 1;
    }
  } else {
    const xSample = <usize>S * <usize>in_ << 2;
    const gyRow = <usize>S * <usize>out << 2;
    for (let r = 0; r < R; r++) {
      gemm_tn(out, in_, S, gy + <usize>r * gyRow, out, x + <usize>(r / K) * xSample, in_, gW, in_, acc);
      acc = 1;
    }
  }
  if (acc == 0) fill_f32(gW, out * in_, 0);
  if (gb != 0) {
    if (accumulate == 0) fill_f32(gb, out, 0);
    const rows = R * S;
    for (let i = 0; i < rows; i++) add_f32(gb, gy + (<usize>(i * out) << 2), out);
  }
}
