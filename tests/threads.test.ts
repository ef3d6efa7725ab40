/**
 * Threads: the calling thread and workers over one shared WebAssembly memory. The work is split
 * by samples only (batch kernels by their sample ranges, J by whole chunks of rows), so every
 * result is bit for bit the one-thread result: over random networks with every call split
 * (thresholds lowered, one sample a chunk), on the public cases at their real sizes, and under
 * a stress of thousands of calls with varying shapes and batch sizes on two networks
 * interleaved. A script that used threads exits by itself; bad thread counts are refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  batchL2,
  clippedGradientSum,
  jacobian,
  Linear,
  manualSeed,
  ntk,
  perSampleGradients,
  randn,
  ReLU,
  Sequential,
  setThreads,
  threads,
  UnsupportedError,
  ValueError,
} from "../mod.ts";
import type { Module } from "../mod.ts";
import { modelFromSpec } from "../src/io/spec.ts";
import { cnnNetwork, mlpNetwork, seedNetwork } from "../src/examples.ts";
import { chunkTuning } from "../src/plan.ts";
import { rowChunks } from "../src/jacobian.ts";
import { contention, freshTuning, splitTuning, threadsWorthUsing } from "../src/threads/parallel.ts";
import { threadsAvailable, WorkerPool } from "../src/threads/pool.ts";
import { arbitraryNetwork } from "./helpers/architectures.ts";
import type { NetworkCase } from "./helpers/architectures.ts";
import { objectivesFor } from "./helpers/properties.ts";
import { runSource, runtimeName } from "./helpers/cli.ts";
import { runs } from "./helpers/runs.ts";

const available = threadsAvailable();
const skip = available ? false : "this runtime has no SharedArrayBuffer, Atomics.wait or node:worker_threads";

/** Every result a case gives: J or per-sample gradients per objective, and the quantities. */
function results(c: NetworkCase): Float32Array[] {
  manualSeed(c.seed);
  const net = modelFromSpec(c.spec);
  const N = c.N + 3; // 4 to 7 samples: several chunks of one sample, shared by the threads
  const x = randn([N, ...c.sampleShape], c.seed);
  const out: Float32Array[] = [];
  for (const o of objectivesFor(net, c.sampleShape, N, c.seed)) {
    if (o.loss === undefined) {
      out.push(jacobian(net, x).data, ntk(net, x).data);
      continue;
    }
    out.push(perSampleGradients(net, x, o.target!, { loss: o.loss, reduction: o.reduction }).data);
    if (o.loss === "mse" && net.outputShape(c.sampleShape).length > 0) continue;
    out.push(clippedGradientSum(net, x, o.target!, { loss: o.loss, reduction: o.reduction, maxNorm: 0.5 }).gradient.data);
    out.push(batchL2(net, x, o.target!, { loss: o.loss, reduction: o.reduction }).data);
  }
  return out;
}

/** `body` with every call split and one sample a chunk; the tuning restored after. */
function splitEverything<T>(body: () => T): T {
  const { minFloats } = splitTuning;
  const { bytes } = chunkTuning;
  splitTuning.minFloats = 1;
  chunkTuning.bytes = 4;
  try {
    return body();
  } finally {
    splitTuning.minFloats = minFloats;
    chunkTuning.bytes = bytes;
  }
}

