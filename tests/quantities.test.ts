/**
 * The quantities (batchL2, perSampleNorms, sumGradSquared, variance, ntk, clippedGradientSum)
 * and streamed rows (onChunk) equal the same quantity computed in float64 from the materialised
 * J that `jacobian` / `perSampleGradients` return, over random networks, for the output and for
 * both losses under both reductions; with rows larger than a chunk too.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import {
  batchL2,
  clippedGradientSum,
  Flatten,
  jacobian,
  Linear,
  manualSeed,
  ntk,
  perSampleGradients,
  perSampleNorms,
  randn,
  ReLU,
  Sequential,
  sumGradSquared,
  Tanh,
  variance,
} from "../mod.ts";
import type { Module, QuantityOptions, Target, Tensor } from "../mod.ts";
import { modelFromSpec } from "../src/io/spec.ts";
import { Plan } from "../src/plan.ts";
import { arbitraryNetwork } from "./helpers/architectures.ts";
import type { NetworkCase } from "./helpers/architectures.ts";
import { describeCase, objectivesFor } from "./helpers/properties.ts";
import type { Objective } from "./helpers/properties.ts";

const FLOAT32_ROUNDOFF = 2 ** -24;
const GHOST_PATHS = ["auto", "always", "never"] as const;

/** J as the one-pass functions return it, [rows, D], for an objective. */
function rowsOf(net: Module, x: Tensor, o: Objective): { J: Float32Array; rows: number; D: number } {
  const J = o.loss ? perSampleGradients(net, x, o.target!, { loss: o.loss, reduction: o.reduction }) : jacobian(net, x);
  const D = J.shape[J.shape.length - 1];
  return { J: J.data, rows: J.data.length / D, D };
}

function args(o: Objective): [Target | undefined, QuantityOptions | undefined] {
  return o.loss ? [o.target, { loss: o.loss, reduction: o.reduction }] : [undefined, undefined];
}

/** |actual[i] − expected[i]| ≤ bound(i) for every i, naming the first that is not. */
function assertWithin(actual: ArrayLike<number>, expected: ArrayLike<number>, bound: (i: number) => number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= bound(i))) assert.fail(`${what}[${i}]: ${actual[i]} against ${expected[i]} (error ${error}, bound ${bound(i)})`);
  }
}

