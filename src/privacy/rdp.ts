/**
 * The Rényi differential privacy (RDP) of the sampled Gaussian mechanism, the privacy analysis
 * of DP-SGD: each step adds N(0, σ²C²) noise to the clipped sum of a Poisson-sampled batch
 * (rate q), and the step's RDP at order α is log(A_α)/(α − 1) (Mironov, Talwar and Zhang
 * 2019, arXiv:1908.10530, §3.3). RDP adds up over steps; `privacySpent` turns the total into
 * (ε, δ)-DP by Balle et al. 2020 (arXiv:1905.09982, Theorem 21), at the best of many orders.
 * The same analysis as Opacus's `RDPAccountant`, so that the ε reported here is the ε
 * Opacus reports for the same training run.
 */
import { ValueError } from "../errors.ts";

/**
 * The orders α at which the RDP is computed unless others are given, Opacus's: 1.1 to 10.9 in
 * steps of 0.1, then the integers 12 to 63. A small ε (much noise, few steps) is found at a
 * large α, a large ε near α = 1; the grid is fine where ε changes fastest with α.
 *
 * @example
 * ```ts
 * import { DEFAULT_ORDERS, computeRdp } from "jacobian-wasm";
 * DEFAULT_ORDERS.length; // 151
 * const rdp = computeRdp({ sampleRate: 0.01, noiseMultiplier: 1.1, steps: 1000, orders: DEFAULT_ORDERS });
 * ```
 */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, k) => 1 + (k + 1) / 10),
  ...Array.from({ length: 52 }, (_, k) => 12 + k),
]);

/**
 * The mechanism, how often it ran, and where to evaluate its RDP.
 *
 * @example
 * ```ts
 * import { computeRdp } from "jacobian-wasm";
 * import type { RdpOptions } from "jacobian-wasm";
 * const options: RdpOptions = { sampleRate: 0.01, noiseMultiplier: 1.0, steps: 100, orders: [2, 4, 8, 16] };
 * const rdp = computeRdp(options); // Float64Array(4): the RDP at each order
 * ```
 */
export interface RdpOptions {
  /** q, the probability of each example being in a batch (Poisson sampling), in [0, 1]. */
  sampleRate: number;
  /** σ, the noise's standard deviation over the clipping norm, finite and ≥ 0. */
  noiseMultiplier: number;
  /** How many steps were taken with this q and σ, an integer ≥ 0. */
  steps: number;
  /** The orders α, each finite and > 1; default `DEFAULT_ORDERS`. */
  orders?: ArrayLike<number>;
}

/**
 * The RDP of a run at its orders, and the δ to convert it at.
 *
 * @example
 * ```ts
 * import { computeRdp, privacySpent, DEFAULT_ORDERS } from "jacobian-wasm";
 * import type { PrivacySpentOptions } from "jacobian-wasm";
 * const rdp = computeRdp({ sampleRate: 0.01, noiseMultiplier: 1.0, steps: 1000 });
 * const options: PrivacySpentOptions = { orders: DEFAULT_ORDERS, rdp, delta: 1e-5 };
 * const { epsilon, bestOrder } = privacySpent(options);
 * ```
 */
export interface PrivacySpentOptions {
  /** The orders α the RDP was computed at, each > 1 (`DEFAULT_ORDERS` unless others were used). */
  orders: ArrayLike<number>;
  /** The run's RDP at each of `orders` (NaN entries are skipped). */
  rdp: ArrayLike<number>;
  /** δ, in (0, 1). */
  delta: number;
}

/**
 * The (ε, δ)-DP a run achieves at the given δ.
 *
 * @example
 * ```ts
 * import { RDPAccountant } from "jacobian-wasm";
 * import type { PrivacySpent } from "jacobian-wasm";
 * const accountant = new RDPAccountant();
 * accountant.step({ noiseMultiplier: 1.0, sampleRate: 0.01 });
 * const spent: PrivacySpent = accountant.getPrivacySpent(1e-5);
 * if (spent.warning) console.warn(spent.warning); // the best order is at the edge of the grid
 * ```
 */
