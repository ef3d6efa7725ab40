/**
 * `npm run bench`: the public cases, GEMM against TF.js and the one-pass speedup as the batch
 * grows, on node, deno and bun; optionally side by side with PyTorch (`--torch`).
 *
 *   npm run bench                              table, this runtime (node)
 *   npm run bench -- --json                    one JSON line per row (bench/rows.ts)
 *   npm run bench -- --runtime all             node, then deno, then bun (each its own process)
 *   npm run bench -- --markdown                the README's tables (ratios only): all runtimes and PyTorch
 *   npm run bench -- --readme README.md --plot docs/bench.svg   the same, written into the README
 *                                              (between its bench:begin/end markers), and the plot
 *   options: --quick, --case NAME (repeatable: seed3d mlp cnn gemm seed3d-scaling mlp-scaling mlp-big soak),
 *            --from FILE, --timeout S, --python PATH, --torch-peer PATH (see --help)
 *
 * Also runs as `deno run -A bench/bench.ts` and `bun bench/bench.ts`.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type CaseName, caseRows, scalingRows, where } from "./cases.ts";
import { bigRows } from "./quantities.ts";
import { soakRows } from "./soak.ts";
import { gemmRows } from "./gemm.ts";
import { currentRuntime, effort, glibcTunables, loadAverage, progress, RUNTIMES, type RuntimeName } from "./measure.ts";
import { humanReport, markdownReport, svgReport } from "./report.ts";
import type { Row, TorchRow } from "./rows.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CASE_NAMES = ["gemm", "seed3d", "mlp", "cnn", "seed3d-scaling", "mlp-scaling", "mlp-big", "soak"] as const;
type Section = (typeof CASE_NAMES)[number];

const USAGE = `usage: npm run bench -- [--json] [--markdown] [--plot FILE.svg] [--quick]
                      [--runtime node|deno|bun|all] [--torch] [--case NAME ...] [--from FILE]
  --json          one JSON line per row on stdout (progress goes to stderr)
  --markdown      the README's tables: ratios only, with the machine and the date
                  (implies --runtime all and --torch unless --runtime / --no-torch are given)
  --plot FILE     writes the SVG (speedup over the naive loop vs N; GEMM against TF.js)
  --quick         shorter timings, fewer batch sizes
  --runtime R     node, deno, bun, a comma list, or all (default: this runtime); each runtime
                  other than this one runs as a child process
  --torch         also runs PyTorch (torch_peer.py) before, between and after the runtimes
  --no-torch      not even with --markdown
  --timeout S     stops a runtime's child process after S seconds (default 600)
  --case NAME     only these: ${CASE_NAMES.join(", ")}
  --from FILE     no measuring: renders the table/--markdown/--plot from saved --json output
  --readme FILE   puts the --markdown tables into FILE between the lines
                  <!-- bench:begin --> and <!-- bench:end --> (README.md's "Benchmarks")
  --python PATH   the Python with torch (default /usr/bin/python3)
  --torch-peer F  the peer script (default bench/torch_peer.py)`;

export interface Options {
  json: boolean;
  markdown: boolean;
  plot?: string;
  quick: boolean;
  runtimes: RuntimeName[];
  torch: boolean;
  sections: Section[];
  python: string;
  torchPeer: string;
  from?: string;
  readme?: string;
  timeoutSeconds: number;
}

export function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      json: { type: "boolean", default: false },
      markdown: { type: "boolean", default: false },
      plot: { type: "string" },
      quick: { type: "boolean", default: false },
      runtime: { type: "string" },
      torch: { type: "boolean", default: false },
      "no-torch": { type: "boolean", default: false },
      case: { type: "string", multiple: true },
      python: { type: "string", default: "/usr/bin/python3" },
      "torch-peer": { type: "string", default: join(ROOT, "bench", "torch_peer.py") },
      from: { type: "string" },
      readme: { type: "string" },
      timeout: { type: "string", default: "600" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const markdown = values.markdown! || values.readme !== undefined;
  const runtime = values.runtime ?? (markdown ? "all" : currentRuntime());
  const runtimes = runtime === "all" ? [...RUNTIMES] : runtime.split(",");
  for (const r of runtimes) {
    if (!RUNTIMES.includes(r as RuntimeName)) throw new Error(`--runtime must be node, deno, bun or all, got "${r}"`);
  }
  if (!(Number(values.timeout) > 0)) throw new Error(`--timeout must be a positive number of seconds, got "${values.timeout}"`);
  const sections = (values.case ?? [...CASE_NAMES]) as Section[];
  for (const s of sections) {
    if (!CASE_NAMES.includes(s)) throw new Error(`--case must be one of ${CASE_NAMES.join(", ")}, got "${s}"`);
  }
  return {
    json: values.json!,
    markdown,
    plot: values.plot,
    quick: values.quick!,
    runtimes: runtimes as RuntimeName[],
    torch: (values.torch! || markdown) && !values["no-torch"],
    sections,
    python: values.python!,
    torchPeer: values["torch-peer"]!,
    from: values.from,
    readme: values.readme,
    timeoutSeconds: Number(values.timeout),
  };
}

/** Runs the selected sections in this process, GEMM first (it writes raw WASM memory). */
async function runHere(options: Options, emit: (row: Row) => void): Promise<void> {
  const level = effort(options.quick);
  const want = (s: Section) => options.sections.includes(s);
  if (want("gemm")) for (const row of await gemmRows(level)) emit(row);
  for (const name of ["seed3d", "mlp", "cnn"] as CaseName[]) {
    collectGarbage();
    if (want(name)) for (const row of await caseRows(name, level)) emit(row);
  }
  collectGarbage();
  if (want("seed3d-scaling")) for (const row of scalingRows("seed3d", level)) emit(row);
  if (want("mlp-scaling")) for (const row of scalingRows("mlp", level)) emit(row);
  // Last: the quantities on a network whose J would take 2.5 GiB, with peak resident memory.
  collectGarbage();
  if (want("mlp-big")) for (const row of bigRows(level, where)) emit(row);
  // Resident and WASM memory after 10,000 calls of varying batch and shape.
  collectGarbage();
  if (want("soak")) for (const row of soakRows(level, where)) emit(row);
}

