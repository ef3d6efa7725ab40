// Activations and pooling, forward and backward (docs/kernels.md, "Activations and pooling").
// PyTorch's float32 semantics, including its choices at kinks and for NaN. ReLU, LeakyReLU and
// the Sigmoid/Tanh backward (which read the output cache, as PyTorch does) run in f32x4; the
// transcendental ones evaluate in float64, so their float32 results are correctly rounded or
// within one ulp: Sigmoid, Tanh, ELU, GELU (tanh) and SiLU two lanes of f64x2 at a time
// (nn_exp.ts), the erf GELU and Softplus, and the tails, one scalar at a time.
import { erfc64 } from "./nn_erf";
import {
  act_backward_f64x2, act_forward_f64x2, has_vector_backward, has_vector_forward, sigmoid_backward_x4, tanh_backward_x4,
  tanh_forward_f32x4,
} from "./nn_exp";
import {
  avgpool_2x2_backward, avgpool_2x2_forward, is_avgpool_2x2, is_maxpool_1x2, is_maxpool_2x2, maxpool_1x2_backward,
  maxpool_1x2_forward, maxpool_2x2_backward, maxpool_2x2_forward,
} from "./pool2x2";

const RELU = 0;
const LEAKY_RELU = 1;
const SIGMOID = 2;
const TANH = 3;
const ELU = 4;
const GELU = 5;
const GELU_TANH = 6;
const SILU = 7;
const SOFTPLUS = 8;

const SQRT1_2: f64 = 0.70710678118654752440;
const INV_SQRT_2PI: f64 = 0.39894228040143267794;
const GELU_TANH_BETA: f64 = 0.79788456080286535588; // sqrt(2/pi)
const GELU_TANH_KAPPA: f64 = 0.044715;

// ---------------------------------------------------------------------------------------------
// Activations

/**
 * y = f(x) over `count` floats; y may equal x. `kind` and p1, p2 as in docs/kernels.md
 * (LeakyReLU: p1 = negative_slope; ELU: p1 = alpha; Softplus: p1 = beta, p2 = threshold).
 */
export function act_forward(kind: i32, count: i32, x: usize, y: usize, p1: f32, p2: f32): void {
  if (kind == RELU) {
    reluForward(count, x, y);
  } else if (kind == LEAKY_RELU) {
    leakyReluForward(count, x, y, p1);
  } else if (kind >= SIGMOID && kind <= SOFTPLUS) {
    const done = kind == TANH
      ? tanh_forward_f32x4(count, x, y)
      : has_vector_forward(kind) ? act_forward_f64x2(kind, count, x, y, p1) : 0;
    for (let i = done; i < count; i++) {
      const at = <usize>i << 2;
      store<f32>(y + at, <f32>scalarForward(kind, <f64>load<f32>(x + at), p1, p2));
    }
  } else {
    unreachable(); // unknown activation kind: a bug on the TypeScript side
  }
}

/**
 * gx[r, j] = gy[r, j] · f'(x[r / K, j]) for r < R, j < width; gx may equal gy. ReLU,
 * LeakyReLU, ELU, GELU, SiLU and Softplus read the input cache `x`; Sigmoid and Tanh read the
 * output cache `y` (f' = y(1 - y) and 1 - y², as PyTorch computes them).
 */
export function act_backward(
  kind: i32, R: i32, K: i32, width: i32, x: usize, y: usize, gy: usize, gx: usize, p1: f32, p2: f32,
): void {
  if (kind < RELU || kind > SOFTPLUS) unreachable();
  if (K == 1) {
    backwardSegment(kind, R * width, x, y, gy, gx, p1, p2);
    return;
  }
  const rowBytes = <usize>width << 2;
  for (let r = 0; r < R; r++) {
    const cache = <usize>(r / K) * rowBytes;
    const row = <usize>r * rowBytes;
    backwardSegment(kind, width, x + cache, y + cache, gy + row, gx + row, p1, p2);
  }
}

