// Per-sample weight gradients of a convolution straight from the gradient of the max pooling
// after it. Max pooling passes each window's gradient to one position (its argmax), so the
// convolution's output gradient is sparse: one nonzero per window at most (none where a
// fused ReLU clipped the window). Instead of scattering it into a dense gy (the pooling's
// backward pass) and contracting the whole of it, the weight gradient sums over the windows:
//   ∂W[co, ci, tap] = Σ_q gp[co, q] · x[ci, origin(argmax[co, q]) + tap],  ∂b[co] = Σ_q gp[co, q]
// For 2×2 pooling that is 4x fewer multiply-adds, and neither pass writes or reads the dense
// gradient. The plan uses it for a convolution that is the network's first step with
// parameters (whose own input gradient is never needed) directly followed by max pooling.
//
// Layout of the work: per row and output channel, a list of (frame offset, gradient) pairs
// of the windows that pass a gradient; then eight f32x4 of kernel rows (four taps along kW
// each) at a time, each list entry one splat and eight loads from the zero-padded frame of x,
// and the rows left over one at a time.
import { geom_at } from "./geometry";
import { madd } from "./simd";

// @ts-ignore: decorator
@inline function round_up(v: i32, to: i32): i32 {
  return (v + to - 1) / to * to;
}

/** Frame extent along one dim: the last window's origin plus the kernel (no dilation). */
// @ts-ignore: decorator
@inline function reach(out: i32, stride: i32, kernel: i32): i32 {
  return (out - 1) * stride + kernel;
}

/**
 * Floats of the zero-padded frame of one sample (rows padded to whole f32x4 plus one): what
 * the caller provides as `frame` (the TypeScript side asks before the geometry is in memory).
 */
export function conv_pooled_frame_floats(
  Cin: i32, oD: i32, oH: i32, oW: i32, sD: i32, sH: i32, sW: i32, kD: i32, kH: i32, kW: i32,
): i32 {
  return Cin * reach(oD, sD, kD) * reach(oH, sH, kH) * (round_up(reach(oW, sW, kW), 4) + 4);
}

/**
 * J rows r < R: ∂W (C_out·(C_in/G)·kvol floats at jw + r·ldJ·4) and ∂b (C_out at jb + r·ldJ·4;
 * jb = 0: none) of a convolution (geom, no dilation) whose output feeds the max pooling
 * poolGeom; gp (R, C_out, pooled volume) is the pooling's output gradient, argmax (N, C_out,
 * pooled volume) its forward indices (−1: no gradient), x (N, C_in, D, H, W) the convolution's
 * input; row r reads sample r / K. `frame` holds conv_pooled_frame_floats(…) floats, `list`
 * 2 words per pooled position and then 1 per convolution output position.
 */
