// The exponential activations four floats at a time: each f32x4 is widened to two f64x2,
// evaluated in float64 (exp and expm1 by range reduction and a degree-9 polynomial, relative
// error below 1e-11, far below float32's 6e-8) and rounded back, so the float32 results are the ones the scalar float64
// path of nn.ts gives (correctly rounded, or one ulp off where float64 rounding decides) at a
// fraction of its cost: the scalar path calls libm's exp or tanh per element.

import { erfc_f64x2 } from "./nn_erf";

const INV_LN2: f64 = 1.4426950408889634;
const LN2_HI: f64 = 6.93147180369123816490e-01;
const LN2_LO: f64 = 1.90821492927058770002e-10;

/**
 * e^r − 1 for |r| ≤ ln2/2: r + r²/2! + … + r⁹/9! (the first omitted term is below 1e-11
 * relative), in Horner form.
 */
// In Estrin's form (pairs of terms, then powers r², r⁴, r⁸) rather than Horner's: the same
// polynomial with a dependency chain of about half the length, which is what bounds these
// loops (no FMA: each Horner step is a multiply then an add). Sigmoid: 4.2 → 3.9 ns a float.
// @ts-ignore: decorator
@inline function expm1_reduced(r: v128): v128 {
  const r2 = f64x2.mul(r, r);
  const r4 = f64x2.mul(r2, r2);
  // e^r − 1 = r·q(r), q(r) = Σ_{i=0..8} r^i/(i+1)!
  const q01 = f64x2.add(f64x2.splat(1.0), f64x2.mul(r, f64x2.splat(0.5)));
  const q23 = f64x2.add(f64x2.splat(1.0 / 6.0), f64x2.mul(r, f64x2.splat(1.0 / 24.0)));
  const q45 = f64x2.add(f64x2.splat(1.0 / 120.0), f64x2.mul(r, f64x2.splat(1.0 / 720.0)));
  const q67 = f64x2.add(f64x2.splat(1.0 / 5040.0), f64x2.mul(r, f64x2.splat(1.0 / 40320.0)));
  const q03 = f64x2.add(q01, f64x2.mul(r2, q23));
  const q47 = f64x2.add(q45, f64x2.mul(r2, q67));
  const q = f64x2.add(q03, f64x2.mul(r4, f64x2.add(q47, f64x2.mul(r4, f64x2.splat(1.0 / 362880.0)))));
  return f64x2.mul(r, q);
}

/** k = round(v / ln 2) and r = v − k·ln 2 (in two parts, so r keeps its precision). */
// @ts-ignore: decorator
@inline function reduce_k(v: v128): v128 {
  return f64x2.nearest(f64x2.mul(v, f64x2.splat(INV_LN2)));
}

// @ts-ignore: decorator
@inline function reduce_r(v: v128, k: v128): v128 {
  return f64x2.sub(f64x2.sub(v, f64x2.mul(k, f64x2.splat(LN2_HI))), f64x2.mul(k, f64x2.splat(LN2_LO)));
}

/** 2^k for integral k in [−1022, 1023], built from its exponent bits. */
// @ts-ignore: decorator
@inline function pow2(k: v128): v128 {
  const ki = i64x2.extend_low_i32x4_s(i32x4.trunc_sat_f64x2_s_zero(k));
  return i64x2.shl(i64x2.add(ki, i64x2.splat(1023)), 52);
}

/** e^v for v in [−700, 700] (callers clamp). */
// @ts-ignore: decorator
@inline export function exp_f64x2(v: v128): v128 {
  const k = reduce_k(v);
  const p = expm1_reduced(reduce_r(v, k));
  return f64x2.mul(f64x2.add(p, f64x2.splat(1.0)), pow2(k));
}

/** e^v − 1 for v in [−700, 700], without cancellation near 0 (k = 0 keeps the polynomial). */
// @ts-ignore: decorator
@inline function expm1_f64x2(v: v128): v128 {
  const k = reduce_k(v);
  const p = expm1_reduced(reduce_r(v, k));
  const scaled = f64x2.sub(f64x2.mul(f64x2.add(p, f64x2.splat(1.0)), pow2(k)), f64x2.splat(1.0));
  return v128.bitselect(p, scaled, f64x2.eq(k, f64x2.splat(0)));
}