function reluForward(n: i32, x: usize, y: usize): void {
  const zero = f32x4.splat(0);
  let i = 0;
  // f32x4.max propagates NaN, as torch.relu does
  for (; i + 4 <= n; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, f32x4.max(v128.load(x + at), zero));
  }
  for (; i < n; i++) {
    const at = <usize>i << 2;
    const v = load<f32>(x + at);
    store<f32>(y + at, v > 0 || isNaN(v) ? v : 0);
  }
}

function leakyReluForward(n: i32, x: usize, y: usize, slope: f32): void {
  const zero = f32x4.splat(0);
  const s = f32x4.splat(slope);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = <usize>i << 2;
    const v = v128.load(x + at);
    v128.store(y + at, v128.bitselect(v, f32x4.mul(v, s), f32x4.gt(v, zero)));
  }
  for (; i < n; i++) {
    const at = <usize>i << 2;
    const v = load<f32>(x + at);
    store<f32>(y + at, v > 0 ? v : v * slope);
  }
}

/**
 * Where Sigmoid's and Tanh's slopes are taken from x instead of y: |y| past 0.99, where
 * y·(1 − y) and 1 − y² in float32 are still within 6e-6 relative (a float32 ulp of y over 1 − |y|).
 */
const SATURATED: f32 = 0.99;

function backwardSegment(
  kind: i32, n: i32, x: usize, y: usize, gy: usize, gx: usize, p1: f32, p2: f32,
): void {
  const zero = f32x4.splat(0);
  const one = f32x4.splat(1);
  let i = 0;
  if (kind == RELU) {
    // PyTorch's threshold_backward: the gradient passes unless x <= 0 (so it passes at NaN)
    for (; i + 4 <= n; i += 4) {
      const at = <usize>i << 2;
      v128.store(gx + at, v128.andnot(v128.load(gy + at), f32x4.le(v128.load(x + at), zero)));
    }
    for (; i < n; i++) {
      const at = <usize>i << 2;
      store<f32>(gx + at, load<f32>(x + at) <= 0 ? 0 : load<f32>(gy + at));
    }
  } else if (kind == LEAKY_RELU) {
    const s = f32x4.splat(p1);
    for (; i + 4 <= n; i += 4) {
      const at = <usize>i << 2;
      const g = v128.load(gy + at);
      v128.store(gx + at, v128.bitselect(g, f32x4.mul(g, s), f32x4.gt(v128.load(x + at), zero)));
    }
    for (; i < n; i++) {
      const at = <usize>i << 2;
      const g = load<f32>(gy + at);
      store<f32>(gx + at, load<f32>(x + at) > 0 ? g : g * p1);
    }
  } else if (kind == SIGMOID) {
    // From the output while y ≤ 0.99 (1 − y keeps its precision); else from x (nn_exp.ts).
    const saturated = f32x4.splat(SATURATED);
    for (; i + 4 <= n; i += 4) {
      const at = <usize>i << 2;
      const o = v128.load(y + at);
      const g = v128.load(gy + at);
      const fromY = f32x4.mul(f32x4.mul(g, f32x4.sub(one, o)), o);
      const lanes = f32x4.gt(o, saturated); // per lane, as the scalar tail decides
      v128.store(gx + at, v128.any_true(lanes) ? v128.bitselect(sigmoid_backward_x4(v128.load(x + at), g), fromY, lanes) : fromY);
    }
    for (; i < n; i++) {
      const at = <usize>i << 2;
      const o = load<f32>(y + at);
      const v = <f64>load<f32>(x + at);
      store<f32>(gx + at, o > SATURATED
        ? <f32>(<f64>load<f32>(gy + at) * sigmoidOf(v) * oneMinusSigmoidOf(v))
        : load<f32>(gy + at) * (1 - o) * o);
    }
  } else if (kind == TANH) {
    const saturated = f32x4.splat(SATURATED);
    for (; i + 4 <= n; i += 4) {
      const at = <usize>i << 2;
      const o = v128.load(y + at);
      const g = v128.load(gy + at);
      const fromY = f32x4.mul(g, f32x4.sub(one, f32x4.mul(o, o)));
      const lanes = f32x4.gt(f32x4.abs(o), saturated);
      v128.store(gx + at, v128.any_true(lanes) ? v128.bitselect(tanh_backward_x4(v128.load(x + at), g), fromY, lanes) : fromY);
    }
    for (; i < n; i++) {
      const at = <usize>i << 2;
      const o = load<f32>(y + at);
      if (Mathf.abs(o) > SATURATED) {
        const c = Math.cosh(<f64>load<f32>(x + at));
        store<f32>(gx + at, <f32>(<f64>load<f32>(gy + at) / (c * c)));
      } else {
        store<f32>(gx + at, load<f32>(gy + at) * (1 - o * o));
      }
    }
  } else {
    if (has_vector_backward(kind)) i = act_backward_f64x2(kind, n, x, gy, gx, p1);
    for (; i < n; i++) {
      const at = <usize>i << 2;
      const d = scalarDerivative(kind, <f64>load<f32>(x + at), p1, p2);
      store<f32>(gx + at, <f32>(<f64>load<f32>(gy + at) * d));
    }
  }
}

