// Winograd F(4, 5) for 1-d convolutions (audio and sequence layers), strided or not, in all
// three passes. Each block of 4 outputs comes from 8 inputs through 8 products per channel
// pair instead of 20; the matrices are those of the interpolation points 0, ±1, ±2, ±½, ∞
// (derived with sympy; the same Bᵀ as F(6, 3)'s):
//
//   Bᵀ = [1 0 −21/4 0 21/4 0 −1 0; 0 1 1 −17/4 −17/4 1 1 0; 0 −1 1 17/4 −17/4 −1 1 0;
//         0 ½ ¼ −5/2 −5/4 2 1 0; 0 −½ ¼ 5/2 −5/4 −2 1 0; 0 2 4 −5/2 −5 ½ 1 0;
//         0 −2 4 5/2 −5 −½ 1 0; 0 −1 0 21/4 0 −21/4 0 1]
//   G  = [1 0 0 0 0; −2/9 ×(1 1 1 1 1); −2/9 ×(1 −1 1 −1 1); (1/90 1/45 2/45 4/45 8/45);
//         (1/90 −1/45 2/45 −4/45 8/45); (32/45 16/45 8/45 4/45 2/45);
//         (32/45 −16/45 8/45 −4/45 2/45); (0 0 0 0 1)]
//   Aᵀ = [1 1 1 1 1 1 1 0; 0 1 −1 2 −2 ½ −½ 0; 0 1 1 4 4 ¼ ¼ 0; 0 1 −1 8 −8 ⅛ −⅛ 1]
//
// Any kernel becomes 5-tap stride-1 problems by splitting its taps (the polyphase form of
// conv_phases.ts, carried into the channels): with stride s, tap k = s·(5g + j) + φ reads
// x[s·(o + 5g + j) + φ − p], so row (c, φ, g) of a frame holding x[c][s·q + φ + 5sg − p] at q
// makes the layer y[co][o] = Σ_(c,φ,g) Σ_j W'[co][(c,φ,g)][j] frame[(c,φ,g)][o + j], with
// W'[…][j] = W[co][c][s(5g + j) + φ] (0 past the kernel). Its input gradient is the same kind
// of problem from the rows (co, g) of gy shifted by 4 + 5g, with the weights flipped, whose
// outputs are the rows (c, φ) of gx at positions s·q + φ − p; its weight gradient
// dW' = Gᵀ [Σ_tiles (A h) ⊙ (Bᵀ d)] (winograd_weight.ts's identity in 1-d). Audio1d's 16→32,
// k = 9, stride 2 layer: 32 frame rows, 2.25x fewer multiply-adds than direct.
//
// Forward and input gradient: tiles run four per f32x4 lane group (frames split into four
// phases by q mod 4, as winograd43.ts's columns) and eight per block (the 4×8 register tile:
// 4 output rows × 8 tiles). Weight gradients: channel-last frames, four rows per f32x4, so the
// transformed blocks come out as the register tile's operands, summed over tiles (as
// winograd_weight.ts). Rounding: Bᵀ scales by up to 21/4 and Aᵀ by 8; the tests bound the
// error by the tile's inputs (docs/kernels.md).
import { ceil_div, floor_div, geom_at } from "./geometry";
import { store_transposed, sum_f32, tile_4x8 } from "./simd";
import { buffers_for, round_up, xi_stride } from "./winograd";
import { fill_frame_channels_last } from "./winograd_weight";

/** conv_strategy's number for this path (all three passes). */
export const PATH_WINOGRAD_1D: i32 = 7;

const XI: i32 = 8;
const TAPS: i32 = 5;
const MR: i32 = 4;
const NR: i32 = 8;
/** The 8 products of one block (ξ × MR × NR floats). */
let PRODUCTS: usize = memory.data(XI * MR * NR << 2, 64);
/** The output transform's 4 × 4 results, then transposed (OUT_ODD: the odd phase's, stride 2). */
let OUT: usize = memory.data(4 * 16, 64);
let OUT_ODD: usize = memory.data(4 * 16, 64);
/** One row of taps of G·w' (float64 work of transform_weights). */
let TAP_ROW: usize = memory.data(TAPS << 3, 16);

// The layer (1-d: length L → oL, kernel k, stride s, padding p), set by split().
let stride: i32 = 0;
let kernel: i32 = 0;
let pad: i32 = 0;
/** Groups of 5 taps per phase: ⌈⌈k/s⌉/5⌉. */
let chunks: i32 = 0;
// The stride-1 problem of one pass (C' frame rows → M' output rows of OL), set by lay_out.
let tiles: i32 = 0;
let phaseW: i32 = 0;
let weightFloats: i32 = 0;
let frameFloats: i32 = 0;
let blockFloats: i32 = 0;

/** Whether the geometry is 1-d (length in the last dim), one group, no dilation; sets the split. */
function split(geom: usize): bool {
  if (geom_at(geom, 0) != 1) return false;
  for (let i = 3; i <= 10; i++) if (i != 5 && i != 8 && geom_at(geom, i) != 1) return false;
  if (geom_at(geom, 12) != 1 || geom_at(geom, 13) != 1 || geom_at(geom, 15) != 0 || geom_at(geom, 16) != 0) return false;
  for (let i = 18; i <= 20; i++) if (geom_at(geom, i) != 1) return false;
  kernel = geom_at(geom, 11);
  stride = geom_at(geom, 14);
  pad = geom_at(geom, 17);
  chunks = ((kernel + stride - 1) / stride + TAPS - 1) / TAPS;
  // 2·s·chunks products an output and channel pair against k direct: take it from 2x fewer.
  return kernel >= 4 * stride * chunks;
}

