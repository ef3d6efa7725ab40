// `npm test`: runs every file in tests/ under node, deno and bun, then prints one line
// `tests: N passed, N failed` summed over the three runtimes. Exits non-zero if any failed.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const files = readdirSync(join(root, "tests"))
  .filter((f) => f.endsWith(".test.ts"))
  .sort()
  .map((f) => join("tests", f));
const only = process.argv.slice(2);

// Each runner prints its own summary; these read the counts back out of it.
const runtimes = [
  {
    name: "node",
    command: process.execPath,
    args: ["--import", "tsx", "--test", "--test-reporter=spec", ...files],
    count(out) {
      return { passed: lastNumber(out, /^\S+ pass (\d+)$/gm), failed: lastNumber(out, /^\S+ fail (\d+)$/gm) };
    },
  },
  {
    name: "deno",
    command: bin("deno"),
    args: ["test", "-A", "--no-check", ...files],
    count(out) {
      const m = [...plain(out).matchAll(/(?:ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed/g)].pop();
      return m ? { passed: Number(m[1]), failed: Number(m[3]) } : undefined;
    },
  },
  {
    name: "bun",
    command: bin("bun"),
    // bun alone stops a test after 5 s by default; the CLI and property tests may take longer on a busy machine.
    args: ["test", "--timeout=300000", ...files.map((f) => "./" + f)],
    count(out) {
      return { passed: lastNumber(out, /^\s*(\d+) pass$/gm), failed: lastNumber(out, /^\s*(\d+) fail$/gm) };
    },
  },
].filter((r) => only.length === 0 || only.includes(r.name));

function plain(text) {
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}
function lastNumber(text, re) {
  const m = [...plain(text).matchAll(re)].pop();
  return m ? Number(m[1]) : undefined;
}

let passed = 0;
let failed = 0;
let broken = false;

// The types first: every runtime below runs the sources without checking them.
if (only.length === 0) {
  console.log("=== typecheck (tsc --noEmit) ===");
  const check = spawnSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json", "--noEmit"], {
    cwd: root,
    encoding: "utf8",
  });
  process.stdout.write((check.stdout ?? "") + (check.stderr ?? ""));
  console.log(check.status === 0 ? "typecheck: ok" : "typecheck: FAILED");
  if (check.status !== 0) broken = true;
}
for (const runtime of runtimes) {
  console.log(`\n=== ${runtime.name} ===`);
  const run = spawnSync(runtime.command, runtime.args, { cwd: root, encoding: "utf8", maxBuffer: 1 << 28 });
  const out = (run.stdout ?? "") + (run.stderr ?? "");
  process.stdout.write(out);
  const counts = runtime.count(out);
  if (!counts || counts.passed === undefined || counts.failed === undefined) {
    console.log(`${runtime.name}: could not read its test summary (exit code ${run.status})`);
    broken = true;
    failed += 1;
    continue;
  }
  passed += counts.passed;
  failed += counts.failed;
  console.log(`${runtime.name}: ${counts.passed} passed, ${counts.failed} failed`);
  if (run.status !== 0 && counts.failed === 0) {
    console.log(`${runtime.name}: exited with code ${run.status}`);
    broken = true;
  }
}
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || broken ? 1 : 0);