// Numerically stable logistic: exp never overflows, and 1 - sigmoid(x) keeps its precision.
// @ts-ignore: decorator
@inline function sigmoidOf(x: f64): f64 {
  const e = Math.exp(-Math.abs(x));
  const t = 1.0 / (1.0 + e);
  return x >= 0 ? t : e * t;
}

// @ts-ignore: decorator
@inline function oneMinusSigmoidOf(x: f64): f64 {
  const e = Math.exp(-Math.abs(x));
  const t = 1.0 / (1.0 + e);
  return x >= 0 ? e * t : t;
}

// log(1 + exp(z)) without overflow for large z.
// @ts-ignore: decorator
@inline function softplusOf(z: f64): f64 {
  return z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
}

function scalarForward(kind: i32, x: f64, p1: f32, p2: f32): f64 {
  switch (kind) {
    case SIGMOID:
      return sigmoidOf(x);
    case TANH:
      return Math.tanh(x);
    case ELU:
      return x <= 0 ? <f64>p1 * Math.expm1(x) : x;
    case GELU:
      // 0.5·x·(1 + erf(x/√2)), with erfc so the negative tail keeps its relative precision
      return 0.5 * x * erfc64(-x * SQRT1_2);
    case GELU_TANH: {
      // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u)
      const u = GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x * x * x);
      return x * sigmoidOf(2.0 * u);
    }
    case SILU:
      return x * sigmoidOf(x);
    case SOFTPLUS: {
      // the threshold test is PyTorch's float32 one, so the switch-over point matches exactly
      if (<f32>x * p1 > p2) return x;
      return softplusOf(x * <f64>p1) / <f64>p1;
    }
  }
  return NaN;
}

function scalarDerivative(kind: i32, x: f64, p1: f32, p2: f32): f64 {
  switch (kind) {
    case ELU:
      return x <= 0 ? <f64>p1 * Math.exp(x) : 1.0;
    case GELU:
      return 0.5 * erfc64(-x * SQRT1_2) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    case GELU_TANH: {
      // d/dx x·s(2u) = s + 2x·s(1 - s)·u'
      const u = GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x * x * x);
      const du = GELU_TANH_BETA * (1.0 + 3.0 * GELU_TANH_KAPPA * x * x);
      const s = sigmoidOf(2.0 * u);
      return s + 2.0 * x * s * oneMinusSigmoidOf(2.0 * u) * du;
    }
    case SILU: {
      const s = sigmoidOf(x);
      return s * (1.0 + x * oneMinusSigmoidOf(x));
    }
    case SOFTPLUS: {
      if (<f32>x * p1 > p2) return 1.0;
      return sigmoidOf(x * <f64>p1);
    }
  }
  return NaN;
}

