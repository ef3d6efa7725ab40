/**
 * A batch of the wrong shape: the ShapeError names the given input shape (with N), the
 * per-sample input shape the network takes where the search finds one, and the first layer to
 * disagree with that layer's own message, the same through every entry point. A property
 * test checks that a claimed shape is really accepted and that the layer named is the one the
 * network's own `outputShape` fails in.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import {
  batchGradient,
  Conv2d,
  Flatten,
  jacobian,
  Linear,
  MaxPool2d,
  perSampleGradients,
  quasiLinear,
  ReLU,
  Sequential,
  ShapeError,
  zeros,
} from "../mod.ts";
import type { Module } from "../mod.ts";

/** The message of the ShapeError `run` throws (failing the test if it throws anything else or nothing). */
function shapeErrorOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof ShapeError, `expected a ShapeError, got ${error}`);
    return error.message;
  }
  assert.fail("expected a ShapeError, nothing was thrown");
}

/** The per-sample shape a message says the network takes, or undefined if it claims none. */
function claimedShape(message: string): number[] | undefined {
  const match = /, which takes \(N, ([\d, ]+)\):/.exec(message);
  return match ? match[1].split(", ").map(Number) : undefined;
}

const issueExample = () =>
  new Sequential(new Conv2d(3, 8, 3, { padding: 1 }), new ReLU(), new MaxPool2d(2), new Flatten(), new Linear(8 * 8 * 8, 10));

test("the issue's example names the given input, the input the network takes and the Linear that disagrees", () => {
  const net = issueExample();
  const message = shapeErrorOf(() => net.forward(zeros([4, 3, 8, 8])));
  assert.equal(
    message,
    "input (4, 3, 8, 8) does not fit the network, which takes (N, 3, 16, 16): the first layer to disagree is " +
      "4 (Linear): expected input (N, *, 512), got (N, 128) — the last dimension must be in_features = 512",
  );
  assert.deepEqual(net.outputShape([3, 16, 16]), [10]);
  // Too large: the same answer (16 and 17 both pool to 8; the size meant is 16).
  assert.match(shapeErrorOf(() => net.forward(zeros([2, 3, 32, 32]))), /^input \(2, 3, 32, 32\) does not fit the network, which takes \(N, 3, 16, 16\): the first layer to disagree is 4 \(Linear\): expected input \(N, \*, 512\), got \(N, 2048\)/);
});

test("the user-called module.outputShape keeps its own message", () => {
  const net = issueExample();
  assert.throws(() => net.outputShape([3, 8, 8]), (e: Error) =>
    e instanceof ShapeError &&
    e.message === "4 (Linear): expected input (N, *, 512), got (N, 128) — the last dimension must be in_features = 512");
});

test("a wrong channel count on a fully convolutional network: the channels change, the size stays", () => {
  const net = new Sequential(new Conv2d(3, 8, 3), new ReLU(), new Conv2d(8, 4, 3, { padding: 1 }));
  assert.equal(
    shapeErrorOf(() => net.forward(zeros([2, 1, 10, 10]))),
    "input (2, 1, 10, 10) does not fit the network, which takes (N, 3, 10, 10): the first layer to disagree is " +
      "0 (Conv2d): expected input (N, 3, H, W), got (N, 1, 10, 10)",
  );
});

test("a rank-1 MLP given the wrong feature count says it takes (N, 784)", () => {
  const net = new Sequential(new Linear(784, 32), new ReLU(), new Linear(32, 10));
  assert.equal(
    shapeErrorOf(() => net.forward(zeros([5, 100]))),
    "input (5, 100) does not fit the network, which takes (N, 784): the first layer to disagree is " +
      "0 (Linear): expected input (N, *, 784), got (N, 100) — the last dimension must be in_features = 784",
  );
});

test("where no accepted shape is found, the message names the given shape and the first layer, and claims nothing", () => {
  // A 2-d convolution given (N, C, W): no input of that rank fits.
  const conv = issueExample();
  assert.equal(
    shapeErrorOf(() => conv.forward(zeros([4, 3, 16]))),
    "input (4, 3, 16) does not fit the network: the first layer to disagree is " +
      "0 (Conv2d): expected input (N, 3, H, W), got (N, 3, 16)",
  );
  // Two Linears that disagree with each other: no input fits at all.
  const broken = new Sequential(new Linear(4, 3), new ReLU(), new Sequential(new Linear(5, 2)));
  const message = shapeErrorOf(() => broken.forward(zeros([2, 4])));
  assert.equal(claimedShape(message), undefined);
  assert.ok(message.startsWith("input (2, 4) does not fit the network: the first layer to disagree is 2.0 (Linear): expected input (N, *, 5), got (N, 3)"), message);
});

test("a user layer whose outputShape throws RangeError during the search counts as a rejection", () => {
  const pick = quasiLinear({
    name: "Pick",
    parameters: { weight: [1, 1] },
    outputShape: (shape) => {
      if (shape.length !== 1 || shape[0] !== 2) throw new RangeError(`needs 2 features, got ${shape.length === 1 ? shape[0] : shape.length + " dims"}`);
      return [1];
    },
    forward: ({ weight }, x) => [weight[0] * x[0] + weight[1] * x[1]],
  });
  const net = new Sequential(pick, new ReLU());
  assert.equal(
    shapeErrorOf(() => net.forward(zeros([3, 5]))),
    "input (3, 5) does not fit the network, which takes (N, 2): the first layer to disagree is " +
      "0 (Pick): input (N, 5) does not fit: needs 2 features, got 5",
  );
});

