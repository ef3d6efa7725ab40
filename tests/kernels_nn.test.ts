// The activation and pooling kernels (assembly/nn.ts) against float64 references
// (tests/helpers/nn_reference.ts), finite differences, hand-checked cases and values
// recorded from PyTorch 1.13.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import { arena, kernels } from "../src/wasm.ts";
import {
  Act,
  ACT_NAMES,
  activation,
  activationDerivative,
  avgPoolBackwardReference,
  avgPoolReference,
  erfc,
  maxPoolBackwardReference,
  maxPoolReference,
  type PoolGeometry,
  poolGeomInts,
  pooledSize,
} from "./helpers/nn_reference.ts";

// ---------------------------------------------------------------------------------------------
// WASM memory helpers: a bump allocator from the arena's base, restarted by every test.

function scratch() {
  let top = arena.base();
  const reserve = (count: number): number => {
    const at = top;
    top = Math.ceil((top + count * 4 + 4) / 16) * 16; // +4: buffers never touch
    arena.ensure(top);
    return at;
  };
  return {
    floats(data: ArrayLike<number> | number): number {
      const at = reserve(typeof data === "number" ? data : data.length);
      if (typeof data !== "number") arena.f32().set(data, at >> 2);
      return at;
    },
    ints(data: ArrayLike<number> | number): number {
      const at = reserve(typeof data === "number" ? data : data.length);
      if (typeof data !== "number") arena.i32().set(data, at >> 2);
      return at;
    },
    /** Fills `count` floats at `at` with NaN, so a kernel that skips an element shows it. */
    poison(at: number, count: number): void {
      arena.f32().fill(NaN, at >> 2, (at >> 2) + count);
    },
  };
}

const readF32 = (at: number, count: number): Float32Array => arena.f32().slice(at >> 2, (at >> 2) + count);
const readI32 = (at: number, count: number): Int32Array => arena.i32().slice(at >> 2, (at >> 2) + count);

// Deterministic values from a fast-check seed (mulberry32), so arrays can follow a random shape.
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniform(rand: () => number, count: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

function sameFloat(got: number, want: number): boolean {
  return Number.isNaN(want) ? Number.isNaN(got) : got === want;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tolerance: (i: number) => number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]) && Number.isNaN(got[i])) continue;
    const error = Math.abs(got[i] - want[i]);
    if (!(error <= tolerance(i))) {
      assert.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (error ${error}, tolerance ${tolerance(i)})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Activations

const f32 = Math.fround;

function actForward(kind: number, x: ArrayLike<number>, p1: number, p2: number): Float32Array {
  const mem = scratch();
  const xp = mem.floats(x);
  const yp = mem.floats(x.length);
  kernels().act_forward(kind, x.length, xp, yp, p1, p2);
  return readF32(yp, x.length);
}

// Runs act_backward with caches x (N × width) and y = the kernel's forward of x.
function actBackward(
  kind: number, K: number, width: number, x: ArrayLike<number>, gy: ArrayLike<number>, p1: number, p2: number,
): Float32Array {
  const mem = scratch();
  const xp = mem.floats(x);
  const yp = mem.floats(x.length);
  kernels().act_forward(kind, x.length, xp, yp, p1, p2);
  const gyp = mem.floats(gy);
  const gxp = mem.floats(gy.length);
  mem.poison(gxp, gy.length);
  kernels().act_backward(kind, gy.length / width, K, width, xp, yp, gyp, gxp, p1, p2);
  return readF32(gxp, gy.length);
}

/** Parameters as PyTorch would take them: LeakyReLU slope, ELU alpha, Softplus beta/threshold. */
const actParams = fc.record({
  kind: fc.integer({ min: 0, max: 8 }),
  slope: fc.double({ min: -1.5, max: 1.5, noNaN: true }),
  alpha: fc.double({ min: 0.05, max: 3, noNaN: true }),
  beta: fc.double({ min: 0.25, max: 4, noNaN: true }),
  threshold: fc.double({ min: 0.5, max: 30, noNaN: true }),
}).map(({ kind, slope, alpha, beta, threshold }) => {
  const p1 = kind === Act.leakyRelu ? f32(slope) : kind === Act.elu ? f32(alpha) : kind === Act.softplus ? f32(beta) : 0;
  const p2 = kind === Act.softplus ? f32(threshold) : 0;
  return { kind, p1, p2 };
});

const SPECIAL_INPUTS = [0, -0, 1e-3, -1e-3, 1e-20, -1e-20, 0.5, -0.5, 5, -5, 88, -88, 100, -100].map(f32);
const activationInput = fc.oneof(
  { arbitrary: fc.float({ min: f32(-40), max: f32(40), noNaN: true }), weight: 4 },
  { arbitrary: fc.constantFrom(...SPECIAL_INPUTS), weight: 1 },
);

// Float64 reference error budget: float32 rounding (plus the reference's own cancellation for
// the tanh-form GELU, whose 1 + tanh(u) loses ~1e-16 absolute).
function forwardTolerance(kind: number, x: number, want: number): number {
  const referenceError = kind === Act.geluTanh ? 1e-14 * (1 + Math.abs(x)) : 0;
  return 3e-7 * Math.abs(want) + 1e-44 + referenceError;
}

function backwardTolerance(kind: number, x: number, gy: number, want: number): number {
  // Sigmoid and Tanh read the float32 output cache, as PyTorch does: ~1 ulp of 1, absolute
  const outputCache = kind === Act.sigmoid || kind === Act.tanh ? 4e-7 * Math.abs(gy) : 0;
  const referenceError = kind === Act.geluTanh ? 1e-14 * (1 + x * x) * Math.abs(gy) : 0;
  return 3e-7 * Math.abs(want) + 1e-44 + outputCache + referenceError;
}

test("reference erfc agrees with PyTorch float64 torch.erfc", () => {
  // /usr/bin/python3 -c "import torch; print(torch.erfc(torch.tensor([-3.,-0.5,0.,0.3,1.,2.5,3.,5.,10.],
  //   dtype=torch.float64)).tolist())"   (PyTorch 1.13)
  const xs = [-3, -0.5, 0, 0.3, 1, 2.5, 3, 5, 10];
  const want = [
    1.9999779095030015, 1.5204998778130465, 1.0, 0.6713732405408726, 0.15729920705028513,
    0.0004069520174449589, 2.209049699858544e-05, 1.537459794428035e-12, 2.088487583762545e-45,
  ];
  assertClose(xs.map(erfc), want, (i) => 1e-13 * want[i], "erfc");
});

test("the vectorised activations give what the scalar path gives element by element, ±∞ and NaN included", () => {
  // Whole f32x4 go through the vector kernels (nn_exp.ts, nn_erf.ts), a count of 1 through the
  // scalar float64 path: the same values, NaN where one is (∞ times a vanishing factor).
  const xs = [0, -0, 0.3, -0.75, 1.1, -1.6, 2.5, -3.9, 7, -12, 30, -41, Infinity, -Infinity, NaN, 5e-20].map(f32);
  const bits = (v: number) => new Int32Array(new Float32Array([v]).buffer)[0];
  for (const kind of [Act.sigmoid, Act.tanh, Act.elu, Act.gelu, Act.geluTanh, Act.silu]) {
    const p1 = kind === Act.elu ? 1 : 0;
    const mem = scratch();
    const x = mem.floats(xs), y = mem.floats(xs.length), one = mem.floats(1);
    kernels().act_forward(kind, xs.length, x, y, p1, 0);
    const gy = mem.floats(xs.map(() => 1)), gx = mem.floats(xs.length);
    kernels().act_backward(kind, 1, 1, xs.length, x, y, gy, gx, p1, 0);
    const vector = [readF32(y, xs.length), readF32(gx, xs.length)];
    xs.forEach((v, i) => {
      kernels().act_forward(kind, 1, x + i * 4, one, p1, 0);
      const forward = readF32(one, 1)[0];
      kernels().act_backward(kind, 1, 1, 1, x + i * 4, one, gy, one, p1, 0);
      const backward = readF32(one, 1)[0];
      for (const [what, got, want] of [["forward", vector[0][i], forward], ["derivative", vector[1][i], backward]] as const) {
        const same = got === want || (Number.isNaN(got) && Number.isNaN(want)) || Math.abs(bits(got) - bits(want)) <= 4;
        assert.ok(same, `${ACT_NAMES[kind]} ${what} at ${v}: vector ${got}, scalar ${want}`);
      }
    });
  }
});

test("activation forward matches the float64 reference for every kind and random parameters", () => {
  fc.assert(
    fc.property(actParams, fc.array(activationInput, { minLength: 1, maxLength: 37 }), ({ kind, p1, p2 }, xs) => {
      const got = actForward(kind, xs, p1, p2);
      const want = xs.map((x) => activation(kind, x, p1, p2));
      assertClose(got, want, (i) => forwardTolerance(kind, xs[i], want[i]), `${ACT_NAMES[kind]} forward`);
    }),
    { numRuns: runs(300) },
  );
});

test("activation backward is gy times the reference derivative, rows r reading cache r / K, any width", () => {
  fc.assert(
    fc.property(
      actParams,
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 13 }),
      fc.integer(),
      ({ kind, p1, p2 }, N, K, width, seed) => {
        const rand = random(seed);
        const x = new Float32Array(N * width);
        for (let i = 0; i < x.length; i++) {
          x[i] = rand() < 0.15 ? SPECIAL_INPUTS[Math.floor(rand() * SPECIAL_INPUTS.length)] : -30 + 60 * rand();
        }
        const gy = uniform(rand, N * K * width, -2, 2);
        const got = actBackward(kind, K, width, x, gy, p1, p2);
        const want = Array.from(gy, (g, i) => {
          const xi = x[Math.floor(i / width / K) * width + (i % width)];
          return g * activationDerivative(kind, xi, p1, p2);
        });
        assertClose(got, want, (i) => {
          const xi = x[Math.floor(i / width / K) * width + (i % width)];
          return backwardTolerance(kind, xi, gy[i], want[i]);
        }, `${ACT_NAMES[kind]} backward`);
      },
    ),
    { numRuns: runs(300) },
  );
});

