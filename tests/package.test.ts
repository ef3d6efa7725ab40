/**
 * The package as users get it: `npm pack` of this checkout (its built dist/) installed into an
 * empty project, whose script imports "jacobian-wasm" (and "jacobian-wasm/precompiled" with
 * the shipped .wasm) and computes per-sample norms, run by the runtime the tests run on: so
 * `npm test` runs it under node, deno (from node_modules, as `npm:` users get it) and bun.
 * Also: installing the tarball with install scripts allowed runs no build (the files
 * installed are the tarball's, byte for byte, and npm reports no lifecycle script of ours),
 * and the first `npx jacobian-wasm demo` in an empty project takes under 5 s.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
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

/** Every file under `dir`, as paths relative to it, sorted. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

/** Runs a command and returns its exit, output (stdout and stderr together) and time taken. */
function timed(command: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const start = performance.now();
  const result = spawnSync(command, args, { cwd, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", ...env } });
  return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}`, ms: performance.now() - start };
}

/** What scripts/prepare.mjs and the kernels' build print when they build anything. */
const BUILD_OUTPUT = /^prepare: |compiling the kernels|building dist\/|kernels\.generated\.ts|Last converge/m;

/** What an install must do to run lifecycle scripts: allowed, and shown as they run. */
const SCRIPTS_ALLOWED = { npm_config_ignore_scripts: "false", npm_config_foreground_scripts: "true" };

test("installing the packed tarball with install scripts allowed builds nothing, and the first npx jacobian-wasm demo takes under 5 s", { skip: !existsSync(join(root, "dist", "mod.js")) && "dist/ is not built (npm install builds it)" }, () => {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-install-"));
  try {
    run("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", dir], root);
    const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith(".tgz"))!);
    const unpacked = join(dir, "unpacked");
    mkdirSync(unpacked);
    run("tar", ["-xzf", tarball, "-C", unpacked], dir);
    const packed = join(unpacked, "package");
    const { version } = JSON.parse(readFileSync(join(packed, "package.json"), "utf8"));

    // A package whose postinstall prints a line: proof that this install runs scripts and shows them.
    const control = join(dir, "control");
    mkdirSync(control);
    writeFileSync(join(control, "package.json"), JSON.stringify({ name: "control", version: "1.0.0", scripts: { postinstall: "node -e \"console.log('control postinstall ran')\"" } }));
    const app = join(dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
    const install = timed("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball, control], app, SCRIPTS_ALLOWED);
    assert.equal(install.status, 0, install.output);
    assert.match(install.output, /^> control@1\.0\.0 postinstall\n[^\n]*\n\s*control postinstall ran$/m, `the control's script ran and was shown: ${install.output}`);
    assert.doesNotMatch(install.output, /^> jacobian-wasm@/m, `no lifecycle script of jacobian-wasm ran: ${install.output}`);
    assert.doesNotMatch(install.output, BUILD_OUTPUT, install.output);

    // The installed package is the tarball's files, byte for byte: nothing compiled or written after.
    const installed = join(app, "node_modules", "jacobian-wasm");
    assert.deepEqual(filesUnder(installed), filesUnder(packed));
    for (const file of filesUnder(packed)) {
      assert.ok(readFileSync(join(installed, file)).equals(readFileSync(join(packed, file))), `${file} differs from the tarball's`);
    }

    const bin = join(app, "node_modules", ".bin", "jacobian-wasm");
    const versionRun = timed(bin, ["--version"], app);
    assert.equal(versionRun.output, `jacobian-wasm ${version}\n`);
    const demo = timed(bin, ["demo"], app);
    assert.equal(demo.status, 0, demo.output);
    assert.match(demo.output, /one pass {9}J shape \[1000, 33\]/);

    // npx in an empty project with an empty npm cache: it installs the tarball and runs the demo.
    const empty = join(dir, "empty");
    mkdirSync(empty);
    writeFileSync(join(empty, "package.json"), JSON.stringify({ name: "empty", private: true }));
    const npx = timed("npx", ["--yes", "--offline", "--cache", join(dir, "cache"), "--package", tarball, "jacobian-wasm", "demo"], empty, SCRIPTS_ALLOWED);
    assert.equal(npx.status, 0, npx.output);
    assert.match(npx.output, /one pass {9}J shape \[1000, 33\]/);
    assert.doesNotMatch(npx.output, /^> jacobian-wasm@/m, npx.output);
    assert.doesNotMatch(npx.output, BUILD_OUTPUT, npx.output);
    assert.ok(npx.ms < 5000, `the first npx jacobian-wasm demo took ${npx.ms.toFixed(0)} ms`);
    console.log(`# first npx jacobian-wasm demo (empty cache, from the tarball): ${npx.ms.toFixed(0)} ms; the installed bin's demo: ${demo.ms.toFixed(0)} ms; npm install: ${install.ms.toFixed(0)} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
