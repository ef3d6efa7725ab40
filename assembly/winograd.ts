// Winograd F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
// 2016) for the 3×3 convolutions with stride 1 and no dilation: each 2×2 block of outputs
// ("tile") comes from a 4×4 block of input through 16 products per (input, output) channel
// pair instead of 36, so the GEMM-bound part of the pass does 2.25x fewer multiply-adds.
//
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A      per output channel and tile
//
// The 16 elementwise products ξ = (i, j) of the transformed 4×4 blocks are, over the input
// channels c, 16 independent GEMMs: U_ξ (M × C) · V_ξ (C × tiles). They run with the same
// 4×8 register tile as gemm.ts (4 output channels × 8 tiles), all 16 ξ of one tile block at a
// time, so their products go straight to the output transform without leaving L1.
//
// The input gradient of a stride-1 convolution is itself such a convolution (of gy, padded
// by 2 − padding, with the weights transposed and flipped), so both passes share the driver.
//
// Tiles: a tile row holds ⌈oW/2⌉ tiles, padded to whole groups of 4 (the f32x4 lanes of the
// transforms); two groups make a block of 8 (the micro-kernel's width); a band is the one or
// two tile rows that hold whole blocks. The input is first copied into a zero-padded frame
// so that every tile, even one past the output's edge, reads inside memory; outputs past the
// edge are dropped. Accuracy: the transforms only add, subtract and halve, so results match
// direct convolution to float32 rounding of sums of 16 terms per tile.
//
// Memory: the transformed weights, the frame and one band's transformed input, together in
// the caller's `work` when they fit the C_in·kvol·L floats the convolution kernels are
// given, else in module-static scratch (small layers), else the layer takes another path.
import { tile_4x8 } from "./simd";
import { geom_at } from "./geometry";

/** conv_strategy's number for this path. */
export const PATH_WINOGRAD: i32 = 4;

/** Output channels per register tile. */
const MR: i32 = 4;
/** Tiles per register tile (two groups of 4 lanes). */
const NR: i32 = 8;
/** The 16 products of one block (ξ × MR × NR floats), on their way to the output transform. */
let PRODUCTS: usize = memory.data(16 * MR * NR << 2, 64);
/**
 * Floats of module-static scratch for layers whose buffers do not fit `work` (small outputs);
 * winograd43.ts uses it too (one convolution pass runs at a time).
 */
export const SCRATCH_CAP: i32 = 131072;
export let SCRATCH: usize = memory.data(SCRATCH_CAP << 2, 64);

// @ts-ignore: decorator
@inline export function round_up(v: i32, to: i32): i32 {
  return (v + to - 1) / to * to;
}

/**
 * Floats from one ξ's block of transformed values to the next: `floats` plus one cache line.
 * A transform writes all 16 ξ at once; at a power-of-two stride those 16 lines share one L1
 * set (12 ways here) and evict each other (measured: 9.3 against 6.2 ms on cnn's conv2).
 */
// @ts-ignore: decorator
@inline export function xi_stride(floats: i32): i32 {
  return floats + 16;
}

// The shape of one pass (C input planes → M output planes of oH × oW), set by `lay_out`.
// Module globals rather than an object: the stub runtime never frees what it allocates.
let tilesH: i32 = 0;
/** Tiles per tile row, padded to whole groups of 4. */
let tilesW: i32 = 0;
let bandRows: i32 = 0;
let blocksPerBand: i32 = 0;
let frameH: i32 = 0;
let frameW: i32 = 0;
let weightFloats: i32 = 0;
let frameFloats: i32 = 0;
let bandFloats: i32 = 0;

function lay_out(C: i32, M: i32, oH: i32, oW: i32): void {
  const groupsPerRow = (oW + 7) / 8; // ⌈⌈oW/2⌉ / 4⌉
  tilesW = groupsPerRow * 4;
  bandRows = (groupsPerRow & 1) != 0 ? 2 : 1;
  tilesH = round_up((oH + 1) / 2, bandRows);
  blocksPerBand = groupsPerRow * bandRows / 2;
  // A group's transform reads columns 2·tw .. 2·tw + 9 of a row.
  frameH = 2 * tilesH + 2;
  frameW = 2 * tilesW + 4;
  weightFloats = 16 * round_up(M, MR) * C;
  frameFloats = C * frameH * frameW;
  bandFloats = blocksPerBand * 16 * xi_stride(C * NR);
}

