/**
 * SGD and Adam step parameters as torch.optim.SGD and torch.optim.Adam do (foreach=False):
 * every case of tests/fixtures/optim/optim.json (made by make_fixtures_optim.py with torch
 * 1.13) to within 1e-6 relative and one float32 ulp (bit for bit, in practice); the fused
 * multiply-add the match depends on, against exact arithmetic; the validation of every
 * option; a bad gradient changing nothing, not even the optimiser's state; the next forward
 * pass and gradient seeing the new parameters; and a short training run lowering the loss.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { batchGradient, Linear, randn, ReLU, Sequential, ShapeError, Tanh, ValueError } from "../mod.ts";
import type { Module, Tensor } from "../mod.ts";
import { manualSeed } from "../src/layers/init.ts";
import { Adam, fusedMultiplyAdd32, SGD } from "../src/optim.ts";
import type { AdamOptions, SGDOptions } from "../src/optim.ts";
import { root } from "./helpers/cli.ts";
import { runs } from "./helpers/runs.ts";

const RELATIVE_TOLERANCE = 1e-6;
const ABSOLUTE_TOLERANCE = 1e-7;
/**
 * Float32 ulps allowed between PyTorch's parameters and ours. Every fixture value is matched
 * exactly on node, deno and bun; one ulp leaves room for a runtime whose `**` (the bias
 * corrections' powers) differs from C's `pow` in the last bit. Without the fused multiply-add
 * the SGD cases are up to 22 ulps (1.5e-6 relative) off.
 */
const ULP_TOLERANCE = 1;

interface Case {
  name: string;
  optimizer: "SGD" | "Adam";
  options: SGDOptions & AdamOptions;
  /** The learning rate of each step, when the case changes it between steps. */
  lrs?: number[];
  /** The D parameters after each step. */
  params: number[][];
  /** Adam's `state["step"]` after the last step. */
  stepCount?: number;
}

interface Fixture {
  torch: string;
  parameters: { name: string; shape: number[] }[];
  initial: number[];
  gradients: number[][];
  cases: Case[];
}

const fixture: Fixture = JSON.parse(readFileSync(join(root, "tests", "fixtures", "optim", "optim.json"), "utf8"));
const gradients = fixture.gradients.map((g) => Float32Array.from(g));
const D = fixture.initial.length;

type Optimizer = SGD | Adam;

/** The fixture's network, `Sequential(Linear(4, 3), Tanh(), Linear(3, 6))`, holding its initial parameters. */
function fixtureNetwork(): Module {
  const net = new Sequential(new Linear(4, 3), new Tanh(), new Linear(3, 6));
  const named = net.parameters();
  assert.deepEqual(named.map(([name, t]) => ({ name, shape: t.shape })), fixture.parameters);
  let offset = 0;
  for (const [, t] of named) {
    t.data.set(fixture.initial.slice(offset, offset + t.data.length));
    offset += t.data.length;
  }
  return net;
}

function optimizerFor(kind: "SGD" | "Adam", net: Module, options: SGDOptions & AdamOptions): Optimizer {
  return kind === "SGD" ? new SGD(net, options) : new Adam(net, options);
}

/** The network's parameters as one flat vector, a copy. */
function flatParameters(net: Module): Float32Array {
  const out = new Float32Array(net.parameters().reduce((n, [, t]) => n + t.data.length, 0));
  let offset = 0;
  for (const [, t] of net.parameters()) {
    out.set(t.data, offset);
    offset += t.data.length;
  }
  return out;
}

const bits = new Float32Array(1);
const bitsAsInteger = new Int32Array(bits.buffer);
/** A float32's place on the number line in ulps: adjacent floats differ by 1, ±0 are both 0. */
function ulpOrdinal(x: number): number {
  bits[0] = x;
  const i = bitsAsInteger[0];
  return i < 0 ? -(i & 0x7fffffff) : i;
}

test("the fixture is torch 1.13's, on the network the tests build", () => {
  assert.match(fixture.torch, /^1\.13/);
  assert.equal(D, 39);
  assert.equal(fixture.cases.length, 17);
  fixtureNetwork();
});