// Points where the derivative jumps: finite differences are meaningless next to them.
function nearKink(kind: number, x: number, h: number, p1: number, p2: number): boolean {
  if (kind === Act.relu || kind === Act.leakyRelu || kind === Act.elu) return Math.abs(x) <= 2 * h;
  if (kind === Act.softplus) return f32((x - h) * p1) > p2 !== f32((x + h) * p1) > p2;
  return false;
}

test("activation backward agrees with central finite differences of the float64 forward", () => {
  fc.assert(
    fc.property(actParams, fc.array(fc.float({ min: f32(-20), max: f32(20), noNaN: true }), { minLength: 1, maxLength: 24 }), ({ kind, p1, p2 }, xs) => {
      const points = xs.filter((x) => !nearKink(kind, x, 1e-3, p1, p2));
      if (points.length === 0) return;
      const got = actBackward(kind, 1, points.length, points, new Float32Array(points.length).fill(1), p1, p2);
      const want = points.map((x) => {
        const h = 1e-5 * Math.max(1, Math.abs(x));
        return (activation(kind, x + h, p1, p2) - activation(kind, x - h, p1, p2)) / (2 * h);
      });
      assertClose(got, want, (i) => 1e-6 + 1e-5 * Math.abs(want[i]), `${ACT_NAMES[kind]} finite differences`);
    }),
    { numRuns: runs(200) },
  );
});

test("activation backward agrees with finite differences of the kernel's own float32 forward", () => {
  const h = 1 / 256; // x ± h stay exact in float32 on this grid
  fc.assert(
    fc.property(actParams, fc.array(fc.integer({ min: -16 * 256, max: 16 * 256 }), { minLength: 1, maxLength: 24 }), ({ kind, p1, p2 }, steps) => {
      const points = steps.map((s) => s * h).filter((x) => !nearKink(kind, x, h, p1, p2));
      if (points.length === 0) return;
      const above = actForward(kind, points.map((x) => x + h), p1, p2);
      const below = actForward(kind, points.map((x) => x - h), p1, p2);
      const at = actForward(kind, points, p1, p2);
      const got = actBackward(kind, 1, points.length, points, new Float32Array(points.length).fill(1), p1, p2);
      const want = points.map((_, i) => (above[i] - below[i]) / (2 * h));
      assertClose(got, want, (i) => 1e-4 * Math.max(1, Math.abs(at[i]), Math.abs(p1)), `${ACT_NAMES[kind]} own finite differences`);
    }),
    { numRuns: runs(200) },
  );
});