/** 2-d (or 3-d with depth 1), 3×3, stride 1, dilation 1, one group, padding ≤ 2, ≥ 4 channels each side. */
export function winograd_shape(geom: usize): bool {
  if (geom_at(geom, 0) != 1) return false;
  if (geom_at(geom, 3) != 1 || geom_at(geom, 6) != 1 || geom_at(geom, 9) != 1 || geom_at(geom, 15) != 0) return false;
  if (geom_at(geom, 10) != 3 || geom_at(geom, 11) != 3) return false;
  for (let i = 12; i <= 14; i++) if (geom_at(geom, i) != 1) return false;
  for (let i = 18; i <= 20; i++) if (geom_at(geom, i) != 1) return false;
  if (geom_at(geom, 16) > 2 || geom_at(geom, 17) > 2) return false;
  return geom_at(geom, 1) >= 4 && geom_at(geom, 2) >= 4;
}

/**
 * Whether a pass of this geometry runs as F(2×2, 3×3) (pass 0 forward, 1 input gradient):
 * 2-d (or 3-d with depth 1), 3×3, stride 1, dilation 1, one group, at least 4 channels on
 * each side (fewer make the transforms cost more than the products they save), padding
 * at most 2, and its buffers fit the C_in·kvol·L floats of `work`.
 */
export function winograd_fits(geom: usize, pass: i32): bool {
  if (!winograd_shape(geom)) return false;
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const H = geom_at(geom, 4), W = geom_at(geom, 5), oH = geom_at(geom, 7), oW = geom_at(geom, 8);
  if (pass == 0) lay_out(Cin, Cout, oH, oW);
  else lay_out(Cout, Cin, H, W);
  return scratch(geom, 0) != 0;
}

/**
 * Where a Winograd pass keeps `floats` floats of buffers: `work` when they fit the C_in·kvol·L
 * floats the kernels are given (1 when work is 0: the question is only whether they fit), else
 * the module's static scratch when they fit there, else 0 (no room). Shared with winograd43.ts and winograd1d.ts.
 */
export function buffers_for(geom: usize, work: usize, floats: i64): usize {
  const kvol = geom_at(geom, 9) * geom_at(geom, 10) * geom_at(geom, 11);
  const L = <i64>geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  if (floats <= <i64>geom_at(geom, 1) * kvol * L) return work != 0 ? work : 1;
  return floats <= SCRATCH_CAP ? SCRATCH : 0;
}

/** buffers_for the laid-out pass. */
function scratch(geom: usize, work: usize): usize {
  return buffers_for(geom, work, <i64>weightFloats + <i64>frameFloats + <i64>bandFloats);
}

/** y (N, C_out, oH, oW) = conv(x, W) + b, for a geometry winograd_fits(geom, 0) accepts. */
export function winograd_forward(geom: usize, N: i32, x: usize, W: usize, b: usize, y: usize, work: usize): void {
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  lay_out(Cin, Cout, geom_at(geom, 7), geom_at(geom, 8));
  const buffers = scratch(geom, work);
  transform_weights(W, Cout, Cin, false, buffers);
  run(N, x, Cin, geom_at(geom, 4), geom_at(geom, 5), buffers, Cout, b, y, geom_at(geom, 7), geom_at(geom, 8),
    geom_at(geom, 16), geom_at(geom, 17), buffers);
}

/** gx (R, C_in, H, W) from gy (R, C_out, oH, oW), for a geometry winograd_fits(geom, 1) accepts. */
export function winograd_backward_input(geom: usize, R: i32, gy: usize, W: usize, gx: usize, work: usize): void {
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const H = geom_at(geom, 4), Wd = geom_at(geom, 5);
  lay_out(Cout, Cin, H, Wd);
  const buffers = scratch(geom, work);
  transform_weights(W, Cout, Cin, true, buffers);
  run(R, gy, Cout, geom_at(geom, 7), geom_at(geom, 8), buffers, Cin, 0, gx, H, Wd,
    2 - geom_at(geom, 16), 2 - geom_at(geom, 17), buffers);
}

/**
 * U_ξ (packed: ξ, block of MR output channels, input channel, MR lanes; channels past M zero)
 * = G g Gᵀ for g the 3×3 kernel from input channel c to output channel m. Forward: m = co,
 * c = ci, g = W[co, ci]. Transposed (input gradient): m = ci, c = co, g = W[co, ci] flipped.
 */