/** The logistic function: 1/(1 + e^−|x|), or e^−|x|/(1 + e^−|x|) for x < 0 (no cancellation). NaN stays NaN. */
// @ts-ignore: decorator
@inline function sigmoid_f64x2(x: v128): v128 {
  const e = exp_f64x2(f64x2.neg(f64x2.min(f64x2.abs(x), f64x2.splat(700))));
  const t = f64x2.div(f64x2.splat(1.0), f64x2.add(f64x2.splat(1.0), e));
  return v128.bitselect(t, f64x2.mul(e, t), f64x2.ge(x, f64x2.splat(0)));
}

/** 1 − sigmoid(x), as precisely. */
// @ts-ignore: decorator
@inline function sigmoid_complement_f64x2(x: v128): v128 {
  const e = exp_f64x2(f64x2.neg(f64x2.min(f64x2.abs(x), f64x2.splat(700))));
  const t = f64x2.div(f64x2.splat(1.0), f64x2.add(f64x2.splat(1.0), e));
  return v128.bitselect(f64x2.mul(e, t), t, f64x2.ge(x, f64x2.splat(0)));
}

// ---------------------------------------------------------------------------------------
// Tanh in float32 itself, four lanes at a time (LeNet-style networks spend most of their
// elementwise time in it): an odd Taylor polynomial to x¹⁷ below 0.55 (truncation below
// 3e-9 relative there), else 1 − 2/(e^{2|x|} + 1) with Cephes' expf (range reduction by ln 2
// in two parts, a degree-7 polynomial, the exponent built by integer addition), at most about
// 2 ulp from the correctly rounded value: the tests hold it to 3e-7 relative, as the float64
// path.

const TANH_SMALL: f32 = 0.55;
/** tanh |x| is 1 in float32 from about 9.01 on; the clamp also keeps e^{2|x|} finite. */
const TANH_CLAMP: f32 = 9.5;

// @ts-ignore: decorator
@inline function expf_x4(y: v128): v128 {
  const k = f32x4.nearest(f32x4.mul(y, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(y, f32x4.mul(k, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(k, f32x4.splat(-2.12194440e-4)));
  const z = f32x4.mul(r, r);
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(p, z), r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(k), i32x4.splat(127)), 23);
  return f32x4.mul(p, scale);
}

// @ts-ignore: decorator
@inline function tanh_x4(x: v128): v128 {
  const a = f32x4.min(f32x4.abs(x), f32x4.splat(TANH_CLAMP)); // NaN stays NaN
  // |x| < 0.55: x·(1 + x²·(c3 + x²·(c5 + …)))
  const z = f32x4.mul(a, a);
  let p = f32x4.splat(0.000590027440945586);
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(-0.0014558343870513183));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(0.003592128036572481));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(-0.008863235529902197));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(0.021869488536155203));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(-0.05396825396825397));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(0.13333333333333333));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(-0.3333333333333333));
  const small = f32x4.add(a, f32x4.mul(a, f32x4.mul(z, p)));
  const e = expf_x4(f32x4.add(a, a));
  const large = f32x4.sub(f32x4.splat(1), f32x4.div(f32x4.splat(2), f32x4.add(e, f32x4.splat(1))));
  const t = v128.bitselect(small, large, f32x4.lt(a, f32x4.splat(TANH_SMALL)));
  // NaN: both branches are NaN (lt is false: large); the sign of x otherwise.
  return v128.or(t, v128.and(x, f32x4.splat(-0.0)));
}

/** y = tanh x over the first count − count % 4 floats; returns how many were done. */
export function tanh_forward_f32x4(count: i32, x: usize, y: usize): i32 {
  let i = 0;
  // Four independent vectors per iteration: each one's polynomial and exp are long chains of
  // dependent operations, which the unrolled loop overlaps (node, 1.2M floats: 3.8 → 2.1 ms).
  for (; i + 16 <= count; i += 16) {
    const at = <usize>i << 2;
    const a = tanh_x4(v128.load(x + at));
    const b = tanh_x4(v128.load(x + at, 16));
    const c = tanh_x4(v128.load(x + at, 32));
    const d = tanh_x4(v128.load(x + at, 48));
    v128.store(y + at, a);
    v128.store(y + at, b, 16);
    v128.store(y + at, c, 32);
    v128.store(y + at, d, 48);
  }
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, tanh_x4(v128.load(x + at)));
  }
  return i;
}