// ---------------------------------------------------------------------------------------------
// Pooling over the 21-int POOL_GEOM block (docs/kernels.md): 1-d and 2-d are 3-d with unit
// leading dims. Loops follow ATen's CPU kernels (DilatedMaxPool3d, AvgPool3d), so window
// clipping, scan order and divisors are PyTorch's.

// @ts-ignore: decorator
@inline function g(geom: usize, i: i32): i32 {
  return load<i32>(geom + (<usize>i << 2));
}

// First in-bounds tap of a dilated window starting at `start`.
// @ts-ignore: decorator
@inline function firstTap(start: i32, dilation: i32): i32 {
  return start >= 0 ? start : start + ((dilation - 1 - start) / dilation) * dilation;
}

/**
 * y (N, C, oD, oH, oW) = max over each window, padding as -inf; `argmax` (i32 per output) gets
 * the flat in-plane index d·H·W + h·W + w of the maximum. Ties keep the first maximum in scan
 * order; a NaN wins (the last NaN, as in ATen). A window with no element inside the input
 * (possible with dilation) gives -inf and argmax -1.
 */
export function maxpool_forward(geom: usize, N: i32, x: usize, y: usize, argmax: usize, relu: i32): void {
  if (is_maxpool_2x2(geom)) {
    maxpool_2x2_forward(geom, N, x, y, argmax, relu);
    return;
  }
  if (is_maxpool_1x2(geom)) {
    maxpool_1x2_forward(geom, N, x, y, argmax, relu);
    return;
  }
  const C = g(geom, 0);
  const D = g(geom, 1), H = g(geom, 2), W = g(geom, 3);
  const oD = g(geom, 4), oH = g(geom, 5), oW = g(geom, 6);
  const kD = g(geom, 7), kH = g(geom, 8), kW = g(geom, 9);
  const sD = g(geom, 10), sH = g(geom, 11), sW = g(geom, 12);
  const pD = g(geom, 13), pH = g(geom, 14), pW = g(geom, 15);
  const dD = g(geom, 16), dH = g(geom, 17), dW = g(geom, 18);
  const inPlane = <usize>D * H * W;
  const outPlane = <usize>oD * oH * oW;
  const planes = N * C;
  for (let p = 0; p < planes; p++) {
    const xp = x + ((<usize>p * inPlane) << 2);
    let out = (<usize>p * outPlane) << 2;
    for (let od = 0; od < oD; od++) {
      const dStart = od * sD - pD;
      const dEnd = min(dStart + (kD - 1) * dD + 1, D);
      const d0 = firstTap(dStart, dD);
      for (let oh = 0; oh < oH; oh++) {
        const hStart = oh * sH - pH;
        const hEnd = min(hStart + (kH - 1) * dH + 1, H);
        const h0 = firstTap(hStart, dH);
        for (let ow = 0; ow < oW; ow++) {
          const wStart = ow * sW - pW;
          const wEnd = min(wStart + (kW - 1) * dW + 1, W);
          const w0 = firstTap(wStart, dW);
          let best: f32 = -Infinity;
          let bestIndex: i32 = -1;
          for (let d = d0; d < dEnd; d += dD) {
            for (let h = h0; h < hEnd; h += dH) {
              const rowIndex = (d * H + h) * W;
              for (let w = w0; w < wEnd; w += dW) {
                const v = load<f32>(xp + (<usize>(rowIndex + w) << 2));
                // Branch-free (select): on random data a branch here mispredicts half the time.
                const take = v > best || v != v || bestIndex < 0;
                best = select<f32>(v, best, take);
                bestIndex = select<i32>(rowIndex + w, bestIndex, take);
              }
            }
          }
          // ReLU after the maximum: a window whose maximum is not positive gives 0 and passes
          // no gradient (argmax -1), as ReLU before pooling would. A window over padding only
          // stays -inf, as it would be after ReLU too.
          if (relu != 0 && bestIndex >= 0 && best <= 0) {
            best = 0;
            bestIndex = -1;
          }
          store<f32>(y + out, best);
          store<i32>(argmax + out, bestIndex);
          out += 4;
        }
      }
    }
  }
}

