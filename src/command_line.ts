/**
 * The command line's commands: `jacobian-wasm jacobian ...` computes per-sample gradients or
 * output Jacobians of a model file on a batch file; `jacobian-wasm demo` runs the seed's example.
 * cli.ts runs them for the process; `runCommandLine` runs them in-process (tests, the fuzzer).
 * Bad input ends with one line on stderr and exit code 2, and never a half-written file.
 */
import { statfsSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { setImmediate } from "node:timers";
import { parseArgs } from "node:util";
import process from "node:process";
import { FileError, isUserError } from "./errors.ts";
import { readFileBytes, removeTemporaryFiles, writeFileAtomic } from "./io/files.ts";
import { npyToFloat32, npyToIntegers, readNpy, writeNpy } from "./io/npy.ts";
import { writeSafetensors } from "./io/safetensors.ts";
import { ProgressBar } from "./io/progress.ts";
import { createRowFile } from "./io/stream.ts";
import type { ParameterShape } from "./io/stream.ts";
import { loadModel } from "./io/spec.ts";
import { jacobian, jacobianNaive, outputsPerSample, perSampleGradients, rowChunks } from "./jacobian.ts";
import { batchL2, clippedGradientSum, ntk, sumGradSquared, variance } from "./quantities.ts";
import type { Module } from "./layers/module.ts";
import type { LossName, Reduction, Target } from "./losses.ts";
import { seedNetwork } from "./examples.ts";
import { manualSeed } from "./layers/init.ts";
import type { Tensor } from "./tensor.ts";
import { randn } from "./tensor.ts";
import { simdBuild } from "./wasm.ts";

const USAGE = `usage:
  jacobian-wasm jacobian --model M.json --weights W.safetensors --input X.npy
                         [--target Y.npy --loss cross_entropy|mse] [--reduction sum|mean]
                         [--quantity jacobian|batch_l2|sum_grad_squared|variance|ntk|clipped_sum]
                         [--max-norm C] --out J.npy|J.safetensors [--max-out BYTES] [--time R]
  jacobian-wasm demo [--n N]

jacobian   without --loss: the Jacobian of the model output per sample, [N, D] or [N, K, D];
           with --loss: per-sample gradients of the loss, [N, D] (reduction default: mean).
           .npy output: the matrix; .safetensors output: one tensor per parameter, [N, ...shape].
           The rows are written to the file chunk by chunk as they are computed (J is never
           held in memory whole), to a temporary file renamed over --out once complete.
           A full disk, or SIGINT / SIGTERM (exit 130 / 143), removes the temporary file:
           --out then holds its old contents, or none.
           An output larger than --max-out (default 4G: bytes, or a number with K, M, G
           or T, powers of 1024) or than the free space of its file system is refused
           before anything is computed.
           When stderr is a terminal and the run takes over a second, a progress bar
           (samples done, elapsed time, ETA) is drawn on stderr; otherwise nothing is.
           --quantity (default jacobian) computes, from the same rows of J without forming it:
             batch_l2          squared norm of each sample's gradient per parameter tensor, [N, P]
             sum_grad_squared  sum over samples of the squared rows, [D]
             variance          variance over samples of each column, [D]
             ntk               the empirical NTK J Jᵀ, [N, N] (or [N·K, N·K] for K outputs)
             clipped_sum       the sum of the rows clipped to norm --max-norm C, [D]
           batch_l2, sum_grad_squared, variance and clipped_sum need one row per sample
           (a loss, or one output per sample). In .safetensors, [D] results are split into
           one tensor per parameter, batch_l2 into one [N] column per parameter, and ntk is
           one tensor "ntk".
           --time R: time the first run (cold_ms) and R more (median_ms), and print
           {"N", "D", "cold_ms", "median_ms"} as one JSON line on stderr. File I/O is
           excluded: for --quantity jacobian the timed runs copy each chunk of rows into one
           reused buffer, and one more, untimed run writes the file.
demo       the seed's example (Conv3d network, N = 1000, --n up to 200000): one pass against a naive per-sample loop.`;

/** A mistake in the command line itself. */
export class UsageError extends Error {
  /** `"UsageError"`, so messages and stacks name the kind of error. */
  override name = "UsageError";
}

/** Where the command line's lines of text go: stdout and stderr for the CLI, a list in tests. */
export interface CommandLineOutput {
  /** A line of the result or of help (stdout). */
  print(line: string): void;
  /** A line of diagnostics: errors, timings (stderr). */
  printError(line: string): void;
}

const CONSOLE: CommandLineOutput = {
  print: (line) => console.log(line),
  printError: (line) => console.error(line),
};

/**
 * Runs `jacobian-wasm <argv>` in this process and returns its exit code: 0, or 2 for bad input
 * (a UsageError or any of the library's typed errors), whose one-line message goes to
 * `output.printError`. Any other error is a bug and is thrown, stack and all. Never exits the
 * process, so tests (the fuzzer among them) can run many command lines in one.
 */
export async function runCommandLine(argv: string[], output: CommandLineOutput = CONSOLE): Promise<number> {
  progress = undefined;
  completedOutput = undefined;
  try {
    await main(argv, output);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      output.printError(`jacobian-wasm: ${error.message} (see jacobian-wasm --help)`);
      return 2;
    }
    if (isUserError(error)) {
      output.printError(`jacobian-wasm: ${error.message}`);
      return 2;
    }
    throw error;
  }
}

