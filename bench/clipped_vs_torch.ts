/**
 * DP-SGD's clipped gradient sum through the CLI against PyTorch functorch (issue: "Through the
 * CLI (`--time`), `clipped_sum` on the public `mlp` case is at least 10x faster than PyTorch
 * functorch computing per-sample gradients, norms, clip factors and the weighted sum (faster
 * of 1 and 2 threads, same run), and at least 4x in geometric mean over mlp, cnn, LeNet-5 and
 * a 1024-512-512-10 MLP"). With --quantity per_sample_gradients, the same measurement for the
 * CLI's default quantity, per-sample gradients, against functorch's vmap(grad) alone (issue 14:
 * "Through the CLI's `--time` on deno, LeNet-5, the audio CNN and the wide MLP described above
 * reach a geometric mean of at least 1.8x functorch"; their summary key is geomean_issue14).
 *
 *   node --import tsx bench/clipped_vs_torch.ts [--quantity clipped_sum|per_sample_gradients]
 *        [--markdown] [--quick] [--rounds 3] [--runtimes node,deno,bun] [--case mlp ...]
 *        [--repeats R] [--budget-ms 2000] [--torch-reps 20] [--no-hugetlb]
 *        [--python /usr/bin/python3] [--dir DIR] [--keep]
 *
 * Per case, this writes model.json, weights.safetensors, x.npy (float32) and y.npy (int64)
 * into a temporary directory. Then, in one sitting and in rounds (round after round: per case
 * PyTorch, then node, deno and bun; the order of the runtimes rotates each round), it runs
 *   jacobian-wasm jacobian --model … --weights … --input … --target … --loss cross_entropy
 *       --reduction sum --quantity clipped_sum --max-norm 1 --out ours.npy --time R
 * on each runtime (the CLI's own timing: median of R runs after one cold run, file I/O
 * excluded), and bench/torch_clipped.py, which loads the same files and times functorch's
 * vmap(grad) per-sample gradients + norms + clip factors + weighted sum with 1 and with 2
 * threads (median of --torch-reps calls after a warm-up each).
 *
 * --quantity per_sample_gradients drops `--quantity clipped_sum --max-norm 1` from the CLI's
 * command line (its default quantity with a loss: the per-sample gradients, N × D; the timed runs
 * copy each chunk of rows into one reused buffer, one more untimed run writes ours.npy), and
 * PyTorch's timed call stops after vmap(grad) (fresh [N, ...] tensors per parameter each call,
 * as functorch returns them). Its default cases are issue 14's (lenet5-tanh, audio1d and
 * mlp1024-256: bench/layers.ts's LeNet-5 and audio CNN, the 1024-256-256-10 MLP of
 * bench/quantities.ts, at bench/layers.ts's batch sizes) and the public mlp and cnn.
 *
 * PyTorch also runs a second time per round (after the runtimes) under
 * GLIBC_TUNABLES=glibc.malloc.hugetlb=1: functorch's per-sample gradients are N × D floats of
 * new memory per call, which this VM hands out slowly in 4 KiB pages; with transparent huge
 * pages PyTorch gets faster (README, "Large results"), so that figure is reported beside the
 * default one (`torch_hugetlb_ms`, `speedup_vs_hugetlb`; --no-hugetlb skips it). The headline
 * `speedup` is against PyTorch as it runs by default.
 *
 * In the first round PyTorch also saves its result (the clipped sum, or the per-sample gradients
 * flattened per sample in parameter order, [N, D]), and every runtime's `ours.npy` is compared
 * with it (relative L2 error ≤ 1e-4, else the script fails): both compute the same thing.
 *
 * Per case and runtime: ours = the median over rounds of the CLI's median_ms; PyTorch = per
 * thread count the median over rounds, then the faster thread count. speedup = torch / ours.
 *
 * Output (stdout): one JSON line per case per runtime
 *   {"case","N","D","runtime","ours_median_ms","torch_median_ms","torch_threads","speedup", …}
 * then one {"summary": …} line per runtime (geometric mean over the cases, mlp's speedup, and
 * geomean_issue14 over lenet5-tanh, audio1d and mlp1024-256 when all three ran, else null);
 * with --markdown, a table for the README after them. Progress on stderr.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os, { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { manualSeed, modelFromSpec, randn, readNpy, writeNpy, writeSafetensors } from "../mod.ts";
import type { ModelSpec } from "../mod.ts";
import { machineLine } from "./report.ts";
import { glibcTunables, loadAverage, significant, uniformClasses } from "./measure.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RUNTIMES = ["node", "deno", "bun"] as const;
type Runtime = (typeof RUNTIMES)[number];
const MAX_NORM = 1;
const TOLERANCE = 1e-4;

interface ClipCase {
  spec: ModelSpec;
  sampleShape: number[];
  N: number;
  title: string;
}

const linear = (i: number, o: number) => ({ type: "Linear", in_features: i, out_features: o });
const relu = { type: "ReLU" };
const tanh = { type: "Tanh" };

export const CLIP_CASES: Record<string, ClipCase> = {
  mlp: {
    title: "mlp (784-256-128-10)",
    spec: { format: "torch.nn.Sequential", layers: [linear(784, 256), relu, linear(256, 128), relu, linear(128, 10)] },
    sampleShape: [784],
    N: 256,
  },
  cnn: {
    title: "cnn (public case)",
    spec: {
      format: "torch.nn.Sequential",
      layers: [
        { type: "Conv2d", in_channels: 3, out_channels: 16, kernel_size: 3, padding: 1 },
        relu,
        { type: "MaxPool2d", kernel_size: 2 },
        { type: "Conv2d", in_channels: 16, out_channels: 32, kernel_size: 3, padding: 1 },
        relu,
        { type: "MaxPool2d", kernel_size: 2 },
        { type: "Flatten" },
        linear(32 * 8 * 8, 10),
      ],
    },
    sampleShape: [3, 32, 32],
    N: 128,
  },
  lenet5: {
    title: "LeNet-5 (1×32×32, ReLU, max pooling)",
    spec: {
      format: "torch.nn.Sequential",
      layers: [
        { type: "Conv2d", in_channels: 1, out_channels: 6, kernel_size: 5 },
        relu,
        { type: "MaxPool2d", kernel_size: 2 },
        { type: "Conv2d", in_channels: 6, out_channels: 16, kernel_size: 5 },
        relu,
        { type: "MaxPool2d", kernel_size: 2 },
        { type: "Flatten" },
        linear(400, 120),
        relu,
        linear(120, 84),
        relu,
        linear(84, 10),
      ],
    },
    sampleShape: [1, 32, 32],
    N: 256,
  },
  mlp1024: {
    title: "mlp1024 (1024-512-512-10)",
    spec: { format: "torch.nn.Sequential", layers: [linear(1024, 512), relu, linear(512, 512), relu, linear(512, 10)] },
    sampleShape: [1024],
    N: 256,
  },
  // Issue 14's models: bench/layers.ts's lenet5 and audio1d (same layers, sample shapes and N)
  // and the 1024-256-256-10 MLP of bench/quantities.ts, at layers.ts's MLP batch size.
  "lenet5-tanh": {
    title: "LeNet-5 (1×28×28, padding 2, Tanh, average pooling)",
    spec: {
      format: "torch.nn.Sequential",
      layers: [
        { type: "Conv2d", in_channels: 1, out_channels: 6, kernel_size: 5, padding: 2 },
        tanh,
        { type: "AvgPool2d", kernel_size: 2 },
        { type: "Conv2d", in_channels: 6, out_channels: 16, kernel_size: 5 },
        tanh,
        { type: "AvgPool2d", kernel_size: 2 },
        { type: "Flatten" },
        linear(400, 120),
        tanh,
        linear(120, 84),
        tanh,
        linear(84, 10),
      ],
    },
    sampleShape: [1, 28, 28],
    N: 256,
  },
  audio1d: {
    title: "audio1d (1-d CNN on 1×4000)",
    spec: {
      format: "torch.nn.Sequential",
      layers: [
        { type: "Conv1d", in_channels: 1, out_channels: 16, kernel_size: 9, stride: 4 },
        relu,
        { type: "MaxPool1d", kernel_size: 2 },
        { type: "Conv1d", in_channels: 16, out_channels: 32, kernel_size: 9, stride: 2 },
        relu,
        { type: "AdaptiveAvgPool1d", output_size: 1 },
        { type: "Flatten" },
        linear(32, 10),
      ],
    },
    sampleShape: [1, 4000],
    N: 64,
  },
  "mlp1024-256": {
    title: "mlp1024-256 (1024-256-256-10)",
    spec: { format: "torch.nn.Sequential", layers: [linear(1024, 256), relu, linear(256, 256), relu, linear(256, 10)] },
    sampleShape: [1024],
    N: 64,
  },
};

/** The cases of issue 14's target (geomean_issue14 in the summary). */
const ISSUE14_CASES = ["lenet5-tanh", "audio1d", "mlp1024-256"];

