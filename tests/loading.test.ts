/**
 * Loading cannot hang: importing the library compiles nothing; the first computation compiles
 * the embedded kernels synchronously; where the host forbids compiling from bytes, that call
 * fails at once with an error that says what to do, and `initialize(module)` with a
 * precompiled module works; the `jacobian-wasm/precompiled` entry never compiles the bytes.
 * Each case runs in a child process of the current runtime, so that nothing is loaded yet.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { root, runSource } from "./helpers/cli.ts";

const mod = JSON.stringify(pathToFileURL(join(root, "mod.ts")).href);
const precompiled = JSON.stringify(pathToFileURL(join(root, "precompiled.ts")).href);

/** Per-sample gradient norms of a small network, printed as JSON: what each child computes. */
const COMPUTE = `
lib.manualSeed(0);
const net = new lib.Sequential(new lib.Linear(3, 4), new lib.Tanh(), new lib.Linear(4, 2));
const labels = { shape: [5], data: new Int32Array([0, 1, 1, 0, 1]) };
const norms = lib.perSampleNorms(net, lib.randn([5, 3], 1), labels, { loss: "cross_entropy" });
console.log(JSON.stringify({ loaded: lib.isInitialized(), build: lib.simdBuild(), norms: [...norms.data] }));
`;

function lastJson(stdout: string) {
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

test("importing compiles nothing; the first computation compiles the kernels; initialize() is idempotent", () => {
  const run = runSource(`
import * as lib from ${mod};
console.log(JSON.stringify({ atImport: lib.isInitialized() }));
${COMPUTE}
const build = await lib.initialize();
console.log(JSON.stringify({ again: build === lib.simdBuild() }));
`);
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines[0], { atImport: false });
  assert.equal(lines[1].loaded, true);
  assert.equal(lines[1].norms.length, 5);
  assert.ok(lines[1].norms.every((v: number) => v > 0));
  assert.deepEqual(lines[2], { again: true });
});

test("where compiling from bytes is forbidden, the first computation fails at once and says what to do; initialize(module) then works", () => {
  const run = runSource(`
// A host like workerd: no WebAssembly code generation from bytes.
const original = WebAssembly.Module;
const { wasmBytes } = await import(${mod});
const precompiledModule = new original(wasmBytes("baseline"));
const forbid = () => { throw new Error("Wasm code generation disallowed by embedder"); };
WebAssembly.Module = new Proxy(original, { construct: forbid });
WebAssembly.compile = () => new Promise(() => {}); // pending forever, as workerd's at start-up
const lib = await import(${mod});
try {
  await lib.initialize(); // must reject at once, not wait on the compile that never settles
} catch (error) {
  console.log(JSON.stringify({ initialize: error.message }));
}
try {
  lib.perSampleNorms(new lib.Linear(3, 1), lib.randn([2, 3], 1));
  console.log("computed without kernels?");
} catch (error) {
  console.log(JSON.stringify({ message: error.message }));
}
await lib.initialize(precompiledModule, "baseline");
${COMPUTE}
await lib.initialize(precompiledModule, "baseline"); // the same module again: a no-op
try {
  await lib.initialize(new original(wasmBytes("baseline")), "baseline");
} catch (error) {
  console.log(JSON.stringify({ another: error.message }));
}
`);
  assert.equal(run.status, 0, run.stderr);
  const [initialized, refused, computed, another] = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.match(initialized.initialize, /not loaded \(compiling them here failed: Wasm code generation disallowed by embedder\)/);
  assert.match(refused.message, /^jacobian-wasm: the WebAssembly kernels are not loaded \(compiling them here failed: Wasm code generation disallowed by embedder\)/);
  assert.match(refused.message, /await initialize\(kernels, "baseline"\)/);
  assert.equal(computed.build, "baseline");
  assert.equal(computed.norms.length, 5);
  assert.match(another.another, /already loaded \(baseline build, from another module\)/);
});

test("the precompiled entry never compiles the embedded bytes: it asks for the module, then computes as the main entry", () => {
  const main = runSource(`import * as lib from ${mod};\n${COMPUTE}`, { env: { JACOBIAN_WASM_SIMD: "baseline" } });
  assert.equal(main.status, 0, main.stderr);
  const run = runSource(`
import * as lib from ${precompiled};
try {
  lib.perSampleNorms(new lib.Linear(3, 1), lib.randn([2, 3], 1));
} catch (error) {
  console.log(JSON.stringify({ message: error.message }));
}
try {
  await lib.initialize();
} catch (error) {
  console.log(JSON.stringify({ message: error.message }));
}
await lib.initialize(await WebAssembly.compile(lib.wasmBytes("baseline")), "baseline");
${COMPUTE}
`);
  assert.equal(run.status, 0, run.stderr);
  const [first, second, computed] = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.match(first.message, /not loaded \(the jacobian-wasm\/precompiled entry never compiles the embedded bytes\)/);
  assert.match(second.message, /not loaded \(initialize\(\) was called without a module\)/);
  assert.deepEqual(computed, lastJson(main.stdout));
});
