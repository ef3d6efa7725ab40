// GFLOP/s of the GEMM kernels on square problems: `node --import tsx bench/kernels_gemm.ts`
// (`--json` prints one JSON line per case). JACOBIAN_WASM_SIMD=baseline|relaxed picks the build.
import { arena, kernels, simdBuild } from "../src/wasm.ts";

const json = process.argv.includes("--json");
const k = kernels();
const build = simdBuild();

for (const n of [256, 512]) {
  const A = arena.base();
  const B = A + n * n * 4;
  const C = B + n * n * 4;
  arena.ensure(C + n * n * 4);
  const f32 = arena.f32();
  for (let i = A / 4; i < C / 4; i++) f32[i] = Math.random() - 0.5;
  for (const variant of ["gemm_nn", "gemm_nt", "gemm_tn"]) {
    const run = () => k[variant](n, n, n, A, n, B, n, C, n, 0);
    for (let i = 0; i < 3; i++) run(); // warm up (tier-up of the WASM code)
    // Best of several half-second rounds: the least disturbed by other processes.
    let best = 0;
    for (let round = 0; round < 5; round++) {
      let reps = 0;
      const start = performance.now();
      let now = start;
      while (now - start < 500) {
        run();
        reps++;
        now = performance.now();
      }
      best = Math.max(best, (2 * n ** 3 * reps) / ((now - start) / 1e3) / 1e9);
    }
    if (json) console.log(JSON.stringify({ kernel: variant, n, build, gflops: Number(best.toFixed(2)) }));
    else console.log(`${variant} ${n}×${n}×${n} (${build} SIMD): ${best.toFixed(1)} GFLOP/s`);
  }
}