for (const kind of ["SGD", "Adam"] as const) {
  test(`${kind} reaches PyTorch's parameters at every step of every fixture case`, () => {
    for (const c of fixture.cases.filter((c) => c.optimizer === kind)) {
      const net = fixtureNetwork();
      const optimizer = optimizerFor(kind, net, c.options);
      for (const [step, expected] of c.params.entries()) {
        if (c.lrs !== undefined) optimizer.lr = c.lrs[step];
        optimizer.step(gradients[step]);
        const actual = flatParameters(net);
        for (let i = 0; i < D; i++) {
          const [a, e] = [actual[i], expected[i]];
          const where = `${c.name}, step ${step + 1}, parameter ${i}: got ${a}, PyTorch ${e}`;
          assert.ok(Math.abs(a - e) <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * Math.abs(e), where);
          const ulps = Math.abs(ulpOrdinal(a) - ulpOrdinal(e));
          assert.ok(ulps <= ULP_TOLERANCE, `${where} (${ulps} ulps apart)`);
        }
      }
      if (optimizer instanceof Adam) assert.equal(optimizer.stepCount, c.stepCount, c.name);
    }
  });
}

/** The float32 nearest to the exact value of a + alpha·b, from exact integer arithmetic. */
function exactFusedMultiplyAdd32(alpha: number, b: number, a: number): number {
  const parts = (x: number): [bigint, number] => {
    bits[0] = x;
    const i = bitsAsInteger[0];
    const exponentBits = (i >>> 23) & 0xff;
    const fraction = BigInt(i & 0x7fffff);
    const mantissa = exponentBits === 0 ? fraction : fraction | (1n << 23n);
    return [i < 0 ? -mantissa : mantissa, (exponentBits === 0 ? 1 : exponentBits) - 150];
  };
  const [ma, ea] = parts(a);
  const [mAlpha, eAlpha] = parts(alpha);
  const [mb, eb] = parts(b);
  const exponent = Math.min(ea, eAlpha + eb);
  const exact = (ma << BigInt(ea - exponent)) + ((mAlpha * mb) << BigInt(eAlpha + eb - exponent)); // × 2^exponent
  if (exact === 0n) return 0;
  const negative = exact < 0n;
  const magnitude = negative ? -exact : exact;
  const top = magnitude.toString(2).length - 1 + exponent; // the leading bit's exponent
  const quantum = Math.max(top - 23, -149); // the exponent of a float32's last bit there
  let integer: bigint;
  if (quantum <= exponent) integer = magnitude << BigInt(exponent - quantum);
  else {
    const shift = BigInt(quantum - exponent);
    integer = magnitude >> shift;
    const remainder = magnitude - (integer << shift);
    const half = 1n << (shift - 1n);
    if (remainder > half || (remainder === half && (integer & 1n) === 1n)) integer += 1n;
  }
  const value = Number(integer) * 2 ** quantum;
  const rounded = value > 3.4028234663852886e38 ? Infinity : value;
  return negative ? -rounded : rounded;
}

test("fusedMultiplyAdd32 rounds a + alpha·b once, as an FMA, where the double sum lands halfway", () => {
  // 1 + 2⁻²³ + (1 + 2⁻¹⁸)·2⁻²⁴(1 − 2⁻¹⁸) = 1 + 3·2⁻²⁴ − 2⁻⁶⁰: the double rounds it to the
  // float32 midpoint 1 + 3·2⁻²⁴, which ties to even upwards; the exact value is just below.
  const [a, alpha, b] = [1 + 2 ** -23, 1 + 2 ** -18, 2 ** -24 * (1 - 2 ** -18)];
  assert.equal(Math.fround(a + alpha * b), 1 + 2 ** -22);
  assert.equal(fusedMultiplyAdd32(alpha, b, a), 1 + 2 ** -23);
  assert.equal(exactFusedMultiplyAdd32(alpha, b, a), 1 + 2 ** -23);
  const float32 = fc.float({ noNaN: true, noDefaultInfinity: true });
  fc.assert(
    fc.property(float32, float32, float32, (x, y, z) => {
      const expected = exactFusedMultiplyAdd32(y, z, x);
      assert.equal(fusedMultiplyAdd32(y, z, x) + 0, expected + 0); // zeros' signs aside
    }),
    { numRuns: runs(2000) },
  );
  // The halfway cases by the family: scaled by powers of two, mirrored, and the tie's other side.
  fc.assert(
    fc.property(fc.integer({ min: -60, max: 60 }), fc.integer({ min: -30, max: 30 }), fc.boolean(), fc.boolean(), (scale, split, negate, above) => {
      const sign = negate ? -1 : 1;
      const x = sign * a * 2 ** scale;
      const y = alpha * 2 ** split;
      const z = sign * (above ? 2 ** -24 * (1 + 2 ** -18) : b) * 2 ** (scale - split);
      if (![x, y, z].every((v) => Math.fround(v) === v)) return; // outside float32's range
      assert.equal(fusedMultiplyAdd32(y, z, x), exactFusedMultiplyAdd32(y, z, x));
    }),
    { numRuns: runs(300) },
  );
});

