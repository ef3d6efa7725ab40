// Winograd F(4×4, 3×3) (Lavin & Gray 2016) for the forward pass and input gradient of 3×3
// stride-1 convolutions with enough channels: each 4×4 block of outputs comes from a 6×6 block
// of input through 36 products per channel pair instead of 144, 1.78x fewer than F(2×2, 3×3)
// (winograd.ts, whose structure this follows) at the price of larger transforms, which the
// channels amortise. The matrices are Lavin & Gray's, with interpolation points 0, ±1, ±2, ∞:
//
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
//   G  = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1⁄24 1⁄12 ⅙; 1⁄24 −1⁄12 ⅙; 0 0 1]
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
//
// Tiles: four tiles of a tile row per f32x4 (a group), two groups a block of 8 (the register
// tile's width), bands of one or two tile rows holding whole blocks. The input is copied into
// a zero-padded frame whose rows are split into four column phases (column 4q + φ at phase φ,
// index q), so the j-th column of four consecutive tiles is one contiguous f32x4. Rounding:
// the transforms scale by up to 8, and results match direct convolution to about 1e-5 of the
// outputs' scale; the tests bound it by the tile's inputs (docs/kernels.md).
import { geom_at } from "./geometry";
import { tile_4x8 } from "./simd";
import { buffers_for, round_up, winograd_shape, xi_stride } from "./winograd";

/** conv_strategy's number for this path. */
export const PATH_WINOGRAD_4X4: i32 = 6;

const MR: i32 = 4;
const NR: i32 = 8;
const XI: i32 = 36;
/** The 36 products of one block (ξ × MR × NR floats). */
let PRODUCTS: usize = memory.data(XI * MR * NR << 2, 64);
/** The 36 row transforms of one tile group (6 × 6 f32x4), between the row and column passes. */
let ROWS: usize = memory.data(36 * 16, 64);
/** The output transform's 6 × 4 row results, then its 4 × 4 outputs. */
let OUT_ROWS: usize = memory.data(24 * 16, 64);
let OUT: usize = memory.data(16 * 16, 64);
// The shape of one pass (C input planes → M output planes of oH × oW), set by lay_out.
let tilesH: i32 = 0;
let tilesW: i32 = 0;
let bandRows: i32 = 0;
let blocksPerBand: i32 = 0;
let frameH: i32 = 0;
/** Floats of one column phase of a frame row. */
let phaseW: i32 = 0;
let weightFloats: i32 = 0;
let frameFloats: i32 = 0;
let bandFloats: i32 = 0;

function lay_out(C: i32, M: i32, oH: i32, oW: i32): void {
  const groupsPerRow = (oW + 15) / 16; // ⌈⌈oW/4⌉ / 4⌉
  tilesW = groupsPerRow * 4;
  bandRows = (groupsPerRow & 1) != 0 ? 2 : 1;
  tilesH = round_up((oH + 3) / 4, bandRows);
  blocksPerBand = groupsPerRow * bandRows / 2;
  frameH = 4 * tilesH + 2;
  phaseW = tilesW + 2; // a group reads indices tw .. tw + 4 of a phase
  weightFloats = XI * round_up(M, MR) * C;
  frameFloats = C * frameH * 4 * phaseW;
  bandFloats = blocksPerBand * XI * xi_stride(C * NR);
}

/**
 * Whether a pass runs as F(4×4, 3×3) (pass 0 forward, 1 input gradient): the shape winograd.ts
 * takes (2-d, 3×3, stride 1, no dilation, one group, padding ≤ 2), at least 8 channels on
 * each side and 8 outputs along each dim (where the larger transforms pay, measured), and its
 * buffers fit `work` (C_in·kvol·L floats) or the module's scratch.
 */
export function winograd43_fits(geom: usize, pass: i32): bool {
  if (!winograd_shape(geom)) return false;
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  if (Cin < 8 || Cout < 8) return false;
  const H = geom_at(geom, 4), W = geom_at(geom, 5), oH = geom_at(geom, 7), oW = geom_at(geom, 8);
  if (pass == 0) {
    if (oH < 8 || oW < 8) return false;
    lay_out(Cin, Cout, oH, oW);
  } else {
    if (H < 8 || W < 8) return false;
    lay_out(Cout, Cin, H, W);
  }
  return scratch(geom, 0) != 0;
}