const KIND_SIGMOID = 2;
const KIND_ELU = 4;
const KIND_GELU_TANH = 6;
const KIND_SILU = 7;
const GELU_TANH_BETA: f64 = 0.79788456080286535588; // sqrt(2/pi)
const GELU_TANH_KAPPA: f64 = 0.044715;
const KIND_GELU = 5;
const SQRT1_2: f64 = 0.70710678118654752440;
const INV_SQRT_2PI: f64 = 0.39894228040143267794;

/** 0.5·x·(1 + erf(x/√2)), with erfc so the negative tail keeps its relative precision (not inlined: erfc is long). */
function gelu_f64x2(x: v128): v128 {
  return f64x2.mul(f64x2.mul(f64x2.splat(0.5), x), erfc_f64x2(f64x2.mul(x, f64x2.splat(-SQRT1_2))));
}

/** GELU's derivative Φ(x) + x·φ(x) = 0.5·erfc(−x/√2) + x·e^(−x²/2)/√(2π). */
function gelu_derivative_f64x2(x: v128): v128 {
  const cdf = f64x2.mul(f64x2.splat(0.5), erfc_f64x2(f64x2.mul(x, f64x2.splat(-SQRT1_2))));
  // e^(−x²/2) is 0 past exp_f64x2's range (as libm's underflows), so ±∞·0 gives NaN, as the scalar path
  const exponent = f64x2.mul(f64x2.splat(-0.5), f64x2.mul(x, x));
  const density = v128.andnot(exp_f64x2(f64x2.max(exponent, f64x2.splat(-700))), f64x2.lt(exponent, f64x2.splat(-700)));
  return f64x2.add(cdf, f64x2.mul(f64x2.mul(x, f64x2.splat(INV_SQRT_2PI)), density));
}

// ---------------------------------------------------------------------------------------
// Sigmoid's and Tanh's derivatives from the input where the output saturates: y·(1 − y) and
// 1 − y² lose their relative precision as y nears 1 (y rounds to 1 in float32 from x ≈ 17 and
// 9, where the true slopes are 4e-8 and 6e-8, and give 0); there σ(x)·σ(−x) and
// 4e^{−2|x|}/(1 + e^{−2|x|})² in float64 keep it, down to float32's denormals.

/** e/(1 + e)² with e = e^{−|v|·scale} (clamped to e^{−700}): σ'(v) for scale 1, tanh'(v)/4 for scale 2. */
// @ts-ignore: decorator
@inline function logistic_slope_f64x2(v: v128, scale: f64): v128 {
  const e = exp_f64x2(f64x2.neg(f64x2.min(f64x2.mul(f64x2.abs(v), f64x2.splat(scale)), f64x2.splat(700))));
  const t = f64x2.div(f64x2.splat(1.0), f64x2.add(f64x2.splat(1.0), e));
  return f64x2.mul(e, f64x2.mul(t, t));
}

/** gy · σ'(x) for four lanes, in float64, rounded once. */
// @ts-ignore: decorator
@inline export function sigmoid_backward_x4(x: v128, gy: v128): v128 {
  const lo = f64x2.promote_low_f32x4(x);
  const hi = f64x2.promote_low_f32x4(i32x4.shuffle(x, x, 2, 3, 0, 1));
  const a = f64x2.mul(f64x2.promote_low_f32x4(gy), logistic_slope_f64x2(lo, 1.0));
  const b = f64x2.mul(f64x2.promote_low_f32x4(i32x4.shuffle(gy, gy, 2, 3, 0, 1)), logistic_slope_f64x2(hi, 1.0));
  return i32x4.shuffle(f32x4.demote_f64x2_zero(a), f32x4.demote_f64x2_zero(b), 0, 1, 4, 5);
}