function transform_weights(W: usize, Cout: i32, Cin: i32, transposed: bool, dst: usize): void {
  const M = transposed ? Cin : Cout;
  const C = transposed ? Cout : Cin;
  const Mp = round_up(M, MR);
  const xiStride = <usize>(Mp * C) << 2;
  memory.fill(dst, 0, xiStride * 16);
  for (let m = 0; m < M; m++) {
    for (let c = 0; c < C; c++) {
      const co = transposed ? c : m, ci = transposed ? m : c;
      const g = W + (<usize>(co * Cin + ci) * 9 << 2);
      // t = G g (4×3), then u = t Gᵀ (4×4); G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
      const g00 = tap(g, 0, 0, transposed), g01 = tap(g, 0, 1, transposed), g02 = tap(g, 0, 2, transposed);
      const g10 = tap(g, 1, 0, transposed), g11 = tap(g, 1, 1, transposed), g12 = tap(g, 1, 2, transposed);
      const g20 = tap(g, 2, 0, transposed), g21 = tap(g, 2, 1, transposed), g22 = tap(g, 2, 2, transposed);
      const at = dst + (<usize>((m / MR) * C * MR + c * MR + m % MR) << 2);
      store_u(at, xiStride, 0, g00, g01, g02);
      store_u(at, xiStride, 1, <f32>0.5 * (g00 + g10 + g20), <f32>0.5 * (g01 + g11 + g21), <f32>0.5 * (g02 + g12 + g22));
      store_u(at, xiStride, 2, <f32>0.5 * (g00 - g10 + g20), <f32>0.5 * (g01 - g11 + g21), <f32>0.5 * (g02 - g12 + g22));
      store_u(at, xiStride, 3, g20, g21, g22);
    }
  }
}

/** u[i][0..3] = (t0, t1, t2) Gᵀ, at ξ = 4i .. 4i + 3. */
// @ts-ignore: decorator
@inline function store_u(at: usize, xiStride: usize, i: i32, t0: f32, t1: f32, t2: f32): void {
  store<f32>(at + <usize>(4 * i) * xiStride, t0);
  store<f32>(at + <usize>(4 * i + 1) * xiStride, <f32>0.5 * (t0 + t1 + t2));
  store<f32>(at + <usize>(4 * i + 2) * xiStride, <f32>0.5 * (t0 - t1 + t2));
  store<f32>(at + <usize>(4 * i + 3) * xiStride, t2);
}

/** g[kh, kw] of a 3×3 kernel, or g[2 − kh, 2 − kw] (flipped). */
// @ts-ignore: decorator
@inline function tap(g: usize, kh: i32, kw: i32, flipped: bool): f32 {
  return flipped ? load<f32>(g + (<usize>((2 - kh) * 3 + 2 - kw) << 2)) : load<f32>(g + (<usize>(kh * 3 + kw) << 2));
}

/**
 * The shared driver: per sample, the zero-padded frame of its C planes, then band by band the
 * input transform and the 16 products and output transform of each block.
 */
function run(
  N: i32, x: usize, C: i32, H: i32, W: i32, U: usize, M: i32, b: usize,
  y: usize, oH: i32, oW: i32, pH: i32, pW: i32, work: usize,
): void {
  const frame = work + (<usize>weightFloats << 2);
  const band = frame + (<usize>frameFloats << 2);
  const xSample = <usize>(C * H * W) << 2;
  const ySample = <usize>(M * oH * oW) << 2;
  for (let n = 0; n < N; n++) {
    fill_frame(x + <usize>n * xSample, C, H, W, frame, frameH, frameW, pH, pW);
    const yn = y + <usize>n * ySample;
    for (let th0 = 0; th0 < tilesH; th0 += bandRows) {
      transform_band(frame, C, th0, band);
      for (let block = 0; block < blocksPerBand; block++) {
        const v = band + (<usize>(block * 16 * xi_stride(C * NR)) << 2);
        for (let m0 = 0; m0 < M; m0 += MR) {
          products(U + (<usize>(m0 * C) << 2), <usize>(round_up(M, MR) * C) << 2, v, C);
          output_block(th0, block, m0, min(MR, M - m0), b, yn, oH, oW);
        }
      }
    }
  }
}