/** Where the laid-out pass keeps its buffers (winograd.ts's buffers_for). */
function scratch(geom: usize, work: usize): usize {
  return buffers_for(geom, work, <i64>weightFloats + <i64>frameFloats + <i64>bandFloats);
}

/** y (N, C_out, oH, oW) = conv(x, W) + b, for a geometry winograd43_fits(geom, 0) accepts. */
export function winograd43_forward(geom: usize, N: i32, x: usize, W: usize, b: usize, y: usize, work: usize): void {
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  lay_out(Cin, Cout, geom_at(geom, 7), geom_at(geom, 8));
  const buffers = scratch(geom, work);
  transform_weights(W, Cout, Cin, false, buffers);
  run(N, x, Cin, geom_at(geom, 4), geom_at(geom, 5), buffers, Cout, b, y, geom_at(geom, 7), geom_at(geom, 8),
    geom_at(geom, 16), geom_at(geom, 17));
}

/** gx (R, C_in, H, W) from gy (R, C_out, oH, oW), for a geometry winograd43_fits(geom, 1) accepts. */
export function winograd43_backward_input(geom: usize, R: i32, gy: usize, W: usize, gx: usize, work: usize): void {
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const H = geom_at(geom, 4), Wd = geom_at(geom, 5);
  lay_out(Cout, Cin, H, Wd);
  const buffers = scratch(geom, work);
  transform_weights(W, Cout, Cin, true, buffers);
  run(R, gy, Cout, geom_at(geom, 7), geom_at(geom, 8), buffers, Cin, 0, gx, H, Wd,
    2 - geom_at(geom, 16), 2 - geom_at(geom, 17));
}

/**
 * U_ξ (ξ, block of MR output channels, input channel, MR lanes; channels past M zero) = G g Gᵀ,
 * computed in float64. Forward: m = co, c = ci, g = W[co, ci]; transposed: m = ci, c = co,
 * g = W[co, ci] flipped.
 */
function transform_weights(W: usize, Cout: i32, Cin: i32, transposed: bool, dst: usize): void {
  const M = transposed ? Cin : Cout;
  const C = transposed ? Cout : Cin;
  const xiStride = <usize>(round_up(M, MR) * C) << 2;
  memory.fill(dst, 0, xiStride * XI);
  for (let m = 0; m < M; m++) {
    for (let c = 0; c < C; c++) {
      const co = transposed ? c : m, ci = transposed ? m : c;
      const g = W + (<usize>(co * Cin + ci) * 9 << 2);
      const at = dst + (<usize>((m / MR) * C * MR + c * MR + m % MR) << 2);
      // t = G g (6×3), by columns of g; then each row of t times Gᵀ.
      for (let i = 0; i < 6; i++) {
        const t0 = g_row(g, i, 0, transposed), t1 = g_row(g, i, 1, transposed), t2 = g_row(g, i, 2, transposed);
        for (let j = 0; j < 6; j++) store<f32>(at + <usize>(i * 6 + j) * xiStride, <f32>g_apply(j, t0, t1, t2));
      }
    }
  }
}

/** (G g)[i][kw]: row i of G applied to column kw of the 3×3 kernel g (flipped when transposed). */
function g_row(g: usize, i: i32, kw: i32, flipped: bool): f64 {
  const g0 = tap(g, 0, kw, flipped), g1 = tap(g, 1, kw, flipped), g2 = tap(g, 2, kw, flipped);
  return g_apply(i, g0, g1, g2);
}

/** Row i of G applied to (v0, v1, v2). */
function g_apply(i: i32, v0: f64, v1: f64, v2: f64): f64 {
  switch (i) {
    case 0: return v0 / 4;
    case 1: return -(v0 + v1 + v2) / 6;
    case 2: return -(v0 - v1 + v2) / 6;
    case 3: return v0 / 24 + v1 / 12 + v2 / 6;
    case 4: return v0 / 24 - v1 / 12 + v2 / 6;
  }
  return v2;
}

