// Per-layer timings of the convolution kernels on the conv layers of the public cases
// (docs/bench_cases.md): forward, input gradient, per-sample weight gradient (J rows
// `D` floats apart, as the plan lays them out) and the summed weight gradient.
//
//   node --import tsx bench/kernels_conv.ts [--json] [--filter seed3d]
//   node_modules/.bin/deno run -A bench/kernels_conv.ts
//   node_modules/.bin/bun bench/kernels_conv.ts
//
// JACOBIAN_WASM_SIMD=baseline|relaxed picks the build (node needs
// --experimental-wasm-relaxed-simd for relaxed). Each figure is the median of many calls
// after a warm-up; GFLOP/s counts 2 flops per multiply-add of the mathematical operation
// (not of whatever padding a kernel computes).
import { readFileSync } from "node:fs";
import { arena, initialize, kernels, simdBuild } from "../src/wasm.ts";

const args = typeof process !== "undefined" ? process.argv.slice(2) : [];
const option = (name: string) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : "");
const json = args.includes("--json");
const filter = option("--filter");
// --wasm FILE: time another compiled module (e.g. a build of an older commit) instead of the
// embedded one; --cpu: time by this process's CPU time, which other processes on a busy
// machine disturb less than the wall clock.
const wasmFile = option("--wasm");
const cpuTime = args.includes("--cpu");
if (wasmFile) await initialize(await WebAssembly.compile(readFileSync(wasmFile)), wasmFile.includes("relaxed") ? "relaxed" : "baseline");
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
const k = kernels();
const build = simdBuild();
const now = cpuTime ? () => process.cpuUsage().user / 1e3 : () => performance.now();

type Triple = [number, number, number];
interface Layer {
  name: string;
  N: number;
  /** Columns of J in the whole network (the row stride of J). */
  D: number;
  cin: number;
  cout: number;
  input: Triple;
  kernel: Triple;
  padding: Triple;
  stride?: Triple;
  bias: boolean;
}

const layers: Layer[] = [
  { name: "seed3d.conv1", N: 1000, D: 33, cin: 1, cout: 2, input: [6, 6, 6], kernel: [2, 2, 2], padding: [0, 0, 0], bias: false },
  { name: "seed3d.conv2", N: 1000, D: 33, cin: 2, cout: 1, input: [5, 5, 5], kernel: [2, 2, 2], padding: [0, 0, 0], bias: true },
  { name: "cnn.conv1", N: 128, D: 25578, cin: 3, cout: 16, input: [1, 32, 32], kernel: [1, 3, 3], padding: [0, 1, 1], bias: true },
  { name: "cnn.conv2", N: 128, D: 25578, cin: 16, cout: 32, input: [1, 16, 16], kernel: [1, 3, 3], padding: [0, 1, 1], bias: true },
  // Not a public case: a ResNet-style downsampling conv (stride 2), to keep strided layers honest.
  {
    name: "resnet.down", N: 128, D: 4640, cin: 16, cout: 32, input: [1, 32, 32], kernel: [1, 3, 3], padding: [0, 1, 1],
    stride: [1, 2, 2], bias: true,
  },
  // The convolutions of bench/layers.ts's models that are not public cases.
  { name: "resnet.block", N: 64, D: 5354, cin: 16, cout: 16, input: [1, 32, 32], kernel: [1, 3, 3], padding: [0, 1, 1], bias: true },
  { name: "lenet5.conv1", N: 256, D: 61706, cin: 1, cout: 6, input: [1, 28, 28], kernel: [1, 5, 5], padding: [0, 2, 2], bias: true },
  { name: "lenet5.conv2", N: 256, D: 61706, cin: 6, cout: 16, input: [1, 14, 14], kernel: [1, 5, 5], padding: [0, 0, 0], bias: true },
  { name: "audio1d.conv1", N: 64, D: 5130, cin: 1, cout: 16, input: [1, 1, 4000], kernel: [1, 1, 9], padding: [0, 0, 0], stride: [1, 1, 4], bias: true },
  { name: "audio1d.conv2", N: 64, D: 5130, cin: 16, cout: 32, input: [1, 1, 499], kernel: [1, 1, 9], padding: [0, 0, 0], stride: [1, 1, 2], bias: true },
];

