// `npm run docs`: the HTML API reference, generated from the JSDoc of the two entry points
// (mod.ts, precompiled.ts) by `deno doc --html` into docs/api/. The documentation is linted
// first (`deno doc --lint`: every export documented, no private type exposed), so a gap fails
// here rather than showing up as an empty page. Deno is the npm package's (a devDependency),
// run through its own launcher, so this works wherever `npm install` did. `--quiet` hides
// Deno's warnings about type packages in node_modules it cannot resolve (@types/node's
// triple-slash references, bun-types' `bun:` imports); lint errors are still printed.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const deno = join(root, "node_modules", "deno", "bin.cjs");
const entries = ["mod.ts", "precompiled.ts"];
const out = join(root, "docs", "api");
// Written beside the final place, then swapped in: a failed run leaves the old docs/api/ whole.
const staging = join(root, "docs", `api.${process.pid}.tmp`);

if (!existsSync(deno)) {
  console.error("docs: node_modules/deno is missing; run `npm install` first");
  process.exit(1);
}

function run(args) {
  const result = spawnSync(process.execPath, [deno, ...args], { cwd: root, stdio: "inherit" });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

if (run(["doc", "--quiet", "--lint", ...entries]) !== 0) {
  console.error("docs: `deno doc --lint` found undocumented or private-type exports (above)");
  process.exit(1);
}
rmSync(staging, { recursive: true, force: true });
if (run(["doc", "--quiet", "--html", "--name=jacobian-wasm", `--output=${staging}`, ...entries]) !== 0) {
  rmSync(staging, { recursive: true, force: true });
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
renameSync(staging, out);

let files = 0;
let bytes = 0;
(function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else {
      files++;
      bytes += statSync(path).size;
    }
  }
})(out);
console.log(`docs: wrote docs/api/ (${files} files, ${(bytes / 1024).toFixed(0)} KiB); open docs/api/index.html`);