async function main(argv: string[], output: CommandLineOutput): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    output.print(USAGE);
    return;
  }
  if (command === "jacobian") return jacobianCommand(rest, output);
  if (command === "demo") return demoCommand(rest, output);
  throw new UsageError(`unknown command "${command}"; the commands are "jacobian" and "demo"`);
}

function parse<T extends Record<string, { type: "string" | "boolean" }>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\s*\n\s*/g, " ")); // one line, as every error
  }
}

async function jacobianCommand(args: string[], output: CommandLineOutput): Promise<void> {
  const values = parse(args, {
    model: { type: "string" },
    weights: { type: "string" },
    input: { type: "string" },
    target: { type: "string" },
    loss: { type: "string" },
    reduction: { type: "string" },
    out: { type: "string" },
    time: { type: "string" },
    quantity: { type: "string" },
    "max-norm": { type: "string" },
    "max-out": { type: "string" },
  });
  for (const required of ["model", "weights", "input", "out"] as const) {
    if (values[required] === undefined) throw new UsageError(`--${required} is required`);
  }
  const out = values.out as string;
  const format = out.endsWith(".npy") ? "npy" : out.endsWith(".safetensors") ? "safetensors" : undefined;
  if (!format) throw new UsageError(`--out must end in .npy or .safetensors, got "${out}"`);
  const loss = values.loss as LossName | undefined;
  if (loss !== undefined && loss !== "cross_entropy" && loss !== "mse") {
    throw new UsageError(`--loss must be cross_entropy or mse, got "${loss}"`);
  }
  if ((loss === undefined) !== (values.target === undefined)) {
    throw new UsageError(loss === undefined ? "--target needs --loss" : "--loss needs --target");
  }
  const reduction = (values.reduction ?? "mean") as Reduction;
  if (reduction !== "sum" && reduction !== "mean") {
    throw new UsageError(`--reduction must be sum or mean, got "${reduction}"`);
  }
  if (values.reduction !== undefined && loss === undefined) throw new UsageError("--reduction needs --loss");
  const quantity = (values.quantity ?? "jacobian") as Quantity;
  if (!QUANTITIES.includes(quantity)) throw new UsageError(`--quantity must be one of ${QUANTITIES.join(", ")}; got "${quantity}"`);
  let maxNorm: number | undefined;
  if (quantity === "clipped_sum") {
    if (values["max-norm"] === undefined) throw new UsageError("--quantity clipped_sum needs --max-norm C");
    maxNorm = Number(values["max-norm"]);
    if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) throw new UsageError(`--max-norm must be a positive number, got "${values["max-norm"]}"`);
  } else if (values["max-norm"] !== undefined) {
    throw new UsageError(`--max-norm is the bound of --quantity clipped_sum; it means nothing to --quantity ${quantity}`);
  }
  const maxOut = values["max-out"] === undefined ? DEFAULT_MAX_OUT : parseBytes(values["max-out"]);
  if (values["max-out"] !== undefined && quantity !== "jacobian") {
    throw new UsageError(`--max-out bounds the file of J (--quantity jacobian); it means nothing to --quantity ${quantity}`);
  }
  let repeats = 0;
  if (values.time !== undefined) {
    repeats = Number(values.time);
    if (!Number.isInteger(repeats) || repeats < 1) throw new UsageError(`--time must be a positive integer, got "${values.time}"`);
  }

  const modelPath = values.model as string;
  const weightsPath = values.weights as string;
  const specText = new TextDecoder().decode(await readFileBytes(modelPath));
  const net = loadModel(specText, await readFileBytes(weightsPath), { spec: modelPath, weights: weightsPath });
  const inputPath = values.input as string;
  const inputArray = readNpy(await readFileBytes(inputPath), inputPath);
  const x: Tensor = { shape: inputArray.shape, data: npyToFloat32(inputArray, inputPath) };
  let target: Target | undefined;
  if (values.target !== undefined) {
    const targetPath = values.target as string;
    const array = readNpy(await readFileBytes(targetPath), targetPath);
    target = loss === "cross_entropy" && array.dtype !== "float32" && array.dtype !== "float64"
      ? { shape: array.shape, data: npyToIntegers(array, targetPath) }
      : { shape: array.shape, data: npyToFloat32(array, targetPath) };
  }

  const N = x.shape[0];
  const D = net.parameters().reduce((sum, [, p]) => sum + p.data.length, 0);
  const printTiming = (cold: number, median: number) =>
    output.printError(JSON.stringify({ N, D, cold_ms: round(cold), median_ms: round(median) }));

  if (quantity === "jacobian") {
    const computeRows = (onChunk: RowCallback): void => {
      if (target === undefined) jacobian(net, x, { onChunk });
      else perSampleGradients(net, x, target, { loss: loss!, reduction, onChunk });
    };
    const parameters = net.parameters().map(([name, p]) => [name, p.shape] as const);
    checkOutputSize(out, N, target === undefined ? outputsPerSample(net, x) : 1, D, maxOut);
    const chunks = () => rowChunks(net, x, { target, loss, reduction });
    await streamRowsToFile(out, format, N, parameters, computeRows, chunks, repeats, printTiming);
    return;
  }

  const compute = () => computeQuantity(quantity, net, x, target, { loss, reduction, maxNorm });
  const start = performance.now();
  const result = compute();
  const coldMs = performance.now() - start;
  if (repeats > 0) printTiming(coldMs, medianMs(compute, repeats));
  const bytes = format === "safetensors" ? writeSafetensors(quantityTensors(quantity, net, result)) : writeNpy(result.data, result.shape);
  await writeFileAtomic(out, bytes);
  completedOutput = out;
}

