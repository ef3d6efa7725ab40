/**
 * A batch larger than the memory limit runs in runs of as many samples as fit, with the
 * results of the batch run whole: over random networks, with a limit that forces runs of 1 to
 * N − 1 samples, the forward output, J, per-sample gradients, the summed gradient and every
 * quantity equal the unchunked ones within float32 rounding (not bit for bit: a kernel's
 * blocking may follow the batch size). A sample larger than the limit runs alone; one larger than a
 * WebAssembly memory is a MemoryError naming the sizes; the limit is validated.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  batchGradient,
  batchL2,
  clippedGradientSum,
  jacobian,
  Linear,
  manualSeed,
  MemoryError,
  ntk,
  perSampleGradients,
  randn,
  ReLU,
  Sequential,
  setMemoryLimit,
  sumGradSquared,
  ValueError,
  variance,
} from "../mod.ts";
import type { Module, Tensor } from "../mod.ts";
import { modelFromSpec } from "../src/io/spec.ts";
import { planCache } from "../src/forward.ts";
import { arena } from "../src/wasm.ts";
import { arbitraryNetwork } from "./helpers/architectures.ts";
import { describeCase, objectivesFor } from "./helpers/properties.ts";
import type { Objective } from "./helpers/properties.ts";
import { runs } from "./helpers/runs.ts";

/** Runs `body` with the memory limit at `bytes`, restoring the default after. */
function withLimit<T>(bytes: number, body: () => T): T {
  setMemoryLimit(bytes);
  try {
    return body();
  } finally {
    setMemoryLimit(undefined);
  }
}

/** A limit between the plans of `samples` and `samples + 1` samples: runs of `samples`. */
function limitFor(net: Module, sampleShape: number[], samples: number, K: number, mode: "per-sample" | "summed" | "forward"): number {
  const cache = planCache(net);
  const end = (n: number) => cache.get(net, sampleShape, n, K, mode).end;
  return Math.max(65536, Math.floor((end(samples) + end(samples + 1)) / 2));
}

/** |actual − expected| ≤ relative · scale, the scale being expected's largest magnitude unless given. */
function assertNear(actual: Tensor, expected: Tensor, what: string, relative = 1e-5, given?: number): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  let scale = given ?? 0;
  if (given === undefined) for (const v of expected.data) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < expected.data.length; i++) {
    const error = Math.abs(actual.data[i] - expected.data[i]);
    if (!(error <= relative * scale + 1e-30)) assert.fail(`${what}[${i}]: ${actual.data[i]} against ${expected.data[i]} (scale ${scale})`);
  }
}

function lossArgs(o: Objective) {
  return { loss: o.loss!, reduction: o.reduction };
}