function assertIdentical(actual: readonly Float32Array[], expected: readonly Float32Array[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: results`);
  for (let r = 0; r < expected.length; r++) {
    assert.equal(actual[r].length, expected[r].length, `${what}: result ${r} length`);
    for (let i = 0; i < expected[r].length; i++) {
      if (!Object.is(actual[r][i], expected[r][i])) assert.fail(`${what}: result ${r}[${i}] is ${actual[r][i]} with threads, ${expected[r][i]} with one`);
    }
  }
}

test("threads() is the machine's cores by default where threads can run, and setThreads changes it", { skip }, () => {
  setThreads(undefined);
  const cores = threads();
  assert.ok(cores >= 1);
  assert.equal(setThreads(1), 1);
  assert.equal(threads(), 1);
  assert.equal(setThreads(2), 2);
  assert.equal(threads(), 2);
  setThreads(undefined);
  assert.equal(threads(), cores);
});

test("setThreads refuses what is not a thread count, naming it, and leaves the count as it was", () => {
  const before = threads();
  for (const bad of [0, -1, 1.5, 65, NaN, "2"]) {
    assert.throws(() => setThreads(bad as number), (error: unknown) => error instanceof ValueError && /setThreads: n must be an integer from 1 to 64/.test(error.message));
  }
  assert.equal(threads(), before);
  if (!available) assert.throws(() => setThreads(2), UnsupportedError);
});

test("random networks give bit-identical results on 2 threads and on 1, every call split, J in chunks of one sample", { skip }, () => {
  const cases = fc.sample(arbitraryNetwork(), { numRuns: runs(40), seed: 14 });
  splitEverything(() => {
    setThreads(1);
    const expected = cases.map(results);
    setThreads(2);
    try {
      cases.forEach((c, i) => assertIdentical(results(c), expected[i], `seed ${c.seed}, spec ${JSON.stringify(c.spec)}`));
    } finally {
      setThreads(undefined);
    }
  });
});

/** The public cases at their sizes: J or per-sample gradients, into a fresh result. */
function publicCases(): [string, () => Float32Array][] {
  const classes = (N: number) => ({ shape: [N], data: new Int32Array(N).map((_, i) => (i * 7) % 10) });
  const make = (name: string, network: () => Module, shape: number[], N: number, output: boolean): [string, () => Float32Array] => {
    manualSeed(3);
    const net = network();
    const x = randn([N, ...shape], 4);
    return [name, () => (output ? jacobian(net, x) : perSampleGradients(net, x, classes(N), { loss: "cross_entropy", reduction: "sum" })).data];
  };
  return [
    make("seed3d", seedNetwork, [1, 6, 6, 6], 1000, true),
    make("mlp", mlpNetwork, [784], 256, false),
    make("cnn", cnnNetwork, [3, 32, 32], 128, false),
  ];
}

test("the public cases (seed3d, mlp, cnn) at their sizes give bit-identical results on 2 threads and on 1", { skip }, () => {
  setThreads(1);
  const expected = publicCases().map(([name, run]) => [name, run()] as const);
  setThreads(2);
  try {
    publicCases().forEach(([name, run], i) => assertIdentical([run()], [expected[i][1]], name));
  } finally {
    setThreads(undefined);
  }
});

/** Where fresh results are shared memory (parallel.ts, sharedResultsFreed): node; deno's and bun's workers hold them too long. */
const sharedResults = runtimeName() === "node";

test("a fresh result from freshTuning.minBytes on is shared memory on node, faulted in by every thread, holding the one-thread values; smaller ones stay ordinary", { skip }, () => {
  // Sizes that straddle pages unevenly: J of N × K × D floats, tuple parts of all sizes.
  const shapes = fc.sample(
    fc.record({ N: fc.integer({ min: 2, max: 40 }), inputs: fc.integer({ min: 1, max: 90 }), hidden: fc.integer({ min: 1, max: 70 }), K: fc.integer({ min: 1, max: 5 }) }),
    { numRuns: runs(12), seed: 5 },
  );
  const compute = ({ N, inputs, hidden, K }: (typeof shapes)[number]) => {
    manualSeed(N + inputs);
    const net = new Sequential(new Linear(inputs, hidden), new ReLU(), new Linear(hidden, K));
    const x = randn([N, inputs], hidden);
    const tuple = jacobian(net, x, { asTuple: true }) as { data: Float32Array }[];
    return [jacobian(net, x).data, ...tuple.map((part) => part.data)];
  };
  const { minBytes } = freshTuning;
  setThreads(1);
  const expected = shapes.map(compute);
  setThreads(2);
  try {
    freshTuning.minBytes = 4096;
    shapes.forEach((shape, i) => {
      const actual = compute(shape);
      assertIdentical(actual, expected[i], JSON.stringify(shape));
      actual.forEach((data, r) => {
        const shared = sharedResults && data.byteLength >= 4096;
        assert.equal(data.buffer instanceof SharedArrayBuffer, shared, `${JSON.stringify(shape)}: result ${r} of ${data.byteLength} bytes`);
        assert.equal(expected[i][r].buffer instanceof SharedArrayBuffer, false, "one thread: an ordinary ArrayBuffer");
      });
    });
    freshTuning.minBytes = minBytes;
    const small = compute(shapes[0]);
    assert.ok(small.every((data) => !(data.buffer instanceof SharedArrayBuffer)), "below the default 32 MiB: ordinary");
  } finally {
    freshTuning.minBytes = minBytes;
    setThreads(undefined);
  }
});

test("fresh shared results (node) are freed as ordinary ones are: 40 results of 16 MiB leave resident memory within a few results' worth", { skip }, () => {
  const net = new Sequential(new Linear(256, 64), new ReLU(), new Linear(64, 16));
  const N = 256; // J: 256 × 16448 floats = 16.1 MiB
  const x = randn([N, 256], 1);
  const y = { shape: [N], data: new Int32Array(N).map((_, i) => i % 16) };
  const { minBytes } = freshTuning;
  freshTuning.minBytes = 2 ** 20; // shared from 1 MiB (the default, 32 MiB, would make a slower test)
  setThreads(2);
  try {
    const rss = () => process.memoryUsage().rss;
    const G = perSampleGradients(net, x, y, { loss: "cross_entropy", reduction: "sum" });
    assert.equal(G.data.buffer instanceof SharedArrayBuffer, sharedResults);
    // Deno and bun return ordinary arrays, whose freeing is their collector's business (deno's
    // holds ~16 of these before it collects): the bound is ours only where results are shared.
    if (!sharedResults) return;
    const before = rss();
    let peak = before;
    for (let i = 0; i < 40; i++) {
      perSampleGradients(net, x, y, { loss: "cross_entropy", reduction: "sum" });
      peak = Math.max(peak, rss());
    }
    // Held until some unrelated collection, 40 results would add 640 MiB or more (694 measured);
    // freed as ordinary arrays are, a few results' worth (up to 171 MiB seen, V8's collector
    // choosing when), so the bound is half the leak.
    const grown = (peak - before) / 2 ** 20;
    assert.ok(grown < 20 * 16.1, `resident memory grew by ${grown.toFixed(0)} MiB over 40 fresh results of 16.1 MiB`);
  } finally {
    freshTuning.minBytes = minBytes;
    setThreads(undefined);
  }
});

test("workers found starved (every tape judged slow) leave this thread computing alone, with the same results, until they are tried again", { skip }, () => {
  manualSeed(8);
  const net = cnnNetwork();
  const N = 24;
  const x = randn([N, 3, 32, 32], 2);
  const y = { shape: [N], data: new Int32Array(N).map((_, i) => i % 10) };
  const compute = () => perSampleGradients(net, x, y, { loss: "cross_entropy", reduction: "sum" }).data;
  setThreads(1);
  const expected = compute();
  const saved = { ...contention };
  const post = WorkerPool.prototype.post;
  let posts = 0;
  WorkerPool.prototype.post = function (tapes) {
    posts++;
    return post.call(this, tapes);
  };
  setThreads(2);
  try {
    assertIdentical([compute()], [expected], "threads");
    assert.ok(posts > 0, "the computation was split");
    assert.ok(threadsWorthUsing());
    // A worker that began any tape late counts as starved: after three findings, nothing is split.
    Object.assign(contention, { maxLatencyMs: -1, firstSoloMs: 60_000, warmupTapes: 0 });
    assertIdentical([compute()], [expected], "threads, found starved");
    assert.equal(threadsWorthUsing(), false, "three slow tapes in a row: this thread alone");
    posts = 0;
    for (let i = 0; i < 3; i++) assertIdentical([compute()], [expected], `alone, call ${i}`);
    assert.equal(posts, 0, "nothing posted to the workers while they are found starved");
    // Once soloMs has passed, the workers are tried again (and, judged fine, kept).
    Object.assign(contention, saved, { firstSoloMs: 200 });
    setThreads(1);
    setThreads(2);
    Object.assign(contention, { maxLatencyMs: -1, warmupTapes: 0 });
    compute();
    assert.equal(threadsWorthUsing(), false);
    Object.assign(contention, saved);
    const until = performance.now() + 5_000;
    while (!threadsWorthUsing() && performance.now() < until) { /* let the solo period of 200 ms pass */ }
    assert.ok(threadsWorthUsing(), "tried again after soloMs");
    posts = 0;
    assertIdentical([compute()], [expected], "threads again");
    assert.ok(posts > 0, "split again");
  } finally {
    Object.assign(contention, saved);
    WorkerPool.prototype.post = post;
    setThreads(undefined);
  }
});

test("stress: thousands of calls on two networks interleaved, varying batch sizes and shapes, no deadlock, results of one thread", { skip }, () => {
  /** Conv2d, ReLU, max pooling and a linear head, for inputs of 2 × side × side. */
  const conv = (side: number) => ({
    format: "torch.nn.Sequential" as const,
    layers: [
      { type: "Conv2d", in_channels: 2, out_channels: 4, kernel_size: 3, padding: 1 },
      { type: "ReLU" },
      { type: "MaxPool2d", kernel_size: 2 },
      { type: "Flatten" },
      { type: "Linear", in_features: 4 * (side / 2) ** 2, out_features: 3 },
    ],
  });
  const mlp = {
    format: "torch.nn.Sequential" as const,
    layers: [{ type: "Linear", in_features: 12, out_features: 16 }, { type: "Tanh" }, { type: "Linear", in_features: 16, out_features: 3 }],
  };
  const sides = [6, 8, 10];
  const calls = runs(1500);
  const plan = Array.from({ length: calls }, (_, i) => ({ which: i % 2, N: 1 + ((i * 37) % 60), side: sides[(i * 7) % 3], seed: i }));
  const compute = (nets: Module[], c: (typeof plan)[number]): Float32Array => {
    const x = c.which === 0 ? randn([c.N, 2, c.side, c.side], c.seed) : randn([c.N, 12], c.seed);
    const labels = { shape: [c.N], data: new Int32Array(c.N).map((_, i) => (i + c.seed) % 3) };
    return c.seed % 3 === 0 ? jacobian(nets[c.which], x).data : perSampleGradients(nets[c.which], x, labels, { loss: "cross_entropy", reduction: "sum" }).data;
  };
  const networks = () => {
    manualSeed(9);
    return sides.map((side) => modelFromSpec(conv(side)));
  };
  const run = (): Float32Array[] => {
    const convs = networks();
    manualSeed(10);
    const dense = modelFromSpec(mlp);
    return plan.map((c) => compute([convs[sides.indexOf(c.side)], dense], c));
  };
  splitEverything(() => {
    setThreads(1);
    const expected = run();
    setThreads(2);
    try {
      assertIdentical(run(), expected, "stress");
    } finally {
      setThreads(undefined);
    }
  });
});

test("a consumer that stops between chunks (an onChunk that throws, a generator returned early) leaves no worker writing, and the library usable", { skip }, () => {
  const net = mlpNetwork();
  const x = randn([24, 784], 5);
  setThreads(2);
  try {
    splitEverything(() => {
      const expected = jacobian(net, x).data.slice();
      let seen = 0;
      assert.throws(() => jacobian(net, x, { onChunk: () => { if (++seen === 3) throw new Error("enough"); } }), /enough/);
      const chunks = rowChunks(net, x, {});
      chunks.next();
      chunks.next();
      chunks.return();
      assertIdentical([jacobian(net, x).data], [expected], "after stopping early");
    });
  } finally {
    setThreads(undefined);
  }
});

test("setThreads during a computation (from onChunk) is refused, and the computation completes unharmed", () => {
  manualSeed(6);
  const net = mlpNetwork();
  const x = randn([8, 784], 6);
  const expected = jacobian(net, x).data.slice();
  const streamed = new Float32Array(expected.length);
  const width = expected.length / 8;
  let refused = 0;
  jacobian(net, x, {
    onChunk: (first, rows) => {
      assert.throws(() => setThreads(1), (error: unknown) => error instanceof UnsupportedError && /during a computation/.test(error.message));
      refused++;
      streamed.set(rows.data, first * width);
    },
  });
  assert.ok(refused > 0);
  assertIdentical([streamed], [expected], "streamed while setThreads was refused");
});

test("a script that computed on threads exits by itself, and JACOBIAN_WASM_THREADS sets the count", { skip }, () => {
  const source = `
    import { jacobian, randn, threads, Linear } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).pathname)};
    const J = jacobian(new Linear(64, 64), randn([256, 64], 1));
    console.log(threads(), J.shape.join("x"));
  `;
  const started = performance.now();
  const two = runSource(source, { env: { JACOBIAN_WASM_THREADS: "2" } });
  assert.equal(two.status, 0, two.stderr);
  assert.equal(two.stdout.trim(), "2 256x64x4160");
  assert.ok(performance.now() - started < 30_000, "the script did not exit by itself");
  const one = runSource(source, { env: { JACOBIAN_WASM_THREADS: "1" } });
  assert.equal(one.stdout.trim(), "1 256x64x4160");
  const bad = runSource(source, { env: { JACOBIAN_WASM_THREADS: "many" } });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /JACOBIAN_WASM_THREADS must be an integer from 1 to 64, got "many"/);
});

