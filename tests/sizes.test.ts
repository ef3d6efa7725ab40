/**
 * Sizes checked before memory is touched (issue 13, item 0): a spec's parameters against
 * MAX_PARAMETERS and against what its weights file holds, a J returned whole against
 * MAX_RESULT_BYTES, a J streamed by the CLI against --max-out and the free disk space; each
 * refused within a second, naming the layer (or N, K, D), the size and the limit, with peak
 * RSS measured in a child process. Loading weights draws nothing from the generator.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  FormatError,
  jacobian,
  Linear,
  loadModel,
  MAX_PARAMETERS,
  MAX_RESULT_BYTES,
  MemoryError,
  modelFromSpec,
  ntk,
  randn,
  Sequential,
  tensor,
  writeNpy,
  writeSafetensors,
} from "../mod.ts";
import type { ModelSpec } from "../mod.ts";
import { manualSeed } from "../src/layers/init.ts";
import { root, runCli, runSource } from "./helpers/cli.ts";

const mod = JSON.stringify(join(root, "mod.ts"));

/**
 * Source of a function `peakRssMiB()` for a child process: VmHWM from /proc/self/status where
 * there is one (the peak of this process's own memory: getrusage's maxRSS also counts the
 * parent's pages the child had between fork and exec), else process.resourceUsage().maxRSS.
 */
const PEAK_RSS = `
import { readFileSync as readStatus } from "node:fs";
import processForRss from "node:process";
function peakRssMiB() {
  try {
    const kb = /VmHWM:\\s*(\\d+) kB/.exec(readStatus("/proc/self/status", "utf8"));
    if (kb) return Number(kb[1]) / 1024;
  } catch {}
  return processForRss.resourceUsage().maxRSS / 1024;
}
`;

/** The three 100-byte specs: one layer each, and the size the message must name. */
const HUGE: [string, Record<string, unknown>, RegExp][] = [
  ["Linear(4, 1e9)", { type: "Linear", in_features: 4, out_features: 1e9 }, /layer 0 \(Linear\): .*weight \(1000000000, 4\) would hold 4000000000 floats/],
  ["LayerNorm([2³¹])", { type: "LayerNorm", normalized_shape: [2147483648] }, /layer 0 \(LayerNorm\): .*weight \(2147483648,\) would hold 2147483648 floats/],
  ["Embedding(1e9, 4)", { type: "Embedding", num_embeddings: 1e9, embedding_dim: 4 }, /layer 0 \(Embedding\): .*weight \(1000000000, 4\) would hold 4000000000 floats/],
];

function spec(...layers: Record<string, unknown>[]): ModelSpec {
  return { format: "torch.nn.Sequential", layers: layers as ModelSpec["layers"] };
}

function elapsed(fn: () => unknown): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

for (const [name, layer, message] of HUGE) {
  test(`modelFromSpec refuses ${name} within a second, naming the layer, the size and MAX_PARAMETERS`, () => {
    const ms = elapsed(() =>
      assert.throws(() => modelFromSpec(spec(layer)), (error: Error) => {
        assert.ok(error instanceof MemoryError, String(error));
        assert.match(error.message, message);
        assert.match(error.message, new RegExp(`limit of ${MAX_PARAMETERS} floats .*MAX_PARAMETERS`));
        return true;
      })
    );
    assert.ok(ms < 1000, `${ms} ms`);
  });

  test(`loadModel refuses ${name} against a small weights file within a second, naming the layer and the file`, () => {
    const weights = writeSafetensors([["0.bias", tensor([1], [1])]]);
    const ms = elapsed(() =>
      assert.throws(() => loadModel(JSON.stringify(spec(layer)), weights, { weights: "w.safetensors" }), (error: Error) => {
        assert.ok(error instanceof FormatError, String(error));
        assert.match(error.message, message);
        assert.match(error.message, /but w\.safetensors holds 1 float in all/);
        return true;
      })
    );
    assert.ok(ms < 1000, `${ms} ms`);
  });
}