export function conv_weight_per_sample_pooled(
  geom: usize, poolGeom: usize, R: i32, K: i32, x: usize, gp: usize, argmax: usize,
  jw: usize, jb: usize, ldJ: i32, frame: usize, list: usize,
): void {
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const D = geom_at(geom, 3), H = geom_at(geom, 4), W = geom_at(geom, 5);
  const oH = geom_at(geom, 7), oW = geom_at(geom, 8);
  const kD = geom_at(geom, 9), kH = geom_at(geom, 10), kW = geom_at(geom, 11);
  const sD = geom_at(geom, 12), sH = geom_at(geom, 13), sW = geom_at(geom, 14);
  const pD = geom_at(geom, 15), pH = geom_at(geom, 16), pW = geom_at(geom, 17);
  const FD = reach(geom_at(geom, 6), sD, kD), FH = reach(oH, sH, kH);
  const FW = round_up(reach(oW, sW, kW), 4) + 4;
  const Cig = Cin / G, Cog = Cout / G;
  const kvol = kD * kH * kW;
  const poolVol = geom_at(poolGeom, 4) * geom_at(poolGeom, 5) * geom_at(poolGeom, 6);
  const vectors = (kW + 3) / 4; // f32x4 per kernel row
  const rowsPerChannel = kD * kH * vectors;
  const xSample = <usize>(Cin * D * H * W) << 2;
  const ldJBytes = <usize>ldJ << 2;
  // Frame byte offset of the window origin of every convolution output position (what an
  // argmax names), so the lists below take no divisions.
  const origins = list + (<usize>poolVol << 3);
  let at = origins;
  for (let od = 0; od < geom_at(geom, 6); od++) {
    for (let oh = 0; oh < oH; oh++) {
      for (let ow = 0; ow < oW; ow++) {
        store<i32>(at, ((od * sD * FH + oh * sH) * FW + ow * sW) << 2);
        at += 4;
      }
    }
  }
  let sample = -1;
  for (let r = 0; r < R; r++) {
    const n = r / K;
    if (n != sample) {
      sample = n;
      fill_frame(x + <usize>n * xSample, Cin, D, H, W, frame, FD, FH, FW, pD, pH, pW);
    }
    const Jw = jw + <usize>r * ldJBytes;
    for (let co = 0; co < Cout; co++) {
      // The windows of this channel that pass a gradient: (frame offset of their origin, gradient).
      const gRow = gp + (<usize>((r * Cout + co) * poolVol) << 2);
      const aRow = argmax + (<usize>((n * Cout + co) * poolVol) << 2);
      let entries = 0;
      let biasSum: f32 = 0;
      // Branch-free: every window writes the next entry, which only counts if it passes a
      // gradient (after a fused ReLU about half do not, and a branch would mispredict).
      for (let q = 0; q < poolVol; q++) {
        const a = load<i32>(aRow + (<usize>q << 2));
        const valid = a >= 0;
        const g = load<f32>(gRow + (<usize>q << 2));
        const entry = list + (<usize>entries << 3);
        store<i32>(entry, load<i32>(origins + (<usize>select<i32>(a, 0, valid) << 2)));
        store<f32>(entry, g, 4);
        biasSum += select<f32>(g, 0, valid);
        entries += <i32>valid;
      }
      if (jb != 0) store<f32>(jb + <usize>r * ldJBytes + (<usize>co << 2), biasSum);
      const c0 = (co / Cog) * Cig;
      const Jc = Jw + (<usize>(co * Cig * kvol) << 2);
      const total = Cig * rowsPerChannel;
      let row = 0;
      for (; row + 8 <= total; row += 8) {
        for (let i = 0; i < 8; i++) {
          store<i32>(ROWS + (<usize>i << 2), <i32>row_offset(row + i, rowsPerChannel, c0, kD, kH, vectors, FD, FH, FW));
        }
        sum_rows_8(list, entries, frame);
        for (let i = 0; i < 8; i++) store_row(Jc, row + i, vectors, kW, ACC + (<usize>i << 4));
      }
      for (; row < total; row++) {
        sum_rows_1(list, entries, frame, row_offset(row, rowsPerChannel, c0, kD, kH, vectors, FD, FH, FW));
        store_row(Jc, row, vectors, kW, ACC);
      }
    }
  }
}

/** The sums of sum_rows_8 or sum_rows_1, on their way to J. */
let ACC: usize = memory.data(8 * 16, 16);
/** The eight row offsets of sum_rows_8. */
let ROWS: usize = memory.data(8 * 4, 16);

/**
 * Byte offset in the frame of "row" i of the kernel: input channel c0 + i / rowsPerChannel,
 * then (kd, kh, f32x4 v) of that channel's kernel.
 */
// @ts-ignore: decorator
@inline function row_offset(
  i: i32, rowsPerChannel: i32, c0: i32, kD: i32, kH: i32, vectors: i32, FD: i32, FH: i32, FW: i32,
): usize {
  const c = c0 + i / rowsPerChannel;
  let rest = i % rowsPerChannel;
  const v = rest % vectors;
  rest /= vectors;
  const kh = rest % kH;
  const kd = rest / kH;
  return <usize>((((c * FD + kd) * FH + kh) * FW + 4 * v) << 2);
}

/**
 * ACC[0..7] = Σ over the list of g · frame[offset + ROWS[i] .. + 4): eight independent sums,
 * so the multiply-add latency overlaps (four chains leave the adder waiting).
 */
