/**
 * The RDP accountant gives the ε and best order Opacus's `RDPAccountant` gives
 * (tests/fixtures/privacy/rdp.json, made by make_fixtures_rdp.py from Opacus's analysis):
 * ε to 1e-6 relative over a grid of sample rates, noise multipliers, step counts and δ, and
 * over schedules of several segments; the RDP vectors themselves to 1e-9; log erfc to
 * scipy's. Plus the edge cases of the analysis, the validation of every argument, the
 * merging of equal steps, and that ε grows with the steps and falls with the noise.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { ValueError } from "../mod.ts";
import { RDPAccountant } from "../src/privacy/accountant.ts";
import type { HistorySegment } from "../src/privacy/accountant.ts";
import { computeRdp, DEFAULT_ORDERS, logErfc, privacySpent } from "../src/privacy/rdp.ts";
import { root } from "./helpers/cli.ts";
import { runs } from "./helpers/runs.ts";

const EPSILON_TOLERANCE = 1e-6;
const RDP_TOLERANCE = 1e-9;
const LOG_ERFC_TOLERANCE = 1e-13;

interface Spent {
  delta: number;
  epsilon: number;
  bestOrder: number;
  /** Whether Opacus warned that the best order is the smallest or the largest. */
  warning: boolean;
}

interface Case extends Spent {
  sampleRate: number;
  noiseMultiplier: number;
  steps: number;
}

interface History extends Spent {
  segments: HistorySegment[];
  /** `RDPAccountant.steps` in Opacus after the segments' steps, one at a time. */
  merged: HistorySegment[];
}

interface Fixture {
  defaultOrders: number[];
  cases: Case[];
  histories: History[];
  rdpVectors: { sampleRate: number; noiseMultiplier: number; steps: number; rdp: number[] }[];
  customOrders: (Spent & { orders: number[]; segments: HistorySegment[] })[];
  logErfc: [number, number][];
}

const fixture: Fixture = JSON.parse(readFileSync(join(root, "tests", "fixtures", "privacy", "rdp.json"), "utf8"));

function relative(actual: number, expected: number): number {
  return actual === expected ? 0 : Math.abs(actual - expected) / Math.abs(expected);
}

/** An accountant that took each segment's steps one `step` call at a time. */
function accountantOf(segments: readonly HistorySegment[]): RDPAccountant {
  const accountant = new RDPAccountant();
  for (const { noiseMultiplier, sampleRate, steps } of segments) {
    for (let i = 0; i < steps; i++) accountant.step({ noiseMultiplier, sampleRate });
  }
  return accountant;
}

function assertSpent(accountant: RDPAccountant, expected: Spent, what: string, orders?: number[]): void {
  const spent = accountant.getPrivacySpent(expected.delta, orders);
  const error = relative(spent.epsilon, expected.epsilon);
  assert.ok(error <= EPSILON_TOLERANCE, `${what}: epsilon ${spent.epsilon} against Opacus's ${expected.epsilon} (relative error ${error})`);
  assert.equal(spent.bestOrder, expected.bestOrder, `${what}: best order`);
  assert.equal(spent.warning !== undefined, expected.warning, `${what}: warning ${JSON.stringify(spent.warning)}`);
  assert.equal(accountant.getEpsilon(expected.delta, orders), spent.epsilon, `${what}: getEpsilon`);
}

test("the default orders are Opacus's", () => {
  assert.deepEqual([...DEFAULT_ORDERS], fixture.defaultOrders);
  assert.ok(Object.isFrozen(DEFAULT_ORDERS));
});

test("epsilon and the best order are Opacus's over the grid of sample rates, noise multipliers, steps and deltas", () => {
  assert.equal(fixture.cases.length, 240);
  for (const c of fixture.cases) {
    const accountant = accountantOf([c]);
    assertSpent(accountant, c, `q = ${c.sampleRate}, σ = ${c.noiseMultiplier}, ${c.steps} steps, δ = ${c.delta}`);
  }
});

