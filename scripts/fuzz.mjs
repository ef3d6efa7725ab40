// `npm run fuzz`: tests/fuzz.test.ts on node with 100000 generated inputs in all (30000 .npy,
// 30000 .safetensors, 30000 model specs, 10000 command lines); JACOBIAN_WASM_FUZZ_INPUTS=N
// runs N instead, JACOBIAN_WASM_PROPERTY_SEED=S another seed. Prints the count run and the time.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const inputs = process.env.JACOBIAN_WASM_FUZZ_INPUTS || "100000";
const start = performance.now();
const run = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-reporter=spec", join("tests", "fuzz.test.ts")], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, JACOBIAN_WASM_FUZZ_INPUTS: inputs },
});
const seconds = ((performance.now() - start) / 1000).toFixed(1);
console.log(`npm run fuzz: ${inputs} generated inputs ${run.status === 0 ? "passed" : "FAILED"} in ${seconds} s`);
process.exit(run.status ?? 1);