/**
 * gx (R, C, D, H, W) = 0, then gx[r, c, argmax[r / K, c, o]] += gy[r, c, o]. Indices outside
 * the plane (the -1 of an empty window) receive nothing.
 */
export function maxpool_backward(geom: usize, R: i32, K: i32, gy: usize, argmax: usize, gx: usize): void {
  if (is_maxpool_2x2(geom)) {
    maxpool_2x2_backward(geom, R, K, gy, argmax, gx);
    return;
  }
  if (is_maxpool_1x2(geom)) {
    maxpool_1x2_backward(geom, R, K, gy, argmax, gx);
    return;
  }
  const C = g(geom, 0);
  const inPlane = g(geom, 1) * g(geom, 2) * g(geom, 3);
  const outPlane = g(geom, 4) * g(geom, 5) * g(geom, 6);
  memory.fill(gx, 0, (<usize>R * C * inPlane) << 2);
  for (let r = 0; r < R; r++) {
    const sample = r / K;
    for (let c = 0; c < C; c++) {
      const gxp = gx + ((<usize>(r * C + c) * inPlane) << 2);
      const gyp = gy + ((<usize>(r * C + c) * outPlane) << 2);
      const ap = argmax + ((<usize>(sample * C + c) * outPlane) << 2);
      for (let o = 0; o < outPlane; o++) {
        const index = load<i32>(ap + (<usize>o << 2));
        if (<u32>index >= <u32>inPlane) continue;
        const at = gxp + (<usize>index << 2);
        store<f32>(at, load<f32>(at) + load<f32>(gyp + (<usize>o << 2)));
      }
    }
  }
}

// ATen's divisor for the window starting at (dStart, hStart, wStart), or 0 when the clipped
// window is empty. The window size with padding is counted before clipping to the input, but
// after clipping to the padded input (so ceil_mode's overhang never counts).
// @ts-ignore: decorator
@inline function avgDivisor(
  poolD: i32, poolH: i32, poolW: i32, inD: i32, inH: i32, inW: i32, countIncludePad: i32, divisorOverride: i32,
): i32 {
  if (inD <= 0 || inH <= 0 || inW <= 0) return 0;
  if (divisorOverride != 0) return divisorOverride;
  return countIncludePad != 0 ? poolD * poolH * poolW : inD * inH * inW;
}

/** y (N, C, oD, oH, oW) = mean over each window with PyTorch's divisor rules. */
export function avgpool_forward(geom: usize, N: i32, x: usize, y: usize): void {
  if (is_avgpool_2x2(geom)) {
    avgpool_2x2_forward(geom, N, x, y);
    return;
  }
  const C = g(geom, 0);
  const D = g(geom, 1), H = g(geom, 2), W = g(geom, 3);
  const oD = g(geom, 4), oH = g(geom, 5), oW = g(geom, 6);
  const kD = g(geom, 7), kH = g(geom, 8), kW = g(geom, 9);
  const sD = g(geom, 10), sH = g(geom, 11), sW = g(geom, 12);
  const pD = g(geom, 13), pH = g(geom, 14), pW = g(geom, 15);
  const countIncludePad = g(geom, 19);
  const divisorOverride = g(geom, 20);
  const inPlane = <usize>D * H * W;
  const outPlane = <usize>oD * oH * oW;
  const planes = N * C;
  for (let p = 0; p < planes; p++) {
    const xp = x + ((<usize>p * inPlane) << 2);
    let out = y + ((<usize>p * outPlane) << 2);
    for (let od = 0; od < oD; od++) {
      const dStart = od * sD - pD;
      const dPadEnd = min(dStart + kD, D + pD);
      const d0 = max(dStart, 0), d1 = min(dPadEnd, D);
      for (let oh = 0; oh < oH; oh++) {
        const hStart = oh * sH - pH;
        const hPadEnd = min(hStart + kH, H + pH);
        const h0 = max(hStart, 0), h1 = min(hPadEnd, H);
        for (let ow = 0; ow < oW; ow++) {
          const wStart = ow * sW - pW;
          const wPadEnd = min(wStart + kW, W + pW);
          const w0 = max(wStart, 0), w1 = min(wPadEnd, W);
          const divisor = avgDivisor(
            dPadEnd - dStart, hPadEnd - hStart, wPadEnd - wStart, d1 - d0, h1 - h0, w1 - w0,
            countIncludePad, divisorOverride,
          );
          let sum: f64 = 0;
          if (divisor != 0) {
            for (let d = d0; d < d1; d++) {
              for (let h = h0; h < h1; h++) {
                const row = xp + (<usize>((d * H + h) * W) << 2);
                for (let w = w0; w < w1; w++) sum += <f64>load<f32>(row + (<usize>w << 2));
              }
            }
            sum /= <f64>divisor;
          }
          store<f32>(out, <f32>sum);
          out += 4;
        }
      }
    }
  }
}