/** 1 − tanh²(v) = 4e/(1 + e)², e = e^{−2|v|}. */
// @ts-ignore: decorator
@inline function tanh_slope_f64x2(v: v128): v128 {
  return f64x2.mul(f64x2.splat(4.0), logistic_slope_f64x2(v, 2.0));
}

/** gy · tanh'(x) for four lanes, in float64, rounded once. */
// @ts-ignore: decorator
@inline export function tanh_backward_x4(x: v128, gy: v128): v128 {
  const lo = f64x2.promote_low_f32x4(x);
  const hi = f64x2.promote_low_f32x4(i32x4.shuffle(x, x, 2, 3, 0, 1));
  const a = f64x2.mul(f64x2.promote_low_f32x4(gy), tanh_slope_f64x2(lo));
  const b = f64x2.mul(f64x2.promote_low_f32x4(i32x4.shuffle(gy, gy, 2, 3, 0, 1)), tanh_slope_f64x2(hi));
  return i32x4.shuffle(f32x4.demote_f64x2_zero(a), f32x4.demote_f64x2_zero(b), 0, 1, 4, 5);
}

/** Whether act_forward_f64x2 handles this activation kind (Tanh goes to tanh_forward_f32x4). */
export function has_vector_forward(kind: i32): bool {
  return kind == KIND_SIGMOID || kind == KIND_ELU || kind == KIND_GELU || kind == KIND_GELU_TANH || kind == KIND_SILU;
}

/** Whether act_backward_f64x2 handles this activation kind. */
export function has_vector_backward(kind: i32): bool {
  return kind == KIND_ELU || kind == KIND_GELU || kind == KIND_GELU_TANH || kind == KIND_SILU;
}

/** f(x) in float64 for one f64x2 of inputs (kinds of has_vector_forward; p1 = ELU's alpha). */
// @ts-ignore: decorator
@inline function forward_f64x2(kind: i32, x: v128, p1: f64): v128 {
  if (kind == KIND_SIGMOID) return sigmoid_f64x2(x);
  // −∞·sigmoid(−∞) is NaN in the scalar path (and PyTorch's); the clamped sigmoid is not 0 there
  if (kind == KIND_SILU) return v128.bitselect(f64x2.splat(NaN), f64x2.mul(x, sigmoid_f64x2(x)), f64x2.eq(x, f64x2.splat(-Infinity)));
  if (kind == KIND_GELU) return gelu_f64x2(x);
  if (kind == KIND_GELU_TANH) {
    // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u)
    const u = f64x2.mul(f64x2.splat(GELU_TANH_BETA), f64x2.add(x, f64x2.mul(f64x2.splat(GELU_TANH_KAPPA), f64x2.mul(x, f64x2.mul(x, x)))));
    const y = f64x2.mul(x, sigmoid_f64x2(f64x2.mul(u, f64x2.splat(2.0))));
    // −∞·sigmoid(−∞) is NaN in the scalar path (and PyTorch's); the clamped sigmoid is not 0 there
    return v128.bitselect(f64x2.splat(NaN), y, f64x2.eq(x, f64x2.splat(-Infinity)));
  }
  // ELU: x for x > 0 (and NaN), alpha·expm1(x) otherwise
  const negative = f64x2.le(x, f64x2.splat(0));
  const tail = f64x2.mul(f64x2.splat(p1), expm1_f64x2(f64x2.max(x, f64x2.splat(-700))));
  return v128.bitselect(tail, x, negative);
}

