// The input gradient of a strided convolution as stride-1 problems, one per phase.
//
// With stride s (and no dilation) along a dim, input position i = o·s − p + k receives
// gy[o]·W[k]. Split i by its phase φ = (i + p) mod s, writing i = m·s + φ − p: only the taps
// k = φ + j·s reach it, from o = m − j. So each phase is
//   gx_φ[m] = Σ_j gy[m − j] · W_φ[j],   W_φ[j] = W[φ + j·s],
// the input gradient of a stride-1 convolution with the sub-kernel W_φ (⌈(k − φ)/s⌉ taps),
// front padding m0 (the first m whose i is ≥ 0) and the same gy. Over all phases (s_D·s_H·s_W
// of them) the sub-kernels hold each tap once, so the multiply-adds are those of the strided
// problem, but every one of them now runs on the direct (or Winograd) stride-1 paths instead
// of GEMM into a column matrix s·k times the size of gx followed by col2im. Each phase's
// result is scattered into gx at positions m·s + φ − p; positions no tap reaches stay 0.
//
// Scratch: the phase's geometry block and sub-kernel in module-static memory; in `work`, the
// sub-problem's own work (C_in·kvol_φ·L floats, the contract of conv_backward_input) and as
// many rows of the phase's gx as fit after it (phases_fit checks that one does, against the
// C_in·kvol·L floats of work).
import { geom_at, ceil_div, floor_div } from "./geometry";
import { conv_backward_input } from "./conv";

/** conv_strategy's number for this path (input gradient only). */
export const PATH_PHASES: i32 = 5;

const GEOM_INTS: i32 = 21;
let PHASE_GEOM: usize = memory.data(GEOM_INTS << 2, 64);
/** Floats of one phase's sub-kernel (at most the layer's weights). */
const SUB_WEIGHT_CAP: i32 = 131072;
let SUB_WEIGHTS: usize = memory.data(SUB_WEIGHT_CAP << 2, 64);

/** Taps of phase φ of a kernel of k taps with stride s: ⌈(k − φ)/s⌉, or 0. */
// @ts-ignore: decorator
@inline function phase_taps(k: i32, s: i32, phi: i32): i32 {
  return phi < k ? (k - phi + s - 1) / s : 0;
}

/** First m of phase φ whose position m·s + φ − p is ≥ 0. */
// @ts-ignore: decorator
@inline function phase_first(p: i32, s: i32, phi: i32): i32 {
  return max(0, ceil_div(p - phi, s));
}

/** One past the last m of phase φ whose position is < size. */
// @ts-ignore: decorator
@inline function phase_end(size: i32, p: i32, s: i32, phi: i32): i32 {
  return floor_div(size - 1 + p - phi, s) + 1;
}

/**
 * Whether conv_backward_input takes the phase path: a stride above 1 in some dim, no
 * dilation, weights within the sub-kernel buffer, and, for every phase, the sub-problem's
 * work plus one row of its gx within the C_in·kvol·L floats of `work`.
 */
export function phases_fit(geom: usize): bool {
  const sD = geom_at(geom, 12), sH = geom_at(geom, 13), sW = geom_at(geom, 14);
  if (sD == 1 && sH == 1 && sW == 1) return false;
  if (geom_at(geom, 18) != 1 || geom_at(geom, 19) != 1 || geom_at(geom, 20) != 1) return false;
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const kD = geom_at(geom, 9), kH = geom_at(geom, 10), kW = geom_at(geom, 11);
  if (<i64>Cout * <i64>(Cin / G) * <i64>(kD * kH * kW) > <i64>SUB_WEIGHT_CAP) return false;
  const L = <i64>geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const budget = <i64>Cin * <i64>(kD * kH * kW) * L;
  const D = geom_at(geom, 3), H = geom_at(geom, 4), W = geom_at(geom, 5);
  const pD = geom_at(geom, 15), pH = geom_at(geom, 16), pW = geom_at(geom, 17);
  for (let fd = 0; fd < sD; fd++) {
    for (let fh = 0; fh < sH; fh++) {
      for (let fw = 0; fw < sW; fw++) {
        const taps = phase_taps(kD, sD, fd) * phase_taps(kH, sH, fh) * phase_taps(kW, sW, fw);
        const volume = <i64>max(0, phase_end(D, pD, sD, fd) - phase_first(pD, sD, fd)) *
          max(0, phase_end(H, pH, sH, fh) - phase_first(pH, sH, fh)) *
          max(0, phase_end(W, pW, sW, fw) - phase_first(pW, sW, fw));
        if (<i64>Cin * <i64>taps * L + <i64>Cin * volume > budget) return false;
      }
    }
  }
  return true;
}

