/**
 * Results are the caller's: every array a public function returns is a copy, never a view of
 * WebAssembly memory or of a plan's buffers, so a later call (same shapes, other shapes, one
 * that grows the memory and detaches its old buffer) leaves it as it was. Calls made from
 * inside a running computation (onChunk, a quasiLinear forward) either work and give the
 * results a call on its own gives, or are refused with an UnsupportedError that says why; an
 * exception thrown by user code leaves the library usable.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  batchGradient,
  batchL2,
  clippedGradientSum,
  jacobian,
  jacobianNaive,
  Linear,
  manualSeed,
  ntk,
  perSampleGradients,
  perSampleGradientsNaive,
  perSampleNorms,
  privateGradient,
  quasiLinear,
  randn,
  ReLU,
  Sequential,
  sumGradSquared,
  Tanh,
  tensor,
  UnsupportedError,
  variance,
} from "../mod.ts";
import type { Module, Target, Tensor } from "../mod.ts";
import { kernels } from "../src/wasm.ts";
import { rowChunks } from "../src/jacobian.ts";

function network(): Module {
  manualSeed(1);
  return new Sequential(new Linear(5, 7), new Tanh(), new Linear(7, 3));
}

function classes(N: number, seed: number): Target {
  return { shape: [N], data: Int32Array.from({ length: N }, (_, i) => (i * 7 + seed) % 3) };
}

/** Every public function that returns arrays, on one batch: name → the arrays it returned. */
function everyResult(net: Module, x: Tensor, y: Target): Map<string, Float32Array[]> {
  const loss = { loss: "cross_entropy" as const };
  const results = new Map<string, Float32Array[]>();
  const put = (name: string, value: Tensor | Tensor[]) => results.set(name, (Array.isArray(value) ? value : [value]).map((t) => t.data as Float32Array));
  put("forward", net.forward(x));
  put("jacobian", jacobian(net, x));
  put("jacobian asTuple", jacobian(net, x, { asTuple: true }));
  put("jacobianNaive", jacobianNaive(net, x));
  put("perSampleGradients", perSampleGradients(net, x, y, loss));
  put("perSampleGradients asTuple", perSampleGradients(net, x, y, { ...loss, asTuple: true }));
  put("perSampleGradientsNaive", perSampleGradientsNaive(net, x, y, loss));
  put("batchGradient", batchGradient(net, x, y, loss));
  put("batchL2", batchL2(net, x, y, loss));
  put("batchL2 ghost", batchL2(net, x, y, { ...loss, ghostNorms: "always" }));
  put("perSampleNorms", perSampleNorms(net, x, y, loss));
  put("sumGradSquared", sumGradSquared(net, x, y, loss));
  put("variance", variance(net, x, y, loss));
  put("ntk", ntk(net, x));
  const clipped = clippedGradientSum(net, x, y, { ...loss, maxNorm: 0.1 });
  put("clippedGradientSum", [clipped.gradient, clipped.norms]);
  put("privateGradient", privateGradient(net, x, y, { ...loss, maxNorm: 0.1, noiseMultiplier: 1, seed: 3 }));
  return results;
}

function copies(results: Map<string, Float32Array[]>): Map<string, Float32Array[]> {
  return new Map([...results].map(([name, arrays]) => [name, arrays.map((a) => a.slice())]));
}

function assertUnchanged(results: Map<string, Float32Array[]>, copied: Map<string, Float32Array[]>, after: string): void {
  for (const [name, arrays] of results) {
    arrays.forEach((array, i) => {
      assert.ok(array.length > 0, `${name}[${i}] is empty (detached?) after ${after}`);
      assert.deepEqual(array, copied.get(name)![i], `${name}[${i}] changed after ${after}`);
    });
  }
}

