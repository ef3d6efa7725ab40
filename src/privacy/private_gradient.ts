/**
 * One step's gradient of DP-SGD, as Opacus's `DPOptimizer` forms it: each sample's gradient
 * clipped to norm C, summed, Gaussian noise of standard deviation σ·C added to the sum, and the
 * result divided by the expected batch size. The clipped sum is `clippedGradientSum` (J is never
 * formed); this file adds only the noise and Opacus's scaling.
 */
import { ValueError } from "../errors.ts";
import type { Module } from "../layers/module.ts";
import type { LossName, Reduction, Target } from "../losses.ts";
import { clippedGradientSum } from "../quantities.ts";
import type { GhostNorms } from "../quantities.ts";
import type { Tensor } from "../tensor.ts";
import { fillGaussian, secureUniform, seededUniform } from "./random.ts";

/**
 * Options of `privateGradient`.
 *
 * @example
 * ```ts
 * import { Linear, privateGradient, randn, tensor } from "jacobian-wasm";
 * import type { PrivateGradientOptions } from "jacobian-wasm";
 * const options: PrivateGradientOptions = { loss: "cross_entropy", maxNorm: 1, noiseMultiplier: 1.1, expectedBatchSize: 4, seed: 0 };
 * const g = privateGradient(new Linear(3, 2), randn([4, 3], 0), tensor([0, 1, 1, 0], [4]), options); // [8], reproducible (seed): not private
 * ```
 */
export interface PrivateGradientOptions {
  /** The loss whose per-sample gradients are clipped: `"cross_entropy"` or `"mse"`. */
  loss: LossName;
  /** C, the bound each sample's gradient is clipped to (Opacus's `max_grad_norm`). */
  maxNorm: number;
  /** σ: the noise added to the clipped sum has standard deviation σ·C (0 gives no noise, and no privacy). */
  noiseMultiplier: number;
  /**
   * What the noisy sum is divided by under reduction "mean" (Opacus's `expected_batch_size`:
   * the sample rate times the data set size under Poisson sampling). Default: the batch's N;
   * required when the batch is empty.
   */
  expectedBatchSize?: number;
  /**
   * Makes the noise reproducible, for tests and experiments: anyone who knows or guesses the
   * seed can subtract the noise, so a gradient made with it is NOT private. Without it the
   * noise comes from `crypto.getRandomValues`. The same seed gives the same noise, so a
   * training loop passes a different seed at every step.
   */
  seed?: number;
  /**
   * The loss reduction the per-sample gradients are taken under, as Opacus's `loss_reduction`
   * (default "mean"): under "mean" a sample's gradient is N times its share of the batch
   * loss's gradient and the noisy sum is divided by `expectedBatchSize`; under "sum" it is the
   * gradient of the sample's summed loss and the noisy sum is returned as it is.
   */
  reduction?: Reduction;
  /** The per-layer path of the norms (see `clippedGradientSum`); default "auto". */
  ghostNorms?: GhostNorms;
}

