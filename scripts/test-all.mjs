// `npm test`: the typecheck, then every file in tests/ under node, deno and bun, then one line
// `tests: N passed, N failed` summed over the three runtimes. Exits non-zero if any failed.
//
// It says how far it has got: a line as each runtime starts and ends (its counts and time),
// and as each test file finishes (on a terminal, one status line updated in place instead).
// A runtime's whole output goes to build/test-logs/<runtime>.log, and is printed too when
// the runtime has a failure.
//
//   node scripts/test-all.mjs [node|deno|bun ...]   those runtimes only (no typecheck)
//   node scripts/test-all.mjs ... tests/x.test.ts     those test files only
//   node scripts/test-all.mjs --quick               `npm run test:quick`: see QUICK below
import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join, relative } from "node:path";
import { MARKER } from "./test-progress-reporter.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const allFiles = readdirSync(join(root, "tests"))
  .filter((f) => f.endsWith(".test.ts"))
  .sort()
  .map((f) => join("tests", f));

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const only = argv.filter((a) => ["node", "deno", "bun"].includes(a));
const chosenFiles = argv.filter((a) => a.endsWith(".test.ts")).map((f) => relative(root, join(process.cwd(), f)));
const unknown = argv.filter((a) => a !== "--quick" && !only.includes(a) && !a.endsWith(".test.ts"));
if (unknown.length > 0) {
  console.error(`test-all: unknown argument ${unknown.map((a) => `"${a}"`).join(", ")}; give --quick, runtimes (node, deno, bun) and/or test files`);
  process.exit(2);
}

// The inner loop's run, 3-5 minutes on 2 cores instead of ~12: node only, every property
// with a small budget, and without the files that start a browser, a workerd server, an npm
// install or a long soak. What it leaves out is printed at the start and at the end.
const QUICK = {
  runtimes: ["node"],
  env: { JACOBIAN_WASM_PROPERTY_RUNS: "10", JACOBIAN_WASM_FUZZ_INPUTS: "40" },
  skipped: {
    "tests/browser.test.ts": "headless Chromium",
    "tests/workerd.test.ts": "a workerd server",
    "tests/package.test.ts": "npm pack and install, which rebuilds the kernels",
    "tests/soak.test.ts": "a long soak of repeated calls",
  },
};

const quickEnv = Object.fromEntries(Object.entries(QUICK.env).filter(([name]) => process.env[name] === undefined));
const files = (chosenFiles.length > 0 ? chosenFiles : allFiles).filter((f) => !(quick && f.replaceAll("\\", "/") in QUICK.skipped));
const wanted = only.length > 0 ? only : quick ? QUICK.runtimes : ["node", "deno", "bun"];

// Each runner prints its own summary; `count` reads the totals back out of it, `progress` reads
// a line of its output and says when a test or a file finished.
const runtimes = [
  {
    name: "node",
    command: process.execPath,
    args: [
      "--import", "tsx", "--test",
      "--test-reporter=spec", "--test-reporter-destination=stdout",
      `--test-reporter=${join(root, "scripts", "test-progress-reporter.mjs")}`, "--test-reporter-destination=stderr",
      ...files,
    ],
    count(out) {
      return { passed: lastNumber(out, /^\S+ pass (\d+)$/gm), failed: lastNumber(out, /^\S+ fail (\d+)$/gm) };
    },
    progress(line, tracker) {
      if (!line.startsWith(MARKER + " ")) return false;
      const [, passed, failed, ...path] = line.split(" ");
      tracker.fileDone(relative(root, path.join(" ")), Number(passed), Number(failed));
      return true; // not part of the runner's own output
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
    progress(line, tracker) {
      const start = /^running \d+ tests? from \.\/(.+)$/.exec(line);
      if (start) tracker.fileStart(start[1]);
      else if (/^(ok|FAILED) \| \d+ passed/.test(line)) tracker.fileStart(undefined); // the summary: the last file is done
      else if (/^\S.* \.\.\. ok( \(|$)/.test(line)) tracker.test(true);
      else if (/^\S.* \.\.\. FAILED( \(|$)/.test(line)) tracker.test(false);
      return false;
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
    progress(line, tracker) {
      const start = /^(tests[\\/]\S+\.test\.ts):$/.exec(line);
      if (start) tracker.fileStart(start[1]);
      else if (/^\s*\d+ pass$/.test(line)) tracker.fileStart(undefined); // the summary
      else if (line.startsWith("(pass) ")) tracker.test(true);
      else if (line.startsWith("(fail) ")) tracker.test(false);
      return false;
    },
  },
].filter((r) => wanted.includes(r.name));

function plain(text) {
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}
function lastNumber(text, re) {
  const m = [...plain(text).matchAll(re)].pop();
  return m ? Number(m[1]) : undefined;
}
function duration(ms) {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

const terminal = process.stdout.isTTY === true;

/** Counts a runtime's finished files and tests, and prints them: a line a file, or one status line on a terminal. */
class Tracker {
  constructor(name, total) {
    Object.assign(this, { name, total, started: Date.now(), done: 0, passed: 0, failed: 0, current: undefined, filePassed: 0, fileFailed: 0 });
    if (terminal) this.timer = setInterval(() => this.status(), 1000);
  }
  /** A runner that names each file as it starts it (deno, bun): the one before is done. */
  fileStart(file) {
    if (this.current !== undefined) this.fileDone(this.current, this.filePassed, this.fileFailed, true);
    Object.assign(this, { current: file, filePassed: 0, fileFailed: 0 });
    this.status();
  }
  test(passed) {
    if (passed) this.filePassed++;
    else this.fileFailed++;
    this.status();
  }
  fileDone(file, passed, failed) {
    this.done++;
    this.passed += passed;
    this.failed += failed;
    if (!terminal) {
      const counts = `${passed} passed${failed > 0 ? `, ${failed} FAILED` : ""}`;
      console.log(`  ${this.name.padEnd(4)} ${duration(Date.now() - this.started).padStart(6)}  [${String(this.done).padStart(String(this.total).length)}/${this.total}] ${file}: ${counts}`);
    }
    this.status();
  }
  status() {
    if (!terminal) return;
    const failed = this.failed + this.fileFailed;
    const line = `  ${this.name} ${duration(Date.now() - this.started)}: ${this.done}/${this.total} files, ` +
      `${this.passed + this.filePassed} passed${failed > 0 ? `, ${failed} failed` : ""}${this.current ? ` (${this.current})` : ""}`;
    process.stdout.write(`\r\x1b[K${line.slice(0, (process.stdout.columns || 100) - 1)}`);
  }
  end() {
    if (this.current !== undefined) this.fileStart(undefined);
    clearInterval(this.timer);
    if (terminal) process.stdout.write("\r\x1b[K");
  }
}

/** Runs a command to its end, handing each line of its output to `onLine` (which may drop it). */
function run(command, args, options, onLine = () => false) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, ...options.env } });
    const kept = { stdout: [], stderr: [] };
    for (const stream of ["stdout", "stderr"]) {
      let partial = "";
      child[stream].setEncoding("utf8");
      child[stream].on("data", (chunk) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop();
        for (const line of lines) if (!onLine(plain(line).replace(/\r$/, ""))) kept[stream].push(line);
      });
      child[stream].on("end", () => {
        if (partial !== "" && !onLine(plain(partial))) kept[stream].push(partial);
      });
    }
    child.on("error", (error) => kept.stderr.push(`could not start ${command}: ${error.message}`));
    child.on("close", (status) => {
      const text = (lines) => (lines.length > 0 ? lines.join("\n") + "\n" : "");
      resolve({ status, out: text(kept.stdout) + text(kept.stderr) });
    });
  });
}