/** Output positions (q) of the input-gradient problem: those of phase 0. */
function gx_positions(L: i32): i32 {
  return (L - 1 + pad) / stride + 1;
}

function lay_out(C: i32, M: i32, OL: i32): void {
  tiles = round_up((OL + 3) / 4, NR);
  phaseW = tiles + 1; // a group of tiles t … t + 3 reads phase indices t … t + 4
  weightFloats = XI * round_up(M, MR) * C;
  frameFloats = C * 4 * phaseW;
  blockFloats = XI * xi_stride(C * NR);
}

/**
 * Whether a pass runs as 1-d F(4, 5) (0 forward, 1 input gradient, 2 weight gradients): a 1-d
 * layer whose kernel splits into 5-tap groups with at most half the direct products, at least
 * 8 frame rows and 8 output rows (fewer make the transforms cost more than they save), at
 * least 8 outputs, and buffers that fit.
 */
export function winograd1d_fits(geom: usize, pass: i32): bool {
  if (!split(geom)) return false;
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2), L = geom_at(geom, 5), oL = geom_at(geom, 8);
  if (oL < 8) return false;
  if (pass == 2) return Cin * stride * chunks >= 8 && Cout >= 8 && weight_buffers(geom, 0) != 0;
  if (pass == 0) {
    if (Cin * stride * chunks < 8 || Cout < 8) return false;
    lay_out(Cin * stride * chunks, Cout, oL);
  } else {
    if (Cout * chunks < 8 || Cin * stride < 8) return false;
    lay_out(Cout * chunks, Cin * stride, gx_positions(L));
  }
  return pass_buffers(geom, 0) != 0;
}

/** Where the laid-out forward or input-gradient pass keeps its buffers (winograd.ts's buffers_for). */
function pass_buffers(geom: usize, work: usize): usize {
  return buffers_for(geom, work, <i64>weightFloats + <i64>frameFloats + <i64>blockFloats);
}

/** y (N, C_out, oL) = conv(x, W) + b, for a geometry winograd1d_fits(geom, 0) accepts. */
export function winograd1d_forward(geom: usize, N: i32, x: usize, W: usize, b: usize, y: usize, work: usize): void {
  split(geom);
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2), L = geom_at(geom, 5), oL = geom_at(geom, 8);
  const C = Cin * stride * chunks;
  lay_out(C, Cout, oL);
  const U = pass_buffers(geom, work);
  transform_weights(W, Cout, Cin, false, U);
  const frame = U + (<usize>weightFloats << 2);
  for (let n = 0; n < N; n++) {
    const xn = x + (<usize>(n * Cin * L) << 2);
    for (let c = 0; c < Cin; c++) {
      for (let phi = 0; phi < stride; phi++) {
        for (let g = 0; g < chunks; g++) {
          const row = (c * stride + phi) * chunks + g;
          fill_row(xn + (<usize>(c * L) << 2), L, stride, phi + TAPS * stride * g - pad, frame + (<usize>(row * 4 * phaseW) << 2));
        }
      }
    }
    run(C, Cout, U, frame, oL, b, y + (<usize>(n * Cout * oL) << 2), 1, 0, oL);
  }
}

/** gx (R, C_in, L) from gy (R, C_out, oL), for a geometry winograd1d_fits(geom, 1) accepts. */
export function winograd1d_backward_input(geom: usize, R: i32, gy: usize, W: usize, gx: usize, work: usize): void {
  split(geom);
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2), L = geom_at(geom, 5), oL = geom_at(geom, 8);
  const C = Cout * chunks, M = Cin * stride, OL = gx_positions(L);
  lay_out(C, M, OL);
  const U = pass_buffers(geom, work);
  transform_weights(W, Cout, Cin, true, U);
  const frame = U + (<usize>weightFloats << 2);
  for (let r = 0; r < R; r++) {
    const gyr = gy + (<usize>(r * Cout * oL) << 2);
    for (let co = 0; co < Cout; co++) {
      for (let g = 0; g < chunks; g++) {
        fill_row(gyr + (<usize>(co * oL) << 2), oL, 1, -(TAPS - 1) - TAPS * g, frame + (<usize>((co * chunks + g) * 4 * phaseW) << 2));
      }
    }
    // Output row (c, φ) holds gx[c] at positions s·q + φ − p: the rows of one c, L apart.
    run(C, M, U, frame, OL, 0, gx + (<usize>(r * Cin * L) << 2), stride, -pad, L);
  }
}

/**
 * U (ξ, block of MR output rows, frame row, MR lanes; rows past M zero) = G w', in float64.
 * Forward: output row co, frame row (c, φ, g), w'[j] = W[co][c][s(5g + j) + φ]; transposed
 * (input gradient): output row (c, φ), frame row (co, g), w'[j] = W[co][c][s(5g + 4 − j) + φ].
 */
