/**
 * The command line's commands: `jacobian-wasm jacobian ...` computes per-sample gradients or
 * output Jacobians of a model file on a batch file; `jacobian-wasm demo` runs the seed's example.
 * cli.ts runs them for the process; `runCommandLine` runs them in-process (tests, the fuzzer).
 * A success ends with one line on stderr (the file, its shape, the time); bad input ends with
 * one line on stderr and exit code 2, and never a half-written file; no arguments print the
 * usage on stderr, also with exit code 2.
 */
import { readFileSync, statfsSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { setImmediate } from "node:timers";
import { fileURLToPath } from "node:url";
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
import { simdBuild, threads } from "./wasm.ts";

const JACOBIAN_SYNOPSIS = `  jacobian-wasm jacobian --model M.json --weights W.safetensors --input X.npy
                         [--target Y.npy --loss cross_entropy|mse] [--reduction sum|mean]
                         [--quantity jacobian|batch_l2|sum_grad_squared|variance|ntk|clipped_sum]
                         [--max-norm C] --out J.npy|J.safetensors [--max-out BYTES] [--time R]`;
const DEMO_SYNOPSIS = "  jacobian-wasm demo [--n N]";
const OTHER_SYNOPSIS = "  jacobian-wasm --help | jacobian --help | demo --help | --version";

/** What no arguments print, on stderr: the synopsis only, the details being one --help away. */
const SHORT_USAGE = `usage:\n${JACOBIAN_SYNOPSIS}\n${DEMO_SYNOPSIS}\n${OTHER_SYNOPSIS}`;

const JACOBIAN_HELP = `jacobian   without --loss: the Jacobian of the model output per sample, [N, D] or [N, K, D];
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
           (samples done, elapsed time, ETA) is drawn on stderr; otherwise none is.
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
           On success, one line on stderr names the file written, its shape and the time
           taken (with --time, the JSON line is printed instead).`;

const DEMO_HELP = `demo       the seed's example (a small Conv3d network, N = 1000 samples, --n up to 200000):
           its output Jacobian computed in one pass, and again by a naive loop of one
           backward pass per sample; prints both shapes and times, their largest
           difference and the speedup.`;

const USAGE = `usage:\n${JACOBIAN_SYNOPSIS}\n${DEMO_SYNOPSIS}\n${OTHER_SYNOPSIS}\n\n${JACOBIAN_HELP}\n${DEMO_HELP}`;

/** `jacobian-wasm <command> --help`: the command's synopsis and its part of USAGE. */
const COMMAND_HELP: Record<string, string> = {
  jacobian: `usage:\n${JACOBIAN_SYNOPSIS}\n\n${JACOBIAN_HELP}`,
  demo: `usage:\n${DEMO_SYNOPSIS}\n\n${DEMO_HELP}`,
};

/** A mistake in the command line itself. */
export class UsageError extends Error {
  /** `"UsageError"`, so messages and stacks name the kind of error. */
  override name = "UsageError";
  /** The command whose `--help` the message points at (none: the tool's own `--help`). */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
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
  if (argv.length === 0) {
    for (const line of SHORT_USAGE.split("\n")) output.printError(line);
    return 2;
  }
  try {
    await main(argv, output);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      const help = error.command === undefined ? "jacobian-wasm --help" : `jacobian-wasm ${error.command} --help`;
      output.printError(`jacobian-wasm: ${error.message} (see ${help})`);
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
  if (command === "--help" || command === "-h" || command === "help") {
    const topic = rest[0];
    if (command === "help" && topic !== undefined) {
      if (!Object.hasOwn(COMMAND_HELP, topic)) throw new UsageError(`no help for ${JSON.stringify(topic)}; the commands are "jacobian" and "demo"`);
      output.print(COMMAND_HELP[topic]);
      return;
    }
    output.print(USAGE);
    return;
  }
  if (command === "--version") {
    output.print(`jacobian-wasm ${packageVersion()}`);
    return;
  }
  if (command === "jacobian") return pointingAtHelpOf("jacobian", () => jacobianCommand(rest, output));
  if (command === "demo") return demoCommand(rest, output);
  if (command.startsWith("-")) throw new UsageError(`unknown option ${JSON.stringify(command)}; a command (jacobian or demo) comes first`);
  throw new UsageError(`unknown command ${JSON.stringify(command)}; the commands are "jacobian" and "demo"`);
}

/** Runs a command with its UsageErrors pointing at its own --help. */
async function pointingAtHelpOf(command: string, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    if (error instanceof UsageError && error.command === undefined) throw new UsageError(error.message, command);
    throw error;
  }
}

/** Asked for a command's help (`--help` or `-h` among its options) rather than to run it. */
const HELP_REQUESTED = Symbol("help requested");

/**
 * A command's options, all of the form `--name value` or `--name=value` (the last one given
 * wins), or HELP_REQUESTED when `--help` or `-h` comes before any mistake. Written here rather
 * than left to node:util's parseArgs so that its mistakes read like the others, and alike on
 * node, deno and bun.
 */
function parseOptions<Name extends string>(
  command: string,
  args: string[],
  names: readonly Name[],
): Partial<Record<Name, string>> | typeof HELP_REQUESTED {
  const values: Partial<Record<Name, string>> = {};
  for (let i = 0; i < args.length; i++) {
    const token = args[i];
    if (token === "--help" || token === "-h") return HELP_REQUESTED;
    if (token === "--") {
      if (i + 1 < args.length) throw new UsageError(`unexpected argument ${JSON.stringify(args[i + 1])} after "--": ${command} takes options only`, command);
      break;
    }
    if (!token.startsWith("--")) {
      throw new UsageError(
        token.startsWith("-") && token !== "-" ? `unknown option ${JSON.stringify(token)}` : `unexpected argument ${JSON.stringify(token)}: ${command} takes options only`,
        command,
      );
    }
    const equals = token.indexOf("=");
    const name = (equals < 0 ? token.slice(2) : token.slice(2, equals)) as Name;
    if (!names.includes(name)) throw new UsageError(`unknown option ${JSON.stringify(`--${name}`)}`, command);
    if (equals >= 0) {
      values[name] = token.slice(equals + 1);
      continue;
    }
    const value = args[i + 1];
    if (value === undefined) throw new UsageError(`--${name} needs a value`, command);
    if (value.length > 1 && value.startsWith("-")) {
      throw new UsageError(`--${name} needs a value, and ${JSON.stringify(value)} looks like an option; if it is the value, write --${name}=${value}`, command);
    }
    values[name] = value;
    i++;
  }
  return values;
}

/** The version in package.json, read from the package (dist/src/ or src/ sits below it). */
function packageVersion(): string {
  let directory: string;
  try {
    directory = dirname(fileURLToPath(import.meta.url));
  } catch {
    return "(version unknown: not run from a file)";
  }
  for (let up = 0; up < 4; up++) {
    try {
      const manifest = JSON.parse(readFileSync(join(directory, "package.json"), "utf8"));
      if (manifest?.name === "jacobian-wasm" && typeof manifest.version === "string") return manifest.version;
    } catch {
      // no package.json here, or not ours: one directory up
    }
    directory = dirname(directory);
  }
  return "(version unknown: no package.json of jacobian-wasm above this file)";
}

const JACOBIAN_OPTIONS = ["model", "weights", "input", "target", "loss", "reduction", "out", "time", "quantity", "max-norm", "max-out"] as const;

async function jacobianCommand(args: string[], output: CommandLineOutput): Promise<void> {
  const start = performance.now(); // for the success line: the whole run, reading the files included
  const values = parseOptions("jacobian", args, JACOBIAN_OPTIONS);
  if (values === HELP_REQUESTED) {
    output.print(COMMAND_HELP.jacobian);
    return;
  }
  for (const required of ["model", "weights", "input", "out"] as const) {
    if (values[required] === undefined) throw new UsageError(`--${required} is required`, "jacobian");
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
    const shape = await streamRowsToFile(out, format, N, parameters, computeRows, chunks, repeats, printTiming);
    const what = target === undefined ? "output Jacobian" : "per-sample gradients";
    if (repeats === 0) output.printError(wrote(out, format, what, shape, parameters.length, start));
    return;
  }

  const compute = () => computeQuantity(quantity, net, x, target, { loss, reduction, maxNorm });
  const computeStart = performance.now();
  const result = compute();
  const coldMs = performance.now() - computeStart;
  if (repeats > 0) printTiming(coldMs, medianMs(compute, repeats));
  const bytes = format === "safetensors" ? writeSafetensors(quantityTensors(quantity, net, result)) : writeNpy(result.data, result.shape);
  await writeFileAtomic(out, bytes);
  completedOutput = out;
  if (repeats === 0) output.printError(wrote(out, format, quantity, result.shape, quantity === "ntk" ? 1 : net.parameters().length, start));
}

/**
 * The line a successful run ends with on stderr: the file, what it holds, its shape (for
 * .safetensors the shape of what was split into tensors) and the time since the command began.
 */
function wrote(out: string, format: "npy" | "safetensors", what: string, shape: readonly number[], tensors: number, start: number): string {
  const ms = performance.now() - start;
  const seconds = (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);
  const split = format === "npy" ? "" : tensors === 1 ? " as 1 tensor" : ` as ${tensors} tensors, one per parameter,`;
  return `jacobian-wasm: wrote ${out}: ${what} [${shape.join(", ")}]${split} in ${seconds} s`;
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
): Promise<readonly number[]> {
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
    const D = parameters.reduce((sum, [, shape]) => sum + shape.reduce((a, b) => a * b, 1), 0);
    let shape: readonly number[] = [N, D]; // [N, K, D] when the chunks say K
    for (const { firstSample, rows } of chunks()) {
      if (rows.shape.length === 3) shape = [N, rows.shape[1], D];
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
    return shape;
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
  const values = parseOptions("demo", args, ["n"]);
  if (values === HELP_REQUESTED) {
    output.print(COMMAND_HELP.demo);
    return;
  }
  const N = values.n === undefined ? 1000 : Number(values.n);
  // The demo holds N samples and loops over them one by one: past DEMO_MAX_SAMPLES it would
  // only be slow, and past 2^31 / 216 its input could not even be allocated (a RangeError).
  if (!Number.isInteger(N) || N < 1 || N > DEMO_MAX_SAMPLES) {
    throw new UsageError(`--n must be an integer from 1 to ${DEMO_MAX_SAMPLES}, got "${values.n}"`, "demo");
  }
  manualSeed(0);
  const net = seedNetwork();
  const x = randn([N, 1, 6, 6, 6], 1);
  const D = net.parameters().reduce((sum, [, p]) => sum + p.data.length, 0);
  output.print(`jacobian-wasm demo: the per-sample Jacobian of the seed3d network (the example of pytorch-Jacobian, this project's seed; ${simdBuild()} SIMD build, ${threads()} thread${threads() === 1 ? "" : "s"})`);
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