test("the budget is the network's: two layers each under MAX_PARAMETERS but over it together are refused at the second", () => {
  // In a child process: the first layer's 768 MiB are allocated (and initialised) before the second is refused.
  const result = child(`
import { modelFromSpec } from ${mod};
const half = { type: "LayerNorm", normalized_shape: [${MAX_PARAMETERS / 4}, 3], bias: false }; // 3/4 of the limit each
let message = "", name = "";
try { modelFromSpec({ format: "torch.nn.Sequential", layers: [{ type: "Identity" }, half, half] }); } catch (error) { message = error.message; name = error.name; }
console.log(JSON.stringify({ name, message }));
`);
  assert.equal(result.name, "MemoryError", result.message);
  assert.match(result.message, /^model spec, layer 2 \(LayerNorm\): LayerNorm: weight \(67108864, 3\) would hold 201326592 floats \(768\.00 MiB\), and the layers before it 201326592: over the limit/);
});

test("a layer constructor refuses a tensor over MAX_PARAMETERS before allocating it", () => {
  const ms = elapsed(() => assert.throws(() => new Linear(4, 1e9), /^MemoryError: Linear: weight \(1000000000, 4\) would hold 4000000000 floats \(14\.90 GiB\)/));
  assert.ok(ms < 1000, `${ms} ms`);
});

test("loadModel draws nothing from the generator: random initialisation only where no weights are loaded", () => {
  const layers = spec(
    { type: "Linear", in_features: 3, out_features: 4 },
    { type: "Conv1d", in_channels: 1, out_channels: 2, kernel_size: 2 },
    { type: "Embedding", num_embeddings: 5, embedding_dim: 2 },
  );
  manualSeed(11);
  const trained = modelFromSpec(layers);
  const weights = writeSafetensors(Object.entries(trained.stateDict()));
  manualSeed(42);
  const expected = new Linear(3, 2).weight.data; // the generator's next draws after seeding 42
  manualSeed(42);
  const loaded = loadModel(JSON.stringify(layers), weights);
  assert.deepEqual(new Linear(3, 2).weight.data, expected); // loadModel left the generator where it was
  for (const [key, t] of Object.entries(trained.stateDict())) assert.deepEqual(loaded.stateDict()[key].data, t.data, key);
});

test("a spec slightly larger than its weights file still gets every missing tensor named by loadWeights", () => {
  const small = spec({ type: "Linear", in_features: 3, out_features: 4 });
  const weights = writeSafetensors([["0.weight", randn([4, 3], 0)]]);
  assert.throws(() => loadModel(JSON.stringify(small), weights), /weights: "0\.bias" \(4,\) is missing/);
});

/** Runs a module in a child process of this runtime; its last stdout line is JSON. */
function child(source: string) {
  const run = runSource(source);
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout.trim().split("\n").pop()!);
}

test("jacobian refuses a 16 GB J up front (N, K, D, bytes and the way out named), within a second, peak RSS under 200 MB", () => {
  const result = child(`${PEAK_RSS}
import { jacobian, Linear, Sequential, randn, manualSeed } from ${mod};
manualSeed(0);
const net = new Sequential(new Linear(1000, 1000), new Linear(1000, 1));
const x = randn([4096, 1000], 1); // 16 MB of input; J would be 4096 × 1,002,001 floats
const start = performance.now();
let message = "", name = "";
try { jacobian(net, x); } catch (error) { message = error.message; name = error.name; }
console.log(JSON.stringify({ name, message, ms: performance.now() - start, maxRssMiB: peakRssMiB() }));
`);
  assert.equal(result.name, "MemoryError", result.message);
  assert.match(result.message, /N × K × D = 4096 × 1 × 1002001 floats = 16416784384 bytes \(15\.29 GiB\)/);
  assert.match(result.message, /MAX_RESULT_BYTES.*onChunk.*CLI/);
  assert.ok(result.ms < 1000, `${result.ms} ms`);
  assert.ok(result.maxRssMiB < 200, `peak RSS ${result.maxRssMiB} MiB`);
  console.log(`# 16 GB J through the API: refused in ${result.ms.toFixed(1)} ms, peak RSS ${result.maxRssMiB.toFixed(0)} MiB`);
});

test("MAX_RESULT_BYTES bounds asTuple results too; onChunk streams what would be over it", () => {
  const net = new Linear(1000, 1000);
  const x = randn([2, 1000], 0); // J: 2 × 1000 × 1,001,000 floats = 7.46 GiB
  assert.ok(2 * 1000 * 1001000 * 4 > MAX_RESULT_BYTES);
  assert.throws(() => jacobian(net, x, { asTuple: true }), /^MemoryError: the result J would be N × K × D = 2 × 1000 × 1001000 floats/);
  let rows = 0;
  jacobian(new Sequential(new Linear(1000, 1000), new Linear(1000, 1)), randn([3, 1000], 0), { onChunk: (_first, chunk) => void (rows += chunk.shape[0]) });
  assert.equal(rows, 3);
});