let passed = 0;
let failed = 0;
let broken = false;
const times = [];
const started = Date.now();
const logs = join(root, "build", "test-logs");
mkdirSync(logs, { recursive: true });

if (quick) {
  console.log(`quick run: ${wanted.join(", ")} only; property tests at ${quickEnv.JACOBIAN_WASM_PROPERTY_RUNS ?? process.env.JACOBIAN_WASM_PROPERTY_RUNS} runs each, ` +
    `the fuzz test at ${quickEnv.JACOBIAN_WASM_FUZZ_INPUTS ?? process.env.JACOBIAN_WASM_FUZZ_INPUTS} inputs`);
  console.log(`not run: ${Object.entries(QUICK.skipped).map(([file, why]) => `${file} (${why})`).join(", ")}`);
}

// The types first: every runtime below runs the sources without checking them.
if (only.length === 0) {
  console.log("=== typecheck (tsc --noEmit) ===");
  const t = Date.now();
  const check = await run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json", "--noEmit"], {});
  process.stdout.write(check.out);
  console.log(check.status === 0 ? `typecheck: ok (${duration(Date.now() - t)})` : "typecheck: FAILED");
  times.push(`typecheck ${duration(Date.now() - t)}`);
  if (check.status !== 0) broken = true;
}
for (const runtime of runtimes) {
  console.log(`\n=== ${runtime.name}: ${files.length} test files ===`);
  const tracker = new Tracker(runtime.name, files.length);
  const result = await run(runtime.command, runtime.args, { env: quick ? quickEnv : {} }, (line) => runtime.progress(line, tracker));
  tracker.end();
  const elapsed = duration(Date.now() - tracker.started);
  times.push(`${runtime.name} ${elapsed}`);
  const log = join(logs, `${runtime.name}.log`);
  writeFileSync(log, result.out);
  const counts = runtime.count(result.out);
  const readable = counts && counts.passed !== undefined && counts.failed !== undefined;
  if (!readable || counts.failed > 0 || result.status !== 0) process.stdout.write(result.out); // the details of what went wrong
  if (!readable) {
    console.log(`${runtime.name}: could not read its test summary (exit code ${result.status}; output in ${relative(root, log)})`);
    broken = true;
    failed += 1;
    continue;
  }
  passed += counts.passed;
  failed += counts.failed;
  console.log(`${runtime.name}: ${counts.passed} passed, ${counts.failed} failed (${elapsed}; output in ${relative(root, log)})`);
  if (result.status !== 0 && counts.failed === 0) {
    console.log(`${runtime.name}: exited with code ${result.status}`);
    broken = true;
  }
}
console.log(`\n${duration(Date.now() - started)} in all (${times.join(", ")})`);
if (quick) {
  const left = ["node", "deno", "bun"].filter((r) => !wanted.includes(r));
  console.log(`quick run: not run: ${[...left, ...Object.keys(QUICK.skipped)].join(", ")}; ` +
    `properties at ${quickEnv.JACOBIAN_WASM_PROPERTY_RUNS ?? process.env.JACOBIAN_WASM_PROPERTY_RUNS} runs (npm test runs everything)`);
}
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || broken ? 1 : 0);
