// The complementary error function in float64, after FreeBSD/musl s_erf.c (Sun Microsystems,
// 1993: "Permission to use, copy, modify, and distribute this software is freely granted,
// provided that this notice is preserved"). Rational approximations on five intervals, error
// below 1 ulp of float64, far below what a float32 GELU can see. AssemblyScript's Math has no
// erf, and the short polynomial fits (Abramowitz-Stegun 7.1.26, ~1e-7) are too coarse.

import { exp_f64x2 } from "./nn_exp";

const ERX: f64 = 8.45062911510467529297e-01;
// erf on [0, 0.84375]: erf(x) = x + x * P(x²) / Q(x²)
const PP0: f64 = 1.28379167095512558561e-01;
const PP1: f64 = -3.25042107247001499370e-01;
const PP2: f64 = -2.84817495755985104766e-02;
const PP3: f64 = -5.77027029648944159157e-03;
const PP4: f64 = -2.37630166566501626084e-05;
const QQ1: f64 = 3.97917223959155352819e-01;
const QQ2: f64 = 6.50222499887672944485e-02;
const QQ3: f64 = 5.08130628187576562776e-03;
const QQ4: f64 = 1.32494738004321644526e-04;
const QQ5: f64 = -3.96022827877536812320e-06;
// erf on [0.84375, 1.25]: erf(1 + s) = ERX + P(s) / Q(s)
const PA0: f64 = -2.36211856075265944077e-03;
const PA1: f64 = 4.14856118683748331666e-01;
const PA2: f64 = -3.72207876035701323847e-01;
const PA3: f64 = 3.18346619901161753674e-01;
const PA4: f64 = -1.10894694282396677476e-01;
const PA5: f64 = 3.54783043256182359371e-02;
const PA6: f64 = -2.16637559486879084300e-03;
const QA1: f64 = 1.06420880400844228286e-01;
const QA2: f64 = 5.40397917702171048937e-01;
const QA3: f64 = 7.18286544141962662868e-02;
const QA4: f64 = 1.26171219808761642112e-01;
const QA5: f64 = 1.36370839120290507362e-02;
const QA6: f64 = 1.19844998467991074170e-02;
// erfc on [1.25, 1/0.35]: erfc(x) = exp(-x² - 0.5625 + R(1/x²) / S(1/x²)) / x
const RA0: f64 = -9.86494403484714822705e-03;
const RA1: f64 = -6.93858572707181764372e-01;
const RA2: f64 = -1.05586262253232909814e+01;
const RA3: f64 = -6.23753324503260060396e+01;
const RA4: f64 = -1.62396669462573470355e+02;
const RA5: f64 = -1.84605092906711035994e+02;
const RA6: f64 = -8.12874355063065934246e+01;
const RA7: f64 = -9.81432934416914548592e+00;
const SA1: f64 = 1.96512716674392571292e+01;
const SA2: f64 = 1.37657754143519042600e+02;
const SA3: f64 = 4.34565877475229228821e+02;
const SA4: f64 = 6.45387271733267880336e+02;
const SA5: f64 = 4.29008140027567833386e+02;
const SA6: f64 = 1.08635005541779435134e+02;
const SA7: f64 = 6.57024977031928170135e+00;
const SA8: f64 = -6.04244152148580987438e-02;
// erfc on [1/0.35, 28], same form
const RB0: f64 = -9.86494292470009928597e-03;
const RB1: f64 = -7.99283237680523006574e-01;
const RB2: f64 = -1.77579549177547519889e+01;
const RB3: f64 = -1.60636384855821916062e+02;
const RB4: f64 = -6.37566443368389627722e+02;
const RB5: f64 = -1.02509513161107724954e+03;
const RB6: f64 = -4.83519191608651397019e+02;
const SB1: f64 = 3.03380607434824582924e+01;
const SB2: f64 = 3.25792512996573918826e+02;
const SB3: f64 = 1.53672958608443695994e+03;
const SB4: f64 = 3.19985821950859553908e+03;
const SB5: f64 = 2.55305040643316442583e+03;
const SB6: f64 = 4.74528541206955367215e+02;
const SB7: f64 = -2.24409524465858183362e+01;