export interface PrivacySpent {
  /** The smallest ε over the orders (Infinity when no order gives a number). */
  epsilon: number;
  /** The order α that gave it (NaN when none did, or when no step was taken). */
  bestOrder: number;
  /**
   * Set when the best order is the smallest or the largest of the orders: an order beyond
   * the range may give a smaller ε, so the ε is valid but maybe not the tightest.
   */
  warning?: string;
}

/**
 * The RDP of the sampled Gaussian mechanism run `steps` times, at each order: the RDP of one
 * step times `steps`. Infinite at every order for σ = 0 (no noise, no privacy); 0 for q = 0
 * (no example is ever used); α/(2σ²), the plain Gaussian mechanism's, for q = 1.
 *
 * @example
 * ```ts
 * import { computeRdp, privacySpent, DEFAULT_ORDERS } from "jacobian-wasm";
 * // 10 epochs of batches of 256 out of 60000 examples, at σ = 1.1
 * const rdp = computeRdp({ sampleRate: 256 / 60000, noiseMultiplier: 1.1, steps: 2344 });
 * const { epsilon } = privacySpent({ orders: DEFAULT_ORDERS, rdp, delta: 1e-5 }); // ≈ 1.10, at order 12
 * ```
 */
export function computeRdp(options: RdpOptions): Float64Array {
  const { sampleRate, noiseMultiplier, steps, orders = DEFAULT_ORDERS } = options;
  checkMechanism("computeRdp", noiseMultiplier, sampleRate);
  if (!Number.isSafeInteger(steps) || steps < 0) throw new ValueError(`computeRdp: steps must be an integer ≥ 0, got ${shown(steps)}`);
  checkOrders("computeRdp", orders);
  const rdp = new Float64Array(orders.length);
  // No step taken, nothing released: 0 even where one step's RDP is infinite.
  if (steps === 0) return rdp;
  for (let k = 0; k < orders.length; k++) rdp[k] = stepRdp(sampleRate, noiseMultiplier, orders[k]) * steps;
  return rdp;
}

/**
 * The ε of (ε, δ)-DP that a run with RDP `rdp` at `orders` satisfies: the smallest over the
 * orders of ε(α) = rdp(α) − (log δ + log α)/(α − 1) + log((α − 1)/α) (Balle et al. 2020,
 * Theorem 21; tighter than the classic rdp(α) + log(1/δ)/(α − 1)). NaN values of ε(α) are
 * skipped; the first order wins a tie.
 *
 * @example
 * ```ts
 * import { computeRdp, privacySpent } from "jacobian-wasm";
 * const orders = [2, 4, 8, 16, 32, 64];
 * const rdp = computeRdp({ sampleRate: 0.01, noiseMultiplier: 1, steps: 1000, orders });
 * const { epsilon, bestOrder, warning } = privacySpent({ orders, rdp, delta: 1e-5 });
 * ```
 */
export function privacySpent(options: PrivacySpentOptions): PrivacySpent {
  const { orders, rdp, delta } = options;
  checkOrders("privacySpent", orders);
  checkDelta("privacySpent", delta);
  if (rdp.length !== orders.length) throw new ValueError(`privacySpent: rdp has ${rdp.length} values for ${orders.length} orders`);
  const logDelta = Math.log(delta);
  let best = -1;
  let epsilon = Infinity;
  for (let k = 0; k < orders.length; k++) {
    const alpha = orders[k];
    const candidate = rdp[k] - (logDelta + Math.log(alpha)) / (alpha - 1) + Math.log((alpha - 1) / alpha);
    if (Number.isNaN(candidate)) continue;
    if (best < 0 || candidate < epsilon) {
      best = k;
      epsilon = candidate;
    }
  }
  if (best < 0) return { epsilon: Infinity, bestOrder: NaN };
  const result: PrivacySpent = { epsilon, bestOrder: orders[best] };
  // An infinite ε is infinite at every order: widening the range would not help.
  if (Number.isFinite(epsilon) && (best === 0 || best === orders.length - 1)) {
    const [extreme, beyond] = best === 0 ? ["smallest", "below"] : ["largest", "above"];
    result.warning = `the best order is the ${extreme} of the orders (${orders[best]}): orders ${beyond} it may give a smaller epsilon`;
  }
  return result;
}

/** The RDP of one step at order α. */
function stepRdp(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  if (sigma === 0) return Infinity;
  if (q === 1) return alpha / (2 * sigma * sigma);
  return (Number.isInteger(alpha) ? logAIntegerOrder(q, sigma, alpha) : logAFractionalOrder(q, sigma, alpha)) / (alpha - 1);
}