// @ts-ignore: decorator
@inline function tap(g: usize, kh: i32, kw: i32, flipped: bool): f64 {
  return <f64>(flipped ? load<f32>(g + (<usize>((2 - kh) * 3 + 2 - kw) << 2)) : load<f32>(g + (<usize>(kh * 3 + kw) << 2)));
}

function run(
  N: i32, x: usize, C: i32, H: i32, W: i32, U: usize, M: i32, b: usize,
  y: usize, oH: i32, oW: i32, pH: i32, pW: i32,
): void {
  const frame = U + (<usize>weightFloats << 2);
  const band = frame + (<usize>frameFloats << 2);
  const xSample = <usize>(C * H * W) << 2;
  const ySample = <usize>(M * oH * oW) << 2;
  const uStride = <usize>(round_up(M, MR) * C) << 2;
  const vStride = <usize>xi_stride(C * NR) << 2;
  for (let n = 0; n < N; n++) {
    fill_frame(x + <usize>n * xSample, C, H, W, frame, pH, pW);
    const yn = y + <usize>n * ySample;
    for (let th0 = 0; th0 < tilesH; th0 += bandRows) {
      transform_band(frame, C, th0, band);
      for (let block = 0; block < blocksPerBand; block++) {
        const v = band + <usize>(block * XI) * vStride;
        for (let m0 = 0; m0 < M; m0 += MR) {
          const u = U + (<usize>(m0 * C) << 2);
          for (let xi = 0; xi < XI; xi++) {
            tile_4x8(C, u + <usize>xi * uStride, MR << 2, v + <usize>xi * vStride, NR << 2,
              PRODUCTS + (<usize>(xi * MR * NR) << 2), NR << 2, false);
          }
          output_block(th0, block, m0, min(MR, M - m0), b, yn, oH, oW);
        }
      }
    }
  }
}

/** The frame (C × frameH rows × 4 phases × phaseW) of x (C × H × W) shifted by (pH, pW), zero elsewhere. */
function fill_frame(src: usize, C: i32, H: i32, W: i32, dst: usize, pH: i32, pW: i32): void {
  memory.fill(dst, 0, <usize>frameFloats << 2);
  const rows = min(H, frameH - pH);
  const cols = min(W, 4 * phaseW - pW);
  const rowFloats = 4 * phaseW;
  for (let c = 0; c < C; c++) {
    for (let h = 0; h < rows; h++) {
      const from = src + (<usize>((c * H + h) * W) << 2);
      const row = dst + (<usize>((c * frameH + h + pH) * rowFloats) << 2);
      let w = 0;
      // Sixteen columns at a time: a 4×4 transpose gives, for k = 0 … 3, columns w + k, w + k + 4,
      // w + k + 8, w + k + 12: one phase, four consecutive indices (the scalar loop was a fifth
      // of a 16-channel layer's forward pass).
      for (; w + 16 <= cols; w += 16) {
        const at = from + (<usize>w << 2);
        const v0 = v128.load(at), v1 = v128.load(at, 16), v2 = v128.load(at, 32), v3 = v128.load(at, 48);
        const a = i32x4.shuffle(v0, v1, 0, 4, 1, 5), b = i32x4.shuffle(v0, v1, 2, 6, 3, 7);
        const c2 = i32x4.shuffle(v2, v3, 0, 4, 1, 5), d = i32x4.shuffle(v2, v3, 2, 6, 3, 7);
        const column = w + pW;
        store_phase(row, column, i32x4.shuffle(a, c2, 0, 1, 4, 5));
        store_phase(row, column + 1, i32x4.shuffle(a, c2, 2, 3, 6, 7));
        store_phase(row, column + 2, i32x4.shuffle(b, d, 0, 1, 4, 5));
        store_phase(row, column + 3, i32x4.shuffle(b, d, 2, 3, 6, 7));
      }
      for (; w < cols; w++) {
        const column = w + pW;
        store<f32>(row + (<usize>((column & 3) * phaseW + (column >> 2)) << 2), load<f32>(from + (<usize>w << 2)));
      }
    }
  }
}

/** Frame columns `column`, + 4, + 8, + 12 of a row ← v: one phase, four consecutive indices. */
// @ts-ignore: decorator
@inline function store_phase(row: usize, column: i32, v: v128): void {
  v128.store(row + (<usize>((column & 3) * phaseW + (column >> 2)) << 2), v);
}