/** dst (C planes of FH × FW) = src (C planes of H × W) shifted by (pH, pW), zero elsewhere. */
function fill_frame(src: usize, C: i32, H: i32, W: i32, dst: usize, FH: i32, FW: i32, pH: i32, pW: i32): void {
  memory.fill(dst, 0, <usize>(C * FH * FW) << 2);
  const rows = min(H, FH - pH);
  const cols = min(W, FW - pW);
  for (let c = 0; c < C; c++) {
    for (let h = 0; h < rows; h++) {
      memory.copy(
        dst + (<usize>((c * FH + h + pH) * FW + pW) << 2),
        src + (<usize>((c * H + h) * W) << 2),
        <usize>cols << 2,
      );
    }
  }
}

/**
 * V (per block: ξ, channel, 8 tiles) = Bᵀ d B for every tile of the band's rows, four tiles
 * of a row per f32x4; Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
 */
function transform_band(frame: usize, C: i32, th0: i32, dst: usize): void {
  const FW = frameW;
  const rowBytes = <usize>FW << 2;
  const planeBytes = <usize>(frameH * FW) << 2;
  const groupsPerRow = tilesW / 4;
  const xiStride = <usize>xi_stride(C * NR) << 2;
  for (let r = 0; r < bandRows; r++) {
    const th = th0 + r;
    for (let group = 0; group < groupsPerRow; group++) {
      const index = r * groupsPerRow + group; // group within the band: block index / 2, half index % 2
      const out = dst + (<usize>((index >> 1) * 16 * xi_stride(C * NR) + (index & 1) * 4) << 2);
      for (let c = 0; c < C; c++) {
        let src = frame + <usize>c * planeBytes + <usize>(2 * th) * rowBytes + (<usize>(8 * group) << 2);
        // d[i][j] for the four tiles: column 2·tw + j of frame row 2·th + i.
        let d00: v128, d01: v128, d02: v128, d03: v128;
        let d10: v128, d11: v128, d12: v128, d13: v128;
        let d20: v128, d21: v128, d22: v128, d23: v128;
        let d30: v128, d31: v128, d32: v128, d33: v128;
        let a = v128.load(src), e = v128.load(src, 16), s = v128.load(src, 8), f = v128.load(src, 24);
        d00 = i32x4.shuffle(a, e, 0, 2, 4, 6); d01 = i32x4.shuffle(a, e, 1, 3, 5, 7);
        d02 = i32x4.shuffle(s, f, 0, 2, 4, 6); d03 = i32x4.shuffle(s, f, 1, 3, 5, 7);
        src += rowBytes;
        a = v128.load(src); e = v128.load(src, 16); s = v128.load(src, 8); f = v128.load(src, 24);
        d10 = i32x4.shuffle(a, e, 0, 2, 4, 6); d11 = i32x4.shuffle(a, e, 1, 3, 5, 7);
        d12 = i32x4.shuffle(s, f, 0, 2, 4, 6); d13 = i32x4.shuffle(s, f, 1, 3, 5, 7);
        src += rowBytes;
        a = v128.load(src); e = v128.load(src, 16); s = v128.load(src, 8); f = v128.load(src, 24);
        d20 = i32x4.shuffle(a, e, 0, 2, 4, 6); d21 = i32x4.shuffle(a, e, 1, 3, 5, 7);
        d22 = i32x4.shuffle(s, f, 0, 2, 4, 6); d23 = i32x4.shuffle(s, f, 1, 3, 5, 7);
        src += rowBytes;
        a = v128.load(src); e = v128.load(src, 16); s = v128.load(src, 8); f = v128.load(src, 24);
        d30 = i32x4.shuffle(a, e, 0, 2, 4, 6); d31 = i32x4.shuffle(a, e, 1, 3, 5, 7);
        d32 = i32x4.shuffle(s, f, 0, 2, 4, 6); d33 = i32x4.shuffle(s, f, 1, 3, 5, 7);
        // Columns: t = Bᵀ d.
        const t00 = f32x4.sub(d00, d20), t01 = f32x4.sub(d01, d21), t02 = f32x4.sub(d02, d22), t03 = f32x4.sub(d03, d23);
        const t10 = f32x4.add(d10, d20), t11 = f32x4.add(d11, d21), t12 = f32x4.add(d12, d22), t13 = f32x4.add(d13, d23);
        const t20 = f32x4.sub(d20, d10), t21 = f32x4.sub(d21, d11), t22 = f32x4.sub(d22, d12), t23 = f32x4.sub(d23, d13);
        const t30 = f32x4.sub(d10, d30), t31 = f32x4.sub(d11, d31), t32 = f32x4.sub(d12, d32), t33 = f32x4.sub(d13, d33);
        // Rows: v = t B, stored at ξ = 4i + j.
        const at = out + (<usize>c * (NR << 2));
        store_row(at, xiStride, 0, t00, t01, t02, t03);
        store_row(at, xiStride, 4, t10, t11, t12, t13);
        store_row(at, xiStride, 8, t20, t21, t22, t23);
        store_row(at, xiStride, 12, t30, t31, t32, t33);
      }
    }
  }
}