function transform_weights(W: usize, Cout: i32, Cin: i32, transposed: bool, dst: usize): void {
  const M = transposed ? Cin * stride : Cout;
  const C = transposed ? Cout * chunks : Cin * stride * chunks;
  const xiStride = <usize>(round_up(M, MR) * C) << 2;
  memory.fill(dst, 0, xiStride * XI);
  for (let m = 0; m < M; m++) {
    for (let row = 0; row < C; row++) {
      let co: i32, c: i32, phi: i32, g: i32;
      if (transposed) {
        co = row / chunks; g = row % chunks; c = m / stride; phi = m % stride;
      } else {
        co = m; c = row / (stride * chunks); phi = (row / chunks) % stride; g = row % chunks;
      }
      for (let j = 0; j < TAPS; j++) {
        const tap = stride * (TAPS * g + (transposed ? TAPS - 1 - j : j)) + phi;
        store<f64>(TAP_ROW + (<usize>j << 3), tap < kernel ? <f64>load<f32>(W + (<usize>((co * Cin + c) * kernel + tap) << 2)) : 0);
      }
      const at = dst + (<usize>((m / MR) * C * MR + row * MR + m % MR) << 2);
      for (let xi = 0; xi < XI; xi++) store<f32>(at + <usize>xi * xiStride, <f32>g_row(xi));
    }
  }
}

/** Row ξ of G applied to the taps in TAP_ROW. */
function g_row(xi: i32): f64 {
  const w0 = load<f64>(TAP_ROW), w1 = load<f64>(TAP_ROW, 8), w2 = load<f64>(TAP_ROW, 16);
  const w3 = load<f64>(TAP_ROW, 24), w4 = load<f64>(TAP_ROW, 32);
  switch (xi) {
    case 0: return w0;
    case 1: return -2.0 / 9.0 * (w0 + w1 + w2 + w3 + w4);
    case 2: return -2.0 / 9.0 * (w0 - w1 + w2 - w3 + w4);
    case 3: return (w0 + 2 * w1 + 4 * w2 + 8 * w3 + 16 * w4) / 90.0;
    case 4: return (w0 - 2 * w1 + 4 * w2 - 8 * w3 + 16 * w4) / 90.0;
    case 5: return (32 * w0 + 16 * w1 + 8 * w2 + 4 * w3 + 2 * w4) / 45.0;
    case 6: return (32 * w0 - 16 * w1 + 8 * w2 - 4 * w3 + 2 * w4) / 45.0;
  }
  return w4;
}

/**
 * One frame row (4 phases × phaseW: position q = 4u + ψ at ψ·phaseW + u) ← src[s·q + offset],
 * zero where that falls outside src's `length` floats. Strides 1 and 2 take four u of every
 * phase at a time from 16·s consecutive floats, split into phases by shuffles.
 */
function fill_row(src: usize, length: i32, s: i32, offset: i32, dst: usize): void {
  let u = 0;
  if (s <= 2) {
    u = min(phaseW, max(0, ceil_div(-offset, 4 * s)));
    fill_phases(src, length, s, offset, dst, 0, u);
    const phaseBytes = <usize>phaseW << 2;
    for (; u + 4 <= phaseW && 4 * s * u + offset + 16 * s <= length; u += 4) {
      const from = src + (<usize>(4 * s * u + offset) << 2);
      const to = dst + (<usize>u << 2);
      const w0 = v128.load(from), w1 = v128.load(from, 16), w2 = v128.load(from, 32), w3 = v128.load(from, 48);
      if (s == 1) {
        // w_i holds q = 4(u + i) … + 3: a 4×4 transpose gives phase ψ for u … u + 3.
        store_transposed(w0, w1, w2, w3, to, phaseBytes);
      } else {
        // Stride 2: q = 4(u + i) + ψ reads float 8i + 2ψ of the 32: lanes 0 and 2 of w_2i (ψ 0, 1)
        // and of w_2i+1 (ψ 2, 3).
        const w4 = v128.load(from, 64), w5 = v128.load(from, 80), w6 = v128.load(from, 96), w7 = v128.load(from, 112);
        const a = i32x4.shuffle(w0, w2, 0, 2, 4, 6), b = i32x4.shuffle(w4, w6, 0, 2, 4, 6);
        const c = i32x4.shuffle(w1, w3, 0, 2, 4, 6), d = i32x4.shuffle(w5, w7, 0, 2, 4, 6);
        v128.store(to, i32x4.shuffle(a, b, 0, 2, 4, 6));
        v128.store(to + phaseBytes, i32x4.shuffle(a, b, 1, 3, 5, 7));
        v128.store(to + 2 * phaseBytes, i32x4.shuffle(c, d, 0, 2, 4, 6));
        v128.store(to + 3 * phaseBytes, i32x4.shuffle(c, d, 1, 3, 5, 7));
      }
    }
  }
  fill_phases(src, length, s, offset, dst, u, phaseW);
}

/** fill_row's positions u in [from, to) of every phase, one at a time, checking each. */
function fill_phases(src: usize, length: i32, s: i32, offset: i32, dst: usize, from: i32, to: i32): void {
  for (let psi = 0; psi < 4; psi++) {
    const row = dst + (<usize>(psi * phaseW) << 2);
    for (let u = from; u < to; u++) {
      const at = 4 * s * u + s * psi + offset;
      store<f32>(row + (<usize>u << 2), at >= 0 && at < length ? load<f32>(src + (<usize>at << 2)) : 0);
    }
  }
}

