/**
 * DP-SGD's gradient and its randomness: `privateGradient` without noise is the clipped mean
 * of Opacus's per-sample gradients, computed here in float64 from the materialised J, over
 * random networks and both losses and reductions; with a seed it is reproducible; its noise
 * has mean 0 and standard deviation σ·C / B (statistical tests whose false-failure rates are
 * stated beside them); `poissonSample` draws each example with the given rate; bad options
 * are refused by name.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Linear, manualSeed, perSampleGradients, poissonSample, privateGradient, randn, ReLU, secureUniform, seededUniform, Sequential, tensor, ValueError } from "../mod.ts";
import type { Module, PrivateGradientOptions, Target, Tensor } from "../mod.ts";
import { modelFromSpec } from "../src/io/spec.ts";
import { fillGaussian } from "../src/privacy/random.ts";
import { arbitraryNetwork } from "./helpers/architectures.ts";
import { describeCase, objectivesFor } from "./helpers/properties.ts";
import { runs } from "./helpers/runs.ts";

/**
 * z for a two-sided false-failure probability of 1e-6 per check under the null hypothesis
 * (Φ⁻¹(1 − 5e-7) = 4.8916): a correct implementation fails one such check in a million seeds.
 */
const Z_ONE_IN_A_MILLION = 4.8916;

/** Opacus's per-sample gradient g_n: the row of J under "sum", N times the row under "mean". */
function opacusGradients(net: Module, x: Tensor, target: Target, loss: "cross_entropy" | "mse", reduction: "sum" | "mean"): Float64Array[] {
  const J = perSampleGradients(net, x, target, { loss, reduction });
  const [N, D] = J.shape;
  const scale = reduction === "mean" ? N : 1;
  return Array.from({ length: N }, (_, n) => Float64Array.from(J.data.subarray(n * D, (n + 1) * D), (v) => v * scale));
}

/** (Σ_n g_n · min(1, C / ‖g_n‖)) / B in float64, and the same sum of |g_n| (the rounding's scale). */
function clippedMean(gradients: Float64Array[], maxNorm: number, divisor: number): { mean: Float64Array; scale: Float64Array } {
  const D = gradients[0].length;
  const mean = new Float64Array(D);
  const scale = new Float64Array(D);
  for (const g of gradients) {
    const norm = Math.sqrt(g.reduce((sum, v) => sum + v * v, 0));
    const factor = norm > maxNorm ? maxNorm / norm : 1;
    for (let d = 0; d < D; d++) {
      mean[d] += (factor * g[d]) / divisor;
      scale[d] += (factor * Math.abs(g[d])) / divisor;
    }
  }
  return { mean, scale };
}

function assertClose(actual: Float32Array, expected: Float64Array, scale: Float64Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const worst = scale.reduce((a, b) => Math.max(a, b), 0);
  for (let d = 0; d < expected.length; d++) {
    const bound = 1e-4 * worst + 1e-30;
    if (!(Math.abs(actual[d] - expected[d]) <= bound)) assert.fail(`${what}[${d}]: ${actual[d]} against ${expected[d]} (bound ${bound})`);
  }
}

function smallClassifier(): Sequential {
  manualSeed(7);
  return new Sequential(new Linear(6, 16), new ReLU(), new Linear(16, 4));
}

const labels = (N: number, classes: number): Target => ({ shape: [N], data: new Int32Array(N).map((_, i) => (i * 7) % classes) });