/** Bᵀ applied to (d0 … d5), written to out + k·step for k = 0 … 5. */
// @ts-ignore: decorator
@inline function apply_bt(d0: v128, d1: v128, d2: v128, d3: v128, d4: v128, d5: v128, out: usize, step: usize): void {
  const four = f32x4.splat(4), five = f32x4.splat(5), two = f32x4.splat(2);
  const d4md2 = f32x4.sub(d4, d2);
  const d3md1 = f32x4.mul(two, f32x4.sub(d3, d1));
  v128.store(out, f32x4.add(f32x4.sub(f32x4.mul(four, d0), f32x4.mul(five, d2)), d4));
  v128.store(out + step, f32x4.sub(f32x4.add(d3, d4), f32x4.mul(four, f32x4.add(d1, d2))));
  v128.store(out + 2 * step, f32x4.add(f32x4.sub(d4, d3), f32x4.mul(four, f32x4.sub(d1, d2))));
  v128.store(out + 3 * step, f32x4.add(d4md2, d3md1));
  v128.store(out + 4 * step, f32x4.sub(d4md2, d3md1));
  v128.store(out + 5 * step, f32x4.add(f32x4.sub(f32x4.mul(four, d1), f32x4.mul(five, d3)), d5));
}

/** V (per block: ξ, channel, 8 tiles) = Bᵀ d B for every tile of the band, four tiles per f32x4. */
function transform_band(frame: usize, C: i32, th0: i32, dst: usize): void {
  const rowFloats = 4 * phaseW;
  const rowBytes = <usize>rowFloats << 2;
  const planeBytes = <usize>(frameH * rowFloats) << 2;
  const phaseBytes = <usize>phaseW << 2;
  const groupsPerRow = tilesW / 4;
  const xiStride = <usize>xi_stride(C * NR) << 2;
  for (let r = 0; r < bandRows; r++) {
    const th = th0 + r;
    for (let group = 0; group < groupsPerRow; group++) {
      const index = r * groupsPerRow + group;
      const out = dst + (<usize>(index >> 1) * XI) * xiStride + (<usize>((index & 1) * 4) << 2);
      const tw0 = <usize>(4 * group) << 2;
      for (let c = 0; c < C; c++) {
        let src = frame + <usize>c * planeBytes + <usize>(4 * th) * rowBytes + tw0;
        // Rows: ROWS[i][k] = (d[i] B)[k], column j of the four tiles at phase j & 3, index + (j >> 2).
        for (let i = 0; i < 6; i++) {
          const d0 = v128.load(src), d1 = v128.load(src + phaseBytes), d2 = v128.load(src + 2 * phaseBytes);
          const d3 = v128.load(src + 3 * phaseBytes), d4 = v128.load(src, 4), d5 = v128.load(src + phaseBytes, 4);
          apply_bt(d0, d1, d2, d3, d4, d5, ROWS + (<usize>(i * 6) << 4), 16);
          src += rowBytes;
        }
        // Columns: V[ξ = 6k′ + k] = (Bᵀ t)[k′][k].
        const at = out + (<usize>(c * NR) << 2);
        for (let k = 0; k < 6; k++) {
          const col = ROWS + (<usize>k << 4);
          apply_bt(v128.load(col), v128.load(col, 96), v128.load(col, 192), v128.load(col, 288), v128.load(col, 384),
            v128.load(col, 480), at + <usize>k * xiStride, 6 * xiStride);
        }
      }
    }
  }
}

/** Aᵀ applied to (m0 … m5), written to out + r·step for r = 0 … 3. */
// @ts-ignore: decorator
@inline function apply_at(m0: v128, m1: v128, m2: v128, m3: v128, m4: v128, m5: v128, out: usize, step: usize): void {
  const sum12 = f32x4.add(m1, m2), dif12 = f32x4.sub(m1, m2);
  const sum34 = f32x4.add(m3, m4), dif34 = f32x4.sub(m3, m4);
  v128.store(out, f32x4.add(f32x4.add(m0, sum12), sum34));
  v128.store(out + step, f32x4.add(dif12, f32x4.mul(f32x4.splat(2), dif34)));
  v128.store(out + 2 * step, f32x4.add(sum12, f32x4.mul(f32x4.splat(4), sum34)));
  v128.store(out + 3 * step, f32x4.add(f32x4.add(dif12, f32x4.mul(f32x4.splat(8), dif34)), m5));
}