/** Bᵀ applied to (d0 … d7), written to out + k·step for k = 0 … 7. */
// @ts-ignore: decorator
@inline function apply_bt(
  d0: v128, d1: v128, d2: v128, d3: v128, d4: v128, d5: v128, d6: v128, d7: v128, out: usize, step: usize,
): void {
  const k21 = f32x4.splat(5.25), k17 = f32x4.splat(4.25), quarter = f32x4.splat(0.25), half = f32x4.splat(0.5);
  const k125 = f32x4.splat(1.25), k25 = f32x4.splat(2.5), two = f32x4.splat(2), four = f32x4.splat(4), five = f32x4.splat(5);
  v128.store(out, f32x4.add(f32x4.sub(d0, d6), f32x4.mul(k21, f32x4.sub(d4, d2))));
  v128.store(out + 7 * step, f32x4.add(f32x4.sub(d7, d1), f32x4.mul(k21, f32x4.sub(d3, d5))));
  const a1 = f32x4.sub(f32x4.add(d2, d6), f32x4.mul(k17, d4));
  const b1 = f32x4.sub(f32x4.add(d1, d5), f32x4.mul(k17, d3));
  v128.store(out + step, f32x4.add(a1, b1));
  v128.store(out + 2 * step, f32x4.sub(a1, b1));
  const a3 = f32x4.sub(f32x4.add(d6, f32x4.mul(quarter, d2)), f32x4.mul(k125, d4));
  const b3 = f32x4.add(f32x4.sub(f32x4.mul(half, d1), f32x4.mul(k25, d3)), f32x4.mul(two, d5));
  v128.store(out + 3 * step, f32x4.add(a3, b3));
  v128.store(out + 4 * step, f32x4.sub(a3, b3));
  const a5 = f32x4.sub(f32x4.add(d6, f32x4.mul(four, d2)), f32x4.mul(five, d4));
  const b5 = f32x4.add(f32x4.sub(f32x4.mul(two, d1), f32x4.mul(k25, d3)), f32x4.mul(half, d5));
  v128.store(out + 5 * step, f32x4.add(a5, b5));
  v128.store(out + 6 * step, f32x4.sub(a5, b5));
}

/**
 * out[m][s·q + offset] (for 0 ≤ … < `length`; row m of M at out + m·length·4 when s = 1, else
 * the rows (c, φ) at out + c·length·4 + φ) = Σ_rows Σ_j U frame[row][q + j] (+ b[m]) for
 * q < OL: the stride-1 problem laid out by lay_out(C, M, OL), one block of 8 tiles at a time.
 */
function run(C: i32, M: i32, U: usize, frame: usize, OL: i32, b: usize, out: usize, s: i32, offset: i32, length: i32): void {
  // The transforms are functions of their own: inlined into this loop with the register tile,
  // JavaScriptCore (Bun) ran the pass 1.6x slower than V8.
  const V = frame + (<usize>frameFloats << 2);
  const uStride = <usize>(round_up(M, MR) * C) << 2;
  const vStride = <usize>xi_stride(C * NR) << 2;
  for (let t0 = 0; t0 < tiles; t0 += NR) {
    transform_block(C, frame, t0, V);
    for (let m0 = 0; m0 < M; m0 += MR) {
      const u = U + (<usize>(m0 * C) << 2);
      for (let xi = 0; xi < XI; xi++) {
        tile_4x8(C, u + <usize>xi * uStride, MR << 2, V + <usize>xi * vStride, NR << 2,
          PRODUCTS + (<usize>(xi * MR * NR) << 2), NR << 2, false);
      }
      output_block(M, m0, t0, OL, b, out, s, offset, length);
    }
  }
}

/** V (ξ, row, 8 tiles) = Bᵀ d for the tiles t0 … t0 + 7 of every frame row, four per f32x4. */
function transform_block(C: i32, frame: usize, t0: i32, V: usize): void {
  const vStride = <usize>xi_stride(C * NR) << 2;
  const rowBytes = <usize>(4 * phaseW) << 2;
  const phaseBytes = <usize>phaseW << 2;
  for (let group = 0; group < 2; group++) {
    let src = frame + (<usize>(t0 + 4 * group) << 2);
    let dst = V + (<usize>(4 * group) << 2);
    for (let row = 0; row < C; row++) {
      apply_bt(v128.load(src), v128.load(src + phaseBytes), v128.load(src + 2 * phaseBytes), v128.load(src + 3 * phaseBytes),
        v128.load(src, 4), v128.load(src + phaseBytes, 4), v128.load(src + 2 * phaseBytes, 4), v128.load(src + 3 * phaseBytes, 4),
        dst, vStride);
      src += rowBytes;
      dst += NR << 2;
    }
  }
}