/** v[i][0..3] = t[i] B at ξ = first .. first + 3. */
// @ts-ignore: decorator
@inline function store_row(at: usize, xiStride: usize, first: i32, t0: v128, t1: v128, t2: v128, t3: v128): void {
  v128.store(at + <usize>first * xiStride, f32x4.sub(t0, t2));
  v128.store(at + <usize>(first + 1) * xiStride, f32x4.add(t1, t2));
  v128.store(at + <usize>(first + 2) * xiStride, f32x4.sub(t2, t1));
  v128.store(at + <usize>(first + 3) * xiStride, f32x4.sub(t1, t3));
}

/**
 * PRODUCTS[ξ] (MR × NR) = U_ξ (MR channels × C) · V_ξ (C × NR tiles) for the 16 ξ: `u` is the
 * channel block's panel of ξ = 0 (panels of later ξ `uStride` bytes apart), `v` the block's.
 */
function products(u: usize, uStride: usize, v: usize, C: i32): void {
  const vStride = <usize>xi_stride(C * NR) << 2;
  for (let xi = 0; xi < 16; xi++) {
    tile_4x8(C, u + <usize>xi * uStride, MR << 2, v + <usize>xi * vStride, NR << 2,
      PRODUCTS + (<usize>(xi * MR * NR) << 2), NR << 2, false);
  }
}

/**
 * y (2×2 per tile) = Aᵀ m A (+ bias) for `channels` channels of the block, Aᵀ = [1 1 1 0;
 * 0 1 −1 −1]; outputs past oH × oW are dropped.
 */
function output_block(
  th0: i32, block: i32, m0: i32, channels: i32, b: usize, y: usize, oH: i32, oW: i32,
): void {
  const groupsPerRow = tilesW / 4;
  const plane = <usize>(oH * oW) << 2;
  for (let half = 0; half < 2; half++) {
    const index = block * 2 + half;
    const th = th0 + index / groupsPerRow;
    const tw0 = (index % groupsPerRow) * 4;
    const oh = 2 * th;
    if (oh >= oH) continue;
    const ow = 2 * tw0;
    const secondRow = oh + 1 < oH;
    for (let r = 0; r < channels; r++) {
      const p = PRODUCTS + (<usize>(r * NR + half * 4) << 2);
      const s = <usize>(MR * NR) << 2; // bytes between ξ and ξ + 1
      const m00 = v128.load(p), m01 = v128.load(p + s), m02 = v128.load(p + 2 * s), m03 = v128.load(p + 3 * s);
      const m10 = v128.load(p + 4 * s), m11 = v128.load(p + 5 * s), m12 = v128.load(p + 6 * s), m13 = v128.load(p + 7 * s);
      const m20 = v128.load(p + 8 * s), m21 = v128.load(p + 9 * s), m22 = v128.load(p + 10 * s), m23 = v128.load(p + 11 * s);
      const m30 = v128.load(p + 12 * s), m31 = v128.load(p + 13 * s), m32 = v128.load(p + 14 * s), m33 = v128.load(p + 15 * s);
      // Rows: t = Aᵀ m (2×4).
      const t00 = f32x4.add(f32x4.add(m00, m10), m20), t01 = f32x4.add(f32x4.add(m01, m11), m21);
      const t02 = f32x4.add(f32x4.add(m02, m12), m22), t03 = f32x4.add(f32x4.add(m03, m13), m23);
      const t10 = f32x4.sub(f32x4.sub(m10, m20), m30), t11 = f32x4.sub(f32x4.sub(m11, m21), m31);
      const t12 = f32x4.sub(f32x4.sub(m12, m22), m32), t13 = f32x4.sub(f32x4.sub(m13, m23), m33);
      const bias = f32x4.splat(b != 0 ? load<f32>(b + (<usize>(m0 + r) << 2)) : 0);
      // Columns: y = t A (2×2), the four tiles' outputs interleaved along the row.
      const y00 = f32x4.add(f32x4.add(f32x4.add(t00, t01), t02), bias);
      const y01 = f32x4.add(f32x4.sub(f32x4.sub(t01, t02), t03), bias);
      const y10 = f32x4.add(f32x4.add(f32x4.add(t10, t11), t12), bias);
      const y11 = f32x4.add(f32x4.sub(f32x4.sub(t11, t12), t13), bias);
      const row0 = y + <usize>(m0 + r) * plane + (<usize>(oh * oW + ow) << 2);
      store_pairs(row0, ow, oW, y00, y01);
      if (secondRow) store_pairs(row0 + (<usize>oW << 2), ow, oW, y10, y11);
    }
  }
}