test("the defaults are torch.optim's", () => {
  const net = fixtureNetwork();
  assert.equal(new SGD(net).lr, 1e-3);
  assert.equal(new Adam(net).lr, 1e-3);
  const explicit = [
    ["SGD", { lr: 1e-3, momentum: 0, dampening: 0, weight_decay: 0, nesterov: false, maximize: false }],
    ["Adam", { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, amsgrad: false, maximize: false }],
  ] as const;
  for (const [kind, options] of explicit) {
    const [byDefault, spelledOut] = [fixtureNetwork(), fixtureNetwork()];
    const [first, second] = [optimizerFor(kind, byDefault, {}), optimizerFor(kind, spelledOut, options)];
    for (const g of gradients) {
      first.step(g);
      second.step(g);
    }
    assert.deepEqual(flatParameters(byDefault), flatParameters(spelledOut), kind);
  }
});

test("bad options are refused with a ValueError naming the option and the value", () => {
  const net = fixtureNetwork();
  const bad: [string, () => unknown, RegExp][] = [
    ["SGD lr < 0", () => new SGD(net, { lr: -0.1 }), /lr .*-0\.1/],
    ["SGD lr NaN", () => new SGD(net, { lr: NaN }), /lr .*NaN/],
    ["SGD lr infinite", () => new SGD(net, { lr: Infinity }), /lr .*Infinity/],
    ["SGD lr a string", () => new SGD(net, { lr: "0.1" as unknown as number }), /lr .*"0\.1"/],
    ["SGD momentum < 0", () => new SGD(net, { momentum: -0.5 }), /momentum .*-0\.5/],
    ["SGD dampening NaN", () => new SGD(net, { dampening: NaN }), /dampening .*NaN/],
    ["SGD weight_decay < 0", () => new SGD(net, { weight_decay: -1e-4 }), /weight_decay .*-0\.0001/],
    ["SGD nesterov without momentum", () => new SGD(net, { nesterov: true }), /nesterov .*momentum 0/],
    ["SGD nesterov with dampening", () => new SGD(net, { nesterov: true, momentum: 0.9, dampening: 0.1 }), /nesterov .*dampening 0\.1/],
    ["SGD nesterov not a boolean", () => new SGD(net, { momentum: 0.9, nesterov: 1 as unknown as boolean }), /nesterov .*1/],
    ["SGD maximize not a boolean", () => new SGD(net, { maximize: "no" as unknown as boolean }), /maximize .*"no"/],
    ["SGD a misspelt option", () => new SGD(net, { learning_rate: 0.1 } as SGDOptions), /unknown option "learning_rate"/],
    ["Adam lr < 0", () => new Adam(net, { lr: -1 }), /lr .*-1/],
    ["Adam betas[0] = 1", () => new Adam(net, { betas: [1, 0.999] }), /betas\[0\] .*1/],
    ["Adam betas[1] < 0", () => new Adam(net, { betas: [0.9, -0.1] }), /betas\[1\] .*-0\.1/],
    ["Adam betas[1] NaN", () => new Adam(net, { betas: [0.9, NaN] }), /betas\[1\] .*NaN/],
    ["Adam betas not a pair", () => new Adam(net, { betas: [0.9] as unknown as [number, number] }), /betas .*\[0\.9\]/],
    ["Adam eps < 0", () => new Adam(net, { eps: -1e-8 }), /eps .*-1e-8/],
    ["Adam weight_decay infinite", () => new Adam(net, { weight_decay: Infinity }), /weight_decay .*Infinity/],
    ["Adam amsgrad not a boolean", () => new Adam(net, { amsgrad: 1 as unknown as boolean }), /amsgrad .*1/],
    ["Adam a misspelt option", () => new Adam(net, { beta1: 0.9 } as AdamOptions), /unknown option "beta1"/],
    ["a network without parameters", () => new SGD(new Sequential(new ReLU())), /no parameters/],
  ];
  for (const [what, make, message] of bad) {
    assert.throws(make, (error: unknown) => error instanceof ValueError && message.test(error.message), what);
  }
  // What PyTorch accepts is accepted: zero rates, zero betas, dampening without nesterov.
  new SGD(net, { lr: 0, momentum: 0.9, dampening: 1.5 });
  new Adam(net, { lr: 0, betas: [0, 0], eps: 0 });
  for (const optimizer of [new SGD(net, { lr: 0.1 }), new Adam(net, { lr: 0.1 })]) {
    assert.throws(() => (optimizer.lr = -1), (error: unknown) => error instanceof ValueError && /lr .*-1/.test(error.message));
    assert.throws(() => (optimizer.lr = NaN), ValueError);
    assert.equal(optimizer.lr, 0.1, "a refused lr leaves the old one");
    optimizer.lr = 0.025;
    assert.equal(optimizer.lr, 0.025);
  }
});