// ---- The CLI ----

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "jacobian-wasm-sizes-"));
}

/** The CLI in a child process that reports, on its way out, its peak RSS and time since start. */
function runCliMeasured(args: string[]) {
  const cli = JSON.stringify(join(root, "cli.ts"));
  const run = runSource(`${PEAK_RSS}
import process from "node:process";
import { writeSync } from "node:fs";
process.argv.splice(2, process.argv.length, ...${JSON.stringify(args)});
process.on("exit", () => writeSync(1, JSON.stringify({ ms: performance.now(), maxRssMiB: peakRssMiB() }) + "\\n"));
await import(${cli});
`);
  return { ...run, measured: JSON.parse(run.stdout.trim().split("\n").pop() ?? "{}") };
}

for (const [name, layer, message] of HUGE) {
  test(`cli: ${name} is refused with exit 2, one line on stderr, within a second, peak RSS under 200 MB`, () => {
    const dir = tempDir();
    try {
      const model = join(dir, "model.json"), weights = join(dir, "w.safetensors"), input = join(dir, "x.npy"), out = join(dir, "J.npy");
      writeFileSync(model, JSON.stringify(spec(layer)));
      assert.ok(JSON.stringify(layer).length <= 100); // the 100-byte specs
      writeFileSync(weights, writeSafetensors([["0.weight", randn([1, 4], 0)]]));
      writeFileSync(input, writeNpy(randn([2, 4], 1).data, [2, 4]));
      const run = runCliMeasured(["jacobian", "--model", model, "--weights", weights, "--input", input, "--out", out]);
      assert.equal(run.status, 2, run.stderr);
      const lines = run.stderr.trim().split("\n");
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0], /^jacobian-wasm: model spec, layer 0/);
      assert.match(lines[0], message);
      assert.match(lines[0], /w\.safetensors holds 4 floats/);
      assert.ok(run.measured.ms < 1000, `${run.measured.ms} ms from the runtime's start`);
      assert.ok(run.measured.maxRssMiB < 200, `peak RSS ${run.measured.maxRssMiB} MiB`);
      assert.deepEqual(readdirSync(dir).sort(), ["model.json", "w.safetensors", "x.npy"]);
      console.log(`# cli ${name}: refused ${run.measured.ms.toFixed(0)} ms after start, peak RSS ${run.measured.maxRssMiB.toFixed(0)} MiB`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Linear(1000, 1000) → Linear(1000, 1) (D = 1,002,001) with its weights, and a batch of N samples. */
function bigMlpFiles(dir: string, N: number, net = new Sequential(new Linear(1000, 1000), new Linear(1000, 1))) {
  const files = { model: join(dir, "model.json"), weights: join(dir, "w.safetensors"), input: join(dir, "x.npy") };
  const layers = net.layers.map((l) => ({ type: "Linear", in_features: (l as Linear).inFeatures, out_features: (l as Linear).outFeatures }));
  writeFileSync(files.model, JSON.stringify(spec(...layers)));
  writeFileSync(files.weights, writeSafetensors(Object.entries(net.stateDict())));
  writeFileSync(files.input, writeNpy(randn([N, 1000], 1).data, [N, 1000]));
  return files;
}

test("cli: the 16 GB J is refused over --max-out (default 4G) with exit 2, one line, within a second, peak RSS under 200 MB", () => {
  const dir = tempDir();
  try {
    manualSeed(1);
    const files = bigMlpFiles(dir, 4096);
    const args = ["jacobian", "--model", files.model, "--weights", files.weights, "--input", files.input, "--out", join(dir, "J.npy")];
    const run = runCliMeasured(args);
    assert.equal(run.status, 2, run.stderr);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0], /N × K × D = 4096 × 1 × 1002001 floats = 16416784384 bytes \(15\.29 GiB\), over the limit of 4294967296 bytes .*--max-out/);
    assert.ok(run.measured.ms < 1000, `${run.measured.ms} ms from the runtime's start`);
    assert.ok(run.measured.maxRssMiB < 200, `peak RSS ${run.measured.maxRssMiB} MiB`);
    assert.deepEqual(readdirSync(dir).sort(), ["model.json", "w.safetensors", "x.npy"]);
    console.log(`# cli 16 GB J: refused ${run.measured.ms.toFixed(0)} ms after start, peak RSS ${run.measured.maxRssMiB.toFixed(0)} MiB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cli: with --max-out raised, a J larger than the free disk space is refused before anything is computed", () => {
  const dir = tempDir();
  try {
    const stats = statfsSync(dir);
    const free = Number(stats.bavail) * Number(stats.bsize);
    // Linear(1000, 1000) without a loss: K = 1000 rows of D = 1,001,000 per sample, 4.004 GB a sample.
    const N = Math.floor(free / (1000 * 1001000 * 4)) + 2;
    manualSeed(1);
    const files = bigMlpFiles(dir, N, new Sequential(new Linear(1000, 1000)));
    const start = performance.now();
    const run = runCli(["jacobian", "--model", files.model, "--weights", files.weights, "--input", files.input, "--out", join(dir, "J.npy"), "--max-out", "1000T"]);
    const ms = performance.now() - start;
    assert.equal(run.status, 2, run.stderr);
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`N × K × D = ${N} × 1000 × 1001000 floats .*but its file system has only \\d+ bytes .* free`));
    assert.ok(ms < 10000, `${ms} ms`); // not a computation of J: the runtime's start and 4 MB of weights
    assert.deepEqual(readdirSync(dir).sort(), ["model.json", "w.safetensors", "x.npy"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cli: --max-out refuses a small J when set below it, and accepts sizes with K, M, G, T", () => {
  const dir = tempDir();
  try {
    const model = join(dir, "model.json"), weights = join(dir, "w.safetensors"), input = join(dir, "x.npy"), out = join(dir, "J.npy");
    manualSeed(2);
    const net = modelFromSpec(spec({ type: "Linear", in_features: 4, out_features: 3 }));
    writeFileSync(model, JSON.stringify(spec({ type: "Linear", in_features: 4, out_features: 3 })));
    writeFileSync(weights, writeSafetensors(Object.entries(net.stateDict())));
    writeFileSync(input, writeNpy(randn([5, 4], 1).data, [5, 4]));
    const base = ["jacobian", "--model", model, "--weights", weights, "--input", input, "--out", out];
    const refused = runCli([...base, "--max-out", "100"]); // J: 5 × 3 × 15 floats = 900 bytes
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /^jacobian-wasm: --out .*J\.npy would hold J, N × K × D = 5 × 3 × 15 floats = 900 bytes .*over the limit of 100 bytes/);
    assert.deepEqual(readdirSync(dir).sort(), ["model.json", "w.safetensors", "x.npy"]);
    for (const size of ["1K", "2MiB", "1G", "0.5T"]) {
      const run = runCli([...base, "--max-out", size]);
      assert.equal(run.status, 0, `${size}: ${run.stderr}`);
    }
    const bad = runCli([...base, "--max-out", "lots"]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--max-out must be a positive number of bytes/);
    const elsewhere = runCli([...base, "--max-out", "1G", "--quantity", "ntk"]);
    assert.equal(elsewhere.status, 2);
    assert.match(elsewhere.stderr, /--max-out bounds the file of J/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ntk refuses, before the forward pass, a J and kernel that cannot be held in one WebAssembly memory, naming R, D and the bytes", () => {
  const net = new Sequential(new Linear(1000, 1000), new Linear(1000, 1)); // D = 1,002,001
  const x = randn([4096, 1000], 0);
  const start = performance.now();
  assert.throws(
    () => ntk(net, x),
    (error: unknown) =>
      error instanceof MemoryError &&
      /^ntk: needs J \(N·K × D = 4096 × 1002001 floats\) and the kernel \(4096 × 4096\) .*16483893248 bytes \(15\.35 GiB\).*fewer than 1070/.test(error.message),
  );
  assert.ok(performance.now() - start < 1000);
  // Many rows of a small network: the kernel itself is what does not fit.
  assert.throws(() => ntk(new Linear(10, 1), randn([40000, 10], 1)), /the kernel \(40000 × 40000\)/);
  // A batch that fits computes.
  assert.equal(ntk(new Linear(10, 1), randn([300, 10], 2)).shape[0], 300);
});