/**
 * log A_α for integer α: A_α = Σ_{i=0..α} C(α, i) qⁱ (1 − q)^(α−i) exp((i² − i)/(2σ²)), the
 * α-th moment of the privacy loss, summed in log space (the terms overflow for small σ).
 */
function logAIntegerOrder(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q);
  const logNotQ = logOneMinus(q);
  const twoVariance = 2 * sigma * sigma;
  let logA = -Infinity;
  let binomial = 1;
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) binomial = (binomial * (alpha - i + 1)) / i;
    logA = logAdd(logA, Math.log(binomial) + i * logQ + (alpha - i) * logNotQ + (i * i - i) / twoVariance);
  }
  return logA;
}

/**
 * log A_α for fractional α, where the binomial sum does not end: the integral defining A_α
 * split at z0 (where the mixture's two parts weigh equally, q·N(1, σ²) = (1 − q)·N(0, σ²)),
 * each half a series in the real binomial C(α, i) with Gaussian tail factors erfc(·)/2. The
 * series is summed until both halves' terms fall below e⁻³⁰; C(α, i) alternates in sign from
 * i > α + 1 on, so terms of negative coefficient are subtracted.
 */
function logAFractionalOrder(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q);
  const logNotQ = logOneMinus(q);
  const twoVariance = 2 * sigma * sigma;
  const tailScale = Math.SQRT2 * sigma;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  let binomial = 1;
  for (let i = 0; ; i++) {
    if (i > 0) binomial = (binomial * (alpha - i + 1)) / i;
    const logBinomial = Math.log(Math.abs(binomial));
    const j = alpha - i;
    const logTerm0 = logBinomial + i * logQ + j * logNotQ + (i * i - i) / twoVariance + (Math.log(0.5) + logErfc((i - z0) / tailScale));
    const logTerm1 = logBinomial + j * logQ + i * logNotQ + (j * j - j) / twoVariance + (Math.log(0.5) + logErfc((z0 - j) / tailScale));
    if (binomial > 0) {
      logA0 = logAdd(logA0, logTerm0);
      logA1 = logAdd(logA1, logTerm1);
    } else {
      logA0 = logSubtract(logA0, logTerm0);
      logA1 = logSubtract(logA1, logTerm1);
    }
    const largest = Math.max(logTerm0, logTerm1);
    if (Number.isNaN(largest)) throw new Error(`internal: the RDP series at order ${alpha} (q = ${q}, σ = ${sigma}) gave NaN at term ${i}`);
    if (largest < -30) break;
  }
  return logAdd(logA0, logA1);
}

/**
 * log(1 − q) as Opacus rounds it, not the more exact log1p(−q): for small q and large σ, log A_α
 * is a tiny difference of terms near 1, where the last bit of log(1 − q) moves the RDP by up
 * to 1e-9 relative (well inside either's truncation error, but the same rounding keeps the RDP
 * Opacus's to ~1e-10 rather than ~1e-9).
 */
function logOneMinus(q: number): number {
  return Math.log(1 - q);
}

/** log(eˣ + eʸ) without overflow. */
function logAdd(x: number, y: number): number {
  const low = Math.min(x, y);
  const high = Math.max(x, y);
  if (low === -Infinity) return high;
  return Math.log1p(Math.exp(low - high)) + high;
}

/** log(eˣ − eʸ) for x ≥ y without overflow. */
function logSubtract(x: number, y: number): number {
  if (x < y) throw new Error(`internal: the RDP series' partial sum went negative (log ${x} − log ${y})`);
  if (y === -Infinity) return x;
  if (x === y) return -Infinity;
  const ratio = Math.expm1(x - y);
  // eʸ is negligible beside eˣ once e^(x−y) overflows.
  return ratio === Infinity ? x : Math.log(ratio) + y;
}