/** gx (R, C_in, D, H, W) from gy (R, C_out, L), phase by phase (phases_fit(geom) holds). */
export function backward_input_phases(geom: usize, R: i32, gy: usize, W: usize, gx: usize, work: usize): void {
  const G = geom_at(geom, 0), Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const D = geom_at(geom, 3), H = geom_at(geom, 4), Wd = geom_at(geom, 5);
  const kD = geom_at(geom, 9), kH = geom_at(geom, 10), kW = geom_at(geom, 11);
  const sD = geom_at(geom, 12), sH = geom_at(geom, 13), sW = geom_at(geom, 14);
  const pD = geom_at(geom, 15), pH = geom_at(geom, 16), pW = geom_at(geom, 17);
  const L = geom_at(geom, 6) * geom_at(geom, 7) * geom_at(geom, 8);
  const inVol = D * H * Wd;
  const gxRow = <usize>(Cin * inVol) << 2;
  const gyRow = <usize>(Cout * L) << 2;
  memory.fill(gx, 0, <usize>R * gxRow);
  for (let i = 0; i < GEOM_INTS; i++) store<i32>(PHASE_GEOM + (<usize>i << 2), geom_at(geom, i));
  for (let fd = 0; fd < sD; fd++) {
    for (let fh = 0; fh < sH; fh++) {
      for (let fw = 0; fw < sW; fw++) {
        const tD = phase_taps(kD, sD, fd), tH = phase_taps(kH, sH, fh), tW = phase_taps(kW, sW, fw);
        const m0D = phase_first(pD, sD, fd), m0H = phase_first(pH, sH, fh), m0W = phase_first(pW, sW, fw);
        const nD = phase_end(D, pD, sD, fd) - m0D, nH = phase_end(H, pH, sH, fh) - m0H, nW = phase_end(Wd, pW, sW, fw) - m0W;
        if (tD * tH * tW == 0 || nD <= 0 || nH <= 0 || nW <= 0) continue; // no tap reaches: stays 0
        set_phase_geometry(nD, nH, nW, tD, tH, tW, m0D, m0H, m0W);
        gather_sub_kernel(W, Cout * (Cin / G), kD, kH, kW, sD, sH, sW, fd, fh, fw, tD, tH, tW);
        // As many rows per call as fit after the sub-problem's own work (phases_fit: at least one).
        const subFloats = Cin * tD * tH * tW * L;
        const phaseRow = Cin * nD * nH * nW;
        const rowsPerCall = max(1, min(R, (Cin * kD * kH * kW * L - subFloats) / phaseRow));
        const phase = work + (<usize>subFloats << 2);
        for (let r0 = 0; r0 < R; r0 += rowsPerCall) {
          const rows = min(rowsPerCall, R - r0);
          conv_backward_input(PHASE_GEOM, rows, gy + <usize>r0 * gyRow, SUB_WEIGHTS, phase, work);
          for (let r = 0; r < rows; r++) {
            scatter_phase(phase + (<usize>(r * phaseRow) << 2), Cin, nD, nH, nW, gx + <usize>(r0 + r) * gxRow, D, H, Wd,
              m0D * sD + fd - pD, m0H * sH + fh - pH, m0W * sW + fw - pW, sD, sH, sW);
          }
        }
      }
    }
  }
}

/** PHASE_GEOM ← the layer's block with the phase's input size, kernel, stride 1, padding m0, no dilation. */
function set_phase_geometry(nD: i32, nH: i32, nW: i32, tD: i32, tH: i32, tW: i32, m0D: i32, m0H: i32, m0W: i32): void {
  store<i32>(PHASE_GEOM, nD, 3 << 2);
  store<i32>(PHASE_GEOM, nH, 4 << 2);
  store<i32>(PHASE_GEOM, nW, 5 << 2);
  store<i32>(PHASE_GEOM, tD, 9 << 2);
  store<i32>(PHASE_GEOM, tH, 10 << 2);
  store<i32>(PHASE_GEOM, tW, 11 << 2);
  for (let i = 12; i <= 14; i++) store<i32>(PHASE_GEOM + (<usize>i << 2), 1);
  store<i32>(PHASE_GEOM, m0D, 15 << 2);
  store<i32>(PHASE_GEOM, m0H, 16 << 2);
  store<i32>(PHASE_GEOM, m0W, 17 << 2);
  for (let i = 18; i <= 20; i++) store<i32>(PHASE_GEOM + (<usize>i << 2), 1);
}

/** SUB_WEIGHTS[q, jd, jh, jw] = W[q, fd + jd·sD, fh + jh·sH, fw + jw·sW] for the `kernels` kernels q. */
function gather_sub_kernel(
  W: usize, kernels: i32, kD: i32, kH: i32, kW: i32, sD: i32, sH: i32, sW: i32,
  fd: i32, fh: i32, fw: i32, tD: i32, tH: i32, tW: i32,
): void {
  let to = SUB_WEIGHTS;
  const kvol = kD * kH * kW;
  for (let q = 0; q < kernels; q++) {
    const kernel = W + (<usize>(q * kvol) << 2);
    for (let jd = 0; jd < tD; jd++) {
      for (let jh = 0; jh < tH; jh++) {
        const row = kernel + (<usize>(((fd + jd * sD) * kH + fh + jh * sH) * kW + fw) << 2);
        for (let jw = 0; jw < tW; jw++) {
          store<f32>(to, load<f32>(row + (<usize>(jw * sW) << 2)));
          to += 4;
        }
      }
    }
  }
}

/** gx[c, d0 + qd·sD, h0 + qh·sH, w0 + qw·sW] = phase[c, qd, qh, qw] (one row; the origins are ≥ 0). */
function scatter_phase(
  phase: usize, C: i32, nD: i32, nH: i32, nW: i32, gx: usize, D: i32, H: i32, W: i32,
  d0: i32, h0: i32, w0: i32, sD: i32, sH: i32, sW: i32,
): void {
  let from = phase;
  const step = <usize>sW << 2;
  for (let c = 0; c < C; c++) {
    for (let qd = 0; qd < nD; qd++) {
      for (let qh = 0; qh < nH; qh++) {
        let to = gx + (<usize>(((c * D + d0 + qd * sD) * H + h0 + qh * sH) * W + w0) << 2);
        for (let qw = 0; qw < nW; qw++) {
          store<f32>(to, load<f32>(from));
          to += step;
          from += 4;
        }
      }
    }
  }
}

/**
 * Moves this file's scratch buffers by `delta` bytes: a worker of the threads build calls it
 * once, so that its kernels use a copy of the static scratch of their own.
 */
export function relocate_conv_phases_scratch(delta: usize): void {
  PHASE_GEOM += delta;
  SUB_WEIGHTS += delta;
}