test("activations match PyTorch 1.13 float32 values and autograd derivatives", () => {
  // From PyTorch 1.13 (/usr/bin/python3, torch.nn.functional as F):
  //   xs = torch.tensor([-20., -5., -1.5, -1e-3, 0., 1e-3, 0.75, 2.5, 9., 30.], requires_grad=True)
  //   for f in [F.relu, lambda t: F.leaky_relu(t, 0.2), torch.sigmoid, torch.tanh, lambda t: F.elu(t, 0.7),
  //             F.gelu, lambda t: F.gelu(t, approximate="tanh"), F.silu,
  //             lambda t: F.softplus(t, beta=2., threshold=5.)]:
  //       y = f(xs); y.sum().backward(); print(y.tolist(), xs.grad.tolist()); xs.grad = None
  // In saturated tails PyTorch's float32 arithmetic cancels (1 + erf(x) and 1 - tanh² near ±1):
  // GELU(-5) is -1.49e-6 there, -1.4333e-6 exactly; the tanh-GELU derivative at -5 is -2.01e-6
  // there, -1.5464e-6 exactly. Ours evaluate in float64 (checked against the float64 reference
  // above), so this comparison allows PyTorch's own error: 6e-7 absolute.
  const xs = [-20, -5, -1.5, -1e-3, 0, 1e-3, 0.75, 2.5, 9, 30].map(f32);
  const cases: [number, number, number, number[], number[]][] = [
    [Act.relu, 0, 0, [0, 0, 0, 0, 0, 0.0010000000474974513, 0.75, 2.5, 9, 30], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]],
    [Act.leakyRelu, 0.2, 0,
      [-4, -1, -0.30000001192092896, -0.00020000000949949026, 0, 0.0010000000474974513, 0.75, 2.5, 9, 30],
      [0.20000000298023224, 0.20000000298023224, 0.20000000298023224, 0.20000000298023224, 0.20000000298023224, 1, 1, 1, 1, 1]],
    [Act.sigmoid, 0, 0,
      [2.06115369216775e-09, 0.006692850962281227, 0.18242552876472473, 0.499750018119812, 0.5, 0.500249981880188,
        0.6791787147521973, 0.9241418242454529, 0.9998766183853149, 1],
      [2.06115369216775e-09, 0.006648056674748659, 0.14914646744728088, 0.24999994039535522, 0.25,
        0.24999994039535522, 0.21789498627185822, 0.0701037123799324, 0.00012336639338172972, 0]],
    [Act.tanh, 0, 0,
      [-1, -0.9999092221260071, -0.9051482677459717, -0.0009999996982514858, 0, 0.0009999996982514858,
        0.6351489424705505, 0.9866142868995667, 1, 1],
      [0, 0.0001815475116018206, 0.18070662021636963, 0.9999989867210388, 1, 0.9999989867210388,
        0.5965858101844788, 0.026592249050736427, 0, 0]],
    [Act.elu, 0.7, 0,
      [-0.699999988079071, -0.6952834129333496, -0.5438088774681091, -0.0006996571901254356, 0,
        0.0010000000474974513, 0.75, 2.5, 9, 30],
      [1.4428075401085039e-09, 0.0047165630385279655, 0.15619111061096191, 0.6993003487586975, 0.699999988079071,
        1, 1, 1, 1, 1]],
    [Act.gelu, 0, 0,
      [0, -1.4901161193847656e-06, -0.10021086037158966, -0.0004996011266484857, 0, 0.0005003989208489656,
        0.5800295472145081, 2.48447585105896, 9, 30],
      [0, -7.12275505065918e-06, -0.12746915221214294, 0.4992021918296814, 0.5, 0.5007978081703186,
        0.9992257952690125, 1.0376110076904297, 1, 1]],
    [Act.geluTanh, 0, 0,
      [-0, -2.980232238769531e-07, -0.10042843222618103, -0.0004996010684408247, 0, 0.0005003989790566266,
        0.5799605846405029, 2.4849157333374023, 9, 30],
      [0, -2.010875732594286e-06, -0.12771081924438477, 0.4992021322250366, 0.5, 0.5007978677749634,
        0.9989383220672607, 1.0379517078399658, 1, 1]],
    [Act.silu, 0, 0,
      [-4.1223074731533416e-08, -0.033464252948760986, -0.2736382782459259, -0.0004997500218451023, 0,
        0.000500250025652349, 0.509384036064148, 2.310354471206665, 8.998889923095703, 30],
      [-3.916192170549948e-08, -0.02654743380844593, -0.0412941612303257, 0.49950000643730164, 0.5,
        0.500499963760376, 0.8425999283790588, 1.0994011163711548, 1.000986933708191, 1]],
    [Act.softplus, 2, 5,
      [2.12417706556933e-18, 2.2699450710206293e-05, 0.024293676018714905, 0.34607383608818054, 0.3465735912322998,
        0.34707385301589966, 0.8507066369056702, 2.5033576488494873, 9, 30],
      [4.24835413113866e-18, 4.539786823443137e-05, 0.04742587357759476, 0.49949997663497925, 0.5,
        0.5005000233650208, 0.8175745010375977, 0.9933071732521057, 1, 1]],
  ];
  for (const [kind, p1, p2, forward, derivative] of cases) {
    const tolerance = (want: number[]) => (i: number) => 6e-7 + 3e-7 * Math.abs(want[i]);
    assertClose(actForward(kind, xs, f32(p1), f32(p2)), forward, tolerance(forward), `${ACT_NAMES[kind]} vs PyTorch`);
    const gx = actBackward(kind, 1, xs.length, xs, new Float32Array(xs.length).fill(1), f32(p1), f32(p2));
    assertClose(gx, derivative, tolerance(derivative), `${ACT_NAMES[kind]}' vs PyTorch`);
  }
});