/** Every quantity of `net` on `x` against float64 sums over the materialised rows of J. */
function checkQuantities(net: Module, x: Tensor, o: Objective, what: string): void {
  const { J, rows, D } = rowsOf(net, x, o);
  const N = x.shape[0];
  const [target, options] = args(o);

  // ntk: J Jᵀ for every objective, each entry within rounding of Σ_d |J[a, d] J[b, d]|: the
  // GEMM sums slices of up to 256 products in float32, then the slices, so an entry carries at
  // most (terms per slice + slices) roundings of that scale.
  const depth = Math.min(D, 256) + Math.ceil(D / 256) + 2;
  const gram = ntk(net, x, target, options);
  assert.deepEqual(gram.shape, [rows, rows], `${what}: ntk shape`);
  const expectedGram = new Float64Array(rows * rows);
  const gramScale = new Float64Array(rows * rows);
  for (let a = 0; a < rows; a++) {
    for (let b = 0; b < rows; b++) {
      let sum = 0;
      let scale = 0;
      for (let d = 0; d < D; d++) {
        sum += J[a * D + d] * J[b * D + d];
        scale += Math.abs(J[a * D + d] * J[b * D + d]);
      }
      expectedGram[a * rows + b] = sum;
      gramScale[a * rows + b] = scale;
    }
  }
  assertWithin(gram.data, expectedGram, (i) => depth * FLOAT32_ROUNDOFF * gramScale[i] + 1e-30, `${what}: ntk`);

  if (rows !== N) {
    // K > 1 outputs per sample: every other quantity is per sample, and refuses.
    for (const quantity of [batchL2, perSampleNorms, sumGradSquared, variance]) {
      assert.throws(() => quantity(net, x, target, options), /needs one row of J per sample .* has \d+ elements per sample/, `${what}: ${quantity.name}`);
    }
    assert.throws(() => clippedGradientSum(net, x, target, { ...options, maxNorm: 1 }), /one row of J per sample/);
    return;
  }

  const parameters = net.parameters();
  const P = parameters.length;
  const l2 = new Float64Array(N * P);
  const total = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let column = 0;
    parameters.forEach(([, t], p) => {
      for (let i = 0; i < t.data.length; i++) l2[n * P + p] += J[n * D + column + i] ** 2;
      column += t.data.length;
      total[n] += l2[n * P + p];
    });
  }
  // Sums of squares do not cancel: a few units of roundoff of the value itself, on either
  // path: the rows of J, or a layer's Gram identity (Σ_{s,t} (g_s·g_t)(x_s·x_t) from float32
  // products of the same gy and x the rows are formed from).
  // An identity over several positions (Linear on (N, S, in)) sums across them before it
  // squares, where a formed row rounds each entry's sum first: those two differ by the
  // cancellation inside an entry, which only a float64 reference can judge (the test of
  // Linear over extra dims below). Here they are compared on the path of the rows alone.
  const acrossPositions = tensorsAcrossPositions(net, x.shape.slice(1), N, parameterColumns(net));
  for (const ghostNorms of GHOST_PATHS) {
    const how = `${what}, ghostNorms ${ghostNorms}`;
    const judged = (p: number) => ghostNorms === "never" || !acrossPositions.has(p);
    const batch = batchL2(net, x, target, { ...options, ghostNorms });
    assert.deepEqual(batch.shape, [N, P], `${how}: batchL2 shape`);
    assertWithin(batch.data, l2, (i) => (judged(i % P) ? 8 * FLOAT32_ROUNDOFF * l2[i] + 1e-38 : Infinity), `${how}: batchL2`);
    if (acrossPositions.size > 0 && ghostNorms !== "never") continue;
    const norms = perSampleNorms(net, x, target, { ...options, ghostNorms });
    assert.deepEqual(norms.shape, [N]);
    assertWithin(norms.data, total.map(Math.sqrt), (n) => 8 * FLOAT32_ROUNDOFF * Math.sqrt(total[n]) + 1e-38, `${how}: perSampleNorms`);
  }

  const sum = new Float64Array(D);
  const squares = new Float64Array(D);
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) {
      sum[d] += J[n * D + d];
      squares[d] += J[n * D + d] ** 2;
    }
  }
  assertWithin(sumGradSquared(net, x, target, options).data, squares, (d) => 4 * FLOAT32_ROUNDOFF * squares[d] + 1e-38, `${what}: sumGradSquared`);
  // (1/N) Σ (J − mean)², computed here the two-pass way. The quantity's one-pass form
  // Σ J²/N − mean² sums exact float64 squares of float32 values, so its rounding is that of
  // N float64 additions of Σ J²/N's scale, which the subtraction of mean² exposes.
  const expectedVariance = new Float64Array(D);
  for (let d = 0; d < D; d++) {
    const mean = sum[d] / N;
    for (let n = 0; n < N; n++) expectedVariance[d] += (J[n * D + d] - mean) ** 2 / N;
  }
  assertWithin(variance(net, x, target, options).data, expectedVariance, (d) => 4 * FLOAT32_ROUNDOFF * expectedVariance[d] + (N + 4) * 2 ** -53 * squares[d] / N + 1e-38, `${what}: variance`);

  // The clipped sum, at a bound that clips some samples and not others.
  const sorted = Array.from(total, Math.sqrt).sort((a, b) => a - b);
  const maxNorm = sorted[Math.floor(N / 2)] || 1;
  const clipped = clippedGradientSum(net, x, target, { ...options, maxNorm, ghostNorms: acrossPositions.size > 0 ? "never" : GHOST_PATHS[N % 3] });
  assertWithin(clipped.norms.data, total.map(Math.sqrt), (n) => 8 * FLOAT32_ROUNDOFF * Math.sqrt(total[n]) + 1e-38, `${what}: clippedGradientSum norms`);
  const expectedClipped = new Float64Array(D);
  const clippedScale = new Float64Array(D);
  for (let n = 0; n < N; n++) {
    const norm = Math.sqrt(total[n]);
    const factor = norm > maxNorm ? maxNorm / norm : 1;
    for (let d = 0; d < D; d++) {
      expectedClipped[d] += factor * J[n * D + d];
      clippedScale[d] += factor * Math.abs(J[n * D + d]);
    }
  }
  // A separate backward pass (the summed one) against the rows of the per-sample one: the two
  // float32 computations agree as the rows agree with their sum (tests/per_sample.test.ts).
  const worstScale = clippedScale.reduce((a, b) => Math.max(a, b), 0);
  assertWithin(clipped.gradient.data, expectedClipped, () => 1e-4 * worstScale + 1e-30, `${what}: clippedGradientSum`);
}

/** The first column of each parameter tensor, by tensor index. */
function parameterColumns(net: Module): number[] {
  const columns: number[] = [];
  let column = 0;
  for (const [, t] of net.parameters()) {
    columns.push(column);
    column += t.data.length;
  }
  return columns;
}