test("schedules of several segments give Opacus's history, epsilon and best order", () => {
  assert.ok(fixture.histories.length >= 5);
  for (const [i, h] of fixture.histories.entries()) {
    const accountant = accountantOf(h.segments);
    assert.deepEqual(accountant.history, h.merged, `history ${i}`);
    assertSpent(accountant, h, `history ${i} (${h.merged.length} segments), δ = ${h.delta}`);
  }
});

test("orders given by the caller give Opacus's epsilon and best order", () => {
  for (const [i, c] of fixture.customOrders.entries()) assertSpent(accountantOf(c.segments), c, `custom orders ${i}`, c.orders);
});

test("the RDP at each default order is Opacus's to 1e-9", () => {
  for (const v of fixture.rdpVectors) {
    const rdp = computeRdp({ sampleRate: v.sampleRate, noiseMultiplier: v.noiseMultiplier, steps: v.steps });
    assert.equal(rdp.length, v.rdp.length);
    for (let k = 0; k < rdp.length; k++) {
      const error = relative(rdp[k], v.rdp[k]);
      assert.ok(error <= RDP_TOLERANCE, `q = ${v.sampleRate}, σ = ${v.noiseMultiplier}, order ${DEFAULT_ORDERS[k]}: ${rdp[k]} against ${v.rdp[k]} (relative error ${error})`);
    }
  }
});

test("log erfc is scipy's, where erfc itself underflows too", () => {
  for (const [x, expected] of fixture.logErfc) {
    const error = relative(logErfc(x), expected);
    assert.ok(error <= LOG_ERFC_TOLERANCE, `logErfc(${x}) = ${logErfc(x)} against scipy's ${expected} (relative error ${error})`);
  }
  assert.ok(logErfc(0) === 0, "log erfc(0) = log 1");
  assert.equal(logErfc(Infinity), -Infinity);
  assert.equal(logErfc(-Infinity), Math.LN2);
  assert.ok(Number.isNaN(logErfc(NaN)));
  // Where the method changes (±1), the two sides meet.
  for (const edge of [1, -1]) {
    const below = logErfc(edge - 2 ** -40);
    const at = logErfc(edge);
    assert.ok(relative(below, at) < 1e-11, `logErfc around ${edge}: ${below} and ${at}`);
  }
});

test("the edge cases of the mechanism: no sampling, no noise, full batches, no steps", () => {
  const orders = [1.5, 2, 8, 32];
  const delta = 1e-5;
  assert.deepEqual([...computeRdp({ sampleRate: 0, noiseMultiplier: 1, steps: 100, orders })], [0, 0, 0, 0]);
  assert.deepEqual([...computeRdp({ sampleRate: 0.1, noiseMultiplier: 0, steps: 100, orders })], [Infinity, Infinity, Infinity, Infinity]);
  assert.deepEqual([...computeRdp({ sampleRate: 0.1, noiseMultiplier: 0, steps: 0, orders })], [0, 0, 0, 0]);
  // The plain Gaussian mechanism: α / (2σ²) per step.
  assert.deepEqual([...computeRdp({ sampleRate: 1, noiseMultiplier: 2, steps: 10, orders })], orders.map((alpha) => (alpha / 8) * 10));

  const noNoise = new RDPAccountant();
  noNoise.step({ noiseMultiplier: 0, sampleRate: 0.01 });
  assert.deepEqual(noNoise.getPrivacySpent(delta, orders), { epsilon: Infinity, bestOrder: 1.5 });

  const unused = new RDPAccountant();
  unused.step({ noiseMultiplier: 1, sampleRate: 0 });
  const zero = orders.map((alpha) => -(Math.log(delta) + Math.log(alpha)) / (alpha - 1) + Math.log((alpha - 1) / alpha));
  assert.equal(unused.getEpsilon(delta, orders), Math.min(...zero));

  assert.deepEqual(new RDPAccountant().getPrivacySpent(delta), { epsilon: 0, bestOrder: NaN });
  assert.deepEqual(privacySpent({ orders, rdp: [NaN, NaN, NaN, NaN], delta }), { epsilon: Infinity, bestOrder: NaN });
  assert.deepEqual(privacySpent({ orders, rdp: [NaN, 1, 0.5, NaN], delta }).bestOrder, 8);
});