/** Where the continued fraction takes over from the power series of erf. */
const CONTINUED_FRACTION_FROM = 1;
const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/**
 * log(erfc(x)) to 2e-15 relative (against 200-bit mpmath), for every x: erfc(x) underflows past x ≈ 27 while
 * the RDP series needs its logarithm far beyond (the tail factors' arguments grow with the
 * series' index). For |x| < 1, log1p(−erf(x)) with erf's Maclaurin series (log1p keeps it
 * exact near x = 0, where log erfc → 0; beyond 1, 1 − erf would cancel too many digits); for
 * x ≥ 1, the continued fraction
 * erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))) taken in log form, so it
 * never underflows (under 200 terms from x = 1 on); for x ≤ −1, erfc(x) = 2 − erfc(−x).
 *
 * @example
 * ```ts
 * import { logErfc } from "./rdp.ts";
 * logErfc(30); // −903.9741…, where erfc(30) ≈ 2.6e-393 is 0 in float64
 * ```
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x >= CONTINUED_FRACTION_FROM) return logErfcContinuedFraction(x);
  if (x <= -CONTINUED_FRACTION_FROM) return Math.LN2 + Math.log1p(-0.5 * Math.exp(logErfcContinuedFraction(-x)));
  return Math.log1p(-erfSeries(x));
}

/** erf(x) = 2/√π Σₙ (−1)ⁿ x^(2n+1) / (n! (2n + 1)), for |x| < 1 (the terms only decrease). */
function erfSeries(x: number): number {
  const minusSquare = -x * x;
  let power = x; // (−1)ⁿ x^(2n+1) / n!
  let sum = x;
  for (let n = 1; n < 200; n++) {
    power *= minusSquare / n;
    const term = power / (2 * n + 1);
    sum += term;
    if (Math.abs(term) <= 1e-17 * Math.abs(sum)) break;
  }
  return sum * (2 / Math.sqrt(Math.PI));
}

/**
 * log erfc(x) for x ≥ 1: −x² − log √π − log(x + (1/2)/(x + 1/(x + …))), the fraction
 * evaluated forward by the modified Lentz method, its n-th partial numerator n/2.
 */
function logErfcContinuedFraction(x: number): number {
  if (x === Infinity) return -Infinity;
  const tiny = 1e-300;
  let fraction = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 5000; n++) {
    const a = n / 2;
    d = x + a * d;
    d = Math.abs(d) < tiny ? 1 / tiny : 1 / d;
    c = x + a / c;
    if (Math.abs(c) < tiny) c = tiny;
    const delta = c * d;
    fraction *= delta;
    if (Math.abs(delta - 1) <= 1e-16) break;
  }
  return -x * x - LOG_SQRT_PI - Math.log(fraction);
}

/** Refuses a noise multiplier or a sample rate out of range; `what` names the function called. @internal */
export function checkMechanism(what: string, noiseMultiplier: unknown, sampleRate: unknown): void {
  if (typeof noiseMultiplier !== "number" || !Number.isFinite(noiseMultiplier) || noiseMultiplier < 0) {
    throw new ValueError(`${what}: noiseMultiplier must be a finite number ≥ 0, got ${shown(noiseMultiplier)}`);
  }
  if (typeof sampleRate !== "number" || !(sampleRate >= 0 && sampleRate <= 1)) {
    throw new ValueError(`${what}: sampleRate must be a number in [0, 1], got ${shown(sampleRate)}`);
  }
}

/** Refuses a δ outside (0, 1). @internal */
export function checkDelta(what: string, delta: unknown): void {
  if (typeof delta !== "number" || !(delta > 0 && delta < 1)) throw new ValueError(`${what}: delta must be a number in (0, 1), got ${shown(delta)}`);
}

/** Refuses orders that are not finite numbers above 1 (at α = 1 the conversion divides by zero). @internal */
export function checkOrders(what: string, orders: ArrayLike<number>): void {
  if (orders === null || typeof orders !== "object" || typeof orders.length !== "number") throw new ValueError(`${what}: orders must be an array of numbers, got ${shown(orders)}`);
  if (orders.length === 0) throw new ValueError(`${what}: orders must not be empty`);
  for (let k = 0; k < orders.length; k++) {
    const alpha = orders[k];
    if (typeof alpha !== "number" || !Number.isFinite(alpha) || !(alpha > 1)) throw new ValueError(`${what}: orders[${k}] must be a finite number > 1, got ${shown(alpha)}`);
  }
}

/** A value as a message shows it: strings quoted, so "0.5" and 0.5 differ. */
function shown(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}