/**
 * A full garbage collection where the runtime offers one (Bun.gc; node and deno run this
 * script with --expose-gc): each case starts from a collected heap, so the garbage of the one
 * before (mlp leaves 240 MB results and TF.js behind) is not billed to it. Bun's new results
 * on cnn, timed right after mlp, took 57 ms instead of 28 ms without it.
 */
function collectGarbage(): void {
  const runtime = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (runtime.Bun) runtime.Bun.gc(true);
  else runtime.gc?.();
}

/** The command that runs this script under `runtime`. */
function commandFor(runtime: RuntimeName): [string, string[]] {
  const script = join(ROOT, "bench", "bench.ts");
  const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
  if (runtime === "deno") return [bin("deno"), ["run", "-A", "--v8-flags=--expose-gc", script]];
  if (runtime === "bun") return [bin("bun"), [script]];
  return [currentRuntime() === "node" ? process.execPath : "node", ["--expose-gc", "--import", "tsx", script]];
}

/** Runs the cases under another runtime; its JSON lines become rows here as they arrive. */
function runChild(runtime: RuntimeName, options: Options, emit: (row: Row) => void): Promise<void> {
  const [command, args] = commandFor(runtime);
  const childArgs = [...args, "--json", "--runtime", runtime, ...(options.quick ? ["--quick"] : [])];
  for (const s of options.sections) childArgs.push("--case", s);
  progress(`starting ${runtime}: ${command} ${childArgs.join(" ")}`);
  return new Promise((resolve) => {
    const child = spawn(command, childArgs, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    let pending = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (text: string) => {
      pending += text;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line.startsWith("{")) emit(JSON.parse(line) as Row);
        else if (line) process.stderr.write(`[${runtime} stdout] ${line}\n`);
      }
    });
    // A hung runtime must not hold up the others: stop it, keep the rows it printed.
    const timer = setTimeout(() => {
      progress(`${runtime} still running after ${options.timeoutSeconds} s: stopping it`);
      child.kill("SIGKILL");
    }, options.timeoutSeconds * 1000);
    child.on("error", (error) => {
      clearTimeout(timer);
      progress(`${runtime} could not start: ${error.message}`);
      resolve();
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) progress(`${runtime} ended with ${signal ?? `exit code ${code}`}: its rows may be missing`);
      resolve();
    });
  });
}

