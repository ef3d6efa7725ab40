/**
 * The README's DP-SGD example runs and says what it should: it trains the same classifier
 * plainly and with DP-SGD on data it generates, and both reach well above chance (1/3) on the
 * held-out set, at a finite, positive ε. (tests/examples.test.ts runs every README block; this
 * one also reads what the example prints.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { root } from "./helpers/cli.ts";

function dpExample(): string {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  const found = blocks.filter((b) => b.includes("privateGradient(") && b.includes("RDPAccountant"));
  assert.equal(found.length, 1, "one README block trains with DP-SGD");
  return found[0];
}

test("the README's DP-SGD example trains both classifiers above chance and prints a finite ε", async () => {
  const scratch = join(root, "build", "examples");
  mkdirSync(scratch, { recursive: true });
  const path = join(scratch, "readme_dpsgd.ts");
  writeFileSync(path, dpExample().replace(/from "jacobian-wasm"/g, `from ${JSON.stringify(pathToFileURL(join(root, "mod.ts")).href)}`) + "\nexport {};\n");
  const printed: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void printed.push(args.join(" "));
  try {
    await import(pathToFileURL(path).href);
  } finally {
    console.log = log;
    rmSync(path, { force: true });
  }
  const text = printed.join("\n");
  const plain = /plain SGD: test accuracy ([\d.]+)%/.exec(text);
  const dp = /DP-SGD: +test accuracy ([\d.]+)% at ε = ([\d.]+), δ = 1e-5/.exec(text);
  assert.ok(plain && dp, `unexpected output:\n${text}`);
  // Chance is 33%; the classes overlap, so the best possible (Bayes) accuracy is 86.5%.
  assert.ok(Number(plain[1]) > 70, `plain accuracy ${plain[1]}%`);
  assert.ok(Number(dp[1]) > 60, `DP-SGD accuracy ${dp[1]}%`);
  const epsilon = Number(dp[2]);
  assert.ok(Number.isFinite(epsilon) && epsilon > 0 && epsilon < 10, `ε ${epsilon}`);
});