function checkOptions(options: PrivateGradientOptions): void {
  const { maxNorm, noiseMultiplier, expectedBatchSize, seed, reduction } = options ?? ({} as PrivateGradientOptions);
  if (typeof maxNorm !== "number" || !(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new ValueError(`privateGradient: maxNorm must be a positive finite number, got ${maxNorm}`);
  }
  if (typeof noiseMultiplier !== "number" || !(noiseMultiplier >= 0) || !Number.isFinite(noiseMultiplier)) {
    throw new ValueError(`privateGradient: noiseMultiplier must be a finite number ≥ 0, got ${noiseMultiplier}`);
  }
  if (expectedBatchSize !== undefined && (typeof expectedBatchSize !== "number" || !(expectedBatchSize > 0) || !Number.isFinite(expectedBatchSize))) {
    throw new ValueError(`privateGradient: expectedBatchSize must be a positive finite number, got ${expectedBatchSize}`);
  }
  if (seed !== undefined && !Number.isInteger(seed)) throw new ValueError(`privateGradient: seed must be an integer, got ${seed}`);
  if (reduction !== undefined && reduction !== "mean" && reduction !== "sum") {
    throw new ValueError(`privateGradient: reduction must be "mean" or "sum", got ${JSON.stringify(reduction)}`);
  }
}

/**
 * The noisy clipped gradient of one DP-SGD step, `[D]` in `parameters()` order, ready for an
 * optimiser's `step`: `(Σ_n g_n · min(1, C / ‖g_n‖) + 𝒩(0, (σC)² I)) / B`, with g_n sample n's
 * gradient, C = `maxNorm`, σ = `noiseMultiplier` and B = `expectedBatchSize` (Opacus's
 * `DPOptimizer` with Poisson sampling). A batch of no samples, which Poisson sampling can
 * draw, gives the noise alone. Record each step with `RDPAccountant.step` to know ε.
 *
 * @example
 * ```ts
 * import { Sequential, Linear, ReLU, SGD, RDPAccountant, poissonSample, privateGradient, randn, tensor } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
 * const xs = randn([1000, 4], 0), ys = new Int32Array(1000).map((_, i) => i % 3);
 * const optimizer = new SGD(net, { lr: 0.1 }), accountant = new RDPAccountant();
 * const sampleRate = 64 / 1000, noiseMultiplier = 1.0;
 * const batch = poissonSample(1000, sampleRate);
 * const x = tensor(Float32Array.from({ length: 4 * batch.length }, (_, j) => xs.data[4 * batch[j >> 2] + (j & 3)]), [batch.length, 4]);
 * const y = { shape: [batch.length], data: Int32Array.from(batch, (i) => ys[i]) };
 * optimizer.step(privateGradient(net, x, y, { loss: "cross_entropy", maxNorm: 1, noiseMultiplier, expectedBatchSize: 64 }));
 * accountant.step({ noiseMultiplier, sampleRate });
 * accountant.getEpsilon(1e-5); // ε after one step
 * ```
 */
export function privateGradient(net: Module, x: Tensor, target: Target, options: PrivateGradientOptions): Tensor {
  checkOptions(options);
  const { loss, maxNorm, noiseMultiplier, seed, ghostNorms } = options;
  const reduction = options.reduction ?? "mean";
  const N = x?.shape?.[0];
  const expectedBatchSize = options.expectedBatchSize ?? N;
  const sum = N === 0 ? emptySum(net, options.expectedBatchSize, reduction) : clippedSum(net, x, target, loss, reduction, maxNorm, ghostNorms);

  const noise = new Float64Array(sum.length);
  if (noiseMultiplier > 0) fillGaussian(noise, noiseMultiplier * maxNorm, seed === undefined ? secureUniform() : seededUniform(seed));
  const scale = reduction === "mean" ? 1 / expectedBatchSize : 1;
  const gradient = new Float32Array(sum.length);
  for (let i = 0; i < sum.length; i++) gradient[i] = (sum[i] + noise[i]) * scale;
  return { shape: [gradient.length], data: gradient };
}

/**
 * Σ_n g_n · min(1, C / ‖g_n‖) with Opacus's g_n. Under "mean" the rows of J are g_n / N, so the
 * sum is N times the clipped sum of the rows at the bound C / N.
 */
function clippedSum(net: Module, x: Tensor, target: Target, loss: LossName, reduction: Reduction, maxNorm: number, ghostNorms: GhostNorms | undefined): Float64Array {
  const N = x.shape[0];
  const rowScale = reduction === "mean" ? N : 1;
  const { gradient } = clippedGradientSum(net, x, target, { loss, reduction, maxNorm: maxNorm / rowScale, ghostNorms });
  return Float64Array.from(gradient.data, (value) => value * rowScale);
}

/** An empty batch contributes nothing but still needs a divisor under "mean". */
function emptySum(net: Module, expectedBatchSize: number | undefined, reduction: Reduction): Float64Array {
  if (reduction === "mean" && expectedBatchSize === undefined) {
    throw new ValueError(`privateGradient: the batch is empty (N = 0); pass expectedBatchSize, the batch size the sampling expects`);
  }
  let D = 0;
  for (const [, t] of net.parameters()) D += t.data.length;
  return new Float64Array(D);
}