/** y (4×4 per tile) = Aᵀ m A (+ bias) for `channels` channels of the block; outputs past oH × oW are dropped. */
function output_block(th0: i32, block: i32, m0: i32, channels: i32, b: usize, y: usize, oH: i32, oW: i32): void {
  const groupsPerRow = tilesW / 4;
  const plane = <usize>(oH * oW) << 2;
  const s = <usize>(MR * NR) << 2; // bytes between ξ and ξ + 1 in PRODUCTS
  for (let half = 0; half < 2; half++) {
    const index = block * 2 + half;
    const th = th0 + index / groupsPerRow;
    const oh0 = 4 * th;
    if (oh0 >= oH) continue;
    const ow0 = 16 * (index % groupsPerRow);
    for (let r = 0; r < channels; r++) {
      const p = PRODUCTS + (<usize>(r * NR + half * 4) << 2);
      // Rows: OUT_ROWS[k′][c] = (M[k′] A)[c].
      for (let k = 0; k < 6; k++) {
        const row = p + <usize>(6 * k) * s;
        apply_at(v128.load(row), v128.load(row + s), v128.load(row + 2 * s), v128.load(row + 3 * s),
          v128.load(row + 4 * s), v128.load(row + 5 * s), OUT_ROWS + (<usize>(k * 4) << 4), 16);
      }
      // Columns: OUT[r′][c] = (Aᵀ OUT_ROWS)[r′][c].
      for (let c = 0; c < 4; c++) {
        const col = OUT_ROWS + (<usize>c << 4);
        apply_at(v128.load(col), v128.load(col, 64), v128.load(col, 128), v128.load(col, 192), v128.load(col, 256),
          v128.load(col, 320), OUT + (<usize>c << 4), 64);
      }
      const bias = f32x4.splat(b != 0 ? load<f32>(b + (<usize>(m0 + r) << 2)) : 0);
      const channel = y + <usize>(m0 + r) * plane;
      for (let rr = 0; rr < 4 && oh0 + rr < oH; rr++) {
        // OUT[rr][0..3] hold column c of the four tiles: transpose to each tile's four columns.
        const o = OUT + (<usize>(rr * 4) << 4);
        const c0 = v128.load(o), c1 = v128.load(o, 16), c2 = v128.load(o, 32), c3 = v128.load(o, 48);
        const t0 = i32x4.shuffle(c0, c1, 0, 4, 1, 5), t1 = i32x4.shuffle(c0, c1, 2, 6, 3, 7);
        const t2 = i32x4.shuffle(c2, c3, 0, 4, 1, 5), t3 = i32x4.shuffle(c2, c3, 2, 6, 3, 7);
        const dst = channel + (<usize>((oh0 + rr) * oW + ow0) << 2);
        store_tile(dst, ow0, oW, f32x4.add(i32x4.shuffle(t0, t2, 0, 1, 4, 5), bias));
        store_tile(dst + 16, ow0 + 4, oW, f32x4.add(i32x4.shuffle(t0, t2, 2, 3, 6, 7), bias));
        store_tile(dst + 32, ow0 + 8, oW, f32x4.add(i32x4.shuffle(t1, t3, 0, 1, 4, 5), bias));
        store_tile(dst + 48, ow0 + 12, oW, f32x4.add(i32x4.shuffle(t1, t3, 2, 3, 6, 7), bias));
      }
    }
  }
}