/** Row positions ow .. ow + 7 ← (left, right) of four tiles, interleaved; only those below oW. */
// @ts-ignore: decorator
@inline function store_pairs(at: usize, ow: i32, oW: i32, left: v128, right: v128): void {
  const lo = i32x4.shuffle(left, right, 0, 4, 1, 5);
  const hi = i32x4.shuffle(left, right, 2, 6, 3, 7);
  if (ow + 8 <= oW) {
    v128.store(at, lo);
    v128.store(at, hi, 16);
    return;
  }
  const n = oW - ow;
  if (n > 0) store<f32>(at, f32x4.extract_lane(lo, 0));
  if (n > 1) store<f32>(at, f32x4.extract_lane(lo, 1), 4);
  if (n > 2) store<f32>(at, f32x4.extract_lane(lo, 2), 8);
  if (n > 3) store<f32>(at, f32x4.extract_lane(lo, 3), 12);
  if (n > 4) store<f32>(at, f32x4.extract_lane(hi, 0), 16);
  if (n > 5) store<f32>(at, f32x4.extract_lane(hi, 1), 20);
  if (n > 6) store<f32>(at, f32x4.extract_lane(hi, 2), 24);
}

// ---------------------------------------------------------------------------------------
// The transforms of the F(3×3, 2×2) weight gradients, whose driver (shared with F(3×3, 4×4))
// is winograd_weight.ts.

/**
 * F(3×3, 2×2) weight gradients (winograd_weight.ts): V (ξ blocks `xiStride` bytes apart; tile
 * t, channel c at t·C + c floats) = Bᵀ d B for tile rows th0 .. th0 + rows of `tilesW` tiles,
 * from the channel-last frame (FW pixels of C channels a row), four channels per f32x4.
 */
export function input_tiles_2x2(
  frame: usize, FW: i32, C: i32, tilesW: i32, th0: i32, rows: i32, dst: usize, xiStride: usize,
): void {
  const pixel = <usize>C << 2;
  const rowBytes = <usize>(FW * C) << 2;
  for (let r = 0; r < rows; r++) {
    const th = th0 + r;
    for (let tw = 0; tw < tilesW; tw++) {
      const t = r * tilesW + tw;
      const origin = frame + <usize>(2 * th) * rowBytes + <usize>(2 * tw) * pixel;
      const out = dst + (<usize>(t * C) << 2);
      for (let c = 0; c < C; c += 4) {
        const s0 = origin + (<usize>c << 2);
        const s1 = s0 + rowBytes, s2 = s1 + rowBytes, s3 = s2 + rowBytes;
        const d00 = v128.load(s0), d01 = v128.load(s0 + pixel), d02 = v128.load(s0 + 2 * pixel), d03 = v128.load(s0 + 3 * pixel);
        const d10 = v128.load(s1), d11 = v128.load(s1 + pixel), d12 = v128.load(s1 + 2 * pixel), d13 = v128.load(s1 + 3 * pixel);
        const d20 = v128.load(s2), d21 = v128.load(s2 + pixel), d22 = v128.load(s2 + 2 * pixel), d23 = v128.load(s2 + 3 * pixel);
        const d30 = v128.load(s3), d31 = v128.load(s3 + pixel), d32 = v128.load(s3 + 2 * pixel), d33 = v128.load(s3 + 3 * pixel);
        const t00 = f32x4.sub(d00, d20), t01 = f32x4.sub(d01, d21), t02 = f32x4.sub(d02, d22), t03 = f32x4.sub(d03, d23);
        const t10 = f32x4.add(d10, d20), t11 = f32x4.add(d11, d21), t12 = f32x4.add(d12, d22), t13 = f32x4.add(d13, d23);
        const t20 = f32x4.sub(d20, d10), t21 = f32x4.sub(d21, d11), t22 = f32x4.sub(d22, d12), t23 = f32x4.sub(d23, d13);
        const t30 = f32x4.sub(d10, d30), t31 = f32x4.sub(d11, d31), t32 = f32x4.sub(d12, d32), t33 = f32x4.sub(d13, d33);
        const at = out + (<usize>c << 2);
        store_row(at, xiStride, 0, t00, t01, t02, t03);
        store_row(at, xiStride, 4, t10, t11, t12, t13);
        store_row(at, xiStride, 8, t20, t21, t22, t23);
        store_row(at, xiStride, 12, t30, t31, t32, t33);
      }
    }
  }
}