type Quantity = "clipped_sum" | "per_sample_gradients";
const QUANTITIES: Record<Quantity, { cliArguments: string[]; what: string; defaultCases: string[] }> = {
  clipped_sum: {
    cliArguments: ["--quantity", "clipped_sum", "--max-norm", String(MAX_NORM)],
    what: "clipped sum",
    defaultCases: ["mlp", "cnn", "lenet5", "mlp1024"],
  },
  // The CLI's default quantity: with a loss, the per-sample gradients.
  per_sample_gradients: { cliArguments: [], what: "per-sample gradients", defaultCases: [...ISSUE14_CASES, "mlp", "cnn"] },
};

const USAGE = `usage: node --import tsx bench/clipped_vs_torch.ts [--quantity clipped_sum|per_sample_gradients]
         [--markdown] [--quick] [--rounds K] [--runtimes node,deno,bun]
         [--case ${Object.keys(CLIP_CASES).join("|")} ...] [--repeats R]
         [--budget-ms MS] [--torch-reps R] [--no-hugetlb] [--python PATH] [--dir DIR] [--keep]
  --quantity Q    clipped_sum (default; cases ${QUANTITIES.clipped_sum.defaultCases.join(", ")}) or
                  per_sample_gradients (the CLI's default quantity against vmap(grad) alone;
                  cases ${QUANTITIES.per_sample_gradients.defaultCases.join(", ")})
  --rounds K      rounds of (PyTorch, node, deno, bun) per case (default 3; --quick: 1)
  --repeats R     the CLI's --time R (default: 20 in the first round, then enough for --budget-ms)
  --budget-ms MS  the CLI's timed runs per runtime and round, from the second round (default 2000)
  --torch-reps R  PyTorch's timed calls per thread count and round (default 20; --quick: 7)
  --no-hugetlb    skips PyTorch's second run per round under GLIBC_TUNABLES=glibc.malloc.hugetlb=1
  --keep          keeps the temporary directory (its path is printed on stderr)`;

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    quantity: { type: "string", default: "clipped_sum" },
    markdown: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    runtimes: { type: "string", default: RUNTIMES.join(",") },
    case: { type: "string", multiple: true },
    repeats: { type: "string" },
    "budget-ms": { type: "string", default: "2000" },
    "torch-reps": { type: "string" },
    "no-hugetlb": { type: "boolean", default: false },
    python: { type: "string", default: "/usr/bin/python3" },
    dir: { type: "string" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!(values.quantity! in QUANTITIES)) fail(`--quantity must be one of ${Object.keys(QUANTITIES).join(", ")}, got "${values.quantity}"`);