function sum_rows_8(list: usize, entries: i32, frame: usize): void {
  const r0 = <usize>load<i32>(ROWS), r1 = <usize>load<i32>(ROWS, 4), r2 = <usize>load<i32>(ROWS, 8), r3 = <usize>load<i32>(ROWS, 12);
  const r4 = <usize>load<i32>(ROWS, 16), r5 = <usize>load<i32>(ROWS, 20), r6 = <usize>load<i32>(ROWS, 24), r7 = <usize>load<i32>(ROWS, 28);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  for (let e = 0; e < entries; e++) {
    const at = list + (<usize>e << 3);
    const base = frame + <usize>load<i32>(at);
    const g = v128.load32_splat(at, 4);
    a0 = madd(g, v128.load(base + r0), a0);
    a1 = madd(g, v128.load(base + r1), a1);
    a2 = madd(g, v128.load(base + r2), a2);
    a3 = madd(g, v128.load(base + r3), a3);
    a4 = madd(g, v128.load(base + r4), a4);
    a5 = madd(g, v128.load(base + r5), a5);
    a6 = madd(g, v128.load(base + r6), a6);
    a7 = madd(g, v128.load(base + r7), a7);
  }
  v128.store(ACC, a0);
  v128.store(ACC, a1, 16);
  v128.store(ACC, a2, 32);
  v128.store(ACC, a3, 48);
  v128.store(ACC, a4, 64);
  v128.store(ACC, a5, 80);
  v128.store(ACC, a6, 96);
  v128.store(ACC, a7, 112);
}

/** ACC[0] = Σ over the list of g · frame[offset + row .. + 4), four entries at a time in four partial sums. */
function sum_rows_1(list: usize, entries: i32, frame: usize, r0: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let e = 0;
  for (; e + 4 <= entries; e += 4) {
    const at = list + (<usize>e << 3);
    a0 = madd(v128.load32_splat(at, 4), v128.load(frame + <usize>load<i32>(at) + r0), a0);
    a1 = madd(v128.load32_splat(at, 12), v128.load(frame + <usize>load<i32>(at, 8) + r0), a1);
    a2 = madd(v128.load32_splat(at, 20), v128.load(frame + <usize>load<i32>(at, 16) + r0), a2);
    a3 = madd(v128.load32_splat(at, 28), v128.load(frame + <usize>load<i32>(at, 24) + r0), a3);
  }
  for (; e < entries; e++) {
    const at = list + (<usize>e << 3);
    a0 = madd(v128.load32_splat(at, 4), v128.load(frame + <usize>load<i32>(at) + r0), a0);
  }
  v128.store(ACC, f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
}

/** The taps of kernel row i (its f32x4 v) from `sum` to J (C_in/G · kvol floats per channel at Jc). */
// @ts-ignore: decorator
@inline function store_row(Jc: usize, i: i32, vectors: i32, kW: i32, sum: usize): void {
  const v = i % vectors;
  const kernelRow = i / vectors; // (channel, kd, kh) in order: kW taps each in J
  const first = 4 * v;
  const lanes = min(4, kW - first);
  const to = Jc + (<usize>(kernelRow * kW + first) << 2);
  for (let l = 0; l < lanes; l++) store<f32>(to + (<usize>l << 2), load<f32>(sum + (<usize>l << 2)));
}

/** dst (C × FD × FH × FW) = src (C × D × H × W) shifted by the padding, zero elsewhere. */
function fill_frame(
  src: usize, C: i32, D: i32, H: i32, W: i32, dst: usize, FD: i32, FH: i32, FW: i32, pD: i32, pH: i32, pW: i32,
): void {
  memory.fill(dst, 0, <usize>(C * FD * FH * FW) << 2);
  const d1 = min(D, FD - pD), h1 = min(H, FH - pH), cols = min(W, FW - pW);
  if (cols <= 0) return;
  for (let c = 0; c < C; c++) {
    for (let d = 0; d < d1; d++) {
      for (let h = 0; h < h1; h++) {
        memory.copy(
          dst + (<usize>(((c * FD + d + pD) * FH + h + pH) * FW + pW) << 2),
          src + (<usize>(((c * D + d) * H + h) * W) << 2),
          <usize>cols << 2,
        );
      }
    }
  }
}

/**
 * Moves this file's scratch buffers by `delta` bytes: a worker of the threads build calls it
 * once, so that its kernels use a copy of the static scratch of their own.
 */
export function relocate_conv_pooled_scratch(delta: usize): void {
  ACC += delta;
  ROWS += delta;
}