test("ReLU and LeakyReLU follow PyTorch at 0 and NaN: relu'(0) = 0, leaky'(0) = slope, NaN propagates", () => {
  const xs = [0, -0, NaN, 2, -2, 1e-30, -1e-30, 0]; // 8 elements: the SIMD path and the scalar tail
  const gy = [1, 1, 1, 1, 1, 1, 1, 1];
  assert.deepEqual(Array.from(actForward(Act.relu, xs, 0, 0), (v) => (Number.isNaN(v) ? "NaN" : v + 0)), [0, 0, "NaN", 2, 0, f32(1e-30), 0, 0]);
  // threshold_backward passes the gradient unless x <= 0, so NaN lets it through
  assert.deepEqual(Array.from(actBackward(Act.relu, 1, 8, xs, gy, 0, 0)), [0, 0, 1, 1, 0, 1, 0, 0]);
  const slope = f32(0.1);
  assert.deepEqual(Array.from(actBackward(Act.leakyRelu, 1, 8, xs, gy, slope, 0)), [slope, slope, slope, 1, slope, 1, slope, slope]);
  const leaky = actForward(Act.leakyRelu, xs, slope, 0);
  assert.ok(Number.isNaN(leaky[2]));
  assert.equal(leaky[4], f32(-2 * slope));
  // ELU'(0) = alpha (the x <= 0 branch), as PyTorch
  assert.equal(actBackward(Act.elu, 1, 1, [0], [1], f32(0.7), 0)[0], f32(0.7));
  // the tails stay exact for the odd widths too
  for (const width of [1, 3, 5, 7]) {
    const x = Array.from({ length: width }, (_, i) => i - 2);
    assert.deepEqual(Array.from(actForward(Act.relu, x, 0, 0)), x.map((v) => Math.max(v, 0)));
  }
});

test("act_forward may write in place (y == x) and act_backward may write in place (gx == gy)", () => {
  for (let kind = 0; kind <= 8; kind++) {
    const p1 = kind === Act.softplus ? 1 : f32(0.3);
    const p2 = kind === Act.softplus ? 20 : 0;
    const x = Array.from({ length: 11 }, (_, i) => f32((i - 5) * 0.7));
    const mem = scratch();
    const xp = mem.floats(x);
    kernels().act_forward(kind, x.length, xp, xp, p1, p2);
    assert.deepEqual(readF32(xp, x.length), actForward(kind, x, p1, p2), `${ACT_NAMES[kind]} in place`);
    // K = 2 rows per sample, gx over gy
    const mem2 = scratch();
    const cache = mem2.floats(x);
    const out = mem2.floats(x.length);
    kernels().act_forward(kind, x.length, cache, out, p1, p2);
    const gy = Array.from({ length: 22 }, (_, i) => f32(0.25 * (i % 7) - 0.5));
    const gp = mem2.floats(gy);
    kernels().act_backward(kind, 2, 2, 11, cache, out, gp, gp, p1, p2);
    assert.deepEqual(readF32(gp, 22), actBackward(kind, 2, 11, x, gy, p1, p2), `${ACT_NAMES[kind]} backward in place`);
  }
});

// ---------------------------------------------------------------------------------------------
// Pooling

interface PoolCase {
  geometry: PoolGeometry;
  N: number;
  ceilMode: boolean;
}

/** A random 1-, 2- or 3-d pooling layer that PyTorch accepts (padding ≤ kernel/2, output ≥ 1). */
function poolCase(max: boolean) {
  const axis = fc.record({
    kernel: fc.integer({ min: 1, max: 3 }),
    stride: fc.integer({ min: 1, max: 3 }),
    dilation: max ? fc.integer({ min: 1, max: 3 }) : fc.constant(1),
    padding: fc.nat(),
    extra: fc.integer({ min: 0, max: 4 }),
  });
  return fc.record({
    dims: fc.integer({ min: 1, max: 3 }),
    N: fc.integer({ min: 1, max: 3 }),
    channels: fc.integer({ min: 1, max: 3 }),
    ceilMode: fc.boolean(),
    countIncludePad: fc.boolean(),
    divisorOverride: max ? fc.constant(0) : fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 7 })),
    axes: fc.tuple(axis, axis, axis),
  }).map(({ dims, N, channels, ceilMode, countIncludePad, divisorOverride, axes }): PoolCase => {
    const g: PoolGeometry = {
      channels, input: [], output: [], kernel: [], stride: [], padding: [], dilation: [], countIncludePad, divisorOverride,
    };
    axes.forEach((a, i) => {
      const active = i >= 3 - dims;
      const kernel = active ? a.kernel : 1;
      const stride = active ? a.stride : 1;
      const dilation = active ? a.dilation : 1;
      const padding = active ? a.padding % (Math.floor(kernel / 2) + 1) : 0;
      const size = active ? Math.max(1, dilation * (kernel - 1) + 1 - 2 * padding) + a.extra : 1;
      g.input.push(size);
      g.kernel.push(kernel);
      g.stride.push(stride);
      g.dilation.push(dilation);
      g.padding.push(padding);
      g.output.push(pooledSize(size, kernel, padding, stride, dilation, ceilMode));
    });
    return { geometry: g, N, ceilMode };
  });
}

const volume = (dims: number[]) => dims[0] * dims[1] * dims[2];

// Max pooling inputs with many ties, some NaN and -inf.
function maxPoolInput(rand: () => number, count: number): Float32Array {
  const x = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const u = rand();
    x[i] = u < 0.03 ? NaN : u < 0.06 ? -Infinity : u < 0.5 ? Math.floor(rand() * 5) - 2 : -3 + 6 * rand();
  }
  return x;
}

function runMaxPool(g: PoolGeometry, N: number, x: ArrayLike<number>, relu = false) {
  const mem = scratch();
  const geom = mem.ints(poolGeomInts(g));
  const outCount = N * g.channels * volume(g.output);
  const xp = mem.floats(x);
  const yp = mem.floats(outCount);
  const ap = mem.ints(outCount);
  mem.poison(yp, outCount);
  kernels().maxpool_forward(geom, N, xp, yp, ap, relu ? 1 : 0);
  return { mem, geom, y: readF32(yp, outCount), argmax: readI32(ap, outCount), argmaxPtr: ap };
}

function runMaxPoolBackward(
  g: PoolGeometry,
  N: number,
  K: number,
  x: ArrayLike<number>,
  gy: ArrayLike<number>,
  relu = false,
): Float32Array {
  const { mem, geom, argmaxPtr } = runMaxPool(g, N, x, relu);
  const inCount = N * K * g.channels * volume(g.input);
  const gyp = mem.floats(gy);
  const gxp = mem.floats(inCount);
  mem.poison(gxp, inCount);
  kernels().maxpool_backward(geom, N * K, K, gyp, argmaxPtr, gxp);
  return readF32(gxp, inCount);
}

function runAvgPool(g: PoolGeometry, N: number, x: ArrayLike<number>): Float32Array {
  const mem = scratch();
  const geom = mem.ints(poolGeomInts(g));
  const outCount = N * g.channels * volume(g.output);
  const xp = mem.floats(x);
  const yp = mem.floats(outCount);
  mem.poison(yp, outCount);
  kernels().avgpool_forward(geom, N, xp, yp);
  return readF32(yp, outCount);
}