test("without noise, privateGradient is the clipped mean of Opacus's per-sample gradients (random networks, both losses and reductions)", () => {
  fc.assert(
    fc.property(arbitraryNetwork(), fc.double({ min: 0.05, max: 1, noNaN: true }), fc.integer({ min: 1, max: 7 }), (c, clipShare, extra) => {
      manualSeed(c.seed);
      const net = modelFromSpec(c.spec);
      const x = randn([c.N, ...c.sampleShape], c.seed);
      for (const o of objectivesFor(net, c.sampleShape, c.N, c.seed)) {
        if (!o.loss) continue;
        const reduction = o.reduction ?? "mean";
        const gradients = opacusGradients(net, x, o.target!, o.loss, reduction);
        // A bound that clips the larger gradients and leaves the smaller ones.
        const norms = gradients.map((g) => Math.sqrt(g.reduce((s, v) => s + v * v, 0)));
        const maxNorm = Math.max(...norms) * clipShare + 1e-6;
        const expectedBatchSize = c.N + extra;
        const options: PrivateGradientOptions = { loss: o.loss, reduction, maxNorm, noiseMultiplier: 0, expectedBatchSize, ghostNorms: "never" };
        const g = privateGradient(net, x, o.target!, options);
        const { mean, scale } = clippedMean(gradients, maxNorm, reduction === "mean" ? expectedBatchSize : 1);
        assert.deepEqual(g.shape, [mean.length]);
        assertClose(g.data, mean, scale, describeCase(c, o));
      }
    }),
    { numRuns: runs(40) },
  );
});

test("privateGradient's default expected batch size is the batch's N, and its default ghost-norm path gives the same clipped mean", () => {
  const net = smallClassifier();
  const x = randn([12, 6], 3);
  const y = labels(12, 4);
  const gradients = opacusGradients(net, x, y, "cross_entropy", "mean");
  const { mean, scale } = clippedMean(gradients, 0.5, 12);
  assertClose(privateGradient(net, x, y, { loss: "cross_entropy", maxNorm: 0.5, noiseMultiplier: 0 }).data, mean, scale, "default options");
  const sum = clippedMean(opacusGradients(net, x, y, "cross_entropy", "sum"), 0.5, 1);
  assertClose(privateGradient(net, x, y, { loss: "cross_entropy", maxNorm: 0.5, noiseMultiplier: 0, reduction: "sum" }).data, sum.mean, sum.scale, "reduction sum");
});

test("with a seed the noise is reproducible; other seeds and the secure source give other noise", () => {
  const net = smallClassifier();
  const x = randn([8, 6], 4);
  const y = labels(8, 4);
  const options: PrivateGradientOptions = { loss: "cross_entropy", maxNorm: 1, noiseMultiplier: 1.3, seed: 42 };
  const first = privateGradient(net, x, y, options);
  assert.deepEqual(privateGradient(net, x, y, options).data, first.data);
  assert.notDeepEqual(privateGradient(net, x, y, { ...options, seed: 43 }).data, first.data);
  const { seed: _, ...secure } = options;
  const a = privateGradient(net, x, y, secure);
  const b = privateGradient(net, x, y, secure);
  assert.notDeepEqual(a.data, b.data);
  assert.notDeepEqual(a.data, first.data);
});

/**
 * Mean, standard deviation and the share within one standard deviation of `noise` (D
 * independent draws of 𝒩(0, std²) under the null hypothesis), each within Z_ONE_IN_A_MILLION
 * standard errors: the three checks together fail a correct generator with probability
 * below 3e-6 per call.
 */
function assertGaussian(noise: Float64Array, std: number, what: string): void {
  const D = noise.length;
  const mean = noise.reduce((a, b) => a + b, 0) / D;
  assert.ok(Math.abs(mean) <= (Z_ONE_IN_A_MILLION * std) / Math.sqrt(D), `${what}: mean ${mean}, std ${std}, D ${D}`);
  const second = noise.reduce((a, b) => a + b * b, 0) / D; // E = std², Var = 2 std⁴ / D
  assert.ok(Math.abs(second - std * std) <= Z_ONE_IN_A_MILLION * std * std * Math.sqrt(2 / D), `${what}: mean square ${second} against ${std * std}`);
  const p = 0.6826894921370859; // P(|Z| < 1)
  const share = noise.reduce((a, b) => a + (Math.abs(b) < std ? 1 : 0), 0) / D;
  assert.ok(Math.abs(share - p) <= Z_ONE_IN_A_MILLION * Math.sqrt((p * (1 - p)) / D), `${what}: share within one std ${share} against ${p}`);
}