/**
 * F(3×3, 2×2) weight gradients: H (laid out as V) = A h Aᵀ for the 2×2 blocks h of the
 * channel-last gy frame (FW pixels of C channels a row), A = [1 0; 1 1; 1 −1; 0 −1]: each row
 * (a, b) of A h becomes (a, a + b, a − b, −b). Four channels of one tile per f32x4.
 */
export function gy_tiles_2x2(
  gyFrame: usize, FW: i32, C: i32, tilesW: i32, th0: i32, rows: i32, dst: usize, xiStride: usize,
): void {
  const pixel = <usize>C << 2;
  const rowBytes = <usize>(FW * C) << 2;
  for (let r = 0; r < rows; r++) {
    const th = th0 + r;
    for (let tw = 0; tw < tilesW; tw++) {
      const t = r * tilesW + tw;
      const origin = gyFrame + <usize>(2 * th) * rowBytes + <usize>(2 * tw) * pixel;
      const out = dst + (<usize>(t * C) << 2);
      for (let c = 0; c < C; c += 4) {
        const s0 = origin + (<usize>c << 2);
        const h00 = v128.load(s0), h01 = v128.load(s0 + pixel);
        const h10 = v128.load(s0 + rowBytes), h11 = v128.load(s0 + rowBytes + pixel);
        const at = out + (<usize>c << 2);
        store_gy_row(at, xiStride, 0, h00, h01);
        store_gy_row(at, xiStride, 4, f32x4.add(h00, h10), f32x4.add(h01, h11));
        store_gy_row(at, xiStride, 8, f32x4.sub(h00, h10), f32x4.sub(h01, h11));
        store_gy_row(at, xiStride, 12, f32x4.neg(h10), f32x4.neg(h11));
      }
    }
  }
}

/** (a, b) Aᵀ = (a, a + b, a − b, −b) at ξ = first .. first + 3. */
// @ts-ignore: decorator
@inline function store_gy_row(at: usize, xiStride: usize, first: i32, a: v128, b: v128): void {
  v128.store(at + <usize>first * xiStride, a);
  v128.store(at + <usize>(first + 1) * xiStride, f32x4.add(a, b));
  v128.store(at + <usize>(first + 2) * xiStride, f32x4.sub(a, b));
  v128.store(at + <usize>(first + 3) * xiStride, f32x4.neg(b));
}

/**
 * F(3×3, 2×2) weight gradients: dW[co, ci] (3×3, at J + (co·C_in + ci)·9 floats) = Gᵀ P[co, ci] G,
 * four input channels per f32x4 (P rows cinPadded floats apart, ξ blocks coutPadded·cinPadded
 * apart); Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1]. Overwrites, or adds when `add`.
 */