/** Output columns ow .. ow + 3 ← v, only those below oW. */
// @ts-ignore: decorator
@inline function store_tile(at: usize, ow: i32, oW: i32, v: v128): void {
  if (ow + 4 <= oW) {
    v128.store(at, v);
    return;
  }
  const n = oW - ow;
  if (n > 0) store<f32>(at, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(at, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(at, f32x4.extract_lane(v, 2), 8);
}

// ---------------------------------------------------------------------------------------
// The transforms of the F(3×3, 4×4) weight gradients, whose driver (shared with F(3×3, 2×2))
// is winograd_weight.ts: dW = Gᵀ [Σ_tiles (A h Aᵀ) ⊙ (Bᵀ d B)] G with h the 4×4 block of gy and
// d the 6×6 block of the padded input, A = (Aᵀ)ᵀ.

/**
 * F(3×3, 4×4) weight gradients (winograd_weight.ts): V (ξ blocks `xiStride` bytes apart; tile t,
 * channel c at t·C + c floats) = Bᵀ d B for tile rows th0 .. th0 + rows of `tilesW` tiles, from
 * the channel-last frame (FW pixels of C channels a row), four channels per f32x4.
 */
export function input_tiles_4x4(
  frame: usize, FW: i32, C: i32, tilesW: i32, th0: i32, rows: i32, dst: usize, xiStride: usize,
): void {
  const pixel = <usize>C << 2;
  const rowBytes = <usize>FW * pixel;
  for (let r = 0; r < rows; r++) {
    for (let tw = 0; tw < tilesW; tw++) {
      const t = r * tilesW + tw;
      const origin = frame + <usize>(4 * (th0 + r)) * rowBytes + <usize>(4 * tw) * pixel;
      for (let c = 0; c < C; c += 4) {
        let src = origin + (<usize>c << 2);
        for (let i = 0; i < 6; i++) {
          apply_bt(v128.load(src), v128.load(src + pixel), v128.load(src + 2 * pixel), v128.load(src + 3 * pixel),
            v128.load(src + 4 * pixel), v128.load(src + 5 * pixel), ROWS + (<usize>(i * 6) << 4), 16);
          src += rowBytes;
        }
        const at = dst + (<usize>(t * C + c) << 2);
        for (let k = 0; k < 6; k++) {
          const col = ROWS + (<usize>k << 4);
          apply_bt(v128.load(col), v128.load(col, 96), v128.load(col, 192), v128.load(col, 288), v128.load(col, 384),
            v128.load(col, 480), at + <usize>k * xiStride, 6 * xiStride);
        }
      }
    }
  }
}

/** A applied to (h0 … h3): (h0, h0+h1+h2+h3, h0−h1+h2−h3, h0+2h1+4h2+8h3, h0−2h1+4h2−8h3, h3) at out + k·step. */
// @ts-ignore: decorator
@inline function apply_a(h0: v128, h1: v128, h2: v128, h3: v128, out: usize, step: usize): void {
  const even = f32x4.add(h0, h2), odd = f32x4.add(h1, h3);
  const even4 = f32x4.add(h0, f32x4.mul(f32x4.splat(4), h2));
  const odd8 = f32x4.add(f32x4.mul(f32x4.splat(2), h1), f32x4.mul(f32x4.splat(8), h3));
  v128.store(out, h0);
  v128.store(out + step, f32x4.add(even, odd));
  v128.store(out + 2 * step, f32x4.sub(even, odd));
  v128.store(out + 3 * step, f32x4.add(even4, odd8));
  v128.store(out + 4 * step, f32x4.sub(even4, odd8));
  v128.store(out + 5 * step, h3);
}

/**
 * F(3×3, 4×4) weight gradients: H (laid out as V) = A h Aᵀ for the 4×4 blocks h of the
 * channel-last gy frame (FW pixels of C channels a row), four channels per f32x4.
 */
export function gy_tiles_4x4(
  gyFrame: usize, FW: i32, C: i32, tilesW: i32, th0: i32, rows: i32, dst: usize, xiStride: usize,
): void {
  const pixel = <usize>C << 2;
  const rowBytes = <usize>FW * pixel;
  for (let r = 0; r < rows; r++) {
    for (let tw = 0; tw < tilesW; tw++) {
      const t = r * tilesW + tw;
      const origin = gyFrame + <usize>(4 * (th0 + r)) * rowBytes + <usize>(4 * tw) * pixel;
      for (let c = 0; c < C; c += 4) {
        let src = origin + (<usize>c << 2);
        // Rows: ROWS[i][k] = (h[i] Aᵀ)[k] for the 4 rows of the block.
        for (let i = 0; i < 4; i++) {
          apply_a(v128.load(src), v128.load(src + pixel), v128.load(src + 2 * pixel), v128.load(src + 3 * pixel),
            ROWS + (<usize>(i * 6) << 4), 16);
          src += rowBytes;
        }
        const at = dst + (<usize>(t * C + c) << 2);
        for (let k = 0; k < 6; k++) {
          const col = ROWS + (<usize>k << 4);
          apply_a(v128.load(col), v128.load(col, 96), v128.load(col, 192), v128.load(col, 288), at + <usize>k * xiStride,
            6 * xiStride);
        }
      }
    }
  }
}

/** Gᵀ applied to (p0 … p5): three taps at out + k·step. */
// @ts-ignore: decorator
@inline function apply_gt(p0: v128, p1: v128, p2: v128, p3: v128, p4: v128, p5: v128, out: usize, step: usize): void {
  const s12 = f32x4.add(p1, p2), d21 = f32x4.sub(p2, p1);
  const s34 = f32x4.add(p3, p4), d34 = f32x4.sub(p3, p4);
  const sixth = f32x4.splat(<f32>(1.0 / 6.0));
  v128.store(out, f32x4.add(f32x4.sub(f32x4.mul(p0, f32x4.splat(0.25)), f32x4.mul(s12, sixth)),
    f32x4.mul(s34, f32x4.splat(<f32>(1.0 / 24.0)))));
  v128.store(out + step, f32x4.add(f32x4.mul(d21, sixth), f32x4.mul(d34, f32x4.splat(<f32>(1.0 / 12.0)))));
  v128.store(out + 2 * step, f32x4.add(f32x4.mul(f32x4.sub(s34, s12), sixth), p5));
}

/**
 * F(3×3, 4×4) weight gradients: dW[co, ci] (3×3 at J + (co·C_in + ci)·9 floats) = Gᵀ P[co, ci] G,
 * four input channels per f32x4 (P rows cinPadded floats apart, ξ blocks coutPadded·cinPadded
 * apart). Overwrites, or adds.
 */
export function weight_output_4x4(
  P: usize, Cout: i32, Cin: i32, coutPadded: i32, cinPadded: i32, J: usize, add: bool,
): void {
  const s = <usize>(coutPadded * cinPadded) << 2;
  for (let co = 0; co < Cout; co++) {
    for (let ci = 0; ci < Cin; ci += 4) {
      const p = P + (<usize>(co * cinPadded + ci) << 2);
      // Rows: OUT_ROWS[k′][c] = (P[k′] G)[c] for c < 3.
      for (let k = 0; k < 6; k++) {
        const row = p + <usize>(6 * k) * s;
        apply_gt(v128.load(row), v128.load(row + s), v128.load(row + 2 * s), v128.load(row + 3 * s),
          v128.load(row + 4 * s), v128.load(row + 5 * s), OUT_ROWS + (<usize>(k * 3) << 4), 16);
      }
      // Columns: OUT[kh][kw] = (Gᵀ OUT_ROWS)[kh][kw].
      for (let c = 0; c < 3; c++) {
        const col = OUT_ROWS + (<usize>c << 4);
        apply_gt(v128.load(col), v128.load(col, 48), v128.load(col, 96), v128.load(col, 144), v128.load(col, 192),
          v128.load(col, 240), OUT + (<usize>c << 4), 48);
      }
      const lanes = min(4, Cin - ci);
      const out = J + (<usize>((co * Cin + ci) * 9) << 2);
      for (let l = 0; l < lanes; l++) {
        for (let tap = 0; tap < 9; tap++) {
          // OUT[kh][kw] at (kh·3 + kw)·16 bytes, lane l.
          const v = load<f32>(OUT + (<usize>tap << 4) + (<usize>l << 2));
          const at = out + (<usize>(l * 9 + tap) << 2);
          store<f32>(at, add ? load<f32>(at) + v : v);
        }
      }
    }
  }
}

/**
 * Moves this file's scratch buffers by `delta` bytes: a worker of the threads build calls it
 * once, so that its kernels use a copy of the static scratch of their own.
 */
export function relocate_winograd43_scratch(delta: usize): void {
  PRODUCTS += delta;
  ROWS += delta;
  OUT_ROWS += delta;
  OUT += delta;
}
