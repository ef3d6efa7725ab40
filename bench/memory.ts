/**
 * Peak resident memory of the CLI on a batch whose J does not fit the budget: a 1024-256-256-10
 * MLP (Linear/ReLU, D = 330,762) at N = 2048, where J is 2048 × 330,762 floats = 2.52 GiB. Runs
 * `jacobian-wasm jacobian --quantity batch_l2` and `--quantity jacobian` (per-sample
 * cross-entropy gradients written to a 2.5 GiB .npy) in child processes on node, deno and bun,
 * and reports each child's peak RSS (GNU time's %M, or VmHWM polled from /proc), the wall time
 * and whether it stayed under the 1 GiB target. The written .npy is checked (header, size, the
 * first and last 4 samples' rows against the library run in this process) and deleted. Rows
 * are equal bit for bit where the child used the same WebAssembly build as this process
 * (`reference_build`; node 20 runs the baseline SIMD build, deno and bun the relaxed one, whose
 * fused multiply-adds round differently): run this script under deno or bun to check theirs.
 *
 *   node --import tsx bench/memory.ts [--n 2048] [--runtimes node,deno,bun] [--runs batch_l2,jacobian] [--dir DIR]
 *
 * One JSON line per run on stdout; progress on stderr.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { manualSeed, modelFromSpec, perSampleGradients, randn, readNpy, simdBuild, writeNpy, writeSafetensors } from "../mod.ts";
import type { ModelSpec, Module, Target, Tensor } from "../mod.ts";

const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const GIB = 2 ** 30;
const TARGET_BYTES = GIB;
const SPEC: ModelSpec = {
  format: "torch.nn.Sequential",
  layers: [
    { type: "Linear", in_features: 1024, out_features: 256 },
    { type: "ReLU" },
    { type: "Linear", in_features: 256, out_features: 256 },
    { type: "ReLU" },
    { type: "Linear", in_features: 256, out_features: 10 },
  ],
};
/** Samples whose rows of the written file are checked: the first and the last few. */
const CHECKED = 4;

type Runtime = "node" | "deno" | "bun";
type Run = "batch_l2" | "jacobian";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "2048" },
    runtimes: { type: "string", default: "node,deno,bun" },
    runs: { type: "string", default: "batch_l2,jacobian" },
    dir: { type: "string" },
  },
});
const N = Number(values.n);
const runtimes = values.runtimes!.split(",") as Runtime[];
const runs = values.runs!.split(",") as Run[];