test("a batch in runs gives the results of the batch whole, on random networks, for the output and both losses", () => {
  let cases = 0;
  let chunked = 0;
  fc.assert(
    fc.property(arbitraryNetwork(), fc.integer({ min: 5, max: 9 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (c, N, share) => {
      manualSeed(c.seed);
      const net = modelFromSpec(c.spec);
      const x = randn([N, ...c.sampleShape], c.seed);
      const samples = 1 + Math.floor(share * (N - 1)); // runs of 1 … N − 1 samples
      for (const o of objectivesFor(net, c.sampleShape, N, c.seed)) {
        const what = `${describeCase({ ...c, N }, o)}, runs of ${samples}`;
        const K = o.loss ? 1 : net.outputShape(c.sampleShape).reduce((a, b) => a * b, 1);
        const whole = o.loss ? perSampleGradients(net, x, o.target!, lossArgs(o)) : jacobian(net, x);
        const rowsLimit = limitFor(net, c.sampleShape, samples, K, "per-sample");
        const inRuns = withLimit(rowsLimit, () => o.loss ? perSampleGradients(net, x, o.target!, lossArgs(o)) : jacobian(net, x));
        // The largest run that fits (plans grow in steps of 64 bytes, so it may be larger than `samples`).
        const size = planCache(net).samplesPerRun(net, c.sampleShape, N, K, "per-sample", rowsLimit);
        assert.ok(planCache(net).get(net, c.sampleShape, size, K, "per-sample").end <= rowsLimit, `${what}: the runs fit`);
        cases++;
        if (size < N) chunked++;
        // Within float32 rounding, not bit for bit: a kernel's blocking may follow the batch size
        // (seed 443857102, a Residual Conv1d block in runs of 1, differs in the last bits).
        assertNear(inRuns, whole, `${what}: J`);
        if (K !== 1) continue;
        const [target, options] = o.loss ? [o.target, lossArgs(o)] : [undefined, undefined];
        const limit = limitFor(net, c.sampleShape, samples, 1, "per-sample");
        const quantities = (): Tensor[] => [
          batchL2(net, x, target, { ...options, ghostNorms: "never" }),
          sumGradSquared(net, x, target, options),
          variance(net, x, target, options),
          ntk(net, x, target, options),
        ];
        const expected = quantities();
        const actual = withLimit(limit, quantities);
        // A variance is a difference, E[g²] − E[g]²: where it is 0, sums in another order leave
        // ~1e-16 of E[g²] (seed -589767857: 0 against 1.2e-16), so its scale is E[g²]'s.
        let secondMoment = 0;
        for (const v of expected[1].data) secondMoment = Math.max(secondMoment, Math.abs(v) / N);
        ["batchL2", "sumGradSquared", "variance", "ntk"].forEach((name, i) =>
          assertNear(actual[i], expected[i], `${what}: ${name}`, 1e-5, name === "variance" ? Math.max(secondMoment, ...expected[i].data.map(Math.abs)) : undefined)
        );
        const clipped = clippedGradientSum(net, x, target, { ...options, maxNorm: 0.5 });
        const clippedInRuns = withLimit(limit, () => clippedGradientSum(net, x, target, { ...options, maxNorm: 0.5 }));
        assertNear(clippedInRuns.norms, clipped.norms, `${what}: clippedGradientSum norms`);
        assertNear(clippedInRuns.gradient, clipped.gradient, `${what}: clippedGradientSum`, 1e-4);
      }
      for (const o of objectivesFor(net, c.sampleShape, N, c.seed).filter((o) => o.loss)) {
        const whole = batchGradient(net, x, o.target!, lossArgs(o));
        const inRuns = withLimit(limitFor(net, c.sampleShape, samples, 1, "summed"), () => batchGradient(net, x, o.target!, lossArgs(o)));
        assertNear(inRuns, whole, `${describeCase({ ...c, N }, o)}: batchGradient in runs of ${samples}`, 1e-4);
      }
      const output = net.forward(x);
      assertNear(withLimit(limitFor(net, c.sampleShape, samples, 1, "forward"), () => net.forward(x)), output, `${describeCase({ ...c, N }, {})}: forward in runs of ${samples}`);
    }),
    { numRuns: runs(30) },
  );
  // Tiny networks' plans may not grow at all from `samples` to N samples; most do.
  assert.ok(chunked >= cases / 2, `only ${chunked} of ${cases} cases ran in several runs`);
});

test("the ghost-norm path gives the same norms in runs (their Gram identities run after each run's backward pass)", () => {
  manualSeed(2);
  const net = new Sequential(new Linear(40, 64), new ReLU(), new Linear(64, 64), new ReLU(), new Linear(64, 3));
  const x = randn([50, 40], 3);
  const y = { shape: [50], data: new Int32Array(50).map((_, i) => i % 3) };
  const options = { loss: "cross_entropy" as const, reduction: "sum" as const, ghostNorms: "always" as const };
  const whole = batchL2(net, x, y, options);
  for (const samples of [1, 7, 49]) {
    const inRuns = withLimit(limitFor(net, [40], samples, 1, "per-sample"), () => batchL2(net, x, y, options));
    assertNear(inRuns, whole, `runs of ${samples}`);
  }
});

test("a sample larger than the limit runs alone; one larger than a WebAssembly memory is a MemoryError naming the sizes", () => {
  manualSeed(1);
  const net = new Sequential(new Linear(2000, 300), new ReLU(), new Linear(300, 1)); // 2.4 MB of parameters
  const x = randn([3, 2000], 1);
  const whole = jacobian(net, x);
  assert.deepEqual(withLimit(1 << 20, () => jacobian(net, x)), whole);
  assert.equal(planCache(net).samplesPerRun(net, [2000], 3, 1, "per-sample", 1 << 20), 1);

  // 1100 outputs of a million parameters: one sample's rows of J alone are 4.5 GB. Refused
  // before any memory is taken.
  const wide = new Linear(1000, 1100);
  const before = arena.byteLength();
  assert.throws(
    () => jacobian(wide, randn([2, 1000], 1)),
    (e: Error) =>
      e instanceof MemoryError &&
      /^one sample of shape \(1000,\) alone needs 4\.\d\d GiB of WebAssembly memory \(its 1100 rows of J are 4\.\d\d GiB; the batch of 2 would need [\d.]+ GiB\), more than the 4 GiB/.test(e.message),
  );
  assert.equal(arena.byteLength(), before, "the memory did not grow");
  for (const bad of [0, -1, NaN, 5 * 1024 ** 3]) assert.throws(() => setMemoryLimit(bad), ValueError, String(bad));
  assert.equal(setMemoryLimit(undefined), 1024 ** 3);
});
