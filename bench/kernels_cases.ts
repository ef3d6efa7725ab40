// End-to-end check of the public cases through the public API (J materialised): `seed3d`
// (jacobian, N = 1000), `mlp` (per-sample cross-entropy gradients, N = 256) and `cnn` (the
// same, N = 128).
//
//   node --import tsx bench/kernels_cases.ts [--json]
//   node_modules/.bin/deno run -A bench/kernels_cases.ts
//   node_modules/.bin/bun bench/kernels_cases.ts
//
// The full benchmark suite (bench/bench.ts) times all cases against the peers; this one is
// the quick before/after check for kernel work. Medians after a warm-up; "cold" is the
// first call (plan built, memory grown).
import { readFileSync } from "node:fs";
import { initialize, jacobian, perSampleGradients, randn, simdBuild } from "../mod.ts";
import { cnnNetwork, mlpNetwork, seedNetwork } from "../src/examples.ts";

const args = typeof process !== "undefined" ? process.argv.slice(2) : [];
const json = args.includes("--json");
// --wasm FILE: run on another compiled module (e.g. a build of an older commit), for a
// before/after comparison in one sitting.
const wasmAt = args.indexOf("--wasm");
if (wasmAt >= 0) {
  const file = args[wasmAt + 1];
  await initialize(await WebAssembly.compile(readFileSync(file)), file.includes("relaxed") ? "relaxed" : "baseline");
}
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
const build = simdBuild();

function time(run: () => unknown, minReps: number, minMs: number): { cold: number; median: number } {
  const t0 = performance.now();
  run();
  const cold = performance.now() - t0;
  for (let i = 0; i < 3; i++) run();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minReps || performance.now() - start < minMs) {
    const t = performance.now();
    run();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { cold, median: times[times.length >> 1] };
}

const seedNet = seedNetwork();
const seedX = randn([1000, 1, 6, 6, 6], 1);
const mlpNet = mlpNetwork();
const mlpX = randn([256, 784], 2);
const mlpY = { shape: [256], data: new Int32Array(256).map((_, i) => (i * 3) % 10) };
const cnnNet = cnnNetwork();
const cnnX = randn([128, 3, 32, 32], 3);
const classes = new Int32Array(128).map((_, i) => (i * 7) % 10);
const cnnY = { shape: [128], data: classes };

const cases: [string, number, () => unknown][] = [
  ["seed3d", 1000, () => jacobian(seedNet, seedX)],
  ["mlp", 256, () => perSampleGradients(mlpNet, mlpX, mlpY, { loss: "cross_entropy", reduction: "sum" })],
  ["cnn", 128, () => perSampleGradients(cnnNet, cnnX, cnnY, { loss: "cross_entropy", reduction: "sum" })],
];
for (const [name, N, run] of cases) {
  const { cold, median } = time(run, 20, 1500);
  if (json) console.log(JSON.stringify({ case: name, N, runtime, build, median_ms: Number(median.toFixed(3)), cold_ms: Number(cold.toFixed(3)) }));
  else console.log(`${name.padEnd(7)} N=${String(N).padEnd(5)} median ${median.toFixed(2).padStart(8)} ms  cold ${cold.toFixed(1).padStart(7)} ms  (${runtime}, ${build})`);
}