const dir = mkdtempSync(join(values.dir ?? tmpdir(), "jacobian-wasm-memory-"));
try {
  const { net, x, y, files } = writeInputs(dir);
  const D = net.parameters().reduce((sum, [, p]) => sum + p.data.length, 0);
  const jBytes = N * D * 4;
  log(`N = ${N}, D = ${D}: J is ${(jBytes / GIB).toFixed(2)} GiB; files in ${dir}`);
  const reference = runs.includes("jacobian") ? referenceRows(net, x, y) : undefined;

  for (const runtime of runtimes) {
    for (const run of runs) {
      const out = join(dir, run === "jacobian" ? "G.npy" : "l2.npy");
      if (run === "jacobian") {
        const free = statfsSync(dir).bavail * statfsSync(dir).bsize;
        if (free < jBytes * 1.1) {
          log(`skipping ${runtime} jacobian: ${(free / GIB).toFixed(1)} GiB free in ${dir}, the file needs ${(jBytes / GIB).toFixed(2)}`);
          continue;
        }
      }
      const args = [
        "jacobian", "--model", files.model, "--weights", files.weights, "--input", files.input,
        "--target", files.target, "--loss", "cross_entropy", "--reduction", "sum", "--quantity", run, "--out", out,
      ];
      log(`${runtime} ${run} ...`);
      const measured = await measure(command(runtime), args);
      if (measured.status !== 0) throw new Error(`${runtime} ${run} exited ${measured.status}: ${measured.stderr}`);
      const record: Record<string, unknown> = {
        runtime,
        quantity: run,
        N,
        D,
        peak_rss_mib: Math.round(measured.peakBytes / 2 ** 20),
        under_1_gib: measured.peakBytes < TARGET_BYTES,
        elapsed_s: Math.round(measured.elapsedMs / 100) / 10,
        rss_from: measured.source,
        output_bytes: statSync(out).size,
      };
      if (run === "jacobian") {
        Object.assign(record, checkWrittenFile(out, D, reference!, net, x, y));
        rmSync(out);
      } else {
        const l2 = readNpy(new Uint8Array(readFileSync(out)));
        record.batch_l2_shape = l2.shape;
      }
      console.log(JSON.stringify(record));
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function log(message: string): void {
  console.error(`[memory] ${message}`);
}

/** The model, weights, a randn batch and int64 class labels, as the CLI reads them. */
function writeInputs(dir: string) {
  manualSeed(0);
  const net = modelFromSpec(SPEC);
  const x = randn([N, 1024], 1);
  const labels = BigInt64Array.from({ length: N }, (_, n) => BigInt((n * 2654435761) % 10));
  const files = {
    model: join(dir, "model.json"),
    weights: join(dir, "weights.safetensors"),
    input: join(dir, "x.npy"),
    target: join(dir, "y.npy"),
  };
  writeFileSync(files.model, JSON.stringify(SPEC));
  writeFileSync(files.weights, writeSafetensors(Object.entries(net.stateDict())));
  writeFileSync(files.input, writeNpy(x.data, x.shape));
  writeFileSync(files.target, writeNpy(labels, [N]));
  const y: Target = { shape: [N], data: Int32Array.from(labels, Number) };
  return { net, x, y, files };
}

/** How each runtime runs cli.ts (as tests/helpers/cli.ts does). */
function command(runtime: Runtime): string[] {
  const cli = join(root, "cli.ts");
  if (runtime === "deno") return [join(root, "node_modules", ".bin", "deno"), "run", "-A", cli];
  if (runtime === "bun") return [join(root, "node_modules", ".bin", "bun"), cli];
  return [process.execPath, "--import", "tsx", cli];
}

interface Measured {
  status: number | null;
  stderr: string;
  peakBytes: number;
  elapsedMs: number;
  source: string;
}

/**
 * Runs a command and measures its peak RSS: under GNU time when there is one (its %M is the
 * largest resident set of the process and its children, e.g. tsx's esbuild), else by polling
 * the child's VmHWM (its own high-water mark) in /proc.
 */
function measure(argv: string[], args: string[]): Promise<Measured> {
  const gnuTime = "/usr/bin/time";
  const useTime = existsSync(gnuTime);
  const report = join(dir, "time.txt");
  const full = useTime ? [gnuTime, "-f", "%M", "-o", report, ...argv, ...args] : [...argv, ...args];
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(full[0], full.slice(1), { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    let polled = 0;
    const poll = useTime ? undefined : setInterval(() => {
      try {
        const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (match) polled = Math.max(polled, Number(match[1]) * 1024);
      } catch {
        // The child has exited between two polls.
      }
    }, 20);
    child.on("error", reject);
    child.on("close", (status) => {
      if (poll) clearInterval(poll);
      const elapsedMs = performance.now() - start;
      const peakBytes = useTime ? Number(readFileSync(report, "utf8").trim().split("\n").pop()) * 1024 : polled;
      resolve({ status, stderr, peakBytes, elapsedMs, source: useTime ? "GNU time %M" : "VmHWM polled" });
    });
  });
}

/** The rows of the first and last CHECKED samples, from one streamed run of the whole batch here. */
function referenceRows(net: Module, x: Tensor, y: Target): Map<number, Float32Array> {
  const keep = new Map<number, Float32Array>();
  const wanted = (n: number) => n < CHECKED || n >= N - CHECKED;
  perSampleGradients(net, x, y, {
    loss: "cross_entropy",
    reduction: "sum",
    onChunk: (first, rows) => {
      const D = rows.shape[1];
      for (let s = 0; s < rows.shape[0]; s++) {
        if (wanted(first + s)) keep.set(first + s, rows.data.slice(s * D, (s + 1) * D));
      }
    },
  });
  return keep;
}

/**
 * The written .npy's header and size, its checked rows against the whole-batch run here
 * (the same computation: equal bit for bit) and against `perSampleGradients` of those samples
 * alone (a batch of 2·CHECKED: equal up to float32 rounding of the different batch shape).
 */
function checkWrittenFile(
  path: string,
  D: number,
  reference: Map<number, Float32Array>,
  net: Module,
  x: Tensor,
  y: Target,
): Record<string, unknown> {
  const fd = openSync(path, "r");
  try {
    const start = new Uint8Array(256);
    readSync(fd, start, 0, start.length, 0);
    const headerLength = 10 + new DataView(start.buffer).getUint16(8, true);
    const header = new TextDecoder().decode(start.subarray(10, headerLength)).trim();
    const expectedHeader = `{'descr': '<f4', 'fortran_order': False, 'shape': (${N}, ${D}), }`;
    if (header !== expectedHeader) throw new Error(`${path}: header ${header}, expected ${expectedHeader}`);
    const size = statSync(path).size;
    if (size !== headerLength + N * D * 4) throw new Error(`${path}: ${size} bytes, expected ${headerLength + N * D * 4}`);

    const samples = [...reference.keys()].sort((a, b) => a - b);
    const rows = samples.map((n) => {
      const row = new Float32Array(D);
      readSync(fd, new Uint8Array(row.buffer), 0, D * 4, headerLength + n * D * 4);
      return row;
    });
    const bitwise = samples.every((n, i) => Buffer.compare(Buffer.from(rows[i].buffer), Buffer.from(reference.get(n)!.buffer)) === 0);

    // The same samples as a batch of their own, through the in-memory path.
    const alone = subsetGradients(samples, net, x, y);
    let maxRelative = 0;
    samples.forEach((_, i) => {
      let scale = 0;
      for (let j = 0; j < D; j++) scale = Math.max(scale, Math.abs(alone.data[i * D + j]));
      for (let j = 0; j < D; j++) maxRelative = Math.max(maxRelative, Math.abs(rows[i][j] - alone.data[i * D + j]) / (scale || 1));
    });
    return {
      header,
      rows_checked: samples.length,
      reference_build: simdBuild(),
      rows_bitwise_equal_full_batch: bitwise,
      rows_max_rel_diff_subset_batch: maxRelative,
    };
  } finally {
    closeSync(fd);
  }
}

function subsetGradients(samples: number[], net: Module, x: Tensor, y: Target): Tensor {
  const width = x.shape[1];
  const xs = new Float32Array(samples.length * width);
  samples.forEach((n, i) => xs.set(x.data.subarray(n * width, (n + 1) * width), i * width));
  const ys = Int32Array.from(samples, (n) => Number(y.data[n]));
  return perSampleGradients(net, { shape: [samples.length, width], data: xs }, { shape: [samples.length], data: ys }, {
    loss: "cross_entropy",
    reduction: "sum",
  });
}