/** f'(x) in float64 for one f64x2 of inputs (kinds of has_vector_backward). */
// @ts-ignore: decorator
@inline function derivative_f64x2(kind: i32, x: v128, p1: f64): v128 {
  if (kind == KIND_SILU) {
    // s·(1 + x·(1 − s))
    const s = sigmoid_f64x2(x);
    const slope = f64x2.mul(s, f64x2.add(f64x2.splat(1.0), f64x2.mul(x, sigmoid_complement_f64x2(x))));
    // ±∞ gives ∞·0 in the scalar path: NaN
    return v128.bitselect(f64x2.splat(NaN), slope, f64x2.eq(f64x2.abs(x), f64x2.splat(Infinity)));
  }
  if (kind == KIND_GELU) return gelu_derivative_f64x2(x);
  if (kind == KIND_GELU_TANH) {
    // d/dx x·s(2u) = s + 2x·s(1 − s)·u'
    const x2 = f64x2.mul(x, x);
    const u2 = f64x2.mul(f64x2.splat(2.0 * GELU_TANH_BETA), f64x2.add(x, f64x2.mul(f64x2.splat(GELU_TANH_KAPPA), f64x2.mul(x, x2))));
    const du = f64x2.mul(f64x2.splat(GELU_TANH_BETA), f64x2.add(f64x2.splat(1.0), f64x2.mul(f64x2.splat(3.0 * GELU_TANH_KAPPA), x2)));
    const s = sigmoid_f64x2(u2);
    const slope = f64x2.mul(f64x2.mul(f64x2.mul(f64x2.splat(2.0), x), s), f64x2.mul(sigmoid_complement_f64x2(u2), du));
    // ±∞ gives ∞·0 in the scalar path: NaN
    return v128.bitselect(f64x2.splat(NaN), f64x2.add(s, slope), f64x2.eq(f64x2.abs(x), f64x2.splat(Infinity)));
  }
  // ELU: alpha·e^x for x <= 0, else 1 (NaN: 1, as x <= 0 fails)
  const negative = f64x2.le(x, f64x2.splat(0));
  const slope = f64x2.mul(f64x2.splat(p1), exp_f64x2(f64x2.max(x, f64x2.splat(-700))));
  return v128.bitselect(slope, f64x2.splat(1.0), negative);
}

/** y = f(x) over the first count − count % 4 floats; returns how many were done. */
export function act_forward_f64x2(kind: i32, count: i32, x: usize, y: usize, p1: f32): i32 {
  const alpha = <f64>p1;
  let i = 0;
  // Eight floats (four independent f64x2 chains) per iteration, as tanh_forward_f32x4.
  for (; i + 8 <= count; i += 8) {
    const at = <usize>i << 2;
    const v = v128.load(x + at);
    const w = v128.load(x + at, 16);
    const a = forward_f64x2(kind, f64x2.promote_low_f32x4(v), alpha);
    const b = forward_f64x2(kind, f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), alpha);
    const c = forward_f64x2(kind, f64x2.promote_low_f32x4(w), alpha);
    const d = forward_f64x2(kind, f64x2.promote_low_f32x4(i32x4.shuffle(w, w, 2, 3, 0, 1)), alpha);
    v128.store(y + at, i32x4.shuffle(f32x4.demote_f64x2_zero(a), f32x4.demote_f64x2_zero(b), 0, 1, 4, 5));
    v128.store(y + at, i32x4.shuffle(f32x4.demote_f64x2_zero(c), f32x4.demote_f64x2_zero(d), 0, 1, 4, 5), 16);
  }
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    const v = v128.load(x + at);
    const lo = forward_f64x2(kind, f64x2.promote_low_f32x4(v), alpha);
    const hi = forward_f64x2(kind, f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), alpha);
    v128.store(y + at, i32x4.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
  }
  return i;
}

/**
 * gx = gy · f'(x) over the first n − n % 4 floats, the product in float64 and rounded once
 * (as the scalar path); returns how many were done.
 */
export function act_backward_f64x2(kind: i32, n: i32, x: usize, gy: usize, gx: usize, p1: f32): i32 {
  const alpha = <f64>p1;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = <usize>i << 2;
    const v = v128.load(x + at);
    const g = v128.load(gy + at);
    const lo = f64x2.mul(f64x2.promote_low_f32x4(g), derivative_f64x2(kind, f64x2.promote_low_f32x4(v), alpha));
    const hi = f64x2.mul(
      f64x2.promote_low_f32x4(i32x4.shuffle(g, g, 2, 3, 0, 1)),
      derivative_f64x2(kind, f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), alpha),
    );
    v128.store(gx + at, i32x4.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
  }
  return i;
}