/** Output rows m0 … m0 + 3 of the tiles t0 … t0 + 7 from PRODUCTS: Aᵀ, bias, then run's placement. */
function output_block(M: i32, m0: i32, t0: i32, OL: i32, b: usize, out: usize, s: i32, offset: i32, length: i32): void {
  const rows = min(MR, M - m0);
  if (s == 2) {
    // Rows m0 + r and m0 + r + 1 are the phases 0 and 1 of one channel (M is even, m0 a
    // multiple of 4): interleaved, their outputs are 32 consecutive positions of gx.
    const zero = f32x4.splat(0);
    for (let r = 0; r < rows; r += 2) {
      for (let group = 0; group < 2; group++) {
        const q0 = 4 * (t0 + 4 * group);
        if (q0 >= OL) break;
        output_group(PRODUCTS + (<usize>(r * NR + 4 * group) << 2), zero, OUT);
        output_group(PRODUCTS + (<usize>((r + 1) * NR + 4 * group) << 2), zero, OUT_ODD);
        store_interleaved(out + (<usize>(((m0 + r) >> 1) * length) << 2), 2 * q0 + offset, length);
      }
    }
    return;
  }
  for (let r = 0; r < rows; r++) {
    const m = m0 + r;
    const bias = f32x4.splat(b != 0 ? load<f32>(b + (<usize>m << 2)) : 0);
    for (let group = 0; group < 2; group++) {
      const q0 = 4 * (t0 + 4 * group);
      if (q0 >= OL) break;
      output_group(PRODUCTS + (<usize>(r * NR + 4 * group) << 2), bias, OUT);
      if (s == 1) store_contiguous(out + (<usize>(m * length) << 2), q0 + offset, length);
      else store_strided(out + (<usize>((m / s) * length) << 2), s, q0 * s + m % s + offset, length);
    }
  }
}

/** dst (16 outputs of 4 tiles, in order) = Aᵀ of the products at p (ξ blocks MR·NR floats apart) + bias. */
// @ts-ignore: decorator
@inline function output_group(p: usize, bias: v128, dst: usize): void {
  const step = <usize>(MR * NR) << 2;
  const m0 = v128.load(p), m1 = v128.load(p + step), m2 = v128.load(p + 2 * step), m3 = v128.load(p + 3 * step);
  const m4 = v128.load(p + 4 * step), m5 = v128.load(p + 5 * step), m6 = v128.load(p + 6 * step), m7 = v128.load(p + 7 * step);
  const s12 = f32x4.add(m1, m2), d12 = f32x4.sub(m1, m2);
  const s34 = f32x4.add(m3, m4), d34 = f32x4.sub(m3, m4);
  const s56 = f32x4.add(m5, m6), d56 = f32x4.sub(m5, m6);
  const y0 = f32x4.add(f32x4.add(f32x4.add(m0, s12), f32x4.add(s34, s56)), bias);
  const y1 = f32x4.add(f32x4.add(d12, f32x4.mul(f32x4.splat(2), d34)), f32x4.add(f32x4.mul(f32x4.splat(0.5), d56), bias));
  const y2 = f32x4.add(f32x4.add(s12, f32x4.mul(f32x4.splat(4), s34)), f32x4.add(f32x4.mul(f32x4.splat(0.25), s56), bias));
  const y3 = f32x4.add(f32x4.add(f32x4.add(d12, f32x4.mul(f32x4.splat(8), d34)), f32x4.mul(f32x4.splat(0.125), d56)),
    f32x4.add(m7, bias));
  // Lane u of y_i is output i of tile u: transpose to each tile's four outputs.
  store_transposed(y0, y1, y2, y3, dst, 16);
}

/** row[first … first + 15] ← OUT, only positions in [0, length). */
function store_contiguous(row: usize, first: i32, length: i32): void {
  if (first >= 0 && first + 16 <= length) {
    const at = row + (<usize>first << 2);
    v128.store(at, v128.load(OUT));
    v128.store(at, v128.load(OUT, 16), 16);
    v128.store(at, v128.load(OUT, 32), 32);
    v128.store(at, v128.load(OUT, 48), 48);
    return;
  }
  for (let i = 0; i < 16; i++) {
    const q = first + i;
    if (q >= 0 && q < length) store<f32>(row + (<usize>q << 2), load<f32>(OUT + (<usize>i << 2)));
  }
}

/** row[first + 2i] ← OUT[i], row[first + 2i + 1] ← OUT_ODD[i] for i < 16, only positions in [0, length). */
function store_interleaved(row: usize, first: i32, length: i32): void {
  if (first >= 0 && first + 32 <= length) {
    const at = row + (<usize>first << 2);
    for (let k = 0; k < 64; k += 16) {
      const even = v128.load(OUT + <usize>k), odd = v128.load(OUT_ODD + <usize>k);
      v128.store(at + (<usize>k << 1), i32x4.shuffle(even, odd, 0, 4, 1, 5));
      v128.store(at + (<usize>k << 1), i32x4.shuffle(even, odd, 2, 6, 3, 7), 16);
    }
    return;
  }
  for (let i = 0; i < 16; i++) {
    const q = first + 2 * i;
    if (q >= 0 && q < length) store<f32>(row + (<usize>q << 2), load<f32>(OUT + (<usize>i << 2)));
    if (q + 1 >= 0 && q + 1 < length) store<f32>(row + (<usize>(q + 1) << 2), load<f32>(OUT_ODD + (<usize>i << 2)));
  }
}

/** row[first + i·s] ← OUT[i] for i < 16, only positions in [0, length). */
function store_strided(row: usize, s: i32, first: i32, length: i32): void {
  if (first >= 0 && first + 15 * s < length) {
    let to = row + (<usize>first << 2);
    const step = <usize>s << 2;
    for (let i = 0; i < 16; i++) {
      store<f32>(to, load<f32>(OUT + (<usize>i << 2)));
      to += step;
    }
    return;
  }
  let q = first;
  for (let i = 0; i < 16; i++) {
    if (q >= 0 && q < length) store<f32>(row + (<usize>q << 2), load<f32>(OUT + (<usize>i << 2)));
    q += s;
  }
}