// erfc(|x|) for 0.84375 <= |x| < 28 (ix: the high word of |x|).
function erfcTail(ix: u32, x: f64): f64 {
  const a = Math.abs(x);
  if (ix < 0x3ff40000) {
    // |x| < 1.25
    const s = a - 1.0;
    const p = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
    const q = 1.0 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
    return 1.0 - ERX - p / q;
  }
  const s = 1.0 / (a * a);
  let r: f64, t: f64;
  if (ix < 0x4006db6d) {
    // |x| < 1/0.35
    r = RA0 + s * (RA1 + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7))))));
    t = 1.0 + s * (SA1 + s * (SA2 + s * (SA3 + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8)))))));
  } else {
    r = RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6)))));
    t = 1.0 + s * (SB1 + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7))))));
  }
  // -a² split as -z² + (z - a)(z + a) with z = a truncated to 32 bits, so exp sees no rounding of a².
  const z = reinterpret<f64>(reinterpret<u64>(a) & 0xffffffff00000000);
  return (Math.exp(-z * z - 0.5625) * Math.exp((z - a) * (z + a) + r / t)) / a;
}

/** erfc(x) = 1 - erf(x) in float64, accurate in both tails. */
export function erfc64(x: f64): f64 {
  const hi = <u32>(reinterpret<u64>(x) >> 32);
  const negative = (hi >> 31) != 0;
  const ix = hi & 0x7fffffff;
  if (ix >= 0x7ff00000) {
    // NaN stays NaN; erfc(+inf) = 0, erfc(-inf) = 2
    return (negative ? 2.0 : 0.0) + 1.0 / x;
  }
  if (ix < 0x3feb0000) {
    // |x| < 0.84375
    if (ix < 0x3c700000) return 1.0 - x;
    const z = x * x;
    const r = PP0 + z * (PP1 + z * (PP2 + z * (PP3 + z * PP4)));
    const s = 1.0 + z * (QQ1 + z * (QQ2 + z * (QQ3 + z * (QQ4 + z * QQ5))));
    const y = r / s;
    if (negative || ix < 0x3fd00000) return 1.0 - (x + x * y);
    return 0.5 - (x - 0.5 + x * y);
  }
  if (ix < 0x403c0000) {
    // |x| < 28
    const tail = erfcTail(ix, x);
    return negative ? 2.0 - tail : tail;
  }
  return negative ? 2.0 : 0.0;
}

// ---------------------------------------------------------------------------------------
// Two lanes at a time: the same intervals and rational functions, each evaluated for both
// lanes where either lane needs it and kept where the lane belongs (GELU's inputs straddle
// intervals in about a third of pairs); pairs with a huge, infinite or NaN lane go through
// erfc64 one lane at a time. exp is exp_f64x2 (nn_exp.ts, relative error below 1e-11: the
// float32 GELU values of the scalar path).

// @ts-ignore: decorator
@inline function splat(v: f64): v128 {
  return f64x2.splat(v);
}

/** c0 + t·(c1 + t·(… + t·c7)) (a zero leading coefficient keeps Horner exact for shorter ones). */
// @ts-ignore: decorator
@inline function horner8(t: v128, c0: f64, c1: f64, c2: f64, c3: f64, c4: f64, c5: f64, c6: f64, c7: f64): v128 {
  let p = splat(c7);
  p = f64x2.add(f64x2.mul(p, t), splat(c6));
  p = f64x2.add(f64x2.mul(p, t), splat(c5));
  p = f64x2.add(f64x2.mul(p, t), splat(c4));
  p = f64x2.add(f64x2.mul(p, t), splat(c3));
  p = f64x2.add(f64x2.mul(p, t), splat(c2));
  p = f64x2.add(f64x2.mul(p, t), splat(c1));
  return f64x2.add(f64x2.mul(p, t), splat(c0));
}

