// GFLOP/s of the GEMM kernels: squares (256³, 512³: the public GEMM comparison) and the shapes
// the convolutions of the cnn case would run through im2col + GEMM (the fallback path; the
// direct kernels' figures are in bench/kernels_conv.ts).
//
//   node --import tsx bench/kernels_gemm.ts [--json]
//   node_modules/.bin/deno run -A bench/kernels_gemm.ts
//   node_modules/.bin/bun bench/kernels_gemm.ts
//
// JACOBIAN_WASM_SIMD=baseline|relaxed picks the build (node needs
// --experimental-wasm-relaxed-simd for relaxed).
import { arena, kernels, simdBuild } from "../src/wasm.ts";

const args = typeof process !== "undefined" ? process.argv.slice(2) : [];
const json = args.includes("--json");
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
const k = kernels();
const build = simdBuild();

type Variant = "gemm_nn" | "gemm_nt" | "gemm_tn";
const cases: [Variant, number, number, number, string][] = [];
for (const n of [256, 512]) {
  for (const variant of ["gemm_nn", "gemm_nt", "gemm_tn"] as const) cases.push([variant, n, n, n, "square"]);
}
cases.push(
  ["gemm_nn", 16, 1024, 27, "cnn.conv1 forward (W · im2col)"],
  ["gemm_nn", 32, 256, 144, "cnn.conv2 forward"],
  ["gemm_tn", 144, 256, 32, "cnn.conv2 input gradient (Wᵀ · gy)"],
  ["gemm_nt", 16, 27, 1024, "cnn.conv1 per-sample (gy · im2colᵀ)"],
  ["gemm_nt", 32, 144, 256, "cnn.conv2 per-sample"],
);

for (const [variant, M, N, K, what] of cases) {
  // Row-major operands with leading dims: A (M×K or K×M), B (K×N or N×K), C (M×N).
  const lda = variant === "gemm_tn" ? M : K;
  const ldb = variant === "gemm_nt" ? K : N;
  const A = arena.base();
  const B = A + M * K * 4;
  const C = B + K * N * 4;
  arena.ensure(C + M * N * 4);
  const f32 = arena.f32();
  for (let i = A / 4; i < (C + M * N * 4) / 4; i++) f32[i] = Math.random() - 0.5;
  const run = () => k[variant](M, N, K, A, lda, B, ldb, C, N, 0);
  for (let i = 0; i < 3; i++) run(); // warm up (tier-up of the WASM code)
  // Best of several rounds: the least disturbed by other processes.
  let best = 0;
  for (let round = 0; round < 5; round++) {
    let reps = 0;
    const start = performance.now();
    let now = start;
    while (now - start < 300) {
      run();
      reps++;
      now = performance.now();
    }
    best = Math.max(best, (2 * M * N * K * reps) / ((now - start) / 1e3) / 1e9);
  }
  if (json) console.log(JSON.stringify({ kernel: variant, m: M, n: N, k: K, runtime, build, gflops: Number(best.toFixed(2)) }));
  else console.log(`${variant} ${M}×${N}×${K} ${`(${what})`.padEnd(40)} ${best.toFixed(1).padStart(5)} GFLOP/s  (${runtime}, ${build})`);
}