const quantity = values.quantity as Quantity;
const quick = values.quick!;
const rounds = Number(values.rounds ?? (quick ? 1 : 3));
const runtimes = values.runtimes!.split(",") as Runtime[];
const caseNames = values.case ?? QUANTITIES[quantity].defaultCases;
const fixedRepeats = values.repeats === undefined ? undefined : Number(values.repeats);
const budgetMs = Number(values["budget-ms"]);
const torchReps = Number(values["torch-reps"] ?? (quick ? 7 : 20));
const hugetlb = !values["no-hugetlb"];
const HUGETLB = "glibc.malloc.hugetlb=1";
for (const r of runtimes) if (!RUNTIMES.includes(r)) fail(`--runtimes: unknown runtime "${r}"`);
for (const c of caseNames) if (!(c in CLIP_CASES)) fail(`--case must be one of ${Object.keys(CLIP_CASES).join(", ")}, got "${c}"`);
if (!(rounds >= 1) || !Number.isInteger(rounds)) fail(`--rounds must be a positive integer`);
if (fixedRepeats !== undefined && !(Number.isInteger(fixedRepeats) && fixedRepeats >= 1)) fail(`--repeats must be a positive integer`);

function fail(message: string): never {
  console.error(`clipped_vs_torch: ${message}`);
  process.exit(2);
}