type RowCallback = (firstSample: number, rows: Tensor) => void;

/** --max-out's default: 4 GiB, the API's MAX_RESULT_BYTES for a J returned whole. */
const DEFAULT_MAX_OUT = 2 ** 32;

/** A byte count: an integer, or a number with K, M, G or T (powers of 1024; "GiB", "GB" and "G" alike). */
function parseBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?)?$/i.exec(text.trim());
  const scale = match?.[2] === undefined ? 1 : 1024 ** ("KMGT".indexOf(match[2].toUpperCase()) + 1);
  const bytes = match ? Math.floor(Number(match[1]) * scale) : NaN;
  if (!(bytes > 0) || !Number.isSafeInteger(bytes)) throw new UsageError(`--max-out must be a positive number of bytes (e.g. 20G), got "${text}"`);
  return bytes;
}

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

/**
 * Refuses, before anything is computed, a file of J (N × K × D floats) larger than --max-out
 * or than the free space of the file system it goes to (where statfs tells; where it does
 * not, a full disk is still reported by the write that fails, and no file is left).
 */
function checkOutputSize(out: string, N: number, K: number, D: number, maxOut: number): void {
  const bytes = N * K * D * 4;
  const what = `--out ${out} would hold J, N × K × D = ${N} × ${K} × ${D} floats = ${bytes} bytes (${gib(bytes)})`;
  if (bytes > maxOut) {
    throw new UsageError(
      `${what}, over the limit of ${maxOut} bytes (${gib(maxOut)}; --max-out${maxOut === DEFAULT_MAX_OUT ? ", default 4G" : ""}): ` +
        `raise it with --max-out, or ask for a quantity of J (--quantity) instead of J itself`,
    );
  }
  let free: number | undefined;
  try {
    const stats = statfsSync(dirname(resolve(out)));
    free = Number(stats.bavail) * Number(stats.bsize);
  } catch {
    free = undefined; // no statfs here, or no such directory (the file's creation says so)
  }
  if (free !== undefined && Number.isFinite(free) && bytes > free) {
    throw new FileError(`${what}, but its file system has only ${free} bytes (${gib(free)}) free`);
  }
}