/**
 * Median and fastest milliseconds of `run`, after a warm-up, over at least `minReps` calls
 * and 400 ms. On a shared machine the fastest call is the steadier figure for comparing
 * kernel versions; the median is what the public benchmark reports.
 */
function timeMs(run: () => void, minReps = 25): { median: number; best: number } {
  for (let i = 0; i < 5; i++) run();
  // Calls are timed in batches of ≥ 2 ms (CPU time counts in coarser steps than the clock).
  let batch = 1;
  for (let t0 = now(); now() - t0 < 2 && batch < 1 << 12; batch *= 2) {
    for (let i = 0; i < batch; i++) run();
  }
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minReps || performance.now() - start < 400) {
    const t0 = now();
    for (let i = 0; i < batch; i++) run();
    times.push((now() - t0) / batch);
    if (times.length >= 5000) break;
  }
  times.sort((a, b) => a - b);
  return { median: times[times.length >> 1], best: times[0] };
}

const vol = (t: Triple) => t[0] * t[1] * t[2];

for (const layer of layers) {
  if (filter && !layer.name.includes(filter)) continue;
  const { N, cin, cout, input, kernel, padding } = layer;
  const stride = layer.stride ?? [1, 1, 1];
  const output = [0, 1, 2].map((j) => Math.floor((input[j] + 2 * padding[j] - kernel[j]) / stride[j]) + 1) as Triple;
  const L = vol(output), kvol = vol(kernel);
  const wCount = cout * cin * kvol;
  const geom = [1, cin, cout, ...input, ...output, ...kernel, ...stride, ...padding, 1, 1, 1];
  // Layout: geom | x | W | b | y (= gy) | gx | work | J | gW | gb
  let at = arena.base();
  const take = (floats: number) => {
    const ptr = at;
    at += Math.ceil(floats / 16) * 64;
    return ptr;
  };
  const pGeom = take(geom.length);
  const pX = take(N * cin * vol(input));
  const pW = take(wCount);
  const pB = take(cout);
  const pY = take(N * cout * L);
  const pGx = take(N * cin * vol(input));
  const pWork = take(cin * kvol * L);
  const pJ = take(N * layer.D);
  const pGW = take(wCount);
  const pGB = take(cout);
  arena.ensure(at);
  arena.i32().set(geom, pGeom >>> 2);
  const f32 = arena.f32();
  for (let i = pX >>> 2; i < pWork >>> 2; i++) f32[i] = Math.random() - 0.5;
  const macs = N * cout * cin * kvol * L;
  const bias = layer.bias ? pB : 0;
  const jb = layer.bias ? pJ + wCount * 4 : 0;
  const ops: [string, () => void][] = [
    ["forward", () => k.conv_forward(pGeom, N, pX, pW, bias, pY, pWork)],
    ["backward_input", () => k.conv_backward_input(pGeom, N, pY, pW, pGx, pWork)],
    ["per_sample", () => k.conv_weight_per_sample(pGeom, N, 1, pX, pY, pJ, jb, layer.D, pWork)],
    ["weight_grad", () => k.conv_weight_grad(pGeom, N, 1, pX, pY, pGW, layer.bias ? pGB : 0, pWork, 0)],
  ];
  for (const [op, run] of ops) {
    const { median, best } = timeMs(run);
    const gflops = (2 * macs) / (median / 1e3) / 1e9;
    const bestGflops = (2 * macs) / (best / 1e3) / 1e9;
    if (json) {
      console.log(JSON.stringify({
        kernel: "conv", layer: layer.name, op, N, runtime, build,
        median_ms: Number(median.toFixed(4)), best_ms: Number(best.toFixed(4)),
        gflops: Number(gflops.toFixed(2)), best_gflops: Number(bestGflops.toFixed(2)),
      }));
    } else {
      console.log(
        `${layer.name.padEnd(13)} ${op.padEnd(15)} N=${String(N).padEnd(5)} median ${median.toFixed(3).padStart(7)} ms ` +
          `${gflops.toFixed(1).padStart(5)} GFLOP/s, best ${best.toFixed(3).padStart(7)} ms ${bestGflops.toFixed(1).padStart(5)} GFLOP/s  (${runtime}, ${build})`,
      );
    }
  }
}