test("the message is the same through forward, jacobian, perSampleGradients and batchGradient", () => {
  const net = issueExample();
  const x = zeros([4, 3, 8, 8]);
  const y = { shape: [4], data: new Int32Array([0, 1, 2, 3]) };
  const expected = shapeErrorOf(() => net.forward(x));
  assert.match(expected, /^input \(4, 3, 8, 8\) does not fit the network, which takes \(N, 3, 16, 16\)/);
  assert.equal(shapeErrorOf(() => jacobian(net, x)), expected);
  assert.equal(shapeErrorOf(() => jacobian(net, x, { asTuple: true })), expected);
  assert.equal(shapeErrorOf(() => perSampleGradients(net, x, y, { loss: "cross_entropy" })), expected);
  assert.equal(shapeErrorOf(() => perSampleGradients(net, x, zeros([4, 10]), { loss: "mse", reduction: "sum" })), expected);
  assert.equal(shapeErrorOf(() => batchGradient(net, x, y, { loss: "cross_entropy" })), expected);
  // A fresh network (no cached shapes) and a second call (the failure is not cached) say the same.
  assert.equal(shapeErrorOf(() => jacobian(issueExample(), x)), expected);
  assert.equal(shapeErrorOf(() => net.forward(x)), expected);
  // And the right shape still runs.
  assert.deepEqual(net.forward(zeros([4, 3, 16, 16])).shape, [4, 10]);
});

/** A random small network for a random input shape: its layers and that shape. */
interface Case {
  layers: Module[];
  sampleShape: number[];
  given: number[];
  /** One dim changed, the rank kept: the search always has the original shape within reach. */
  simple: boolean;
}

const networkCase: fc.Arbitrary<Case> = fc
  .record({
    kind: fc.constantFrom("conv", "conv", "mlp"),
    channels: fc.integer({ min: 1, max: 4 }),
    height: fc.integer({ min: 3, max: 14 }),
    width: fc.integer({ min: 3, max: 14 }),
    blocks: fc.array(
      fc.record({
        out: fc.integer({ min: 1, max: 4 }),
        kernel: fc.integer({ min: 1, max: 3 }),
        padding: fc.integer({ min: 0, max: 1 }),
        pool: fc.boolean(),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    head: fc.boolean(),
    hidden: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 0, maxLength: 3 }),
    features: fc.integer({ min: 1, max: 40 }),
    perturbation: fc.record({
      dim: fc.nat(),
      delta: fc.integer({ min: -3, max: 3 }).filter((d) => d !== 0),
      second: fc.option(fc.record({ dim: fc.nat(), delta: fc.integer({ min: -4, max: 4 }) })),
      rank: fc.constantFrom(0, 0, 0, 0, 1, -1),
    }),
  })
  .map((r): Case => {
    const layers: Module[] = [];
    let sampleShape: number[];
    if (r.kind === "mlp") {
      sampleShape = [r.features];
      let width = r.features;
      for (const h of r.hidden) {
        layers.push(new Linear(width, h), new ReLU());
        width = h;
      }
      layers.push(new Linear(width, 3));
    } else {
      sampleShape = [r.channels, r.height, r.width];
      let shape = sampleShape;
      for (const block of r.blocks) {
        const next = new Conv2d(shape[0], block.out, block.kernel, { padding: block.padding });
        let out: number[];
        try {
          out = next.outputShape(shape);
        } catch {
          break; // too small for this kernel: stop adding blocks
        }
        layers.push(next, new ReLU());
        shape = out;
        if (block.pool && shape[1] >= 2 && shape[2] >= 2) {
          const pool = new MaxPool2d(2);
          layers.push(pool);
          shape = pool.outputShape(shape);
        }
      }
      if (layers.length === 0) layers.push(new ReLU());
      if (r.head) layers.push(new Flatten(), new Linear(shape.reduce((a, b) => a * b, 1), 5));
    }
    const given = [...sampleShape];
    const { dim, delta, second, rank } = r.perturbation;
    given[dim % given.length] = Math.max(1, given[dim % given.length] + delta);
    if (second) given[second.dim % given.length] = Math.max(1, given[second.dim % given.length] + second.delta);
    if (rank === 1) given.push(2);
    if (rank === -1 && given.length > 1) given.pop();
    return { layers, sampleShape, given, simple: second === null && rank === 0 };
  });

test("property: a claimed input shape is accepted, and the layer named is the one outputShape fails in", () => {
  fc.assert(
    fc.property(networkCase, fc.integer({ min: 1, max: 3 }), ({ layers, sampleShape, given, simple }, N) => {
      const net = new Sequential(...layers);
      net.outputShape(sampleShape); // built to fit its own shape
      let direct: unknown;
      try {
        net.outputShape(given);
      } catch (error) {
        direct = error;
      }
      fc.pre(direct !== undefined); // the perturbed shape must be one the network rejects
      assert.ok(direct instanceof ShapeError);
      const message = shapeErrorOf(() => net.forward(zeros([N, ...given])));
      assert.ok(message.startsWith(`input (${[N, ...given].join(", ")}${given.length === 0 ? "," : ""}) does not fit the network`), message);
      assert.ok(message.endsWith(`: the first layer to disagree is ${direct.message}`), message);
      const claimed = claimedShape(message);
      if (simple) assert.notEqual(claimed, undefined, `one dim off, the shape it takes is in reach: ${message}`);
      if (claimed !== undefined) {
        assert.equal(claimed.length, given.length, message);
        assert.doesNotThrow(() => net.outputShape(claimed), message);
      }
    }),
    { numRuns: runs(60) },
  );
});