test("the noise has mean 0 and standard deviation σ·C / B, seeded and secure (false-failure rate below 3e-6 per source)", () => {
  manualSeed(11);
  const net = new Sequential(new Linear(100, 200), new ReLU(), new Linear(200, 2)); // D = 20602
  const x = randn([5, 100], 5);
  const y = labels(5, 2);
  const base: PrivateGradientOptions = { loss: "cross_entropy", maxNorm: 0.7, noiseMultiplier: 0, expectedBatchSize: 4 };
  const clean = privateGradient(net, x, y, base).data;
  const noiseMultiplier = 1.5;
  const std = (noiseMultiplier * base.maxNorm) / base.expectedBatchSize!;
  // The seeded check is deterministic (it passes for this seed on every run); the secure
  // source is drawn anew each run, so its false-failure rate is the stated one.
  for (const seed of [2024, undefined]) {
    const noisy = privateGradient(net, x, y, { ...base, noiseMultiplier, seed }).data;
    // The noisy gradient is rounded to float32 once, after the noise is added to the clean
    // sum: each difference carries up to one rounding of the noisy value.
    const noise = Float64Array.from(noisy, (v, d) => v - clean[d]);
    assertGaussian(noise, std, seed === undefined ? "secure source" : `seed ${seed}`);
  }
});

test("fillGaussian over many seeds: Box-Muller's normals pass the same checks (false-failure rate 3e-6 per seed)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.double({ min: 0.01, max: 100, noNaN: true }), (seed, std) => {
      assertGaussian(fillGaussian(new Float64Array(4001), std, seededUniform(seed)), std, `seed ${seed}`);
    }),
    { numRuns: runs(20) },
  );
});

test("reduction 'sum' adds the noise to the clipped sum and does not divide", () => {
  const net = smallClassifier();
  const x = randn([6, 6], 8);
  const y = labels(6, 4);
  const options: PrivateGradientOptions = { loss: "cross_entropy", maxNorm: 0.3, noiseMultiplier: 2, seed: 5, reduction: "sum" };
  const noisy = privateGradient(net, x, y, options).data;
  const clean = privateGradient(net, x, y, { ...options, noiseMultiplier: 0 }).data;
  const noise = fillGaussian(new Float64Array(noisy.length), 2 * 0.3, seededUniform(5));
  for (let d = 0; d < noisy.length; d++) assert.equal(noisy[d], Math.fround(clean[d] + noise[d]), `entry ${d}`);
  // Under "mean" with B = 3, the same noise, divided by 3.
  const mean = privateGradient(net, x, y, { ...options, reduction: "mean", expectedBatchSize: 3 }).data;
  const cleanMean = privateGradient(net, x, y, { ...options, reduction: "mean", expectedBatchSize: 3, noiseMultiplier: 0 }).data;
  for (let d = 0; d < mean.length; d++) assert.ok(Math.abs(mean[d] - cleanMean[d] - noise[d] / 3) <= 1e-6 * (1 + Math.abs(mean[d])), `mean entry ${d}`);
});

test("an empty batch, which Poisson sampling can draw, gives the noise alone; without expectedBatchSize it is refused", () => {
  const net = smallClassifier();
  const D = net.parameters().reduce((n, [, t]) => n + t.data.length, 0);
  const x = tensor(new Float32Array(0), [0, 6]);
  const y: Target = { shape: [0], data: new Int32Array(0) };
  const g = privateGradient(net, x, y, { loss: "cross_entropy", maxNorm: 1, noiseMultiplier: 1, expectedBatchSize: 10, seed: 1 });
  const noise = fillGaussian(new Float64Array(D), 1, seededUniform(1));
  assert.deepEqual(g.shape, [D]);
  assert.deepEqual(g.data, Float32Array.from(noise, (v) => v / 10));
  assert.throws(() => privateGradient(net, x, y, { loss: "cross_entropy", maxNorm: 1, noiseMultiplier: 1 }), (e: Error) => e instanceof ValueError && /empty.*expectedBatchSize/.test(e.message));
});

