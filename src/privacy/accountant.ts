/**
 * The privacy budget a DP-SGD run has spent so far: each step of the sampled Gaussian
 * mechanism is recorded, runs of equal steps as one segment, and ε is worked out at any δ
 * from the segments' summed RDP (src/privacy/rdp.ts). The counterpart of Opacus's
 * `RDPAccountant`, with the same steps giving the same ε.
 */
import { checkDelta, checkMechanism, checkOrders, computeRdp, DEFAULT_ORDERS, privacySpent } from "./rdp.ts";
import type { PrivacySpent } from "./rdp.ts";

/**
 * One step of DP-SGD, as the accountant needs to know it.
 *
 * @example
 * ```ts
 * import { RDPAccountant } from "jacobian-wasm";
 * import type { StepOptions } from "jacobian-wasm";
 * const step: StepOptions = { noiseMultiplier: 1.0, sampleRate: 0.01 };
 * const accountant = new RDPAccountant();
 * accountant.step(step);
 * ```
 */
export interface StepOptions {
  /** σ, the noise's standard deviation over the clipping norm, finite and ≥ 0. */
  noiseMultiplier: number;
  /** q, the probability of each example being in the batch (Poisson sampling), in [0, 1]. */
  sampleRate: number;
}

/**
 * Consecutive steps taken with the same noise multiplier and sample rate.
 *
 * @example
 * ```ts
 * import { RDPAccountant } from "jacobian-wasm";
 * import type { HistorySegment } from "jacobian-wasm";
 * const accountant = new RDPAccountant();
 * for (let i = 0; i < 3; i++) accountant.step({ noiseMultiplier: 1.0, sampleRate: 0.01 });
 * const [segment]: readonly HistorySegment[] = accountant.history; // { noiseMultiplier: 1, sampleRate: 0.01, steps: 3 }
 * ```
 */
export interface HistorySegment {
  /** σ of these steps. */
  readonly noiseMultiplier: number;
  /** q of these steps. */
  readonly sampleRate: number;
  /** How many consecutive steps took this σ and q. */
  readonly steps: number;
}

/**
 * Accounts the privacy of DP-SGD by Rényi DP, as Opacus's `RDPAccountant` does: call `step`
 * after every noisy step, then ask for ε at a δ. The RDP of each segment of equal steps is
 * computed when ε is asked for, so `step` costs nothing and a schedule that changes σ or q
 * costs one segment per change.
 *
 * @example
 * ```ts
 * import { RDPAccountant } from "jacobian-wasm";
 * const accountant = new RDPAccountant();
 * for (let step = 0; step < 2344; step++) accountant.step({ noiseMultiplier: 1.1, sampleRate: 256 / 60000 });
 * const epsilon = accountant.getEpsilon(1e-5); // ≈ 1.10 after 10 epochs of 60000 examples
 * accountant.history; // [{ noiseMultiplier: 1.1, sampleRate: 0.004266…, steps: 2344 }]
 * ```
 */
export class RDPAccountant {
  private readonly segments: { noiseMultiplier: number; sampleRate: number; steps: number }[] = [];

  /** The steps taken, oldest first, consecutive equal steps merged (a copy: changing it changes nothing). */
  get history(): readonly HistorySegment[] {
    return Object.freeze(this.segments.map((segment) => Object.freeze({ ...segment })));
  }

  /**
   * Records one step of the sampled Gaussian mechanism. A step with the noise multiplier and
   * sample rate of the one before extends its segment.
   *
   * @example
   * ```ts
   * import { RDPAccountant } from "jacobian-wasm";
   * const accountant = new RDPAccountant();
   * accountant.step({ noiseMultiplier: 1.0, sampleRate: 0.01 });
   * accountant.step({ noiseMultiplier: 1.0, sampleRate: 0.01 });
   * accountant.step({ noiseMultiplier: 0.8, sampleRate: 0.01 });
   * accountant.history.length; // 2: two steps at σ = 1, one at σ = 0.8
   * ```
   */
  step(options: StepOptions): void {
    const { noiseMultiplier, sampleRate } = options;
    checkMechanism("RDPAccountant.step", noiseMultiplier, sampleRate);
    const last = this.segments[this.segments.length - 1];
    if (last !== undefined && last.noiseMultiplier === noiseMultiplier && last.sampleRate === sampleRate) last.steps++;
    else this.segments.push({ noiseMultiplier, sampleRate, steps: 1 });
  }

  /**
   * The (ε, δ)-DP of the steps so far: ε and the order it was found at, with a `warning`
   * when that order is at an end of `orders` (widening them might give a smaller ε). Before
   * any step, ε = 0 and `bestOrder` is NaN.
   *
   * @example
   * ```ts
   * import { RDPAccountant } from "jacobian-wasm";
   * const accountant = new RDPAccountant();
   * for (let step = 0; step < 1000; step++) accountant.step({ noiseMultiplier: 1.0, sampleRate: 0.01 });
   * const { epsilon, bestOrder, warning } = accountant.getPrivacySpent(1e-5);
   * if (warning !== undefined) console.warn(warning);
   * ```
   */
  getPrivacySpent(delta: number, orders: ArrayLike<number> = DEFAULT_ORDERS): PrivacySpent {
    checkDelta("RDPAccountant.getPrivacySpent", delta);
    checkOrders("RDPAccountant.getPrivacySpent", orders);
    if (this.segments.length === 0) return { epsilon: 0, bestOrder: NaN };
    const rdp = new Float64Array(orders.length);
    for (const { noiseMultiplier, sampleRate, steps } of this.segments) {
      const segment = computeRdp({ sampleRate, noiseMultiplier, steps, orders });
      for (let k = 0; k < rdp.length; k++) rdp[k] += segment[k];
    }
    return privacySpent({ orders, rdp, delta });
  }

  /**
   * The ε of (ε, δ)-DP of the steps so far (`getPrivacySpent(delta, orders).epsilon`).
   *
   * @example
   * ```ts
   * import { RDPAccountant } from "jacobian-wasm";
   * const accountant = new RDPAccountant();
   * accountant.step({ noiseMultiplier: 1.0, sampleRate: 0.01 });
   * accountant.getEpsilon(1e-5, [2, 4, 8, 16, 32]); // the best ε at these orders only
   * ```
   */
  getEpsilon(delta: number, orders?: ArrayLike<number>): number {
    return this.getPrivacySpent(delta, orders).epsilon;
  }
}