/**
 * --quantity jacobian: the rows of J go to the output file chunk by chunk as `chunks`
 * delivers them, so N × D is never in memory; with a progress bar when stderr is a terminal.
 * Between chunks the event loop gets a turn every YIELD_EVERY_MS, so that SIGINT and SIGTERM
 * are handled (the temporary file removed) during the computation, not after it.
 * With `repeats`, the runs timed first copy the chunks into a reused buffer instead (see USAGE).
 */
async function streamRowsToFile(
  out: string,
  format: "npy" | "safetensors",
  N: number,
  parameters: readonly ParameterShape[],
  computeRows: (onChunk: RowCallback) => void,
  chunks: () => Iterable<{ firstSample: number; rows: Tensor }>,
  repeats: number,
  printTiming: (cold: number, median: number) => void,
): Promise<void> {
  // Created first, so that an output that cannot be written fails before the computation.
  const file = createRowFile(out, format, N, parameters);
  try {
    if (repeats > 0) {
      const sink = reusedChunkCopy();
      const coldMs = timeMs(() => computeRows(sink));
      const times: number[] = [];
      for (let r = 0; r < repeats; r++) {
        await eventLoopTurn(); // between the timed runs, not inside them
        times.push(timeMs(() => computeRows(sink)));
      }
      printTiming(coldMs, median(times));
    }
    if (process.stderr.isTTY === true) {
      // Written with writeSync: the computation holds the event loop between turns, so a stream's queued writes would show late.
      progress = new ProgressBar({ total: N, write: (text) => writeSync(2, text), start: performance.now(), columns: process.stderr.columns });
    }
    let lastTurn = performance.now();
    for (const { firstSample, rows } of chunks()) {
      file.write(firstSample, rows);
      progress?.update(firstSample + rows.shape[0], performance.now());
      if (performance.now() - lastTurn >= YIELD_EVERY_MS) {
        await eventLoopTurn(); // the chunk is written: nothing of WASM memory is held across the turn
        lastTurn = performance.now();
      }
    }
    progress?.finish(performance.now());
    progress = undefined;
    file.commit();
    completedOutput = out;
  } catch (error) {
    progress?.interrupt();
    progress = undefined;
    throw error;
  } finally {
    file.discard();
  }
}

/**
 * How long the streamed computation and write may hold the event loop before handing it a
 * turn: SIGINT and SIGTERM wait at most this long (plus one chunk), and the turns cost
 * little (a few microseconds each).
 */
const YIELD_EVERY_MS = 25;

/**
 * One turn of the event loop through its poll for I/O, where signals are delivered; which
 * call gets there differs (measured, see tests/cli_signals.test.ts): on node and bun
 * setImmediate (on node a chain of setTimeout(0), each set from the last one's callback,
 * stays in the timers phase and never reaches the poll); on deno setTimeout(0) (its
 * setImmediate of node:timers does not poll, and the handlers never ran).
 */
function eventLoopTurn(): Promise<void> {
  return new Promise((resolve) => (onDeno ? setTimeout(resolve, 0) : setImmediate(resolve)));
}
const onDeno = "Deno" in globalThis;

/** The progress bar being drawn, if any: a signal handler ends its line before its own. */
let progress: ProgressBar | undefined;
/** The output, once renamed into place: a signal after that leaves it (it is complete). */
let completedOutput: string | undefined;

/**
 * A chunk sink for timing the streamed computation without file I/O: each chunk is copied
 * into one buffer, reused (and grown only if a chunk is larger), as a writer would read it.
 */
function reusedChunkCopy(): RowCallback {
  let buffer = new Float32Array(0);
  return (_firstSample, rows) => {
    if (buffer.length < rows.data.length) buffer = new Float32Array(rows.data.length);
    buffer.set(rows.data);
  };
}

function timeMs(fn: () => unknown): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

const QUANTITIES = ["jacobian", "batch_l2", "sum_grad_squared", "variance", "ntk", "clipped_sum"] as const;
type Quantity = (typeof QUANTITIES)[number];

/** A quantity of the rows of J, as the library computes it. */
function computeQuantity(
  quantity: Exclude<Quantity, "jacobian">,
  net: Module,
  x: Tensor,
  target: Target | undefined,
  { loss, reduction, maxNorm }: { loss?: LossName; reduction: Reduction; maxNorm?: number },
): Tensor {
  const options = loss === undefined ? undefined : { loss, reduction };
  switch (quantity) {
    case "batch_l2":
      return batchL2(net, x, target, options);
    case "sum_grad_squared":
      return sumGradSquared(net, x, target, options);
    case "variance":
      return variance(net, x, target, options);
    case "ntk":
      return ntk(net, x, target, options);
    case "clipped_sum":
      return clippedGradientSum(net, x, target, { ...options, maxNorm: maxNorm! }).gradient;
  }
}