// ---------------------------------------------------------------------------------------
// Weight gradients: dW'[co][row] (5 taps) = Gᵀ [Σ_t (A h_t) ⊙ (Bᵀ d_t)], h_t gy[co][4t … 4t + 3]
// and d_t frame[row][4t … 4t + 7]; per ξ, P_ξ (C_out' × C') = Σ_t H_ξ[t] ⊗ V_ξ[t].

// The layout of the weight pass, set by weight_buffers.
let wTiles: i32 = 0;
let rowsPadded: i32 = 0;
let coutPadded: i32 = 0;
let productFloats: i32 = 0;
let xFrameFloats: i32 = 0;
let gyFrameFloats: i32 = 0;
let tapFloats: i32 = 0;
/** Frame rows and kernel taps the weight pass's static tables hold. */
const ROW_CAP: i32 = 4096;
const TAP_CAP: i32 = 1024;
/** Per frame row (c, φ, g): where its position 0 reads in channel c (φ + 5sg − p, in floats). */
let ROW_START: usize = memory.data(ROW_CAP << 2, 16);
/** Per tap s(5g + j) + φ: where weight_output left it in a channel's taps (j·rowsPadded + φ·chunks + g). */
let TAP_SOURCE: usize = memory.data(TAP_CAP << 2, 16);

/** Lays out the weight pass (split() done) and places it: its buffers' address, or 0: no room. */
function weight_buffers(geom: usize, work: usize): usize {
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2), oL = geom_at(geom, 8);
  if (Cin * stride * chunks > ROW_CAP || kernel > TAP_CAP) return 0;
  wTiles = (oL + 3) / 4;
  rowsPadded = round_up(Cin * stride * chunks, NR);
  coutPadded = round_up(Cout, MR);
  productFloats = XI * coutPadded * rowsPadded;
  xFrameFloats = (4 * wTiles + 4) * rowsPadded;
  gyFrameFloats = 4 * wTiles * coutPadded;
  tapFloats = Cout * TAPS * rowsPadded;
  const floats = <i64>productFloats + xFrameFloats + gyFrameFloats + tapFloats +
    <i64>XI * (xi_stride(wTiles * rowsPadded) + xi_stride(wTiles * coutPadded));
  return buffers_for(geom, work, floats);
}

/**
 * Weight (and bias) gradients of backward rows r < R, row r reading sample r / K: to jw +
 * r·ldJ·4 (and jb + r·ldJ·4; jb = 0: no bias), overwriting, or adding from row `addFrom` on,
 * for a geometry winograd1d_fits(geom, 2) accepts (conv.ts's contract of winograd_weight).
 */
export function winograd1d_weight(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, jw: usize, jb: usize, ldJ: i32, work: usize, addFrom: i32,
): void {
  split(geom);
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2), L = geom_at(geom, 5), oL = geom_at(geom, 8);
  const P = weight_buffers(geom, work);
  const xFrame = P + (<usize>productFloats << 2);
  const gyFrame = xFrame + (<usize>xFrameFloats << 2);
  const taps = gyFrame + (<usize>gyFrameFloats << 2);
  const V = taps + (<usize>tapFloats << 2);
  const vXi = <usize>xi_stride(wTiles * rowsPadded) << 2;
  const hXi = <usize>xi_stride(wTiles * coutPadded) << 2;
  const H = V + <usize>XI * vXi;
  const rows = Cin * stride * chunks;
  for (let row = 0; row < rows; row++) {
    const phi = (row / chunks) % stride, g = row % chunks;
    store<i32>(ROW_START + (<usize>row << 2), phi + TAPS * stride * g - pad);
  }
  for (let tap = 0; tap < kernel; tap++) {
    const phi = tap % stride, j = (tap / stride) % TAPS, g = tap / (stride * TAPS);
    store<i32>(TAP_SOURCE + (<usize>tap << 2), j * rowsPadded + phi * chunks + g);
  }
  memory.fill(xFrame, 0, <usize>xFrameFloats << 2);
  let sample = -1;
  for (let r = 0; r < R; r++) {
    const n = r / K;
    if (n != sample) {
      sample = n;
      fill_x_frame(x + (<usize>(n * Cin * L) << 2), Cin, L, xFrame);
      input_tiles(xFrame, V, vXi);
    }
    const gyr = gy + (<usize>(r * Cout * oL) << 2);
    fill_frame_channels_last(gyr, Cout, 1, oL, gyFrame, 1, 4 * wTiles, coutPadded, 0, 0);
    gy_tiles(gyFrame, H, hXi);
    for (let xi = 0; xi < XI; xi++) {
      const p = P + (<usize>(xi * coutPadded * rowsPadded) << 2);
      for (let co = 0; co < coutPadded; co += MR) {
        for (let row = 0; row < rowsPadded; row += NR) {
          tile_4x8(wTiles, H + <usize>xi * hXi + (<usize>co << 2), <usize>coutPadded << 2,
            V + <usize>xi * vXi + (<usize>row << 2), <usize>rowsPadded << 2,
            p + (<usize>(co * rowsPadded + row) << 2), <usize>rowsPadded << 2, false);
        }
      }
    }
    weight_output(P, Cout, rows, taps);
    const add = r >= addFrom;
    scatter_taps(taps, Cout, Cin, jw + (<usize>(r * ldJ) << 2), add);
    if (jb != 0) {
      const Jb = jb + (<usize>(r * ldJ) << 2);
      for (let co = 0; co < Cout; co++) {
        const sum = sum_f32(gyr + (<usize>(co * oL) << 2), oL);
        const at = Jb + (<usize>co << 2);
        store<f32>(at, add ? load<f32>(at) + sum : sum);
      }
    }
  }
}