const started = performance.now();
function log(message: string): void {
  process.stderr.write(`[clipped_vs_torch ${((performance.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

interface Files {
  dir: string;
  model: string;
  weights: string;
  x: string;
  y: string;
}

/** Writes a case's model, weights and batch; returns the files and D and the parameter names. */
function writeCase(name: string, definition: ClipCase, base: string, seed: number): { files: Files; D: number; names: string[] } {
  const dir = join(base, name);
  mkdirSync(dir, { recursive: true });
  manualSeed(seed);
  const net = modelFromSpec(definition.spec);
  const x = randn([definition.N, ...definition.sampleShape], seed + 100);
  const classes = uniformClasses(definition.N, 10, seed + 200).data;
  const files: Files = {
    dir,
    model: join(dir, "model.json"),
    weights: join(dir, "weights.safetensors"),
    x: join(dir, "x.npy"),
    y: join(dir, "y.npy"),
  };
  writeFileSync(files.model, JSON.stringify(definition.spec));
  writeFileSync(files.weights, writeSafetensors(Object.entries(net.stateDict())));
  writeFileSync(files.x, writeNpy(x.data, x.shape));
  writeFileSync(files.y, writeNpy(BigInt64Array.from(classes, (c) => BigInt(c)), [definition.N]));
  const parameters = net.parameters();
  return { files, D: parameters.reduce((s, [, p]) => s + p.data.length, 0), names: parameters.map(([n]) => n) };
}

function commandFor(runtime: Runtime): [string, string[]] {
  const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
  if (runtime === "deno") return [bin("deno"), ["run", "-A", "cli.ts"]];
  if (runtime === "bun") return [bin("bun"), ["cli.ts"]];
  return [process.execPath, ["--import", "tsx", "cli.ts"]];
}

interface CliTiming {
  N: number;
  D: number;
  cold_ms: number;
  median_ms: number;
}

/** One CLI run with --time R; its timing line from stderr. */
function runCli(runtime: Runtime, files: Files, out: string, repeats: number): CliTiming {
  const [command, prefix] = commandFor(runtime);
  const args = [
    ...prefix, "jacobian", "--model", files.model, "--weights", files.weights, "--input", files.x, "--target", files.y,
    "--loss", "cross_entropy", "--reduction", "sum", ...QUANTITIES[quantity].cliArguments,
    "--out", out, "--time", String(repeats),
  ];
  const run = spawnSync(command, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (run.status !== 0) {
    throw new Error(`${runtime} CLI failed (${run.status ?? run.signal ?? String(run.error)}): ${run.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  }
  const line = run.stderr.split("\n").reverse().find((l) => l.trim().startsWith("{"));
  if (!line) throw new Error(`${runtime} CLI printed no timing line: ${run.stderr.trim()}`);
  return JSON.parse(line) as CliTiming;
}

interface TorchTiming {
  N: number;
  D: number;
  threads_ms: Record<string, number>;
  torch_median_ms: number;
  torch_threads: number;
  torch: string;
  names: string[];
  /** The result's file, with --write-result. */
  result_file: string | null;
}

function runTorch(files: Files, writeResult: boolean, withHugetlb = false): TorchTiming {
  const args = [
    join(ROOT, "bench", "torch_clipped.py"), "--dir", files.dir, "--quantity", quantity, "--reps", String(torchReps),
    "--max-norm", String(MAX_NORM),
  ];
  if (writeResult) args.push("--write-result");
  const inherited = process.env.GLIBC_TUNABLES;
  const env = withHugetlb ? { ...process.env, GLIBC_TUNABLES: inherited ? `${inherited}:${HUGETLB}` : HUGETLB } : process.env;
  const run = spawnSync(values.python!, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env });
  if (run.status !== 0) throw new Error(`torch_clipped.py failed (${run.status ?? String(run.error)}): ${run.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  const line = run.stdout.split("\n").find((l) => l.startsWith("{"));
  if (!line) throw new Error(`torch_clipped.py printed no result: ${run.stdout} ${run.stderr}`);
  return JSON.parse(line) as TorchTiming;
}

function readFloats(path: string): Float32Array {
  const array = readNpy(new Uint8Array(readFileSync(path)), path);
  if (array.dtype !== "float32") throw new Error(`${path}: expected float32, got ${array.dtype}`);
  return array.data;
}

/** ‖a − b‖ / ‖b‖ (float64 sums). */
function relativeError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function geometricMean(values: number[]): number {
  return Math.exp(values.reduce((s, v) => s + Math.log(v), 0) / values.length);
}

// ------------------------------------------------------------------ the sitting

const base = values.dir ? mkdtempSync(join(values.dir, "clipped-vs-torch-")) : mkdtempSync(join(tmpdir(), "clipped-vs-torch-"));
log(`${quantity}; files in ${base}; cases ${caseNames.join(", ")}; runtimes ${runtimes.join(", ")}; ${rounds} round(s); ` +
  `load ${loadAverage()}; ${os.availableParallelism?.() ?? os.cpus().length} CPUs`);

interface Accumulated {
  D: number;
  names: string[];
  files: Files;
  ours: Record<string, CliTiming[]>;
  repeats: Record<string, number[]>;
  torch: TorchTiming[];
  torchHugetlb: TorchTiming[];
  errors: Record<string, number>;
  loads: number[];
}

const cases = new Map<string, Accumulated>();
for (const name of caseNames) {
  // Seeded by the case's place in the table, not in --case: a case's weights and batch are the same
  // whichever cases run with it. (Batches differ in near-ties: cnn seeded 15 has two maxima of a
  // pooling window 3e-8 apart, float32 rounding picks different ones in the CLI and in PyTorch, and
  // that sample's gradient goes elsewhere: relative error 1.7e-4 over the whole N × D.)
  const seed = 11 + Object.keys(CLIP_CASES).indexOf(name);
  const { files, D, names } = writeCase(name, CLIP_CASES[name], base, seed);
  cases.set(name, { D, names, files, ours: {}, repeats: {}, torch: [], torchHugetlb: [], errors: {}, loads: [] });
  log(`${name}: N = ${CLIP_CASES[name].N}, D = ${D}`);
}

const measuredAt = new Date();
let exitCode = 0;
try {
  for (let round = 0; round < rounds; round++) {
    for (const name of caseNames) {
      const acc = cases.get(name)!;
      // PyTorch first, then the runtimes (their order rotated each round), then PyTorch under hugetlb.
      const torch = runTorch(acc.files, round === 0);
      acc.torch.push(torch);
      acc.loads.push(loadAverage());
      if (round === 0 && JSON.stringify(torch.names) !== JSON.stringify(acc.names)) {
        throw new Error(`${name}: PyTorch's parameters ${torch.names.join(",")} differ from ours ${acc.names.join(",")}`);
      }
      const order = runtimes.map((_, k) => runtimes[(k + round) % runtimes.length]);
      const parts = [`torch ${JSON.stringify(torch.threads_ms)} ms`];
      for (const runtime of order) {
        const previous = acc.ours[runtime]?.[0]?.median_ms;
        const repeats = fixedRepeats ?? (previous === undefined ? (quick ? 10 : 20)
          : Math.max(20, Math.min(500, Math.ceil(budgetMs / Math.max(previous, 0.05)))));
        const out = join(acc.files.dir, `ours_${runtime}.npy`);
        const timing = runCli(runtime, acc.files, out, repeats);
        (acc.ours[runtime] ??= []).push(timing);
        (acc.repeats[runtime] ??= []).push(repeats);
        acc.loads.push(loadAverage());
        if (round === 0) {
          const error = relativeError(readFloats(out), readFloats(acc.torch[0].result_file!));
          acc.errors[runtime] = error;
          if (!(error <= TOLERANCE)) {
            exitCode = 1;
            log(`${name} ${runtime}: the CLI's ${QUANTITIES[quantity].what} (${out}) and PyTorch's disagree: ` +
              `relative error ${error.toExponential(2)} > ${TOLERANCE}`);
          }
        }
        parts.push(`${runtime} ${timing.median_ms} ms (R=${repeats})`);
      }
      if (hugetlb) {
        const huge = runTorch(acc.files, false, true);
        acc.torchHugetlb.push(huge);
        acc.loads.push(loadAverage());
        parts.push(`torch with ${HUGETLB} ${JSON.stringify(huge.threads_ms)} ms`);
      }
      log(`round ${round + 1}/${rounds} ${name}: ${parts.join(", ")}; load ${loadAverage()}`);
    }
  }
} finally {
  if (!values.keep) rmSync(base, { recursive: true, force: true });
  else log(`kept ${base}`);
}