/** A quantity's result as named safetensors: [D] per parameter, [N, P] per parameter column, the NTK whole. */
function quantityTensors(quantity: Quantity, net: Module, result: Tensor): [string, Tensor][] {
  const parameters = net.parameters();
  if (quantity === "batch_l2") {
    const [N, P] = result.shape;
    return parameters.map(([name], p) => [name, { shape: [N], data: Float32Array.from({ length: N }, (_, n) => result.data[n * P + p]) }]);
  }
  if (quantity === "ntk") return [["ntk", result]];
  let column = 0;
  return parameters.map(([name, t]) => {
    const part = result.data.slice(column, column + t.data.length);
    column += t.data.length;
    return [name, { shape: [...t.shape], data: part }];
  });
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** The most samples `demo --n` takes: 173 MB of input, a naive loop of some seconds. */
const DEMO_MAX_SAMPLES = 200_000;

function demoCommand(args: string[], output: CommandLineOutput): void {
  const values = parse(args, { n: { type: "string" } });
  const N = values.n === undefined ? 1000 : Number(values.n);
  // The demo holds N samples and loops over them one by one: past DEMO_MAX_SAMPLES it would
  // only be slow, and past 2^31 / 216 its input could not even be allocated (a RangeError).
  if (!Number.isInteger(N) || N < 1 || N > DEMO_MAX_SAMPLES) {
    throw new UsageError(`--n must be an integer from 1 to ${DEMO_MAX_SAMPLES}, got "${values.n}"`);
  }
  manualSeed(0);
  const net = seedNetwork();
  const x = randn([N, 1, 6, 6, 6], 1);
  const D = net.parameters().reduce((sum, [, p]) => sum + p.data.length, 0);
  output.print(`jacobian-wasm demo: the seed's example (${simdBuild()} SIMD build)`);
  output.print(`  network  Sequential(Conv3d(1, 2, 2, bias=False), ReLU(), Conv3d(2, 1, 2), ReLU(), AvgPool3d(4), Flatten(1))`);
  output.print(`  input    ${N} samples of shape (1, 6, 6, 6); one output per sample; D = ${D} parameters`);

  const cold = performance.now();
  const onePass = jacobian(net, x);
  const coldMs = performance.now() - cold;
  const onePassMs = medianMs(() => jacobian(net, x), 9);
  jacobianNaive(net, x); // warm-up
  const naiveStart = performance.now();
  const naive = jacobianNaive(net, x) as Tensor;
  const naiveMs = performance.now() - naiveStart;

  let maxDifference = 0;
  for (let i = 0; i < onePass.data.length; i++) {
    maxDifference = Math.max(maxDifference, Math.abs(onePass.data[i] - naive.data[i]));
  }
  output.print(`  one pass         J shape [${onePass.shape.join(", ")}]  ${onePassMs.toFixed(2)} ms (median of 9; first call ${coldMs.toFixed(2)} ms)`);
  output.print(`  naive loop       J shape [${naive.shape.join(", ")}]  ${naiveMs.toFixed(2)} ms (${N} backward passes of one sample)`);
  output.print(`  max |difference| ${maxDifference.toExponential(2)}`);
  output.print(`  speedup          ${(naiveMs / onePassMs).toFixed(1)}x`);
}

function medianMs(fn: () => unknown, runs: number): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return median(times);
}

function median(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Exit codes of a process ended by a signal, as a shell reports them: 128 + the signal's number. */
export const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * What SIGINT and SIGTERM do before the process exits (cli.ts installs the handlers): remove
 * the temporary file of an unfinished output, end a progress bar's line, and return the one
 * line to print. They run when the event loop gets a turn: while a file is read, between
 * chunks of a streamed write (streamRowsToFile), or while a quantity's file is written.
 */
export function interrupted(signal: keyof typeof SIGNAL_EXIT_CODES): string {
  const removed = removeTemporaryFiles();
  progress?.interrupt();
  const what = removed.length > 0
    ? `${removed.join(", ")} not written (left as it was; the unfinished temporary file is removed)`
    : completedOutput !== undefined
    ? `${completedOutput} was already complete and is kept`
    : "no output written";
  return `jacobian-wasm: interrupted by ${signal}; ${what}`;
}

