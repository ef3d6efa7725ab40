/**
 * Plans are cached by input shape: a repeated call builds no plan and grows no memory;
 * several shapes stay cached at once; the cache is bounded.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import { Conv2d, ELU, Flatten, jacobian, jacobianNaive, Linear, MaxPool2d, perSampleGradients, perSampleGradientsNaive, randn, ReLU, Sequential, tensor, ValueError } from "../mod.ts";
import type { Tensor } from "../mod.ts";
import { planCache } from "../src/forward.ts";
import { arena } from "../src/wasm.ts";

function network() {
  return new Sequential(new Conv2d(2, 3, 3, { padding: 1 }), new ReLU(), new Flatten(), new Linear(3 * 5 * 5, 4));
}

test("a repeated call with the same input shape builds no plan and grows no WASM memory", () => {
  const net = network();
  const x = randn([6, 2, 5, 5], 1);
  const y = tensor(new Int32Array([0, 1, 2, 3, 0, 1]) as unknown as Float32Array, [6]);
  const first = perSampleGradients(net, x, y, { loss: "cross_entropy", reduction: "sum" });
  const plans = planCache(net).built;
  const bytes = arena.byteLength();
  for (let i = 0; i < 3; i++) {
    const again = perSampleGradients(net, x, y, { loss: "cross_entropy", reduction: "sum" });
    assert.deepEqual(again.data, first.data);
  }
  assert.equal(planCache(net).built, plans);
  assert.equal(arena.byteLength(), bytes);
});

test("several input shapes stay cached at once, and the cache is bounded", () => {
  const net = network();
  const a = randn([2, 2, 5, 5], 1);
  const b = randn([5, 2, 5, 5], 2);
  jacobian(net, a);
  jacobian(net, b);
  const built = planCache(net).built;
  jacobian(net, a);
  jacobian(net, b);
  assert.equal(planCache(net).built, built, "switching between two shapes rebuilds nothing");
  for (let n = 1; n <= 20; n++) jacobian(net, randn([n, 2, 5, 5], n));
  assert.ok(planCache(net).size <= planCache(net).capacity);
  assert.ok(planCache(net).size >= 1);
});

test("new parameter values are picked up by a cached plan", () => {
  const net = new Sequential(new Linear(3, 1));
  const x = randn([2, 3], 1);
  const before = net.forward(x);
  net.parameters()[0][1].data.fill(0);
  net.parameters()[1][1].data.fill(2);
  assert.deepEqual(Array.from(net.forward(x).data), [2, 2]);
  assert.notDeepEqual(Array.from(before.data), [2, 2]);
});

test("J is streamed out in cache-sized chunks: networks whose rows exceed a chunk give the naive result", () => {
  // D ≈ 181k floats: each sample's K = 2 rows take 1.4 MiB, more than one chunk holds.
  const net = new Sequential(new Linear(300, 600), new ReLU(), new Linear(600, 2));
  const x = randn([3, 300], 4);
  const fast = jacobian(net, x);
  const slow = jacobianNaive(net, x) as Tensor;
  assert.deepEqual(fast.shape, [3, 2, 181802]);
  let worst = 0;
  for (let i = 0; i < fast.data.length; i++) worst = Math.max(worst, Math.abs(fast.data[i] - slow.data[i]));
  assert.ok(worst <= 1e-5, `max difference ${worst}`);
  const y = { shape: [3], data: new Int32Array([0, 1, 1]) };
  const parts = perSampleGradients(net, x, y, { loss: "cross_entropy", asTuple: true });
  const naiveParts = perSampleGradientsNaive(net, x, y, { loss: "cross_entropy", asTuple: true }) as Tensor[];
  parts.forEach((p, i) => {
    assert.deepEqual(p.shape, naiveParts[i].shape);
    p.data.forEach((v, j) => assert.ok(Math.abs(v - naiveParts[i].data[j]) <= 1e-6, `parameter ${i}, element ${j}`));
  });
});

test("out: the result is written into the caller's buffer, equal to a fresh result; a wrong buffer is refused", () => {
  const net = network();
  const x = randn([4, 2, 5, 5], 3);
  const fresh = jacobian(net, x);
  const out = new Float32Array(fresh.data.length).fill(NaN);
  const again = jacobian(net, x, { out });
  assert.equal(again.data, out);
  assert.deepEqual(again.shape, fresh.shape);
  assert.deepEqual(Array.from(out), Array.from(fresh.data));
  assert.throws(() => jacobian(net, x, { out: new Float32Array(3) }), /out: expected a Float32Array of \d+ floats/);
  assert.throws(() => jacobian(net, x, { out, asTuple: true } as never), /not supported with asTuple/);
});

test("a module with parameters used twice (tied weights) is refused, a shared parameterless one is fine", () => {
  const shared = new Linear(3, 3);
  const relu = new ReLU();
  const tied = new Sequential(shared, relu, shared, relu);
  assert.throws(() => jacobian(tied, randn([2, 3], 0)), /Linear at 2 is the same module as at 0: shared \(tied\) parameters are not supported/);
  assert.equal(new Sequential(new Linear(3, 3), relu, new Linear(3, 2), relu).forward(randn([2, 3], 0)).shape[1], 2);
});

test("a NaN or infinity anywhere in the input is refused, naming its index", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9 }), fc.nat(), fc.constantFrom(NaN, Infinity, -Infinity), (N, at, bad) => {
      const net = new Sequential(new Linear(7, 2));
      const x = randn([N, 7], N);
      const i = at % x.data.length;
      x.data[i] = bad;
      assert.throws(() => jacobian(net, x), (e: Error) =>
        e instanceof ValueError && e.message === `input holds ${bad} at index [${Math.floor(i / 7)}, ${i % 7}]`);
    }),
    { numRuns: runs(100) },
  );
});

test("a network without parameters has per-sample rows of D = 0 columns: Jacobians [N, K, 0], no error", () => {
  // Regression: the plan looked for a convolution before max pooling at step firstTrainable = -1.
  for (const net of [new Sequential(new ELU()), new Sequential(new ReLU(), new MaxPool2d(2))]) {
    const x = randn([2, 1, 2, 2], 1);
    const J = jacobian(net, x);
    const K = net.forward(x).data.length / 2;
    assert.deepEqual(J.shape, K === 1 ? [2, 0] : [2, K, 0]);
    assert.equal(J.data.length, 0);
    assert.deepEqual((jacobianNaive(net, x) as Tensor).shape, J.shape);
  }
});