// ------------------------------------------------------------------ results

interface ClipRow {
  case: string;
  N: number;
  D: number;
  runtime: Runtime;
  ours_median_ms: number;
  torch_median_ms: number;
  torch_threads: number;
  speedup: number;
  ours_cold_ms: number;
  ours_round_ms: number[];
  ours_repeats: number[];
  torch_threads_ms: Record<string, number>;
  torch_round_ms: Record<string, number[]>;
  /** The same under GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (null: --no-hugetlb). */
  torch_hugetlb_ms: number | null;
  torch_hugetlb_threads: number | null;
  torch_hugetlb_threads_ms: Record<string, number> | null;
  speedup_vs_hugetlb: number | null;
  rounds: number;
  relative_error: number;
  quantity: Quantity;
  /** null for per_sample_gradients. */
  max_norm: number | null;
  torch: string;
  load_avg_1m: [number, number];
  glibc_tunables: string | null;
}

/** Per thread count the median over rounds, and the faster thread count. */
function torchSummary(runs: TorchTiming[]): { round: Record<string, number[]>; perThreads: Record<string, number>; best: string } {
  const threadCounts = Object.keys(runs[0].threads_ms);
  const round: Record<string, number[]> = Object.fromEntries(threadCounts.map((t) => [t, runs.map((r) => r.threads_ms[t])]));
  const perThreads: Record<string, number> = Object.fromEntries(threadCounts.map((t) => [t, significant(median(round[t]), 4)]));
  const best = threadCounts.reduce((a, b) => (perThreads[b] < perThreads[a] ? b : a));
  return { round, perThreads, best };
}