test("results of one call are copies: later calls with other inputs, same or other shapes, memory growth leave them unchanged", () => {
  const net = network();
  const first = everyResult(net, randn([4, 5], 10), classes(4, 0));
  const copied = copies(first);
  for (const [name, arrays] of first) {
    for (const array of arrays) assert.notEqual(array.buffer, kernels().memory.buffer, `${name} is a view of WebAssembly memory`);
  }

  everyResult(net, randn([4, 5], 11), classes(4, 1));
  assertUnchanged(first, copied, "a call with other inputs of the same shape");

  everyResult(net, randn([9, 5], 12), classes(9, 2));
  assertUnchanged(first, copied, "a call with another batch size");

  // A batch large enough to grow WebAssembly memory: its old ArrayBuffer is detached then.
  const before = kernels().memory.buffer.byteLength;
  const wide = new Sequential(new Linear(64, 512), new ReLU(), new Linear(512, 8));
  let N = 512;
  while (kernels().memory.buffer.byteLength === before) {
    jacobian(wide, randn([N, 64], 13));
    N *= 2;
  }
  assertUnchanged(first, copied, `a call that grew WebAssembly memory from ${before} to ${kernels().memory.buffer.byteLength} bytes`);
});

test("the caller's out buffer holds call 1's J until the caller passes it again", () => {
  const net = network();
  const out = new Float32Array(4 * 3 * 66);
  const J = jacobian(net, randn([4, 5], 20), { out });
  assert.equal(J.data, out);
  const kept = out.slice();
  jacobian(net, randn([4, 5], 21)); // no out: a new array, ours untouched
  assert.deepEqual(out, kept);
});

test("onChunk rows are views that the next chunk overwrites, as documented; a copy taken in the callback keeps", () => {
  const net = new Linear(300, 400); // D = 120,400: 2 samples a chunk
  const x = randn([6, 300], 22);
  const views: Float32Array[] = [];
  const kept: Float32Array[] = [];
  jacobian(net, x, {
    onChunk(_first, rows) {
      views.push(rows.data);
      kept.push(rows.data.slice());
    },
  });
  assert.ok(views.length >= 2, `expected several chunks, got ${views.length}`);
  const whole = jacobian(net, x).data;
  const joined = new Float32Array(kept.reduce((n, k) => n + k.length, 0));
  let at = 0;
  for (const k of kept) {
    joined.set(k, at);
    at += k.length;
  }
  assert.deepEqual(joined, whole);
  assert.equal(views[0].buffer, views[1].buffer, "chunks share one buffer: the documented reuse");
});

test("a call from inside onChunk is refused with an UnsupportedError, and the library works afterwards", () => {
  const net = network();
  const other = network();
  const x = randn([4, 5], 30);
  const expected = jacobian(net, x).data;
  assert.throws(
    () => jacobian(net, x, { onChunk: () => void jacobian(other, x) }),
    (error: unknown) => error instanceof UnsupportedError && /re-entrantly/.test(error.message) && /onChunk/.test(error.message),
  );
  assert.throws(
    () => jacobian(net, x, { onChunk: () => void other.forward(x) }),
    (error: unknown) => error instanceof UnsupportedError && /re-entrantly: a forward pass was asked for while a per-sample computation/.test(error.message),
  );
  // The guard was released: the next calls run and give the same J.
  assert.deepEqual(jacobian(net, x).data, expected);
  assert.deepEqual(jacobian(net, x, { asTuple: true }).length, 4);
});

test("between two chunks of a streamed write (rowChunks) a call is refused; a generator returned early releases the library", () => {
  const net = network();
  const other = network();
  const x = randn([6, 5], 32);
  const expected = jacobian(net, x).data;
  const otherExpected = jacobian(other, x).data;
  const chunks = rowChunks(net, x, {});
  assert.equal(chunks.next().done, false);
  assert.throws(
    () => jacobian(other, x),
    (error: unknown) => error instanceof UnsupportedError && /re-entrantly/.test(error.message) && /streamed write/.test(error.message),
  );
  chunks.return();
  assert.deepEqual(jacobian(other, x).data, otherExpected);
  // A for...of that breaks returns its generator: the flag goes with it.
  for (const _ of rowChunks(net, x, {})) break;
  assert.deepEqual(jacobian(other, x).data, otherExpected);
  const streamed = new Float32Array(expected.length);
  for (const { firstSample, rows } of rowChunks(net, x, {})) streamed.set(rows.data, firstSample * (expected.length / 6));
  assert.deepEqual(streamed, expected);
});