/** Indices of the tensors whose Gram identity sums over more than one position per sample. */
function tensorsAcrossPositions(net: Module, sampleShape: number[], N: number, columns: number[]): Set<number> {
  const plan = new Plan(net, sampleShape, N, 1, "per-sample", "test");
  const tensors = new Set<number>();
  for (const step of plan.trainableSteps) {
    if (step.squaredNorms && step.squaredNorms.positions > 1) for (const column of step.squaredNorms.columns) tensors.add(columns.indexOf(column));
  }
  return tensors;
}

function prepare(c: NetworkCase) {
  manualSeed(c.seed);
  const net = modelFromSpec(c.spec);
  return { net, x: randn([c.N, ...c.sampleShape], c.seed), objectives: objectivesFor(net, c.sampleShape, c.N, c.seed) };
}

test("every quantity equals the same quantity from the materialised J, on random networks, for the output and both losses", () => {
  fc.assert(
    fc.property(arbitraryNetwork(), (c) => {
      const { net, x, objectives } = prepare(c);
      for (const o of objectives) checkQuantities(net, x, o, describeCase(c, o));
    }),
    { numRuns: runs(60) },
  );
});

test("quantities over rows larger than a chunk (one sample per 1 MiB chunk) equal those from the materialised J", () => {
  manualSeed(3);
  const net = new Sequential(new Linear(300, 900), new Tanh(), new Linear(900, 1)); // D = 271801: 1.04 MiB a row
  const x = randn([5, 300], 1);
  checkQuantities(net, x, {}, "wide MLP, output");
  const target = randn([5, 1], 2);
  checkQuantities(net, x, { loss: "mse", reduction: "mean", target }, "wide MLP, mse mean");
});

test("Linear's Gram identity (ghost norms) and the formed rows both give the float64 per-sample norms, over extra dims (N, S, in)", () => {
  const u = FLOAT32_ROUNDOFF;
  const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((a, b) => a + b * b, 0));
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 30 }), (seed, S, inF, outF) => {
      // S·(in + out) < in·out prefers the identity: the sizes drawn take both paths on "auto".
      manualSeed(seed);
      const layer = new Linear(inF, outF);
      const N = 3;
      const x = randn([N, S, inF], seed);
      const t = randn([N, S, outF], seed + 1);
      const W = layer.weight.data;
      const b = layer.bias!.data;
      // MSE with reduction "sum": g_s = 2 (y_s − t_s), in float64 from the float32 parameters and
      // input; e_s bounds what float32 rounding of y_s can move g_s by, per output.
      const expectedW: number[] = [];
      const expectedB: number[] = [];
      const errorW: number[] = [];
      const errorB: number[] = [];
      for (let n = 0; n < N; n++) {
        const gW = new Float64Array(outF * inF);
        const gB = new Float64Array(outF);
        let boundW = 0;
        let boundB = 0;
        for (let s = 0; s < S; s++) {
          const xs = x.data.subarray((n * S + s) * inF, (n * S + s + 1) * inF);
          const g = new Float64Array(outF);
          const e = new Float64Array(outF);
          for (let o = 0; o < outF; o++) {
            let y = b[o];
            let magnitude = Math.abs(b[o]);
            for (let i = 0; i < inF; i++) {
              y += W[o * inF + i] * xs[i];
              magnitude += Math.abs(W[o * inF + i] * xs[i]);
            }
            g[o] = 2 * (y - t.data[(n * S + s) * outF + o]);
            e[o] = 2 * ((inF + 2) * u * magnitude + u * Math.abs(y - t.data[(n * S + s) * outF + o]));
            gB[o] += g[o];
            for (let i = 0; i < inF; i++) gW[o * inF + i] += g[o] * xs[i];
          }
          boundW += ((S + 4) * u * norm(g) + norm(e)) * norm(xs);
          boundB += (S + 4) * u * norm(g) + norm(e);
        }
        expectedW.push(norm(gW) ** 2);
        expectedB.push(norm(gB) ** 2);
        errorW.push(2 * norm(gW) * boundW + boundW ** 2);
        errorB.push(2 * norm(gB) * boundB + boundB ** 2);
      }
      for (const ghostNorms of GHOST_PATHS) {
        const l2 = batchL2(layer, x, t, { loss: "mse", reduction: "sum", ghostNorms });
        const what = `seed ${seed}, Linear(${inF}, ${outF}) over S = ${S}, ghostNorms ${ghostNorms}`;
        assertWithin(Array.from({ length: N }, (_, n) => l2.data[2 * n]), expectedW, (n) => errorW[n] + 1e-30, `${what}: weight`);
        assertWithin(Array.from({ length: N }, (_, n) => l2.data[2 * n + 1]), expectedB, (n) => errorB[n] + 1e-30, `${what}: bias`);
      }
    }),
    { numRuns: runs(100) },
  );
  // And inside a network, the rows and the identity agree as the rows' own norms do.
  manualSeed(5);
  const net = new Sequential(new Linear(3, 40), new Tanh(), new Flatten(), new Linear(2 * 40, 1, { bias: false }));
  checkQuantities(net, randn([4, 2, 3], 1), { loss: "mse", reduction: "mean", target: randn([4, 1], 1) }, "Linear(3, 40) over S = 2, in a network");
});