test("the best order at an end of the orders comes with a warning, one inside without", () => {
  const accountant = accountantOf([{ noiseMultiplier: 1, sampleRate: 0.01, steps: 1000 }]);
  const { bestOrder } = accountant.getPrivacySpent(1e-5);
  assert.ok(bestOrder > DEFAULT_ORDERS[0] && bestOrder < DEFAULT_ORDERS[DEFAULT_ORDERS.length - 1]);
  assert.equal(accountant.getPrivacySpent(1e-5).warning, undefined);
  const low = accountant.getPrivacySpent(1e-5, [bestOrder, bestOrder + 1]);
  assert.match(low.warning ?? "", /smallest of the orders \(\d+(\.\d+)?\)/);
  const high = accountant.getPrivacySpent(1e-5, [bestOrder - 1, bestOrder]);
  assert.match(high.warning ?? "", /largest of the orders/);
});

test("consecutive equal steps merge into one segment, as in Opacus", () => {
  const a = { noiseMultiplier: 1.1, sampleRate: 0.01 };
  const b = { noiseMultiplier: 0.9, sampleRate: 0.01 };
  const c = { noiseMultiplier: 1.1, sampleRate: 0.02 };
  const accountant = new RDPAccountant();
  assert.equal(accountant.history.length, 0);
  for (const s of [a, a, a, b, a, a, c, c]) accountant.step(s);
  assert.deepEqual(accountant.history, [{ ...a, steps: 3 }, { ...b, steps: 1 }, { ...a, steps: 2 }, { ...c, steps: 2 }]);

  // The history is a frozen copy.
  const history = accountant.history;
  assert.ok(Object.isFrozen(history) && Object.isFrozen(history[0]));
  assert.throws(() => ((history[0] as { steps: number }).steps = 100), TypeError);
  assert.equal(accountant.history[0].steps, 3);

  // n merged steps are the mechanism run n times.
  const merged = accountantOf([{ ...a, steps: 250 }]);
  const once = privacySpent({ orders: DEFAULT_ORDERS, rdp: computeRdp({ ...a, steps: 250 }), delta: 1e-5 });
  assert.deepEqual(merged.getPrivacySpent(1e-5), once);
});