/** erfcTail's exp(−a² − 0.5625 + r/q) / a, −a² split as −z² + (z − a)(z + a) with z = a's high 32 bits. */
// @ts-ignore: decorator
@inline function tail_exp(a: v128, r: v128, q: v128): v128 {
  const z = v128.and(a, i64x2.splat(0xffffffff00000000));
  // exp_f64x2 takes [−700, 700]: past it (|x| > 26.4) erfc is below 1e-304, zero in float32
  const e1 = exp_f64x2(f64x2.max(f64x2.sub(f64x2.neg(f64x2.mul(z, z)), splat(0.5625)), splat(-700)));
  const e2 = exp_f64x2(f64x2.add(f64x2.mul(f64x2.sub(z, a), f64x2.add(z, a)), f64x2.div(r, q)));
  return f64x2.div(f64x2.mul(e1, e2), a);
}

/** erfc of both lanes of x (f64x2), as erfc64 computes each (inlined: v128 cannot cross a module export). */
// @ts-ignore: decorator
@inline export function erfc_f64x2(x: v128): v128 {
  const a = f64x2.abs(x);
  // |x| ≥ 28, ∞ or NaN in either lane (NaN fails every comparison): the scalar path
  if (!i64x2.all_true(f64x2.lt(a, splat(28.0)))) {
    return f64x2.replace_lane(f64x2.splat(erfc64(f64x2.extract_lane(x, 0))), 1, erfc64(f64x2.extract_lane(x, 1)));
  }
  const one = splat(1.0);
  const small = f64x2.lt(a, splat(0.84375));
  const middle = v128.andnot(f64x2.lt(a, splat(1.25)), small);
  // About 1/0.35: erfc64 compares the high word with 0x4006db6d, so the same boundary exactly
  const near = f64x2.lt(a, splat(reinterpret<f64>(0x4006db6d00000000)));
  let result = f64x2.splat(0);
  if (v128.any_true(small)) {
    const z = f64x2.mul(x, x);
    const r = horner8(z, PP0, PP1, PP2, PP3, PP4, 0, 0, 0);
    const q = f64x2.add(one, f64x2.mul(z, horner8(z, QQ1, QQ2, QQ3, QQ4, QQ5, 0, 0, 0)));
    const xy = f64x2.mul(x, f64x2.div(r, q));
    // erfc64: 1 − (x + x·y) for x < 0.25 (and every negative x), else 0.5 − (x − 0.5 + x·y)
    const low = f64x2.sub(one, f64x2.add(x, xy));
    const high = f64x2.sub(splat(0.5), f64x2.add(f64x2.sub(x, splat(0.5)), xy));
    result = v128.bitselect(v128.bitselect(low, high, f64x2.lt(x, splat(0.25))), result, small);
  }
  let tail = f64x2.splat(0);
  if (v128.any_true(middle)) {
    const t = f64x2.sub(a, one);
    const p = horner8(t, PA0, PA1, PA2, PA3, PA4, PA5, PA6, 0);
    const q = f64x2.add(one, f64x2.mul(t, horner8(t, QA1, QA2, QA3, QA4, QA5, QA6, 0, 0)));
    tail = v128.bitselect(f64x2.sub(splat(1.0 - ERX), f64x2.div(p, q)), tail, middle);
  }
  const outer = v128.andnot(near, f64x2.lt(a, splat(1.25)));
  if (v128.any_true(outer)) {
    const t = f64x2.div(one, f64x2.mul(a, a));
    const r = horner8(t, RA0, RA1, RA2, RA3, RA4, RA5, RA6, RA7);
    const q = f64x2.add(one, f64x2.mul(t, horner8(t, SA1, SA2, SA3, SA4, SA5, SA6, SA7, SA8)));
    tail = v128.bitselect(tail_exp(a, r, q), tail, outer);
  }
  const far = v128.not(near);
  if (v128.any_true(far)) {
    const t = f64x2.div(one, f64x2.mul(a, a));
    const r = horner8(t, RB0, RB1, RB2, RB3, RB4, RB5, RB6, 0);
    const q = f64x2.add(one, f64x2.mul(t, horner8(t, SB1, SB2, SB3, SB4, SB5, SB6, SB7, 0)));
    tail = v128.bitselect(tail_exp(a, r, q), tail, far);
  }
  // Lanes past the first interval: erfc(|x|), or 2 − that for negative x
  const tails = v128.bitselect(f64x2.sub(splat(2.0), tail), tail, f64x2.lt(x, splat(0)));
  return v128.bitselect(result, tails, small);
}