test("a gradient of the wrong size is a ShapeError naming D and what was given, and changes nothing", () => {
  const wrong: [Tensor | Float32Array, RegExp][] = [
    [new Float32Array(D - 1), /D = 39 .*got 38/],
    [new Float32Array(D + 1), /D = 39 .*got 40/],
    [{ shape: [1, D], data: new Float32Array(D) }, /\(39,\).*got shape \(1, 39\)/],
    [{ shape: [D], data: new Float32Array(D - 1) }, /\(39,\).*got shape \(39,\) with 38 floats/],
    [[...gradients[0]] as unknown as Float32Array, /Float32Array of 39 floats/],
  ];
  for (const kind of ["SGD", "Adam"] as const) {
    const net = fixtureNetwork();
    const optimizer = optimizerFor(kind, net, { lr: 0.1 });
    optimizer.step(gradients[0]);
    const before = flatParameters(net);
    for (const [gradient, message] of wrong) {
      assert.throws(() => optimizer.step(gradient), (error: unknown) => error instanceof ShapeError && message.test(error.message), `${kind} ${message}`);
    }
    assert.deepEqual(flatParameters(net), before);
    if (optimizer instanceof Adam) assert.equal(optimizer.stepCount, 1);
  }
});

test("a NaN or infinite gradient entry is a ValueError naming the entry and its tensor, and changes no parameter or state", () => {
  const names = fixture.parameters.flatMap(({ name, shape }) => Array.from({ length: shape.reduce((n, d) => n * d, 1) }, (_, k) => [name, k] as const));
  const cases = fixture.cases.filter((c) => c.lrs === undefined);
  fc.assert(
    fc.property(
      fc.constantFrom(...cases),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: D - 1 }),
      fc.constantFrom(NaN, Infinity, -Infinity),
      fc.boolean(),
      (c, goodSteps, index, value, asTensor) => {
        const [net, twin] = [fixtureNetwork(), fixtureNetwork()];
        const [optimizer, untouched] = [optimizerFor(c.optimizer, net, c.options), optimizerFor(c.optimizer, twin, c.options)];
        for (let step = 0; step < goodSteps; step++) {
          optimizer.step(gradients[step]);
          untouched.step(gradients[step]);
        }
        const before = flatParameters(net);
        const bad = Float32Array.from(gradients[goodSteps]);
        bad[index] = value;
        const [name, element] = names[index];
        assert.throws(
          () => optimizer.step(asTensor ? { shape: [D], data: bad } : bad),
          (error: unknown) =>
            error instanceof ValueError && error.message.includes(`gradient[${index}] is ${value}`) &&
            error.message.includes(`element ${element} of "${name}"`),
        );
        assert.deepEqual(flatParameters(net), before);
        if (optimizer instanceof Adam) assert.equal(optimizer.stepCount, goodSteps);
        // The state too: the next steps go as if the bad one had never been offered.
        for (let step = goodSteps; step < gradients.length; step++) {
          optimizer.step(gradients[step]);
          untouched.step(gradients[step]);
        }
        assert.deepEqual(flatParameters(net), flatParameters(twin));
      },
    ),
    { numRuns: runs(40) },
  );
});