test("invalid arguments give ValueError naming the argument and the value", () => {
  const accountant = new RDPAccountant();
  const rejects = (run: () => unknown, pattern: RegExp) => assert.throws(run, (error: unknown) => error instanceof ValueError && pattern.test(error.message), `expected a ValueError matching ${pattern}`);
  for (const noiseMultiplier of [-1, NaN, Infinity, -Infinity]) {
    rejects(() => accountant.step({ noiseMultiplier, sampleRate: 0.1 }), new RegExp(`RDPAccountant\\.step: noiseMultiplier .*got ${noiseMultiplier}$`));
  }
  for (const sampleRate of [-0.1, 1.5, NaN, Infinity]) {
    rejects(() => accountant.step({ noiseMultiplier: 1, sampleRate }), new RegExp(`RDPAccountant\\.step: sampleRate .*got ${sampleRate}$`));
  }
  rejects(() => accountant.step({ noiseMultiplier: "1" as unknown as number, sampleRate: 0.1 }), /noiseMultiplier .*got "1"$/);
  rejects(() => accountant.step({ noiseMultiplier: 1, sampleRate: undefined as unknown as number }), /sampleRate .*got undefined$/);
  assert.equal(accountant.history.length, 0, "a rejected step is not recorded");

  accountant.step({ noiseMultiplier: 1, sampleRate: 0.1 });
  for (const delta of [0, 1, -1e-5, 2, NaN]) {
    rejects(() => accountant.getEpsilon(delta), new RegExp(`delta must be a number in \\(0, 1\\), got ${delta}$`));
    rejects(() => accountant.getPrivacySpent(delta), /RDPAccountant\.getPrivacySpent: delta/);
    rejects(() => new RDPAccountant().getPrivacySpent(delta), /delta/);
  }
  rejects(() => accountant.getEpsilon(1e-5, [2, 1]), /orders\[1\] must be a finite number > 1, got 1$/);
  rejects(() => accountant.getEpsilon(1e-5, [0.5]), /orders\[0\] .*got 0\.5$/);
  rejects(() => accountant.getEpsilon(1e-5, [2, Infinity]), /orders\[1\] .*got Infinity$/);
  rejects(() => accountant.getEpsilon(1e-5, [NaN]), /orders\[0\] .*got NaN$/);
  rejects(() => accountant.getEpsilon(1e-5, []), /orders must not be empty/);

  rejects(() => computeRdp({ sampleRate: 0.1, noiseMultiplier: 1, steps: -1 }), /computeRdp: steps must be an integer ≥ 0, got -1$/);
  rejects(() => computeRdp({ sampleRate: 0.1, noiseMultiplier: 1, steps: 2.5 }), /steps .*got 2\.5$/);
  rejects(() => computeRdp({ sampleRate: 2, noiseMultiplier: 1, steps: 1 }), /computeRdp: sampleRate .*got 2$/);
  rejects(() => computeRdp({ sampleRate: 0.1, noiseMultiplier: -2, steps: 1 }), /computeRdp: noiseMultiplier .*got -2$/);
  rejects(() => privacySpent({ orders: [2, 3], rdp: [1], delta: 1e-5 }), /privacySpent: rdp has 1 values for 2 orders/);
  rejects(() => privacySpent({ orders: [2], rdp: [1], delta: 0 }), /privacySpent: delta .*got 0$/);
});

test("property: epsilon is nondecreasing in the steps and nonincreasing in the noise multiplier", () => {
  const sampleRate = fc.oneof(fc.double({ min: 1e-5, max: 1, noNaN: true }), fc.constant(1));
  const sigma = fc.double({ min: 0.3, max: 20, noNaN: true });
  const steps = fc.integer({ min: 1, max: 100000 });
  const delta = fc.double({ min: 1e-10, max: 0.1, noNaN: true });
  const orders = fc.oneof(fc.constant(DEFAULT_ORDERS), fc.constant([1.5, 2, 3.5, 8, 16, 64, 128]));
  const epsilon = (q: number, noiseMultiplier: number, n: number, d: number, o: readonly number[]) =>
    privacySpent({ orders: o, rdp: computeRdp({ sampleRate: q, noiseMultiplier, steps: n, orders: o }), delta: d }).epsilon;
  fc.assert(
    fc.property(sampleRate, sigma, steps, steps, delta, orders, (q, s, n1, n2, d, o) => {
      const [few, many] = n1 <= n2 ? [n1, n2] : [n2, n1];
      const [lower, higher] = [epsilon(q, s, few, d, o), epsilon(q, s, many, d, o)];
      assert.ok(lower <= higher, `q = ${q}, σ = ${s}, δ = ${d}: ${few} steps give ε = ${lower}, ${many} steps ${higher}`);
    }),
    { numRuns: runs(60) },
  );
  fc.assert(
    fc.property(sampleRate, sigma, sigma, steps, delta, orders, (q, s1, s2, n, d, o) => {
      const [less, more] = s1 <= s2 ? [s1, s2] : [s2, s1];
      const [noisier, quieter] = [epsilon(q, more, n, d, o), epsilon(q, less, n, d, o)];
      // The series are summed in float64: allow their last digits.
      assert.ok(noisier <= quieter + 1e-10 * Math.abs(quieter), `q = ${q}, ${n} steps, δ = ${d}: σ = ${less} gives ε = ${quieter}, σ = ${more} gives ${noisier}`);
    }),
    { numRuns: runs(60) },
  );
});