/**
 * The channel-last frame (4·wTiles + 4 positions × rowsPadded) of one sample: position q of
 * row (c, φ, g) ← x[c][s·q + φ + 5sg − p] where that is inside the channel. The positions
 * outside are the same for every sample and stay zero from the pass's start. Stride 1 is a
 * shifted transpose (winograd_weight.ts's); stride 2 takes two positions of four channels'
 * both phases (16 floats) from four loads.
 */
function fill_x_frame(xn: usize, Cin: i32, L: i32, frame: usize): void {
  const positions = 4 * wTiles + 4;
  if (chunks == 1 && stride == 1) {
    fill_frame_channels_last(xn, Cin, 1, L, frame, 1, positions, rowsPadded, 0, pad);
    return;
  }
  if (chunks > 1 || stride != 2) {
    fill_rows(xn, L, frame, 0, Cin * stride * chunks, 0, positions);
    return;
  }
  // Stride 2: frame[q][2c + φ] = x[c][2q + φ − p]; x[c][2q − p … 2q − p + 3] holds rows (c, 0),
  // (c, 1) of positions q and q + 1.
  const qFirst = min(positions, (pad + 1) >> 1);
  let q = qFirst;
  const groups = Cin & ~3;
  const pitch = <usize>rowsPadded << 2;
  const plane = <usize>L << 2;
  for (; q + 2 <= positions && 2 * q - pad + 4 <= L; q += 2) {
    const to = frame + <usize>q * pitch;
    let from = xn + (<usize>(2 * q - pad) << 2);
    for (let c = 0; c < groups; c += 4) {
      const v0 = v128.load(from), v1 = v128.load(from + plane), v2 = v128.load(from + 2 * plane), v3 = v128.load(from + 3 * plane);
      const at = to + (<usize>(2 * c) << 2);
      v128.store(at, i32x4.shuffle(v0, v1, 0, 1, 4, 5));
      v128.store(at, i32x4.shuffle(v2, v3, 0, 1, 4, 5), 16);
      v128.store(at + pitch, i32x4.shuffle(v0, v1, 2, 3, 6, 7));
      v128.store(at + pitch, i32x4.shuffle(v2, v3, 2, 3, 6, 7), 16);
      from += 4 * plane;
    }
  }
  fill_rows(xn, L, frame, 0, 2 * Cin, 0, qFirst);
  fill_rows(xn, L, frame, 0, 2 * Cin, q, positions);
  fill_rows(xn, L, frame, 2 * groups, 2 * Cin, qFirst, q);
}

/** fill_x_frame's rows [rowFrom, rowTo) at positions [qFrom, qTo), one float at a time. */
function fill_rows(xn: usize, L: i32, frame: usize, rowFrom: i32, rowTo: i32, qFrom: i32, qTo: i32): void {
  const pitch = <usize>rowsPadded << 2;
  for (let row = rowFrom; row < rowTo; row++) {
    const offset = load<i32>(ROW_START + (<usize>row << 2));
    const first = min(qTo, max(qFrom, ceil_div(-offset, stride)));
    const end = min(qTo, max(first, floor_div(L - 1 - offset, stride) + 1));
    const src = xn + (<usize>(row / (stride * chunks) * L) << 2);
    let at = offset + first * stride;
    let to = frame + <usize>first * pitch + (<usize>row << 2);
    for (let q = first; q < end; q++) {
      store<f32>(to, load<f32>(src + (<usize>at << 2)));
      at += stride;
      to += pitch;
    }
  }
}

/** V (ξ blocks vXi bytes apart; tile t, row c at t·rowsPadded + c) = Bᵀ d, four rows per f32x4. */
function input_tiles(frame: usize, V: usize, vXi: usize): void {
  const pixel = <usize>rowsPadded << 2;
  for (let t = 0; t < wTiles; t++) {
    for (let c = 0; c < rowsPadded; c += 4) {
      const src = frame + <usize>(4 * t) * pixel + (<usize>c << 2);
      apply_bt(v128.load(src), v128.load(src + pixel), v128.load(src + 2 * pixel), v128.load(src + 3 * pixel),
        v128.load(src + 4 * pixel), v128.load(src + 5 * pixel), v128.load(src + 6 * pixel), v128.load(src + 7 * pixel),
        V + (<usize>(t * rowsPadded + c) << 2), vXi);
    }
  }
}