export function weight_output_2x2(
  P: usize, Cout: i32, Cin: i32, coutPadded: i32, cinPadded: i32, J: usize, add: bool,
): void {
  const s = <usize>(coutPadded * cinPadded) << 2; // bytes between ξ and ξ + 1
  const half = f32x4.splat(0.5);
  for (let co = 0; co < Cout; co++) {
    for (let ci = 0; ci < Cin; ci += 4) {
      const p = P + (<usize>(co * cinPadded + ci) << 2);
      // Rows: r = Gᵀ P (3×4), on rows of ξ.
      const q0 = v128.load(p), q1 = v128.load(p + s), q2 = v128.load(p + 2 * s), q3 = v128.load(p + 3 * s);
      const q4 = v128.load(p + 4 * s), q5 = v128.load(p + 5 * s), q6 = v128.load(p + 6 * s), q7 = v128.load(p + 7 * s);
      const q8 = v128.load(p + 8 * s), q9 = v128.load(p + 9 * s), q10 = v128.load(p + 10 * s), q11 = v128.load(p + 11 * s);
      const q12 = v128.load(p + 12 * s), q13 = v128.load(p + 13 * s), q14 = v128.load(p + 14 * s), q15 = v128.load(p + 15 * s);
      const s0 = f32x4.mul(half, f32x4.add(q4, q8)), s1 = f32x4.mul(half, f32x4.add(q5, q9));
      const s2 = f32x4.mul(half, f32x4.add(q6, q10)), s3 = f32x4.mul(half, f32x4.add(q7, q11));
      const r00 = f32x4.add(q0, s0), r01 = f32x4.add(q1, s1), r02 = f32x4.add(q2, s2), r03 = f32x4.add(q3, s3);
      const r10 = f32x4.mul(half, f32x4.sub(q4, q8)), r11 = f32x4.mul(half, f32x4.sub(q5, q9));
      const r12 = f32x4.mul(half, f32x4.sub(q6, q10)), r13 = f32x4.mul(half, f32x4.sub(q7, q11));
      const r20 = f32x4.add(s0, q12), r21 = f32x4.add(s1, q13), r22 = f32x4.add(s2, q14), r23 = f32x4.add(s3, q15);
      // Columns: y = r G (3×3).
      const lanes = min(4, Cin - ci);
      const out = J + (<usize>((co * Cin + ci) * 9) << 2);
      store_taps(out, 0, r00, r01, r02, r03, half, lanes, add);
      store_taps(out, 3, r10, r11, r12, r13, half, lanes, add);
      store_taps(out, 6, r20, r21, r22, r23, half, lanes, add);
    }
  }
}

/** Taps first .. first + 2 of each lane's kernel (9 floats apart) = (r0, r1, r2, r3) G. */
// @ts-ignore: decorator
@inline function store_taps(
  out: usize, first: i32, r0: v128, r1: v128, r2: v128, r3: v128, half: v128, lanes: i32, add: bool,
): void {
  const m = f32x4.mul(half, f32x4.add(r1, r2));
  const y0 = f32x4.add(r0, m);
  const y1 = f32x4.mul(half, f32x4.sub(r1, r2));
  const y2 = f32x4.add(m, r3);
  for (let l = 0; l < lanes; l++) {
    const at = out + (<usize>(l * 9 + first) << 2);
    let v0: f32, v1: f32, v2: f32;
    if (l == 0) { v0 = f32x4.extract_lane(y0, 0); v1 = f32x4.extract_lane(y1, 0); v2 = f32x4.extract_lane(y2, 0); }
    else if (l == 1) { v0 = f32x4.extract_lane(y0, 1); v1 = f32x4.extract_lane(y1, 1); v2 = f32x4.extract_lane(y2, 1); }
    else if (l == 2) { v0 = f32x4.extract_lane(y0, 2); v1 = f32x4.extract_lane(y1, 2); v2 = f32x4.extract_lane(y2, 2); }
    else { v0 = f32x4.extract_lane(y0, 3); v1 = f32x4.extract_lane(y1, 3); v2 = f32x4.extract_lane(y2, 3); }
    if (add) {
      v0 += load<f32>(at);
      v1 += load<f32>(at, 4);
      v2 += load<f32>(at, 8);
    }
    store<f32>(at, v0);
    store<f32>(at, v1, 4);
    store<f32>(at, v2, 8);
  }
}

/**
 * Moves this file's scratch buffers by `delta` bytes: a worker of the threads build calls it
 * once, so that its kernels use a copy of the static scratch of their own.
 */
export function relocate_winograd_scratch(delta: usize): void {
  PRODUCTS += delta;
  SCRATCH += delta;
}