test("an exception thrown in onChunk leaves the library usable", () => {
  const net = network();
  const x = randn([4, 5], 31);
  const expected = jacobian(net, x).data;
  assert.throws(() => jacobian(net, x, { onChunk: () => { throw new Error("user's own"); } }), /user's own/);
  assert.deepEqual(jacobian(net, x).data, expected);
});

/** A diagonal quasi-linear layer whose forward first calls `inside` (the re-entrant call). */
function diagonal(name: string, inside: () => void): Module {
  return quasiLinear({
    name,
    parameters: { weight: [0.5, -1, 2, 1.5, -0.25], bias: [0.1, 0, 0, 0, -0.1] },
    outputShape: (shape) => [...shape],
    forward: ({ weight, bias }, x) => {
      inside();
      return x.map((v, k) => weight[k] * v + bias[k]);
    },
  });
}

test("a quasiLinear forward that calls jacobian and forward on another network works and gives the results of calls on their own", () => {
  const other = network();
  const xOther = randn([3, 5], 40);
  const expectedJ = jacobian(other, xOther).data;
  const expectedY = other.forward(xOther).data;
  let innerCalls = 0;
  const layer = diagonal("CallsOther", () => {
    innerCalls++;
    assert.deepEqual(jacobian(other, xOther).data, expectedJ);
    assert.deepEqual(other.forward(xOther).data, expectedY);
  });
  manualSeed(7);
  const net = new Sequential(new Linear(5, 5), layer, new Tanh(), new Linear(5, 2));
  const x = randn([6, 5], 41);
  const y = randn([6, 2], 42);
  const J = jacobian(net, x).data;
  const G = perSampleGradients(net, x, y, { loss: "mse" }).data;
  assert.ok(innerCalls > 0, "the layer was probed, so its forward ran");
  // The same network with the same weights whose forward calls nothing: the same results.
  manualSeed(7);
  const plain = new Sequential(new Linear(5, 5), diagonal("Plain", () => {}), new Tanh(), new Linear(5, 2));
  assert.deepEqual(J, jacobian(plain, x).data);
  assert.deepEqual(G, perSampleGradients(plain, x, y, { loss: "mse" }).data);
});

test("a quasiLinear forward that runs its own network is refused with an UnsupportedError naming the layer, not a stack overflow", () => {
  let net: Module | undefined;
  const x = randn([2, 5], 50);
  const layer = diagonal("SelfCalling", () => void jacobian(net!, x));
  net = new Sequential(layer, new Linear(5, 1));
  assert.throws(
    () => jacobian(net!, x),
    (error: unknown) => error instanceof UnsupportedError && /quasiLinear 'SelfCalling'/.test(error.message) && /same layer/.test(error.message),
  );
  // Still usable: another network runs, and this layer's probing state was cleared.
  const fine = network();
  assert.equal(jacobian(fine, randn([2, 5], 51)).shape.join(","), "2,3,66");
});

test("an exception thrown by a quasiLinear forward leaves the library usable; the layer is probed again next time", () => {
  let fail = true;
  const layer = diagonal("Flaky", () => {
    if (fail) throw new Error("user forward failed");
  });
  manualSeed(10);
  const net = new Sequential(layer, new Linear(5, 2));
  const x = randn([3, 5], 60);
  assert.throws(() => jacobian(net, x), /user forward failed/);
  assert.equal(jacobian(network(), x).shape.join(","), "3,3,66");
  fail = false;
  const J = jacobian(net, x).data;
  manualSeed(10);
  const reference = jacobian(new Sequential(diagonal("Plain", () => {}), new Linear(5, 2)), x).data;
  assert.deepEqual(J, reference);
});
