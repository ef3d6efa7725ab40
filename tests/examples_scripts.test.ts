/**
 * The Deno and Bun example scripts (examples/deno/norms.ts, examples/bun/norms.ts), each run by
 * its own runtime's binary whatever runtime these tests run on: the norms they print equal the
 * library's in this process, for their generated batch and for `.npy` files, and bad input ends
 * with exit code 2 and the library's message alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Linear, manualSeed, perSampleNorms, randn, ReLU, Sequential, writeNpy } from "../mod.ts";
import type { Tensor } from "../mod.ts";
import { root } from "./helpers/cli.ts";

const scripts = [
  { runtime: "deno", command: join(root, "node_modules", ".bin", "deno"), prefix: ["run", "-A"], script: "examples/deno/norms.ts" },
  { runtime: "bun", command: join(root, "node_modules", ".bin", "bun"), prefix: [], script: "examples/bun/norms.ts" },
];

/** What the scripts compute: the same model, seed and loss. */
function expectedNorms(x: Tensor, y: Int32Array): number[] {
  manualSeed(0);
  const net = new Sequential(new Linear(4, 16), new ReLU(), new Linear(16, 3));
  return Array.from(perSampleNorms(net, x, { shape: [y.length], data: y }, { loss: "cross_entropy" }).data);
}

function run(command: string, args: string[]) {
  const result = spawnSync(command, args, { cwd: root, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" }, timeout: 60000 });
  return { status: result.status, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

/** Relaxed SIMD may round differently in each engine (V8, JavaScriptCore): float32 rounding apart. */
function assertClose(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= 1e-5 * Math.abs(expected[i]) + 1e-6, `${what}: norm ${i} is ${actual[i]}, the library's ${expected[i]}`);
  }
}

function printed(stdout: string, what: string) {
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 1, `${what}: expected one line, got:\n${stdout}`);
  return JSON.parse(lines[0]) as { runtime: string; build: string; norms: number[] };
}

for (const { runtime, command, prefix, script } of scripts) {
  test(`${script} under ${runtime}: its generated batch's norms equal the library's`, () => {
    const result = run(command, [...prefix, script]);
    assert.equal(result.status, 0, result.stderr);
    const out = printed(result.stdout, script);
    assert.match(out.runtime, new RegExp(`^${runtime} \\d+\\.\\d+`));
    assert.ok(out.build === "relaxed" || out.build === "baseline", out.build);
    assertClose(out.norms, expectedNorms(randn([8, 4], 1), Int32Array.from({ length: 8 }, (_, n) => n % 3)), script);
  });

  test(`${script} under ${runtime}: .npy files in, the library's norms out; bad labels are exit code 2 with the library's message`, () => {
    const dir = mkdtempSync(join(tmpdir(), `jacobian-wasm-${runtime}-`));
    try {
      const x = randn([5, 4], 21);
      const labels = [2, 0, 1, 1, 2];
      writeFileSync(join(dir, "x.npy"), writeNpy(Float64Array.from(x.data), x.shape));
      writeFileSync(join(dir, "y.npy"), writeNpy(BigInt64Array.from(labels, BigInt), [5]));
      const good = run(command, [...prefix, script, join(dir, "x.npy"), join(dir, "y.npy")]);
      assert.equal(good.status, 0, good.stderr);
      assertClose(printed(good.stdout, script).norms, expectedNorms(x, Int32Array.from(labels)), `${script} with .npy files`);

      writeFileSync(join(dir, "bad.npy"), writeNpy(BigInt64Array.from([2, 0, 3, 1, 2], BigInt), [5]));
      const bad = run(command, [...prefix, script, join(dir, "x.npy"), join(dir, "bad.npy")]);
      assert.equal(bad.status, 2, `${script}: exit code ${bad.status}\n${bad.stdout}${bad.stderr}`);
      assert.equal(bad.stdout, "");
      assert.equal(bad.stderr.trim(), "ValueError: cross_entropy: target 3 at index 2 is not a class index in [0, 2] (the output has 3 classes)");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
