/**
 * The package as users get it: `npm pack` of this checkout (its built dist/) installed into an
 * empty project, whose script imports "jacobian-wasm" (and "jacobian-wasm/precompiled" with
 * the shipped .wasm) and computes per-sample norms, run by the runtime the tests run on: so
 * `npm test` runs it under node, deno (from node_modules, as `npm:` users get it) and bun.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { root, runtimeName } from "./helpers/cli.ts";

const MAIN = `import { Linear, perSampleNorms, randn, simdBuild } from "jacobian-wasm";
import type { Tensor } from "jacobian-wasm";
const norms: Tensor = perSampleNorms(new Linear(3, 1), randn([4, 3], 1));
console.log(JSON.stringify({ build: simdBuild(), norms: norms.data.length }));
`;

const PRECOMPILED = `import { initialize, Linear, perSampleNorms, randn, simdBuild } from "jacobian-wasm/precompiled";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const file = createRequire(import.meta.url).resolve("jacobian-wasm/kernels.baseline.wasm");
await initialize(await WebAssembly.compile(readFileSync(file)), "baseline");
console.log(JSON.stringify({ build: simdBuild(), norms: perSampleNorms(new Linear(3, 1), randn([4, 3], 1)).data.length }));
`;

function run(command: string, args: string[], cwd: string) {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  assert.equal(result.status, 0, `${command} ${args.join(" ")}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

test("the packed tarball installs into an empty project and runs there (main and precompiled entries)", { skip: !existsSync(join(root, "dist", "mod.js")) && "dist/ is not built (npm install builds it)" }, () => {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-package-"));
  try {
    run("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", dir], root);
    const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
    assert.ok(tarball, "npm pack wrote a tarball");
    const app = join(dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    run("npm", ["install", "--no-audit", "--no-fund", "--silent", join(dir, tarball)], app);
    writeFileSync(join(app, "main.ts"), MAIN);
    writeFileSync(join(app, "precompiled.mjs"), PRECOMPILED);
    writeFileSync(join(app, "main.mjs"), MAIN.replace(/^import type .*\n/m, "").replace(": Tensor", ""));
    const runtime = runtimeName();
    const outputs: string[] = [];
    if (runtime === "deno") {
      run(process.execPath, ["check", "main.ts"], app); // the published types resolve and check
      outputs.push(run(process.execPath, ["run", "-A", "main.ts"], app), run(process.execPath, ["run", "-A", "precompiled.mjs"], app));
    } else if (runtime === "bun") {
      outputs.push(run(process.execPath, ["main.ts"], app), run(process.execPath, ["precompiled.mjs"], app));
    } else {
      outputs.push(run(process.execPath, ["main.mjs"], app), run(process.execPath, ["precompiled.mjs"], app));
    }
    const [main, precompiled] = outputs.map((o) => JSON.parse(o.trim()));
    assert.equal(main.norms, 4);
    assert.ok(main.build === "baseline" || main.build === "relaxed");
    assert.deepEqual(precompiled, { build: "baseline", norms: 4 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
