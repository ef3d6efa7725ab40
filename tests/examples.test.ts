/**
 * Every `@example` in the library's JSDoc and every TypeScript block of the README runs:
 * each is written to a module importing the local mod.ts instead of "jacobian-wasm", then
 * imported.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { root } from "./helpers/cli.ts";

/** The ```ts blocks of a file; in source files, only those inside comments. */
function examples(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const blocks: string[] = [];
  const pattern = file.endsWith(".md") ? /```ts\n([\s\S]*?)```/g : /\* ```ts\n([\s\S]*?)\s*\* ```/g;
  for (const match of text.matchAll(pattern)) {
    const body = file.endsWith(".md") ? match[1] : match[1].split("\n").map((line) => line.replace(/^\s*\* ?/, "")).join("\n");
    blocks.push(body);
  }
  return blocks;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".generated.ts") ? [path] : [];
  });
}

const files = [join(root, "mod.ts"), ...sources(join(root, "src")), join(root, "README.md")];
const scratch = join(root, "build", "examples");

test("the library's documented examples exist for its public functions", () => {
  const count = files.reduce((n, f) => n + examples(f).length, 0);
  assert.ok(count >= 40, `only ${count} examples found`);
});

for (const file of files) {
  const blocks = examples(file);
  if (blocks.length === 0) continue;
  test(`the examples in ${relative(root, file)} run`, async () => {
    mkdirSync(scratch, { recursive: true });
    for (const [i, block] of blocks.entries()) {
      // Examples that read files or need a precompiled module are shown, not run.
      if (/await (readFileBytes|writeFileAtomic)|precompiledModule/.test(block)) continue;
      const path = join(scratch, `${relative(root, file).replace(/[\\/.]/g, "_")}_${i}.ts`);
      const source = block
        .replace(/from "jacobian-wasm"/g, `from ${JSON.stringify(pathToFileURL(join(root, "mod.ts")).href)}`)
        .replace(/from "\.\/src\//g, `from "${pathToFileURL(join(root, "src")).href}/`)
        .replace(/from "\.\//g, `from "${pathToFileURL(dirname(file)).href}/`);
      writeFileSync(path, source + "\nexport {};\n");
      try {
        await import(pathToFileURL(path).href);
      } catch (error) {
        assert.fail(`example ${i} of ${relative(root, file)} failed: ${(error as Error).message}\n${block}`);
      } finally {
        rmSync(path, { force: true });
      }
    }
  });
}