/** gx (R, C, D, H, W) = the adjoint of avgpool_forward applied to gy (R, C, oD, oH, oW). */
export function avgpool_backward(geom: usize, R: i32, gy: usize, gx: usize): void {
  if (is_avgpool_2x2(geom)) {
    avgpool_2x2_backward(geom, R, gy, gx);
    return;
  }
  const C = g(geom, 0);
  const D = g(geom, 1), H = g(geom, 2), W = g(geom, 3);
  const oD = g(geom, 4), oH = g(geom, 5), oW = g(geom, 6);
  const kD = g(geom, 7), kH = g(geom, 8), kW = g(geom, 9);
  const sD = g(geom, 10), sH = g(geom, 11), sW = g(geom, 12);
  const pD = g(geom, 13), pH = g(geom, 14), pW = g(geom, 15);
  const countIncludePad = g(geom, 19);
  const divisorOverride = g(geom, 20);
  const inPlane = <usize>D * H * W;
  const outPlane = <usize>oD * oH * oW;
  const planes = R * C;
  memory.fill(gx, 0, (<usize>planes * inPlane) << 2);
  for (let p = 0; p < planes; p++) {
    const gxp = gx + ((<usize>p * inPlane) << 2);
    let gyo = gy + ((<usize>p * outPlane) << 2);
    for (let od = 0; od < oD; od++) {
      const dStart = od * sD - pD;
      const dPadEnd = min(dStart + kD, D + pD);
      const d0 = max(dStart, 0), d1 = min(dPadEnd, D);
      for (let oh = 0; oh < oH; oh++) {
        const hStart = oh * sH - pH;
        const hPadEnd = min(hStart + kH, H + pH);
        const h0 = max(hStart, 0), h1 = min(hPadEnd, H);
        for (let ow = 0; ow < oW; ow++) {
          const wStart = ow * sW - pW;
          const wPadEnd = min(wStart + kW, W + pW);
          const w0 = max(wStart, 0), w1 = min(wPadEnd, W);
          const divisor = avgDivisor(
            dPadEnd - dStart, hPadEnd - hStart, wPadEnd - wStart, d1 - d0, h1 - h0, w1 - w0,
            countIncludePad, divisorOverride,
          );
          if (divisor != 0) {
            const share = load<f32>(gyo) / <f32>divisor;
            for (let d = d0; d < d1; d++) {
              for (let h = h0; h < h1; h++) {
                const row = gxp + (<usize>((d * H + h) * W) << 2);
                for (let w = w0; w < w1; w++) {
                  const at = row + (<usize>w << 2);
                  store<f32>(at, load<f32>(at) + share);
                }
              }
            }
          }
          gyo += 4;
        }
      }
    }
  }
}