test("maximize steps up the gradient: the same parameters as minimising its negation", () => {
  const cases = fixture.cases.filter((c) => c.lrs === undefined);
  fc.assert(
    fc.property(fc.constantFrom(...cases), fc.integer({ min: 1, max: gradients.length }), (c, steps) => {
      const [up, down] = [fixtureNetwork(), fixtureNetwork()];
      const maximize = c.options.maximize ?? false;
      const [a, b] = [optimizerFor(c.optimizer, up, { ...c.options, maximize: !maximize }), optimizerFor(c.optimizer, down, c.options)];
      for (const g of gradients.slice(0, steps)) {
        a.step(g.map((v) => -v));
        b.step(g);
      }
      assert.deepEqual(flatParameters(up), flatParameters(down));
    }),
    { numRuns: runs(30) },
  );
});

test("a learning rate of 0 leaves the parameters as they are (Adam still counts the step)", () => {
  for (const kind of ["SGD", "Adam"] as const) {
    const net = fixtureNetwork();
    const optimizer = optimizerFor(kind, net, kind === "SGD" ? { lr: 0, momentum: 0.9 } : { lr: 0 });
    const before = flatParameters(net);
    for (const g of gradients) optimizer.step(g);
    assert.deepEqual(flatParameters(net), before, kind);
    if (optimizer instanceof Adam) assert.equal(optimizer.stepCount, gradients.length);
  }
});

test("the next forward pass and gradient see the stepped parameters (the plan copies them at each run)", () => {
  manualSeed(11);
  for (const kind of ["SGD", "Adam"] as const) {
    const net = new Sequential(new Linear(3, 2));
    const x = randn([4, 3], 1);
    const target = randn([4, 2], 2);
    const before = net.forward(x); // builds and caches the plan with the old parameters
    const optimizer = optimizerFor(kind, net, { lr: 0.5 });
    optimizer.step(batchGradient(net, x, target, { loss: "mse" }));
    const after = net.forward(x);
    assert.notDeepEqual(after.data, before.data, `${kind}: the step changed the output`);
    const [[, weight], [, bias]] = net.parameters();
    for (let n = 0; n < 4; n++) {
      for (let o = 0; o < 2; o++) {
        let y = bias.data[o];
        for (let i = 0; i < 3; i++) y += weight.data[o * 3 + i] * x.data[n * 3 + i];
        assert.ok(Math.abs(after.data[n * 2 + o] - y) <= 1e-5, `${kind}: output (${n}, ${o}) ${after.data[n * 2 + o]}, from the new parameters ${y}`);
      }
    }
    // A fresh network (a fresh plan) holding the new values gives the same gradient.
    const fresh = new Sequential(new Linear(3, 2));
    fresh.loadStateDict(net.stateDict());
    assert.deepEqual(batchGradient(net, x, target, { loss: "mse" }).data, batchGradient(fresh, x, target, { loss: "mse" }).data);
  }
});

test("a short training run lowers the loss with SGD and with Adam", () => {
  manualSeed(5);
  const teacher = new Sequential(new Linear(4, 6), new Tanh(), new Linear(6, 1));
  const x = randn([32, 4], 3);
  const y = teacher.forward(x);
  const meanSquaredError = (net: Module): number => {
    const out = net.forward(x).data;
    return out.reduce((sum, v, i) => sum + (v - y.data[i]) ** 2, 0) / out.length;
  };
  const settings = [
    ["SGD", { lr: 0.1, momentum: 0.9 }],
    ["Adam", { lr: 0.02 }],
  ] as const;
  for (const [kind, options] of settings) {
    manualSeed(9);
    const student = new Sequential(new Linear(4, 6), new Tanh(), new Linear(6, 1));
    const optimizer = optimizerFor(kind, student, options);
    const initial = meanSquaredError(student);
    for (let step = 0; step < 100; step++) optimizer.step(batchGradient(student, x, y, { loss: "mse" }));
    const final = meanSquaredError(student);
    assert.ok(final < 0.02 * initial, `${kind}: loss ${initial} → ${final}`);
  }
});
