// The convolution kernels (docs/kernels.md, "Convolution"): W (C_out, C_in/G, kD, kH, kW),
// b (C_out); x (N, C_in, D, H, W), gy (R, C_out, oD, oH, oW). Row r of gy belongs to sample
// r / K. Each kernel takes the direct path (conv_direct.ts: no im2col, the sample read through
// a table of tap offsets) where the geometry allows it, else im2col + GEMM per sample and
// group: a pointwise convolution (1×1×1, stride 1, no padding) needs no im2col, the sample
// already is its column matrix.
import { gemm_nn, gemm_nt, gemm_tn } from "./gemm";
import { im2col, col2im } from "./im2col";
import { geom_at, conv_is_pointwise } from "./geometry";
import { fill_f32, sum_f32 } from "./simd";
import { PATH_PHASES, backward_input_phases, phases_fit } from "./conv_phases";
import { PATH_WINOGRAD_4X4, winograd43_backward_input, winograd43_fits, winograd43_forward } from "./winograd43";
import { winograd_weight, winograd_weight_tile } from "./winograd_weight";
import { PATH_WINOGRAD, winograd_backward_input, winograd_fits, winograd_forward } from "./winograd";
import { PATH_WINOGRAD_1D, winograd1d_backward_input, winograd1d_fits, winograd1d_forward, winograd1d_weight } from "./winograd1d";
import {
  PATH_IM2COL, PATH_POINTWISE, backward_direct, backward_path, forward_direct, forward_path, weight_direct, weight_path,
} from "./conv_direct";

/**
 * Which path a convolution kernel takes for this geometry, given the `work` size of
 * docs/kernels.md: 0 im2col + GEMM, 1 pointwise GEMM, 2 direct along output rows, 3 direct
 * over flat frame positions, 4 Winograd with 2×2 tiles (winograd.ts; weights in
 * winograd_weight.ts), 5 stride-1 phases (strided input gradient, conv_phases.ts), 6 Winograd
 * with 4×4 tiles (winograd43.ts, winograd_weight.ts), 7 1-d Winograd F(4, 5) (winograd1d.ts). `pass`: 0 conv_forward, 1
 * conv_backward_input, 2 conv_weight_per_sample and conv_weight_grad. For tests and benchmarks.
 */
export function conv_strategy(geom: usize, pass: i32): i32 {
  if (conv_is_pointwise(geom)) return PATH_POINTWISE;
  if (winograd1d_fits(geom, pass)) return PATH_WINOGRAD_1D;
  if (pass < 2) {
    if (winograd43_fits(geom, pass)) return PATH_WINOGRAD_4X4;
    if (winograd_fits(geom, pass)) return PATH_WINOGRAD;
  } else {
    const tile = winograd_weight_tile(geom);
    if (tile == 4) return PATH_WINOGRAD_4X4;
    if (tile == 2) return PATH_WINOGRAD;
  }
  if (pass == 1 && phases_fit(geom)) return PATH_PHASES;
  if (pass == 0) return forward_path(geom);
  if (pass == 1) return backward_path(geom);
  return weight_path(geom);
}

/** y (N, C_out, oD, oH, oW) = conv(x, W) + b (b = 0: no bias). */
export function conv_forward(geom: usize, N: i32, x: usize, W: usize, b: usize, y: usize, work: usize): void {
  const path = conv_strategy(geom, 0);
  if (path == PATH_WINOGRAD_1D) {
    winograd1d_forward(geom, N, x, W, b, y, work);
    return;
  }
  if (path == PATH_WINOGRAD_4X4) {
    winograd43_forward(geom, N, x, W, b, y, work);
    return;
  }
  if (path == PATH_WINOGRAD) {
    winograd_forward(geom, N, x, W, b, y, work);
    return;
  }
  if (path > PATH_POINTWISE) {
    forward_direct(geom, N, x, W, b, y, work, path);
    return;
  }
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const inVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cog = Cout / G;
  const depth = Cin / G * kvol; // columns of a group's weights, rows of its column block
  const pointwise = path == PATH_POINTWISE;
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
  const path = conv_strategy(geom, 1);
  if (path == PATH_WINOGRAD_1D) {
    winograd1d_backward_input(geom, R, gy, W, gx, work);
    return;
  }
  if (path == PATH_WINOGRAD_4X4) {
    winograd43_backward_input(geom, R, gy, W, gx, work);
    return;
  }
  if (path == PATH_WINOGRAD) {
    winograd_backward_input(geom, R, gy, W, gx, work);
    return;
  }
  if (path == PATH_PHASES) {
    backward_input_phases(geom, R, gy, W, gx, work);
    return;
  }
  if (path > PATH_POINTWISE) {
    backward_direct(geom, R, gy, W, gx, work, path);
    return;
  }
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const inVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cog = Cout / G;
  const depth = Cin / G * kvol;
  const pointwise = path == PATH_POINTWISE;
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
 * at jw + r·ldJ·4), and ∂/∂b = Σ_L gy[r] (at jb + r·ldJ·4; jb = 0: no bias). The im2col (or
 * padded copy) of a sample is made once and reused for its K rows.
 */
