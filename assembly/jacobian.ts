// Forward, input-gradient and per-sample weight-gradient kernels of the layers with weights
// (Linear, ConvNd with groups). Row r of a backward buffer belongs to sample r / K of the
// forward caches; J rows are `ldJ` floats apart.
import { gemm_nn, gemm_nt, gemm_tn } from "./gemm";
import { im2col, col2im } from "./im2col";
import { geom_at, conv_is_pointwise } from "./geometry";
import { add_f32, fill_f32, sum_f32 } from "./simd";

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

// ---------------------------------------------------------------------------------------
// Convolution: W (C_out, C_in/G, kD, kH, kW), b (C_out); x (N, C_in, D, H, W),
// gy (R, C_out, oD, oH, oW). Each sample is im2col'ed into `work` (C_in·kvol × L) unless the
// convolution is pointwise, where the sample already is its column matrix.

/** y (N, C_out, oD, oH, oW) = conv(x, W) + b (b = 0: no bias). */
export function conv_forward(geom: usize, N: i32, x: usize, W: usize, b: usize, y: usize, work: usize): void {
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const inVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cog = Cout / G;
  const depth = Cin / G * kvol; // columns of a group's weights, rows of its column block
  const pointwise = conv_is_pointwise(geom);
  const xSample = <usize>Cin * <usize>inVol << 2;
  const ySample = <usize>Cout * <usize>L << 2;
  for (let n = 0; n < N; n++) {
    const xn = x + <usize>n * xSample;
    const yn = y + <usize>n * ySample;
    let U = xn;
    if (!pointwise) {
      im2col(geom, xn, work);
      U = work;
    }
    if (b != 0) {
      for (let c = 0; c < Cout; c++) fill_f32(yn + (<usize>c * <usize>L << 2), L, load<f32>(b + (<usize>c << 2)));
    }
    for (let g = 0; g < G; g++) {
      gemm_nn(
        Cog, L, depth,
        W + (<usize>(g * Cog) * <usize>depth << 2), depth,
        U + (<usize>(g * depth) * <usize>L << 2), L,
        yn + (<usize>(g * Cog) * <usize>L << 2), L,
        b != 0 ? 1 : 0,
      );
    }
  }
}

/** gx (R, C_in, D, H, W) = the adjoint of the convolution applied to gy (R, C_out, L). */
export function conv_backward_input(geom: usize, R: i32, gy: usize, W: usize, gx: usize, work: usize): void {
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const inVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cog = Cout / G;
  const depth = Cin / G * kvol;
  const pointwise = conv_is_pointwise(geom);
  const gxRow = <usize>Cin * <usize>inVol << 2;
  const gyRow = <usize>Cout * <usize>L << 2;
  for (let r = 0; r < R; r++) {
    const gxr = gx + <usize>r * gxRow;
    const cols = pointwise ? gxr : work;
    const gyr = gy + <usize>r * gyRow;
    for (let g = 0; g < G; g++) {
      gemm_tn(
        depth, L, Cog,
        W + (<usize>(g * Cog) * <usize>depth << 2), depth,
        gyr + (<usize>(g * Cog) * <usize>L << 2), L,
        cols + (<usize>(g * depth) * <usize>L << 2), L,
        0,
      );
    }
    if (!pointwise) col2im(geom, work, gxr);
  }
}

/**
 * J row r ← ∂/∂W of backward row r: per group G_g[r] · U_g[r/K]ᵀ (C_out·(C_in/G)·kvol floats
 * at jw + r·ldJ·4), and ∂/∂b = Σ_L gy[r] (at jb + r·ldJ·4; jb = 0: no bias). The im2col of a
 * sample is computed once and reused for its K rows.
 */
export function conv_weight_per_sample(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, jw: usize, jb: usize, ldJ: i32, work: usize,
): void {
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const inVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cog = Cout / G;
  const depth = Cin / G * kvol;
  const pointwise = conv_is_pointwise(geom);
  const xSample = <usize>Cin * <usize>inVol << 2;
  const gyRow = <usize>Cout * <usize>L << 2;
  const ldJBytes = <usize>ldJ << 2;
  let U: usize = 0;
  let sample = -1;
  for (let r = 0; r < R; r++) {
    const gyr = gy + <usize>r * gyRow;
    if (jw != 0) {
      const n = r / K;
      if (n != sample) {
        sample = n;
        U = x + <usize>n * xSample;
        if (!pointwise) {
          im2col(geom, U, work);
          U = work;
        }
      }
      const Jr = jw + <usize>r * ldJBytes;
      for (let g = 0; g < G; g++) {
        gemm_nt(
          Cog, depth, L,
          gyr + (<usize>(g * Cog) * <usize>L << 2), L,
          U + (<usize>(g * depth) * <usize>L << 2), L,
          Jr + (<usize>(g * Cog) * <usize>depth << 2), depth,
          0,
        );
      }
    }
    if (jb != 0) {
      const Jb = jb + <usize>r * ldJBytes;
      for (let c = 0; c < Cout; c++) {
        store<f32>(Jb + (<usize>c << 2), sum_f32(gyr + (<usize>c * <usize>L << 2), L));
      }
    }
  }
}

/** gW (+)= Σ_r of the per-row weight gradients; gb (+)= Σ_r Σ_L gy[r] (gb = 0: none). */
export function conv_weight_grad(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, gW: usize, gb: usize, work: usize, accumulate: i32,
): void {
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const inVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cog = Cout / G;
  const depth = Cin / G * kvol;
  const pointwise = conv_is_pointwise(geom);
  const xSample = <usize>Cin * <usize>inVol << 2;
  const gyRow = <usize>Cout * <usize>L << 2;
  let acc = accumulate;
  let U: usize = 0;
  let sample = -1;
  for (let r = 0; r < R; r++) {
    const n = r / K;
    if (n != sample) {
      sample = n;
      U = x + <usize>n * xSample;
      if (!pointwise) {
        im2col(geom, U, work);
        U = work;
      }
    }
    const gyr = gy + <usize>r * gyRow;
    for (let g = 0; g < G; g++) {
      gemm_nt(
        Cog, depth, L,
        gyr + (<usize>(g * Cog) * <usize>L << 2), L,
        U + (<usize>(g * depth) * <usize>L << 2), L,
        gW + (<usize>(g * Cog) * <usize>depth << 2), depth,
        acc,
      );
    }
    acc = 1;
  }
  if (acc == 0) fill_f32(gW, Cout * depth, 0);
  if (gb != 0) {
    if (accumulate == 0) fill_f32(gb, Cout, 0);
    for (let r = 0; r < R; r++) {
      const gyr = gy + <usize>r * gyRow;
      for (let c = 0; c < Cout; c++) {
        const at = gb + (<usize>c << 2);
        store<f32>(at, load<f32>(at) + sum_f32(gyr + (<usize>c * <usize>L << 2), L));
      }
    }
  }
}