function runAvgPoolBackward(g: PoolGeometry, R: number, gy: ArrayLike<number>): Float32Array {
  const mem = scratch();
  const geom = mem.ints(poolGeomInts(g));
  const inCount = R * g.channels * volume(g.input);
  const gyp = mem.floats(gy);
  const gxp = mem.floats(inCount);
  mem.poison(gxp, inCount);
  kernels().avgpool_backward(geom, R, gyp, gxp);
  return readF32(gxp, inCount);
}

/** A geometry from PyTorch-style arguments; fewer than 3 dims get unit leading dims. */
function geometry(options: {
  input: number[]; kernel: number[]; stride?: number[]; padding?: number[]; dilation?: number[];
  ceilMode?: boolean; countIncludePad?: boolean; divisorOverride?: number; channels?: number;
}): PoolGeometry {
  const lead = (values: number[], fill: number) => [...Array(3 - values.length).fill(fill), ...values];
  const input = lead(options.input, 1);
  const kernel = lead(options.kernel, 1);
  const stride = lead(options.stride ?? options.kernel, 1);
  const padding = lead(options.padding ?? options.kernel.map(() => 0), 0);
  const dilation = lead(options.dilation ?? options.kernel.map(() => 1), 1);
  const output = input.map((n, i) => pooledSize(n, kernel[i], padding[i], stride[i], dilation[i], options.ceilMode ?? false));
  return {
    channels: options.channels ?? 1, input, output, kernel, stride, padding, dilation,
    countIncludePad: options.countIncludePad ?? true, divisorOverride: options.divisorOverride ?? 0,
  };
}

test("maxpool 2x2 stride 2 on a 4x4 plane: hand-checked values, argmax and backward", () => {
  const g = geometry({ input: [4, 4], kernel: [2, 2] });
  // 1  2  3  4
  // 5  6  7  8     → 6  8
  // 9 10 11 12       14 16
  // 13 14 15 16
  const x = Array.from({ length: 16 }, (_, i) => i + 1);
  const { y, argmax } = runMaxPool(g, 1, x);
  assert.deepEqual(Array.from(y), [6, 8, 14, 16]);
  assert.deepEqual(Array.from(argmax), [5, 7, 13, 15]);
  const gx = runMaxPoolBackward(g, 1, 1, x, [10, 20, 30, 40]);
  assert.deepEqual(Array.from(gx), [0, 0, 0, 0, 0, 10, 0, 20, 0, 0, 0, 0, 0, 30, 0, 40]);
});

test("avgpool with ceil_mode and padding: the divisor follows count_include_pad and divisor_override (hand-checked)", () => {
  // x = [1, 2, 3, 4], kernel 3, stride 2, padding 1, ceil_mode: three windows
  // [pad, 1, 2], [2, 3, 4], [4, pad, (past the padding)]. The last window's padded size is 2,
  // not 3: the part beyond the padded input never counts.
  const x = [1, 2, 3, 4];
  const make = (countIncludePad: boolean, divisorOverride = 0) =>
    geometry({ input: [4], kernel: [3], stride: [2], padding: [1], ceilMode: true, countIncludePad, divisorOverride });
  assert.deepEqual(make(true).output, [1, 1, 3]);
  assert.deepEqual(Array.from(runAvgPool(make(true), 1, x)), [3 / 3, 9 / 3, 4 / 2]);
  assert.deepEqual(Array.from(runAvgPool(make(false), 1, x)), [3 / 2, 9 / 3, 4 / 1]);
  assert.deepEqual(Array.from(runAvgPool(make(true, 5), 1, x)), [3 / 5, 9 / 5, 4 / 5].map(f32));
  // backward with count_include_pad: gy = [3, 6, 4] → shares 1, 2, 2
  assert.deepEqual(Array.from(runAvgPoolBackward(make(true), 1, [3, 6, 4])), [1, 1 + 2, 2, 2 + 2]);
});

test("maxpool forward matches the reference for random 1/2/3-d geometry, with ties, NaN and -inf", () => {
  fc.assert(
    fc.property(poolCase(true), fc.integer(), ({ geometry: g, N }, seed) => {
      const x = maxPoolInput(random(seed), N * g.channels * volume(g.input));
      const { y, argmax } = runMaxPool(g, N, x);
      const want = maxPoolReference(g, N, x);
      for (let i = 0; i < y.length; i++) {
        if (!sameFloat(y[i], want.y[i]) || argmax[i] !== want.argmax[i]) {
          assert.fail(`output ${i}: got ${y[i]} at ${argmax[i]}, want ${want.y[i]} at ${want.argmax[i]} (${JSON.stringify(g)})`);
        }
      }
    }),
    { numRuns: runs(150) },
  );
});

test("maxpool backward scatters gy of K rows per sample through the argmax of sample r / K", () => {
  fc.assert(
    fc.property(poolCase(true), fc.integer({ min: 1, max: 3 }), fc.integer(), ({ geometry: g, N }, K, seed) => {
      const rand = random(seed);
      const x = maxPoolInput(rand, N * g.channels * volume(g.input));
      const gy = uniform(rand, N * K * g.channels * volume(g.output), -1, 1);
      const gx = runMaxPoolBackward(g, N, K, x, gy);
      const want = maxPoolBackwardReference(g, N * K, K, gy, maxPoolReference(g, N, x).argmax);
      assertClose(gx, want, () => 1e-6, "maxpool backward");
    }),
    { numRuns: runs(150) },
  );
});

test("avgpool forward and backward match the reference for random geometry, ceil_mode, count_include_pad, divisor_override", () => {
  fc.assert(
    fc.property(poolCase(false), fc.integer(), ({ geometry: g, N }, seed) => {
      const rand = random(seed);
      const x = uniform(rand, N * g.channels * volume(g.input), -1, 1);
      assertClose(runAvgPool(g, N, x), avgPoolReference(g, N, x), () => 1e-6, `avgpool forward ${JSON.stringify(g)}`);
      const R = N * 2; // the backward has no caches, so any row count works
      const gy = uniform(rand, R * g.channels * volume(g.output), -1, 1);
      assertClose(runAvgPoolBackward(g, R, gy), avgPoolBackwardReference(g, R, gy), () => 1e-5, `avgpool backward ${JSON.stringify(g)}`);
    }),
    { numRuns: runs(150) },
  );
});