export function conv_weight_per_sample(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, jw: usize, jb: usize, ldJ: i32, work: usize,
): void {
  const Cout = geom_at(geom, 2);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const gyRow = <usize>Cout * <usize>L << 2;
  const ldJBytes = <usize>ldJ << 2;
  const path = conv_strategy(geom, 2);
  if (jw != 0 && path == PATH_WINOGRAD_1D) {
    winograd1d_weight(geom, R, K, x, gy, jw, jb, ldJ, work, R); // bias included
    return;
  }
  if (jw != 0 && (path == PATH_WINOGRAD || path == PATH_WINOGRAD_4X4)) {
    winograd_weight(geom, R, K, x, gy, jw, jb, ldJ, work, R); // bias included
    return;
  }
  if (jw != 0 && path > PATH_POINTWISE) {
    weight_direct(geom, R, K, x, gy, jw, jb, ldJ, work, path, R); // bias included
    return;
  }
  if (jw != 0) weight_gemm(geom, R, K, x, gy, jw, ldJ, work, path, R);
  if (jb != 0) {
    for (let r = 0; r < R; r++) {
      const gyr = gy + <usize>r * gyRow;
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
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const gyRow = <usize>Cout * <usize>L << 2;
  const addFrom = accumulate != 0 ? 0 : 1;
  if (R <= 0) {
    if (accumulate == 0) fill_f32(gW, Cout * (Cin / G) * kvol, 0);
  } else {
    const path = conv_strategy(geom, 2);
    if (path == PATH_WINOGRAD_1D) {
      winograd1d_weight(geom, R, K, x, gy, gW, gb, 0, work, addFrom); // bias included
      return;
    }
    if (path == PATH_WINOGRAD || path == PATH_WINOGRAD_4X4) {
      winograd_weight(geom, R, K, x, gy, gW, gb, 0, work, addFrom); // bias included
      return;
    }
    if (path > PATH_POINTWISE) {
      weight_direct(geom, R, K, x, gy, gW, gb, 0, work, path, addFrom); // bias included
      return;
    }
    weight_gemm(geom, R, K, x, gy, gW, 0, work, path, addFrom);
  }
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

/**
 * Weight gradients by im2col + GEMM: row r's G_g[r] · U_g[r/K]ᵀ goes to jw + r·ldJ·4,
 * overwriting it, or adding to it from row `addFrom` on (as weight_direct).
 */
function weight_gemm(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, jw: usize, ldJ: i32, work: usize, path: i32, addFrom: i32,
): void {
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const inVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cog = Cout / G;
  const depth = Cin / G * kvol;
  const pointwise = path == PATH_POINTWISE;
  const xSample = <usize>Cin * <usize>inVol << 2;
  const gyRow = <usize>Cout * <usize>L << 2;
  const ldJBytes = <usize>ldJ << 2;
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
    const Jr = jw + <usize>r * ldJBytes;
    for (let g = 0; g < G; g++) {
      gemm_nt(
        Cog, depth, L,
        gyr + (<usize>(g * Cog) * <usize>L << 2), L,
        U + (<usize>(g * depth) * <usize>L << 2), L,
        Jr + (<usize>(g * Cog) * <usize>depth << 2), depth,
        r >= addFrom ? 1 : 0,
      );
    }
  }
}
