// ConvTranspose1d/2d/3d: the adjoint of a convolution. `geom` is the CONV_GEOM block of the
// convolution whose adjoint the layer is (the "swapped" conv): its C_in and input size are
// the transposed layer's out_channels and output size, its C_out and output size the
// transposed layer's in_channels and input size. W (C_in_T, C_out_T/G, kD, kH, kW) is then
// exactly the swapped conv's weight, so, per sample and group g (Cig = C_in_T/G rows of x,
// depth = C_out_T/G·kvol rows of the column matrix, L = input positions of the layer):
//   forward          y = col2im(W_gᵀ · x_g) + b             (the swapped conv's input gradient)
//   input gradient   gx_g = W_g · im2col(gy)_g            (the swapped conv's forward)
//   weight gradient  ∂W_g = x_g[n] · im2col(gy[r])_gᵀ     (docs/design.md §2: im2col of g, not of x)
// so the first two are conv.ts's kernels on the swapped geometry (direct, Winograd or phase
// paths), and so is the weight gradient with one row per sample (gy in the role of the
// swapped conv's input, x in that of its output gradient); K > 1 rows per sample take
// im2col + GEMM here.
//   bias gradient    ∂b = Σ over output positions of gy[r]
// `work` holds at least C_out_T·kvol·L floats (one column matrix).
import { gemm_nt } from "./gemm";
import { conv_backward_input, conv_forward, conv_weight_per_sample } from "./conv";
import { im2col } from "./im2col";
import { geom_at, conv_is_pointwise } from "./geometry";
import { fill_f32, sum_f32 } from "./simd";

/** y (N, C_out_T, D, H, W of geom) = the transposed convolution of x (N, C_in_T, L) + b (b = 0: no bias). */
export function conv_transpose_forward(geom: usize, N: i32, x: usize, W: usize, b: usize, y: usize, work: usize): void {
  // The swapped convolution's input gradient, on its fastest path (direct, Winograd, phases).
  conv_backward_input(geom, N, x, W, y, work);
  if (b != 0) {
    const Cout = geom_at(geom, 1);
    const outVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
    for (let n = 0; n < N; n++) {
      const yn = y + (<usize>(n * Cout) * <usize>outVol << 2);
      for (let c = 0; c < Cout; c++) add_scalar_f32(yn + (<usize>c * <usize>outVol << 2), outVol, load<f32>(b + (<usize>c << 2)));
    }
  }
}

/** gx (R, C_in_T, L) = the convolution (no bias) of gy (R, C_out_T, D, H, W of geom). */
export function conv_transpose_backward_input(geom: usize, R: i32, gy: usize, W: usize, gx: usize, work: usize): void {
  conv_forward(geom, R, gy, W, 0, gx, work); // the swapped convolution itself
}

/**
 * J row r ← ∂/∂W of backward row r: per group x_g[r/K] · im2col(gy[r])_gᵀ (C_in_T·(C_out_T/G)·kvol
 * floats at jw + r·ldJ·4; jw = 0: skip), and ∂/∂b = Σ_positions gy[r] (C_out_T floats at
 * jb + r·ldJ·4; jb = 0: no bias). x is (N, C_in_T, L), gy (R, C_out_T, D, H, W of geom).
 */
export function conv_transpose_weight_per_sample(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, jw: usize, jb: usize, ldJ: i32, work: usize,
): void {
  const G = geom_at(geom, 0), Cout = geom_at(geom, 1), Cin = geom_at(geom, 2);
  const outVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cig = Cin / G;
  const depth = Cout / G * kvol;
  const pointwise = conv_is_pointwise(geom);
  const xSample = <usize>Cin * <usize>L << 2;
  const gyRow = <usize>Cout * <usize>outVol << 2;
  const ldJBytes = <usize>ldJ << 2;
  // One row per sample: the swapped convolution's per-sample weight gradient, with gy as its
  // input and x as its output gradient (bias below), on that kernel's fastest path.
  const swapped = K == 1 && jw != 0;
  if (swapped) conv_weight_per_sample(geom, R, 1, gy, x, jw, 0, ldJ, work);
  for (let r = 0; r < R; r++) {
    const gyr = gy + <usize>r * gyRow;
    if (jw != 0 && !swapped) {
      let U = gyr;
      if (!pointwise) {
        im2col(geom, gyr, work);
        U = work;
      }
      const xn = x + <usize>(r / K) * xSample;
      const Jr = jw + <usize>r * ldJBytes;
      for (let g = 0; g < G; g++) {
        gemm_nt(
          Cig, depth, L,
          xn + (<usize>(g * Cig) * <usize>L << 2), L,
          U + (<usize>(g * depth) * <usize>L << 2), L,
          Jr + (<usize>(g * Cig) * <usize>depth << 2), depth,
          0,
        );
      }
    }
    if (jb != 0) {
      const Jb = jb + <usize>r * ldJBytes;
      for (let c = 0; c < Cout; c++) {
        store<f32>(Jb + (<usize>c << 2), sum_f32(gyr + (<usize>c * <usize>outVol << 2), outVol));
      }
    }
  }
}

/** gW (+)= Σ_r of the per-row weight gradients; gb (+)= Σ_r Σ_positions gy[r] (gb = 0: none). */
export function conv_transpose_weight_grad(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, gW: usize, gb: usize, work: usize, accumulate: i32,
): void {
  const G = geom_at(geom, 0), Cout = geom_at(geom, 1), Cin = geom_at(geom, 2);
  const outVol = geom_at(geom, 3) * geom_at(geom, 4) * geom_at(geom, 5);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const Cig = Cin / G;
  const depth = Cout / G * kvol;
  const pointwise = conv_is_pointwise(geom);
  const xSample = <usize>Cin * <usize>L << 2;
  const gyRow = <usize>Cout * <usize>outVol << 2;
  let acc = accumulate;
  for (let r = 0; r < R; r++) {
    const gyr = gy + <usize>r * gyRow;
    let U = gyr;
    if (!pointwise) {
      im2col(geom, gyr, work);
      U = work;
    }
    const xn = x + <usize>(r / K) * xSample;
    for (let g = 0; g < G; g++) {
      gemm_nt(
        Cig, depth, L,
        xn + (<usize>(g * Cig) * <usize>L << 2), L,
        U + (<usize>(g * depth) * <usize>L << 2), L,
        gW + (<usize>(g * Cig) * <usize>depth << 2), depth,
        acc,
      );
    }
    acc = 1;
  }
  if (acc == 0) fill_f32(gW, Cin * depth, 0);
  if (gb != 0) {
    if (accumulate == 0) fill_f32(gb, Cout, 0);
    for (let r = 0; r < R; r++) {
      const gyr = gy + <usize>r * gyRow;
      for (let c = 0; c < Cout; c++) {
        const at = gb + (<usize>c << 2);
        store<f32>(at, load<f32>(at) + sum_f32(gyr + (<usize>c * <usize>outVol << 2), outVol));
      }
    }
  }
}

/** dst[0..count) += value. */
// @ts-ignore: decorator
@inline function add_scalar_f32(dst: usize, count: i32, value: f32): void {
  const splat = f32x4.splat(value);
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(dst + at, f32x4.add(v128.load(dst + at), splat));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(dst + at, load<f32>(dst + at) + value);
  }
}