test("avgpool backward is the adjoint of avgpool forward: <avgpool(x), g> = <x, avgpool_backward(g)>", () => {
  fc.assert(
    fc.property(poolCase(false), fc.integer(), ({ geometry: g, N }, seed) => {
      const rand = random(seed);
      const x = uniform(rand, N * g.channels * volume(g.input), -1, 1);
      const gy = uniform(rand, N * g.channels * volume(g.output), -1, 1);
      const y = runAvgPool(g, N, x);
      const gx = runAvgPoolBackward(g, N, gy);
      let lhs = 0, rhs = 0, scale = 0;
      for (let i = 0; i < y.length; i++) {
        lhs += y[i] * gy[i];
        scale += Math.abs(y[i] * gy[i]);
      }
      for (let i = 0; i < x.length; i++) {
        rhs += x[i] * gx[i];
        scale += Math.abs(x[i] * gx[i]);
      }
      assert.ok(Math.abs(lhs - rhs) <= 1e-6 * scale + 1e-9, `<y, g> = ${lhs}, <x, gx> = ${rhs}`);
    }),
    { numRuns: runs(150) },
  );
});

test("pooling matches PyTorch 1.13 on ceil_mode, padding, dilation, NaN and tie edge cases", () => {
  // Values printed by PyTorch 1.13 (/usr/bin/python3, torch.nn.functional as F), e.g.
  //   F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=cip) with the gradient of
  //   (y * (torch.arange(9.) + 1).reshape(1, 1, 3, 3)).sum(); each case's call is quoted below.
  const tol = (want: number[]) => (i: number) => 2e-7 * Math.max(1, Math.abs(want[i]));

  // x = (torch.arange(25.) * 0.5 - 3).reshape(1, 1, 5, 5); F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=cip)
  const x5 = Array.from({ length: 25 }, (_, i) => i * 0.5 - 3);
  const weights9 = Array.from({ length: 9 }, (_, i) => i + 1);
  const torchB = {
    true: {
      y: [-0.6666666865348816, -0.5, 0.0, 1.5, 3.0, 2.5, 2.6666667461395264, 4.5, 3.3333332538604736],
      gx: [0.1111111119389534, 0.3333333432674408, 0.2222222238779068, 0.5555555820465088, 0.3333333432674408,
        0.5555555820465088, 1.3333333730697632, 0.7777777910232544, 1.777777910232544, 1.0, 0.4444444477558136,
        1.0, 0.5555555820465088, 1.2222223281860352, 0.6666666865348816, 1.2222222089767456, 2.6666667461395264,
        1.4444444179534912, 3.1111111640930176, 1.6666667461395264, 0.7777777910232544, 1.6666667461395264,
        0.8888888955116272, 1.8888888359069824, 1.0],
    },
    false: {
      y: [-1.5, -0.75, 0.0, 2.25, 3.0, 3.75, 6.0, 6.75, 7.5],
      gx: [0.25, 0.5833333730697632, 0.3333333432674408, 1.0833333730697632, 0.75, 0.9166666865348816,
        1.8055555820465088, 0.888888955116272, 2.6388888359069824, 1.75, 0.6666666865348816, 1.2222223281860352,
        0.5555555820465088, 1.5555555820465088, 1.0, 2.4166667461395264, 4.305555820465088, 1.888888955116272,
        5.138888835906982, 3.25, 1.75, 3.0833334922790527, 1.3333333730697632, 3.5833334922790527, 2.25],
    },
  };
  for (const cip of [true, false]) {
    const g = geometry({ input: [5, 5], kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true, countIncludePad: cip });
    const want = cip ? torchB.true : torchB.false;
    assertClose(runAvgPool(g, 1, x5), want.y, tol(want.y), `avg_pool2d count_include_pad=${cip}`);
    assertClose(runAvgPoolBackward(g, 1, weights9), want.gx, tol(want.gx), `avg_pool2d backward count_include_pad=${cip}`);
  }

  // x = ((torch.arange(30.) % 7) - 3).reshape(1, 1, 5, 6)
  // F.max_pool2d(x, (2, 3), (2, 1), (1, 1), dilation=2, ceil_mode=True, return_indices=True)
  {
    const x = Array.from({ length: 30 }, (_, i) => (i % 7) - 3);
    const g = geometry({ input: [5, 6], kernel: [2, 3], stride: [2, 1], padding: [1, 1], dilation: [2, 2], ceilMode: true });
    assert.deepEqual(g.output, [1, 3, 4]);
    const { y, argmax } = runMaxPool(g, 1, x);
    assert.deepEqual(Array.from(y), [-1, 3, 1, 0, 2, 3, 2, 3, 2, 3, 2, 3]);
    assert.deepEqual(Array.from(argmax), [9, 6, 11, 10, 19, 6, 19, 20, 19, 20, 19, 20]);
  }

  // x = torch.tensor([1., nan, 3., nan, 2., 7., 7., -inf, -inf]).reshape(1, 1, 9)
  // F.max_pool1d(x, 3, 2, 1, ceil_mode=True, return_indices=True): the last NaN wins, ties keep the first
  {
    const x = [1, NaN, 3, NaN, 2, 7, 7, -Infinity, -Infinity];
    const { y, argmax } = runMaxPool(geometry({ input: [9], kernel: [3], stride: [2], padding: [1], ceilMode: true }), 1, x);
    assert.deepEqual(Array.from(y, (v) => (Number.isNaN(v) ? "NaN" : v)), ["NaN", "NaN", "NaN", 7, -Infinity]);
    assert.deepEqual(Array.from(argmax), [1, 3, 3, 5, 7]);
  }

  // x = (torch.arange(60.) * 0.25 - 7).reshape(1, 1, 3, 4, 5)
  // y = F.avg_pool3d(x, 2, 2, 1, ceil_mode=True, count_include_pad=False), gradient of
  // (y * (torch.arange(y.numel()) + 1.).reshape(y.shape)).sum()
  {
    const x = Array.from({ length: 60 }, (_, i) => i * 0.25 - 7);
    const g = geometry({ input: [3, 4, 5], kernel: [2, 2, 2], padding: [1, 1, 1], ceilMode: true, countIncludePad: false });
    assert.deepEqual(g.output, [2, 3, 3]);
    const wantY = [-7.0, -6.625, -6.125, -5.125, -4.75, -4.25, -3.25, -2.875, -2.375, 0.5, 0.875, 1.375, 2.375, 2.75,
      3.25, 4.25, 4.625, 5.125];
    const wantGx = [1.0, 1.0, 1.0, 1.5, 1.5, 2.0, 1.25, 1.25, 1.5, 1.5, 2.0, 1.25, 1.25, 1.5, 1.5, 7.0, 4.0, 4.0, 4.5,
      4.5, 5.0, 2.75, 2.75, 3.0, 3.0, 3.25, 1.75, 1.75, 1.875, 1.875, 3.25, 1.75, 1.75, 1.875, 1.875, 8.0, 4.25, 4.25,
      4.5, 4.5, 5.0, 2.75, 2.75, 3.0, 3.0, 3.25, 1.75, 1.75, 1.875, 1.875, 3.25, 1.75, 1.75, 1.875, 1.875, 8.0, 4.25,
      4.25, 4.5, 4.5];
    assertClose(runAvgPool(g, 1, x), wantY, tol(wantY), "avg_pool3d");
    const gy = Array.from({ length: 18 }, (_, i) => i + 1);
    assertClose(runAvgPoolBackward(g, 1, gy), wantGx, tol(wantGx), "avg_pool3d backward");

    // F.avg_pool3d(x, (3, 2, 2), (2, 3, 2), (1, 1, 0), ceil_mode=True, count_include_pad=True, divisor_override=3)
    const g2 = geometry({
      input: [3, 4, 5], kernel: [3, 2, 2], stride: [2, 3, 2], padding: [1, 1, 0], ceilMode: true, divisorOverride: 3,
    });
    assert.deepEqual(g2.output, [2, 2, 3]);
    const wantY2 = [-5.833333492279053, -5.166666507720947, -2.3333332538604736, -3.3333332538604736, -2.0, -0.5,
      0.8333333134651184, 1.5, 1.0, 10.0, 11.333333015441895, 6.166666507720947];
    assertClose(runAvgPool(g2, 1, x), wantY2, tol(wantY2), "avg_pool3d divisor_override");
  }

  // x = ((torch.arange(60.) * 7) % 11).reshape(1, 1, 3, 4, 5)
  // F.max_pool3d(x, (2, 3, 2), (1, 2, 2), (1, 1, 1), dilation=(2, 1, 2), ceil_mode=True, return_indices=True)
  {
    const x = Array.from({ length: 60 }, (_, i) => (i * 7) % 11);
    const g = geometry({
      input: [3, 4, 5], kernel: [2, 3, 2], stride: [1, 2, 2], padding: [1, 1, 1], dilation: [2, 1, 2], ceilMode: true,
    });
    assert.deepEqual(g.output, [3, 3, 3]);
    const { y, argmax } = runMaxPool(g, 1, x);
    assert.deepEqual(Array.from(y), [6, 9, 9, 10, 10, 9, 10, 10, 2, 9, 10, 10, 9, 10, 10, 7, 10, 10, 6, 9, 9, 10, 10,
      9, 10, 10, 2]);
    assert.deepEqual(Array.from(argmax), [26, 28, 28, 36, 36, 28, 36, 36, 38, 6, 3, 3, 6, 58, 58, 56, 58, 58, 26, 28,
      28, 36, 36, 28, 36, 36, 38]);
  }

  // F.max_pool2d(torch.arange(4.).reshape(1, 1, 2, 2), 2, 1, 1, dilation=3, return_indices=True)
  // gives (-inf, index 6): the one window's taps all fall in the padding, and ATen reports an
  // index outside the 2x2 plane. We give -inf too, but argmax -1, which the backward skips.
  {
    const g = geometry({ input: [2, 2], kernel: [2, 2], stride: [1, 1], padding: [1, 1], dilation: [3, 3] });
    const { y, argmax } = runMaxPool(g, 1, [0, 1, 2, 3]);
    assert.deepEqual(Array.from(y), [-Infinity]);
    assert.deepEqual(Array.from(argmax), [-1]);
    assert.deepEqual(Array.from(runMaxPoolBackward(g, 1, 2, [0, 1, 2, 3], [5, 6])), [0, 0, 0, 0, 0, 0, 0, 0]);
  }
});