test("onChunk streams J's rows in order, chunk by chunk, and they are the rows jacobian and perSampleGradients return", () => {
  manualSeed(4);
  for (const [net, sample, N] of [
    [new Sequential(new Linear(3, 5), new ReLU(), new Linear(5, 4)), [3], 7],
    [new Sequential(new Linear(300, 900), new Tanh(), new Linear(900, 2)), [300], 3], // rows over 1 MiB: a sample per chunk
  ] as const) {
    const x = randn([N, ...sample], 5);
    const J = jacobian(net, x);
    const D = J.shape[2];
    const K = J.shape[1];
    const streamed = new Float32Array(J.data.length);
    const firsts: number[] = [];
    const result = jacobian(net, x, {
      onChunk: (firstSample, rows) => {
        firsts.push(firstSample);
        assert.deepEqual(rows.shape.slice(1), [K, D]);
        streamed.set(rows.data, firstSample * K * D);
      },
    });
    assert.equal(result, undefined);
    assert.deepEqual(streamed, J.data);
    assert.equal(firsts[0], 0);
    for (let i = 1; i < firsts.length; i++) assert.ok(firsts[i] > firsts[i - 1], `chunks in order: ${firsts}`);
    if (D * 4 * K > 1 << 20) assert.equal(firsts.length, N, "one sample per chunk");

    const target = randn([N, K], 6);
    const G = perSampleGradients(net, x, target, { loss: "mse", reduction: "sum" });
    const rows = new Float32Array(G.data.length);
    perSampleGradients(net, x, target, { loss: "mse", reduction: "sum", onChunk: (first, chunk) => rows.set(chunk.data, first * D) });
    assert.deepEqual(rows, G.data);
  }
});

test("quantities refuse what they cannot compute, naming it", () => {
  const net = new Sequential(new Linear(3, 4), new Tanh(), new Linear(4, 1));
  const x = randn([4, 3], 0);
  for (const maxNorm of [0, -1, NaN, Infinity, undefined]) {
    assert.throws(() => clippedGradientSum(net, x, undefined, { maxNorm } as never), /maxNorm must be a positive finite number/);
  }
  assert.throws(() => batchL2(net, x, randn([4, 1], 1)), /a target was given without options.loss/);
  assert.throws(() => batchL2(net, x, undefined, { loss: "mse" }), /needs a target/);
  assert.throws(() => jacobian(net, x, { onChunk: () => {}, out: new Float32Array(4 * 21) } as never), /onChunk: .*out and asTuple/);
});

test("clippedGradientSum leaves samples under the bound as they are: a huge bound gives the plain gradient sum", () => {
  manualSeed(9);
  const net = new Sequential(new Linear(6, 5), new ReLU(), new Linear(5, 3));
  const x = randn([8, 6], 3);
  const labels = { shape: [8], data: new Int32Array(8).map((_, i) => i % 3) };
  const G = perSampleGradients(net, x, labels, { loss: "cross_entropy", reduction: "sum" });
  const D = G.shape[1];
  const { gradient, norms } = clippedGradientSum(net, x, labels, { loss: "cross_entropy", reduction: "sum", maxNorm: 1e30 });
  assert.equal(norms.data.length, 8);
  for (let d = 0; d < D; d++) {
    let sum = 0;
    for (let n = 0; n < 8; n++) sum += G.data[n * D + d];
    assert.ok(Math.abs(gradient.data[d] - sum) <= 1e-5 * (1 + Math.abs(sum)), `column ${d}: ${gradient.data[d]} against ${sum}`);
  }
  // A tiny bound: every sample is clipped to norm C, so the sum has norm at most N·C.
  const tiny = clippedGradientSum(net, x, labels, { loss: "cross_entropy", reduction: "sum", maxNorm: 1e-3 });
  assert.ok(Math.hypot(...tiny.gradient.data) <= 8 * 1e-3 * (1 + 1e-5));
});