/** H (as V, rows C_out') = A h: (h0, Σh, h0−h1+h2−h3, h0+2h1+4h2+8h3, h0−2h1+4h2−8h3, h0+h1/2+h2/4+h3/8, h0−h1/2+h2/4−h3/8, h3). */
function gy_tiles(frame: usize, H: usize, hXi: usize): void {
  const pixel = <usize>coutPadded << 2;
  for (let t = 0; t < wTiles; t++) {
    for (let c = 0; c < coutPadded; c += 4) {
      const src = frame + <usize>(4 * t) * pixel + (<usize>c << 2);
      const h0 = v128.load(src), h1 = v128.load(src + pixel), h2 = v128.load(src + 2 * pixel), h3 = v128.load(src + 3 * pixel);
      const out = H + (<usize>(t * coutPadded + c) << 2);
      const even = f32x4.add(h0, h2), odd = f32x4.add(h1, h3);
      const even4 = f32x4.add(h0, f32x4.mul(f32x4.splat(4), h2));
      const odd8 = f32x4.add(f32x4.mul(f32x4.splat(2), h1), f32x4.mul(f32x4.splat(8), h3));
      const evenQ = f32x4.add(h0, f32x4.mul(f32x4.splat(0.25), h2));
      const oddQ = f32x4.add(f32x4.mul(f32x4.splat(0.5), h1), f32x4.mul(f32x4.splat(0.125), h3));
      v128.store(out, h0);
      v128.store(out + hXi, f32x4.add(even, odd));
      v128.store(out + 2 * hXi, f32x4.sub(even, odd));
      v128.store(out + 3 * hXi, f32x4.add(even4, odd8));
      v128.store(out + 4 * hXi, f32x4.sub(even4, odd8));
      v128.store(out + 5 * hXi, f32x4.add(evenQ, oddQ));
      v128.store(out + 6 * hXi, f32x4.sub(evenQ, oddQ));
      v128.store(out + 7 * hXi, h3);
    }
  }
}

/**
 * dW'[co][j][row] (taps: C_out × 5 × rowsPadded floats) = (Gᵀ P[co][row])[j], four frame rows
 * per f32x4.
 */
function weight_output(P: usize, Cout: i32, rows: i32, taps: usize): void {
  const s = <usize>(coutPadded * rowsPadded) << 2;
  const tapBytes = <usize>rowsPadded << 2;
  const k90 = f32x4.splat(<f32>(1.0 / 90.0)), k45 = f32x4.splat(<f32>(1.0 / 45.0)), k29 = f32x4.splat(<f32>(-2.0 / 9.0));
  for (let co = 0; co < Cout; co++) {
    for (let row0 = 0; row0 < rows; row0 += 4) {
      const p = P + (<usize>(co * rowsPadded + row0) << 2);
      const p0 = v128.load(p), p1 = v128.load(p + s), p2 = v128.load(p + 2 * s), p3 = v128.load(p + 3 * s);
      const p4 = v128.load(p + 4 * s), p5 = v128.load(p + 5 * s), p6 = v128.load(p + 6 * s), p7 = v128.load(p + 7 * s);
      // Tap j = Σ_ξ G[ξ][j] P_ξ: ξ 1, 2 weigh −2/9, ξ 3, 4 weigh 2^j/90, ξ 5, 6 weigh 2^(5−j)/45;
      // sums of each pair for the even taps, differences for the odd.
      const s12 = f32x4.mul(k29, f32x4.add(p1, p2)), d12 = f32x4.mul(k29, f32x4.sub(p1, p2));
      const s34 = f32x4.mul(k90, f32x4.add(p3, p4)), d34 = f32x4.mul(k45, f32x4.sub(p3, p4));
      const s56 = f32x4.mul(k45, f32x4.add(p5, p6)), d56 = f32x4.mul(k45, f32x4.sub(p5, p6));
      const to = taps + (<usize>(co * TAPS * rowsPadded + row0) << 2);
      v128.store(to, f32x4.add(f32x4.add(p0, s12), f32x4.add(s34, f32x4.mul(f32x4.splat(32), s56))));
      v128.store(to + tapBytes, f32x4.add(d12, f32x4.add(d34, f32x4.mul(f32x4.splat(16), d56))));
      v128.store(to + 2 * tapBytes, f32x4.add(s12, f32x4.add(f32x4.mul(f32x4.splat(4), s34), f32x4.mul(f32x4.splat(8), s56))));
      v128.store(to + 3 * tapBytes, f32x4.add(d12, f32x4.add(f32x4.mul(f32x4.splat(4), d34), f32x4.mul(f32x4.splat(4), d56))));
      v128.store(to + 4 * tapBytes, f32x4.add(f32x4.add(s12, f32x4.mul(f32x4.splat(16), s34)), f32x4.add(f32x4.mul(f32x4.splat(2), s56), p7)));
    }
  }
}

/** J (C_out × C_in × k at J, overwriting or adding) ← the taps weight_output left, through TAP_SOURCE. */
function scatter_taps(taps: usize, Cout: i32, Cin: i32, J: usize, add: bool): void {
  const group = stride * chunks;
  for (let co = 0; co < Cout; co++) {
    for (let c = 0; c < Cin; c++) {
      const src = taps + (<usize>(co * TAPS * rowsPadded + c * group) << 2);
      const dst = J + (<usize>((co * Cin + c) * kernel) << 2);
      for (let tap = 0; tap < kernel; tap++) {
        const v = load<f32>(src + (<usize>load<i32>(TAP_SOURCE + (<usize>tap << 2)) << 2));
        const at = dst + (<usize>tap << 2);
        store<f32>(at, add ? load<f32>(at) + v : v);
      }
    }
  }
}

/**
 * Moves this file's scratch buffers by `delta` bytes: a worker of the threads build calls it
 * once, so that its kernels use a copy of the static scratch of their own.
 */
export function relocate_winograd1d_scratch(delta: usize): void {
  PRODUCTS += delta;
  OUT += delta;
  OUT_ODD += delta;
  TAP_ROW += delta;
  ROW_START += delta;
  TAP_SOURCE += delta;
}