test("maxpool with relu = 1 is ReLU then max pooling, in value and gradient (generic and 2x2 paths)", () => {
  // ReLU as PyTorch: NaN stays NaN and passes the gradient; x <= 0 gives 0 and no gradient.
  const relu = (v: number) => (v > 0 || Number.isNaN(v) ? v : 0);
  const reluSlope = (v: number) => (v <= 0 ? 0 : 1);
  const twoByTwo = fc.record({
    geometry: fc.record({
      H: fc.integer({ min: 2, max: 9 }),
      W: fc.integer({ min: 2, max: 21 }),
      channels: fc.integer({ min: 1, max: 3 }),
      ceilMode: fc.boolean(),
    }).map(({ H, W, channels, ceilMode }) =>
      geometry({ input: [1, H, W], kernel: [1, 2, 2], stride: [1, 2, 2], ceilMode, channels })
    ),
    N: fc.integer({ min: 1, max: 2 }),
  });
  fc.assert(
    fc.property(fc.oneof(poolCase(true), twoByTwo), fc.integer({ min: 1, max: 2 }), fc.integer(), ({ geometry: g, N }, K, seed) => {
      const rand = random(seed);
      const x = maxPoolInput(rand, N * g.channels * volume(g.input));
      const activated = Array.from(x, relu);
      const want = maxPoolReference(g, N, activated);
      const { y } = runMaxPool(g, N, x, true);
      for (let i = 0; i < y.length; i++) {
        if (!sameFloat(y[i], want.y[i])) assert.fail(`output ${i}: got ${y[i]}, want ${want.y[i]} (${JSON.stringify(g)})`);
      }
      const gy = uniform(rand, N * K * g.channels * volume(g.output), -1, 1);
      const rowWidth = g.channels * volume(g.input);
      // Row r of gx (R = N·K rows) belongs to sample r / K.
      const sampleElement = (i: number) => Math.floor(Math.floor(i / rowWidth) / K) * rowWidth + (i % rowWidth);
      const wantGx = maxPoolBackwardReference(g, N * K, K, gy, want.argmax).map((v, i) => v * reluSlope(x[sampleElement(i)]));
      assertClose(runMaxPoolBackward(g, N, K, x, gy, true), wantGx, () => 1e-6, "maxpool after ReLU backward");
    }),
    { numRuns: runs(200) },
  );
});