/** PyTorch's rows for the selected public cases, measured now, between two runtimes' runs. */
function runTorch(options: Options, ranAfter: RuntimeName | null, ranBefore: RuntimeName | null): TorchRow[] {
  const wanted = (["seed3d", "mlp", "cnn"] as const).filter((c) => options.sections.includes(c));
  if (wanted.length === 0) return [];
  if (!existsSync(options.torchPeer)) {
    progress(`--torch: ${options.torchPeer} not found (pass --torch-peer PATH)`);
    return [];
  }
  const version = spawnSync(options.python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
  if (version.status !== 0) {
    progress(`--torch: ${options.python} cannot import torch (apt-get install -y python3-torch libopenblas0-pthread): ` +
      `${(version.stderr || String(version.error)).trim().split("\n").pop()}`);
    return [];
  }
  progress(`PyTorch ${version.stdout.trim()} (after ${ranAfter ?? "-"}, before ${ranBefore ?? "-"}): ${options.torchPeer}`);
  const args = [options.torchPeer, ...wanted.flatMap((c) => ["--case", c])];
  const run = spawnSync(options.python, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (run.status !== 0) {
    progress(`--torch: torch_peer.py exited with ${run.status}`);
    return [];
  }
  return run.stdout.split("\n").filter((l) => l.startsWith("{")).map((line) => {
    const r = JSON.parse(line);
    return {
      case: r.case,
      variant: "torch",
      runtime: "python",
      peer: `torch ${version.stdout.trim()} (functorch vmap(grad); loop: one backward per sample)`,
      ran_after: ranAfter,
      ran_before: ranBefore,
      load_avg_1m: loadAverage(),
      glibc_tunables: glibcTunables(),
      N: r.N,
      D: r.D,
      functorch_ms: r.functorch_ms,
      loop_ms: r.loop_ms,
      threads: r.threads,
    } satisfies TorchRow;
  });
}

const BEGIN = "<!-- bench:begin -->";
const END = "<!-- bench:end -->";

/** Replaces what lies between the markers in `file` (nothing else of the file changes). */
function replaceBetweenMarkers(file: string, text: string): void {
  const content = readFileSync(file, "utf8");
  const begin = content.indexOf(BEGIN);
  const end = content.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`${file} has no "${BEGIN}" … "${END}" section to fill`);
  writeFileSync(file, `${content.slice(0, begin + BEGIN.length)}\n${text.trimEnd()}\n${content.slice(end)}`);
}

export async function main(argv: string[]): Promise<void> {
  const options = parseOptions(argv);
  const rows: Row[] = [];
  const emit = (row: Row) => {
    rows.push(row);
    if (options.json) console.log(JSON.stringify(row));
  };
  let measured = new Date();
  if (options.from) {
    for (const line of readFileSync(options.from, "utf8").split("\n")) if (line.startsWith("{")) emit(JSON.parse(line));
    measured = statSync(options.from).mtime;
  } else {
    const here = currentRuntime();
    let previous: RuntimeName | null = null;
    for (const runtime of options.runtimes) {
      if (options.torch) for (const row of runTorch(options, previous, runtime)) emit(row);
      if (options.runtimes.length === 1 && runtime === here) await runHere(options, emit);
      else await runChild(runtime, options, emit);
      previous = runtime;
    }
    if (options.torch) for (const row of runTorch(options, previous, null)) emit(row);
  }
  if (!options.json && !options.markdown) console.log(humanReport(rows));
  if (options.readme) {
    replaceBetweenMarkers(options.readme, markdownReport(rows, measured));
    progress(`wrote the tables into ${options.readme}`);
  } else if (options.markdown) console.log(markdownReport(rows, measured));
  if (options.plot) {
    mkdirSync(dirname(options.plot), { recursive: true });
    writeFileSync(options.plot, svgReport(rows, measured));
    progress(`wrote ${options.plot}`);
  }
}

if (import.meta.main ?? process.argv[1]?.endsWith(join("bench", "bench.ts"))) {
  try {
    await main(process.argv.slice(2));
    // The TF.js WASM backend leaves nothing running, but make the exit independent of it.
    process.exit(0);
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(2);
  }
}
