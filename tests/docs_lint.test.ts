/**
 * The published surface stays documented: `deno doc --lint` finds no missing doc comment, no
 * missing explicit type and no public type referring to a private one, and `deno publish
 * --dry-run` (JSR's checks, slow types included) reports no error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { root } from "./helpers/cli.ts";

const deno = join(root, "node_modules", ".bin", process.platform === "win32" ? "deno.cmd" : "deno");

function run(args: string[]) {
  const result = spawnSync(deno, args, { cwd: root, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test("deno doc --lint reports no error on the entry points", () => {
  const { status, output } = run(["doc", "--lint", "--quiet", "mod.ts", "precompiled.ts"]);
  assert.equal(status, 0, output.split("\n").filter((l) => /error|-->/.test(l)).slice(0, 20).join("\n"));
});

test("deno publish --dry-run reports no error", () => {
  const { status, output } = run(["publish", "--dry-run", "--allow-dirty"]);
  assert.equal(status, 0, output);
  assert.match(output, /Dry run complete/);
  assert.doesNotMatch(output, /tests\/|bench\//, "only the library's files are published");
});