test("privateGradient refuses bad options by name", () => {
  const net = smallClassifier();
  const x = randn([2, 6], 1);
  const y = labels(2, 4);
  const good: PrivateGradientOptions = { loss: "cross_entropy", maxNorm: 1, noiseMultiplier: 1 };
  const bad: [Partial<PrivateGradientOptions>, RegExp][] = [
    [{ maxNorm: 0 }, /maxNorm must be a positive finite number, got 0/],
    [{ maxNorm: Infinity }, /maxNorm/],
    [{ noiseMultiplier: -1 }, /noiseMultiplier must be a finite number ≥ 0, got -1/],
    [{ noiseMultiplier: NaN }, /noiseMultiplier/],
    [{ expectedBatchSize: 0 }, /expectedBatchSize must be a positive finite number, got 0/],
    [{ seed: 1.5 }, /seed must be an integer, got 1.5/],
    [{ reduction: "avg" as "mean" }, /reduction must be "mean" or "sum", got "avg"/],
  ];
  for (const [change, message] of bad) {
    assert.throws(() => privateGradient(net, x, y, { ...good, ...change }), (e: Error) => e instanceof ValueError && message.test(e.message), JSON.stringify(change));
  }
  // The network's own checks still name the layer and shapes.
  assert.throws(() => privateGradient(net, randn([2, 5], 1), y, good), /expected input \(N, \*, 6\)/);
});

test("poissonSample draws each example independently with the given rate", () => {
  const n = 200000;
  const rate = 0.01;
  const batch = poissonSample(n, rate, seededUniform(9));
  // The size is Binomial(n, rate): within Z_ONE_IN_A_MILLION standard deviations of n·rate.
  assert.ok(Math.abs(batch.length - n * rate) <= Z_ONE_IN_A_MILLION * Math.sqrt(n * rate * (1 - rate)), `size ${batch.length}`);
  for (let i = 1; i < batch.length; i++) assert.ok(batch[i] > batch[i - 1], "indices increase");
  assert.ok(batch[0] >= 0 && batch[batch.length - 1] < n);
  // Each half of the data set gets its share (the draws do not depend on the position).
  const firstHalf = batch.filter((i) => i < n / 2).length;
  assert.ok(Math.abs(firstHalf - (n / 2) * rate) <= Z_ONE_IN_A_MILLION * Math.sqrt((n / 2) * rate * (1 - rate)), `first half ${firstHalf}`);
  assert.deepEqual(poissonSample(n, rate, seededUniform(9)), batch, "the same seed gives the same batch");
  assert.equal(poissonSample(1000, 0).length, 0);
  assert.deepEqual(poissonSample(5, 1), Int32Array.from([0, 1, 2, 3, 4]));
  const secure = poissonSample(n, rate);
  assert.ok(Math.abs(secure.length - n * rate) <= Z_ONE_IN_A_MILLION * Math.sqrt(n * rate * (1 - rate)), `secure size ${secure.length}`);
  assert.throws(() => poissonSample(-1, 0.5), ValueError);
  assert.throws(() => poissonSample(10, 1.5), /rate must be in \[0, 1\], got 1.5/);
  assert.throws(() => poissonSample(2.5, 0.5), /n must be an integer/);
});

test("the uniform sources give numbers in [0, 1) with mean 1/2 (false-failure rate 1e-6 per source)", () => {
  for (const [name, uniform] of [["secure", secureUniform()], ["seeded", seededUniform(3)]] as const) {
    const draws = Float64Array.from({ length: 100000 }, () => uniform());
    assert.ok(draws.every((u) => u >= 0 && u < 1), `${name}: range`);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    assert.ok(Math.abs(mean - 0.5) <= Z_ONE_IN_A_MILLION * Math.sqrt(1 / 12 / draws.length), `${name}: mean ${mean}`);
    assert.ok(new Set(draws).size > 99990, `${name}: draws repeat`);
  }
  assert.throws(() => seededUniform(0.5), /seed must be an integer/);
});