const rows: ClipRow[] = [];
for (const name of caseNames) {
  const acc = cases.get(name)!;
  const { round: torchRound, perThreads: torchThreads, best } = torchSummary(acc.torch);
  const huge = acc.torchHugetlb.length > 0 ? torchSummary(acc.torchHugetlb) : null;
  for (const runtime of runtimes) {
    const timings = acc.ours[runtime];
    const ours = significant(median(timings.map((t) => t.median_ms)), 4);
    const row: ClipRow = {
      case: name,
      N: CLIP_CASES[name].N,
      D: acc.D,
      runtime,
      ours_median_ms: ours,
      torch_median_ms: torchThreads[best],
      torch_threads: Number(best),
      speedup: significant(torchThreads[best] / ours, 4),
      ours_cold_ms: significant(median(timings.map((t) => t.cold_ms)), 4),
      ours_round_ms: timings.map((t) => t.median_ms),
      ours_repeats: acc.repeats[runtime],
      torch_threads_ms: torchThreads,
      torch_round_ms: torchRound,
      torch_hugetlb_ms: huge ? huge.perThreads[huge.best] : null,
      torch_hugetlb_threads: huge ? Number(huge.best) : null,
      torch_hugetlb_threads_ms: huge ? huge.perThreads : null,
      speedup_vs_hugetlb: huge ? significant(huge.perThreads[huge.best] / ours, 4) : null,
      rounds,
      relative_error: Number(acc.errors[runtime].toExponential(2)),
      quantity,
      max_norm: quantity === "clipped_sum" ? MAX_NORM : null,
      torch: acc.torch[0].torch,
      load_avg_1m: [Math.min(...acc.loads), Math.max(...acc.loads)],
      glibc_tunables: glibcTunables(),
    };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}

const summaries = runtimes.map((runtime) => {
  const mine = rows.filter((r) => r.runtime === runtime);
  const issue14 = ISSUE14_CASES.map((c) => mine.find((r) => r.case === c));
  const issue14Ran = issue14.every((r) => r !== undefined);
  return {
    summary: `${quantity} vs torch functorch`,
    runtime,
    cases: mine.map((r) => r.case),
    geomean_speedup: significant(geometricMean(mine.map((r) => r.speedup)), 4),
    mlp_speedup: mine.find((r) => r.case === "mlp")?.speedup ?? null,
    min_speedup: significant(Math.min(...mine.map((r) => r.speedup)), 4),
    geomean_speedup_vs_hugetlb: hugetlb ? significant(geometricMean(mine.map((r) => r.speedup_vs_hugetlb!)), 4) : null,
    mlp_speedup_vs_hugetlb: mine.find((r) => r.case === "mlp")?.speedup_vs_hugetlb ?? null,
    geomean_issue14: issue14Ran ? significant(geometricMean(issue14.map((r) => r!.speedup)), 4) : null,
    geomean_issue14_vs_hugetlb: issue14Ran && hugetlb ? significant(geometricMean(issue14.map((r) => r!.speedup_vs_hugetlb!)), 4) : null,
  };
});
type Summary = (typeof summaries)[number];
for (const s of summaries) console.log(JSON.stringify(s));

if (values.markdown) {
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const x = (v: number | null) => (v === null ? "n/a" : `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)}x`);
  const loads = rows.flatMap((r) => r.load_avg_1m);
  const lines: string[] = [];
  lines.push(`Measured ${machineLine(measuredAt)}; 1-minute load average ${Math.min(...loads)} to ${Math.max(...loads)}.`, "");
  const torchName = `PyTorch ${rows[0]?.torch ?? "?"} functorch`;
  const what = quantity === "clipped_sum"
    ? `DP-SGD's clipped sum (per-sample gradients of cross-entropy, their norms, clip factors min(1, C/‖g‖) with C = ${MAX_NORM}, ` +
      `and Σ f_n g_n) through the CLI (\`jacobian-wasm jacobian --quantity clipped_sum --time R\`: median of R runs after a cold one, ` +
      `file I/O excluded) against ${torchName} (\`vmap(grad)\`, then the norms, factors and \`einsum\` weighted sum per call`
    : `Per-sample gradients of cross-entropy (N × D) through the CLI (\`jacobian-wasm jacobian --loss cross_entropy --time R\`: ` +
      `median of R runs after a cold one, file I/O excluded, rows copied into one reused buffer) against ${torchName} ` +
      `(\`vmap(grad)\`, fresh tensors each call`;
  lines.push(
    what + `; faster of 1 and 2 threads` +
      (hugetlb ? `; in brackets PyTorch under \`GLIBC_TUNABLES=${HUGETLB}\`, which speeds up its N × D of new memory per call` : "") +
      `); ${rounds} interleaved round(s) in one sitting, medians over rounds; both results agree to a relative error ≤ ${TOLERANCE} ` +
      `(\`node --import tsx bench/clipped_vs_torch.ts --quantity ${quantity} --markdown\`). Speedup: PyTorch's time over ours.`,
    "",
  );
  lines.push(`| case | N | D | PyTorch ms (threads) | ${runtimes.map((r) => `${r} ms`).join(" | ")} | ${runtimes.map((r) => `${r} speedup`).join(" | ")} |`);
  lines.push(`|${" --- |".repeat(4 + 2 * runtimes.length)}`);
  for (const name of caseNames) {
    const mine = rows.filter((r) => r.case === name);
    const first = mine[0];
    const torchCell = `${fmt(first.torch_median_ms)} (${first.torch_threads})` +
      (first.torch_hugetlb_ms === null ? "" : ` [${fmt(first.torch_hugetlb_ms)} (${first.torch_hugetlb_threads})]`);
    const speedCell = (r: ClipRow) => x(r.speedup) + (r.speedup_vs_hugetlb === null ? "" : ` [${x(r.speedup_vs_hugetlb)}]`);
    lines.push(`| ${CLIP_CASES[name].title} | ${first.N} | ${first.D.toLocaleString("en-US")} | ${torchCell} | ` +
      `${runtimes.map((r) => fmt(mine.find((m) => m.runtime === r)!.ours_median_ms)).join(" | ")} | ` +
      `${runtimes.map((r) => speedCell(mine.find((m) => m.runtime === r)!)).join(" | ")} |`);
  }
  /** A bold geometric-mean row: per runtime the speedup, then in brackets the one against PyTorch under hugetlb. */
  const meanRow = (label: string, speedup: (s: Summary) => number | null, vsHugetlb: (s: Summary) => number | null) =>
    `| **${label}** | | | | ${runtimes.map(() => "").join(" | ")} | ` +
    `${summaries.map((s) => `**${x(speedup(s))}**` + (vsHugetlb(s) === null ? "" : ` [${x(vsHugetlb(s))}]`)).join(" | ")} |`;
  lines.push(meanRow("geometric mean", (s) => s.geomean_speedup, (s) => s.geomean_speedup_vs_hugetlb));
  if (summaries.every((s) => s.geomean_issue14 !== null)) {
    lines.push(meanRow(`geometric mean, ${ISSUE14_CASES.join(", ")}`, (s) => s.geomean_issue14, (s) => s.geomean_issue14_vs_hugetlb));
  }
  console.log(lines.join("\n"));
}
process.exit(exitCode);