test("maxpool over pairs along W (the vectorised 1×2 path) matches the reference: 1/2/3-d, odd widths, ceil_mode, K rows, after ReLU", () => {
  fc.assert(
    fc.property(
      fc.record({
        lead: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
        W: fc.integer({ min: 2, max: 41 }),
        channels: fc.integer({ min: 1, max: 3 }),
        N: fc.integer({ min: 1, max: 2 }),
        K: fc.integer({ min: 1, max: 2 }),
        ceilMode: fc.boolean(),
        relu: fc.boolean(),
      }),
      fc.integer(),
      ({ lead, W, channels, N, K, ceilMode, relu }, seed) => {
        const g = geometry({ input: [...lead, W], kernel: [...lead.map(() => 1), 2], ceilMode, channels });
        const rand = random(seed);
        const x = maxPoolInput(rand, N * channels * volume(g.input));
        const activated = relu ? Array.from(x, (v) => (v > 0 || Number.isNaN(v) ? v : 0)) : Array.from(x);
        const want = maxPoolReference(g, N, activated);
        const { y } = runMaxPool(g, N, x, relu);
        for (let i = 0; i < y.length; i++) {
          if (!sameFloat(y[i], want.y[i])) assert.fail(`output ${i}: got ${y[i]}, want ${want.y[i]} (${JSON.stringify(g)})`);
        }
        const gy = uniform(rand, N * K * channels * volume(g.output), -1, 1);
        const rowWidth = channels * volume(g.input);
        const passes = (i: number) => !relu || !(x[Math.floor(Math.floor(i / rowWidth) / K) * rowWidth + (i % rowWidth)] <= 0);
        const wantGx = maxPoolBackwardReference(g, N * K, K, gy, want.argmax).map((v, i) => (passes(i) ? v : 0));
        assert.deepEqual(runMaxPoolBackward(g, N, K, x, gy, relu), Float32Array.from(wantGx), JSON.stringify(g));
      },
    ),
    { numRuns: runs(200) },
  );
});

test("avgpool over whole 2×2 windows (the vectorised path) matches the reference: wide and odd planes, depth slices, divisor_override", () => {
  fc.assert(
    fc.property(
      fc.record({
        D: fc.integer({ min: 1, max: 2 }),
        H: fc.integer({ min: 2, max: 9 }),
        W: fc.integer({ min: 2, max: 37 }),
        channels: fc.integer({ min: 1, max: 3 }),
        N: fc.integer({ min: 1, max: 2 }),
        divisorOverride: fc.constantFrom(0, 0, 3, 5),
      }),
      fc.integer(),
      ({ D, H, W, channels, N, divisorOverride }, seed) => {
        const g = geometry({ input: [D, H, W], kernel: [1, 2, 2], stride: [1, 2, 2], channels, divisorOverride });
        const rand = random(seed);
        const x = uniform(rand, N * channels * volume(g.input), -1, 1);
        // float64 sums rounded once, as the generic loop: equal to the rounded reference
        assert.deepEqual(runAvgPool(g, N, x), Float32Array.from(avgPoolReference(g, N, x)), JSON.stringify(g));
        const R = N * 2;
        const gy = uniform(rand, R * channels * volume(g.output), -1, 1);
        assertClose(runAvgPoolBackward(g, R, gy), avgPoolBackwardReference(g, R, gy), () => 1e-7, `avgpool backward ${JSON.stringify(g)}`);
      },
    ),
    { numRuns: runs(200) },
  );
});

test("maxpool 2x2 stride 2 (the vectorised path) matches the reference on wide planes, 2-d and 3-d, ceil_mode, K rows", () => {
  // Widths past several f32x4 of outputs plus a scalar tail, odd sizes (a row or column in no
  // window, or clipped windows with ceil_mode), depth slices (kernel 1 in D) and ties/NaN/-inf.
  fc.assert(
    fc.property(
      fc.record({
        D: fc.integer({ min: 1, max: 3 }),
        H: fc.integer({ min: 2, max: 9 }),
        W: fc.integer({ min: 2, max: 37 }),
        channels: fc.integer({ min: 1, max: 3 }),
        N: fc.integer({ min: 1, max: 2 }),
        K: fc.integer({ min: 1, max: 2 }),
        ceilMode: fc.boolean(),
      }),
      fc.integer(),
      ({ D, H, W, channels, N, K, ceilMode }, seed) => {
        const g = geometry({ input: [D, H, W], kernel: [1, 2, 2], stride: [1, 2, 2], ceilMode, channels });
        const rand = random(seed);
        const x = maxPoolInput(rand, N * channels * volume(g.input));
        const { y, argmax } = runMaxPool(g, N, x);
        const want = maxPoolReference(g, N, x);
        for (let i = 0; i < y.length; i++) {
          if (!sameFloat(y[i], want.y[i]) || argmax[i] !== want.argmax[i]) {
            assert.fail(`output ${i}: got ${y[i]} at ${argmax[i]}, want ${want.y[i]} at ${want.argmax[i]} (${JSON.stringify(g)})`);
          }
        }
        const gy = uniform(rand, N * K * channels * volume(g.output), -1, 1);
        const gx = runMaxPoolBackward(g, N, K, x, gy);
        assert.deepEqual(gx, Float32Array.from(maxPoolBackwardReference(g, N * K, K, gy, want.argmax)), JSON.stringify(g));
      },
    ),
    { numRuns: runs(200) },
  );
});

test("first_nonfinite finds the first NaN or ±Infinity anywhere, and -1 for finite values whose plain sum overflows", () => {
  const k = kernels();
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 300 }),
      fc.option(fc.tuple(fc.nat(), fc.constantFrom(NaN, Infinity, -Infinity)), { nil: undefined }),
      fc.option(fc.nat(), { nil: undefined }),
      fc.boolean(),
      (count, bad, second, huge) => {
        const values = Float32Array.from({ length: count }, (_, i) => (huge ? 3e38 : Math.sin(i)));
        let expected = -1;
        if (bad !== undefined && count > 0) {
          expected = bad[0] % count;
          values[expected] = bad[1];
          if (second !== undefined) values[Math.max(expected, second % count)] = NaN; // a later one does not count
        }
        const at = scratch().floats(values);
        assert.equal(k.first_nonfinite(at, count), expected);
      },
    ),
    { numRuns: runs(300) },
  );
});
