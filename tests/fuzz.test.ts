// Fuzzing: generated inputs to the three parsers (.npy, .safetensors, model specs with loadModel)
// and to the command line, run in this process. Every input must give a valid result or one of
// the library's typed errors, within TIME_BOUND_MS, and the WebAssembly memory must not grow past
// MEMORY_GROWTH_BOUND over the whole run. `npm test` runs DEFAULT_FUZZ_INPUTS inputs with a fixed
// seed; `npm run fuzz` runs 100000 (JACOBIAN_WASM_FUZZ_INPUTS). Regression tests for what the
// fuzzer found are at the end.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import {
  commandLines,
  fuzzBudget,
  fuzzParameters,
  mutate,
  npyInputs,
  outcomeOf,
  safetensorsInputs,
  showBytes,
  specArgument,
  specInputs,
  Tally,
  TIME_BOUND_MS,
  weightsEdits,
} from "./helpers/fuzz.ts";
import type { SpecInput, WeightsEdit } from "./helpers/fuzz.ts";
import { npyToFloat32, npyToIntegers, readNpy, writeNpy } from "../src/io/npy.ts";
import type { NpyArray } from "../src/io/npy.ts";
import { readSafetensors, readSafetensorsMetadata, writeSafetensors } from "../src/io/safetensors.ts";
import { loadModel, MAX_SPEC_DEPTH, modelFromSpec } from "../src/io/spec.ts";
import { FormatError } from "../src/errors.ts";
import { Sequential } from "../src/layers/sequential.ts";
import { MAX_PARAMETERS } from "../src/layers/init.ts";
import { numel } from "../src/tensor.ts";
import type { Tensor } from "../src/tensor.ts";
import { kernels } from "../src/wasm.ts";
import { runCommandLine } from "../src/command_line.ts";

const budget = fuzzBudget();

/** The WebAssembly memory may grow this much over the whole run (the command line's plans for its small models). */
const MEMORY_GROWTH_BOUND = 16 * 2 ** 20;
const wasmBytes = () => kernels().memory.buffer.byteLength;
const memoryAtStart = wasmBytes();

function assertMemoryBounded(after: string): void {
  const growth = wasmBytes() - memoryAtStart;
  assert.ok(growth <= MEMORY_GROWTH_BOUND, `WebAssembly memory grew by ${growth} bytes after ${after}, over the bound of ${MEMORY_GROWTH_BOUND}`);
}

/** A typed error's message says what and where in one line of reasonable length, starting with the name it was given. */
function assertClearMessage(error: Error, prefixes: readonly string[]): void {
  assert.ok(prefixes.some((p) => error.message.startsWith(p)), `message does not name the input (${prefixes.join(" or ")}): ${error.message.slice(0, 300)}`);
  assert.ok(!error.message.includes("\n"), `message is not one line: ${JSON.stringify(error.message.slice(0, 300))}`);
  assert.ok(error.message.length <= 4000, `message is ${error.message.length} characters: ${error.message.slice(0, 300)}…`);
}

const totals: Tally[] = [];
const fuzzStart = performance.now();

// ---------------------------------------------------------------------------------------------
// .npy

function assertValidArray(array: NpyArray): void {
  assert.ok(array.shape.every((size) => Number.isSafeInteger(size) && size >= 0), `shape ${array.shape}`);
  assert.equal(array.data.length, numel(array.shape));
  const kinds = { float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array };
  assert.ok(array.data instanceof kinds[array.dtype], `dtype ${array.dtype} holds a ${array.data.constructor.name}`);
}

test(`fuzz: readNpy on ${budget.npy} generated files gives an array or a typed error naming the file, within ${TIME_BOUND_MS} ms`, async () => {
  const tally = new Tally();
  await fc.assert(
    fc.asyncProperty(npyInputs, async (bytes) => {
      const what = () => `readNpy(${showBytes(bytes)})`;
      const outcome = await outcomeOf(() => {
        const array = readNpy(bytes, "fuzz.npy");
        assertValidArray(array);
        // What the CLI does with an array next: inputs as float32, class targets as integers.
        assert.equal(npyToFloat32(array, "fuzz.npy").length, array.data.length);
        assert.equal(npyToIntegers(array, "fuzz.npy").length, array.data.length);
        return array;
      }, what);
      if (!outcome.ok) assertClearMessage(outcome.error, ["fuzz.npy: "]);
      tally.count(outcome);
    }),
    fuzzParameters(runs(budget.npy)),
  );
  assertMemoryBounded("the .npy inputs");
  console.log(tally.summary(".npy"));
  totals.push(tally);
});

// ---------------------------------------------------------------------------------------------
// .safetensors

test(`fuzz: readSafetensors on ${budget.safetensors} generated files gives tensors or a typed error naming the file, within ${TIME_BOUND_MS} ms`, async () => {
  const tally = new Tally();
  await fc.assert(
    fc.asyncProperty(safetensorsInputs, async (bytes) => {
      const what = () => `readSafetensors(${showBytes(bytes)})`;
      const outcome = await outcomeOf(() => {
        const tensors = readSafetensors(bytes, "fuzz.safetensors");
        for (const [name, t] of tensors) {
          assert.ok(t.data instanceof Float32Array, `tensor "${name}"`);
          assert.equal(t.data.length, numel(t.shape), `tensor "${name}" of shape ${t.shape}`);
        }
        // A file whose tensors read has a header whose metadata reads too.
        readSafetensorsMetadata(bytes, "fuzz.safetensors");
        return tensors;
      }, what);
      if (!outcome.ok) assertClearMessage(outcome.error, ["fuzz.safetensors: "]);
      tally.count(outcome);
    }),
    fuzzParameters(runs(budget.safetensors)),
  );
  assertMemoryBounded("the .safetensors inputs");
  console.log(tally.summary(".safetensors"));
  totals.push(tally);
});

// ---------------------------------------------------------------------------------------------
// Model specs, and loadModel on the weights of the specs that build

/** The network's own state dict as a .safetensors file, edited as `edit` says. */
function editedWeights(net: Sequential, edit: WeightsEdit, which: number): Uint8Array {
  const entries: [string, Tensor][] = Object.entries(net.stateDict()).map(([k, t]) => [k, { shape: [...t.shape], data: new Float32Array(t.data) }]);
  const i = entries.length === 0 ? 0 : which % entries.length;
  if (edit === "drop" && entries.length > 0) entries.splice(i, 1);
  if (edit === "extra") entries.push(["unexpected.weight", { shape: [2], data: new Float32Array(2) }]);
  if (edit === "reshape" && entries.length > 0) entries[i] = [entries[i][0], { shape: [entries[i][1].data.length + 1], data: new Float32Array(entries[i][1].data.length + 1) }];
  if (edit === "nan" && entries.length > 0 && entries[i][1].data.length > 0) entries[i][1].data[which % entries[i][1].data.length] = NaN;
  return writeSafetensors(entries);
}

test(`fuzz: modelFromSpec and loadModel on ${budget.spec} generated specs give a network or a typed error naming the spec, within ${TIME_BOUND_MS} ms`, async () => {
  const tally = new Tally();
  await fc.assert(
    fc.asyncProperty(specInputs, weightsEdits, async (input: SpecInput, weights) => {
      const { argument, text } = specArgument(input);
      const shown = () => (text.length > 400 ? `${text.slice(0, 200)}…${text.slice(-200)} (${text.length} characters)` : text);
      const built = await outcomeOf(() => {
        const net = modelFromSpec(argument);
        assert.ok(net instanceof Sequential);
        const count = net.parameters().reduce((sum, [, p]) => sum + p.data.length, 0);
        assert.ok(count <= MAX_PARAMETERS, `${count} parameters`);
        return { net, count };
      }, () => `modelFromSpec(${shown()})`);
      if (!built.ok) assertClearMessage(built.error, ["model spec"]);
      tally.count(built);
      // The network's own weights, edited or not, through loadModel (the CLI's path) with the spec as text.
      if (!built.ok || built.value.count > 100_000) return;
      let file = editedWeights(built.value.net, weights.edit === "bytes" ? "none" : weights.edit, weights.which);
      if (weights.edit === "bytes") file = mutate(file, weights.bytes);
      const loaded = await outcomeOf(() => loadModel(text, file, { weights: "fuzz.safetensors" }), () => `loadModel(${shown()}, ${weights.edit} weights)`);
      if (weights.edit === "none") assert.ok(loaded.ok, `loadModel refused the network's own weights: ${!loaded.ok && loaded.error.message}`);
      if (!loaded.ok) assertClearMessage(loaded.error, ["fuzz.safetensors: ", "model spec"]);
      tally.count(loaded);
    }),
    fuzzParameters(runs(budget.spec)),
  );
  assertMemoryBounded("the model specs");
  console.log(tally.summary("spec"));
  totals.push(tally);
});

// ---------------------------------------------------------------------------------------------
// Command lines

/** The files the command lines name, in a fresh directory: two models with their weights and inputs, and broken files. */
function commandLineFixtures(): string {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-fuzz-"));
  const write = (name: string, bytes: Uint8Array | string) => writeFileSync(join(dir, name), bytes);
  const mlp = { format: "torch.nn.Sequential", layers: [{ type: "Linear", in_features: 4, out_features: 3 }, { type: "ReLU" }, { type: "Linear", in_features: 3, out_features: 2 }] };
  const conv = {
    format: "torch.nn.Sequential",
    layers: [{ type: "Conv1d", in_channels: 2, out_channels: 2, kernel_size: 3 }, { type: "Tanh" }, { type: "Flatten" }, { type: "Linear", in_features: 8, out_features: 2 }],
  };
  for (const [name, spec] of [["mlp", mlp], ["conv", conv]] as const) {
    write(`${name}.json`, JSON.stringify(spec));
    write(`${name}.safetensors`, writeSafetensors(Object.entries(modelFromSpec(spec).stateDict())));
  }
  const values = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  write("mlp_x.npy", writeNpy(values(20), [5, 4]));
  write("conv_x.npy", writeNpy(values(60), [5, 2, 6]));
  write("mlp_x_nan.npy", writeNpy(Float32Array.from(values(20), (v, i) => (i === 7 ? NaN : v)), [5, 4]));
  write("mlp_x_int.npy", writeNpy(Int32Array.from({ length: 20 }, (_, i) => i), [5, 4]));
  write("scalar.npy", writeNpy(new Float32Array([1]), []));
  write("empty_batch.npy", writeNpy(new Float32Array(0), [0, 4]));
  write("mlp_y.npy", writeNpy(values(10), [5, 2]));
  write("classes.npy", writeNpy(BigInt64Array.from([0n, 1n, 1n, 0n, 1n]), [5]));
  write("classes_bad.npy", writeNpy(BigInt64Array.from([0n, 7n, 1n, 0n, -3n]), [5]));
  write("classes_short.npy", writeNpy(Int32Array.from([0, 1, 1]), [3]));
  write("classes_float.npy", writeNpy(Float64Array.from([0, 0.5, 1, 0, 1]), [5]));
  write("bad_spec.json", JSON.stringify({ format: "torch.nn.Sequential", layers: [{ type: "LSTM" }] }));
  write("garbage.bin", Uint8Array.from({ length: 100 }, (_, i) => (i * 37) & 0xff));
  write("empty.bin", new Uint8Array(0));
  mkdirSync(join(dir, "dir"));
  mkdirSync(join(dir, "dir.npy"));
  return dir;
}

/** A generated command line with its `@file` tokens made paths in `dir`; `@same` is the model's own weights or input. */
function resolveLine(line: string[], dir: string): string[] {
  const model = line[line.indexOf("--model") + 1] ?? "";
  const base = model.startsWith("@conv") ? "conv" : "mlp";
  const same: Record<string, string> = { "--weights": `@${base}.safetensors`, "--input": `@${base}_x.npy` };
  return line.map((token, i) => (token === "@same" ? same[line[i - 1]] ?? "@mlp_x.npy" : token))
    .map((token) => token.replace(/@([\w./]+)/, (_, name) => join(dir, name)));
}

test(`fuzz: ${budget.cli} generated command lines end with exit code 0 and a readable file, or 2 and one line, within ${TIME_BOUND_MS} ms`, async () => {
  const tally = new Tally();
  const dir = commandLineFixtures();
  const fixtures = readdirSync(dir).sort();
  const outputs = ["out.npy", "out.safetensors", "out.txt"];
  try {
    await fc.assert(
      fc.asyncProperty(commandLines, async (generated) => {
        const line = resolveLine(generated, dir);
        for (const name of outputs) rmSync(join(dir, name), { force: true });
        const printed: string[] = [];
        const errors: string[] = [];
        const what = () => `jacobian-wasm ${generated.map((t) => JSON.stringify(t)).join(" ")}`;
        const outcome = await outcomeOf(() => runCommandLine(line, { print: (l) => printed.push(l), printError: (l) => errors.push(l) }), what);
        assert.ok(outcome.ok, "runCommandLine throws only untyped errors, which outcomeOf reports");
        const code = outcome.value;
        const left = readdirSync(dir).filter((name) => !fixtures.includes(name));
        if (code === 2 && line.length === 0) {
          // No arguments at all: the usage, on stderr.
          assert.equal(errors[0], "usage:", what());
          assert.deepEqual(printed, [], what());
          tally.count({ ok: false, error: Object.assign(new Error("usage"), { name: "exit code 2" }), ms: outcome.ms });
          return;
        }
        if (code === 2) {
          assert.equal(errors.length, 1, `${what()}: exit code 2 with ${errors.length} lines on stderr: ${errors.join(" | ")}`);
          assert.match(errors[0], /^jacobian-wasm: [^\n]+$/, what());
          assert.ok(errors[0].length <= 4000, `${what()}: a ${errors[0].length}-character message`);
          assert.deepEqual(left, [], `${what()}: failed but left files behind`);
          tally.count({ ok: false, error: Object.assign(new Error(errors[0]), { name: "exit code 2" }), ms: outcome.ms });
          return;
        }
        assert.equal(code, 0, what());
        if (line[0] === "jacobian" && printed[0]?.startsWith("usage:")) {
          // `--help` among the options: the command's help, and nothing written.
          assert.ok(line.includes("--help"), `${what()}: printed the help unasked`);
          assert.deepEqual(left, [], `${what()}: printed the help but left files`);
        } else if (line[0] === "jacobian") {
          // The last --out given, as `--out P` or `--out=P`, is the one parseArgs keeps.
          let out = "";
          line.forEach((token, i) => {
            if (token === "--out") out = line[i + 1];
            else if (token.startsWith("--out=")) out = token.slice("--out=".length);
          });
          assert.ok(existsSync(out), `${what()}: exit code 0 but no ${out}`);
          const bytes = new Uint8Array(readFileSync(out));
          if (out.endsWith(".npy")) assertValidArray(readNpy(bytes, out));
          else readSafetensors(bytes, out);
          assert.deepEqual(left.filter((name) => join(dir, name) !== out), [], `${what()}: left files besides ${out}`);
          // One line on stderr: the success line, or with --time its JSON line.
          assert.equal(errors.length, 1, `${what()}: exit code 0 with ${errors.length} lines on stderr: ${errors.join(" | ")}`);
          assert.match(errors[0], line.some((t) => t === "--time" || t.startsWith("--time=")) ? /^\{"N":/ : /^jacobian-wasm: wrote /, what());
        } else {
          assert.ok(printed.length > 0, `${what()}: exit code 0 and printed nothing`);
        }
        tally.count({ ok: true, value: code, ms: outcome.ms });
      }),
      fuzzParameters(runs(budget.cli)),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assertMemoryBounded("the command lines");
  console.log(tally.summary("command line"));
  totals.push(tally);
  const inputs = totals.reduce((sum, t) => sum + t.inputs, 0);
  console.log(
    `fuzz: ${inputs} runs of ${budget.total} generated inputs (${budget.npy} .npy, ${budget.safetensors} .safetensors, ${budget.spec} specs, ` +
      `${budget.cli} command lines; a spec that builds is loaded with its weights too) in ${((performance.now() - fuzzStart) / 1000).toFixed(1)} s; ` +
      `WebAssembly memory ${memoryAtStart} -> ${wasmBytes()} bytes; no crash, hang or untyped error`,
  );
});

// ---------------------------------------------------------------------------------------------
// What the fuzzer found

test("fuzz regression: demo --n past what the demo can hold is a usage error (exit code 2), not a RangeError from the allocator", async () => {
  const errors: string[] = [];
  const code = await runCommandLine(["demo", "--n", "1e12"], { print: () => {}, printError: (l) => errors.push(l) });
  assert.equal(code, 2);
  assert.match(errors[0], /--n must be an integer from 1 to 200000, got "1e12"/);
});

test("fuzz regression: a spec nested thousands deep is a FormatError naming the limit, not a stack overflow (RangeError) or a 20 KB message", () => {
  const nested = (depth: number, open: string, close: string) =>
    `{"format":"torch.nn.Sequential","layers":[${open.repeat(depth)}{"type":"ReLU"}${close.repeat(depth)}]}`;
  for (const text of [
    nested(10000, '{"type":"Sequential","layers":[', "]}"),
    nested(10000, '{"type":"Residual","block":', "}"),
    nested(50000, "[", "]"), // was a RangeError: JSON.stringify of the layer for the message overflowed
  ]) {
    for (const spec of [text, JSON.parse(text)]) {
      assert.throws(() => modelFromSpec(spec), (error: Error) => {
        assert.ok(error instanceof FormatError, `${error.name}: ${error.message.slice(0, 200)}`);
        assert.ok(error.message.length < 1000, `${error.message.length} characters`);
        return true;
      });
    }
  }
  assert.throws(() => modelFromSpec(JSON.parse(nested(MAX_SPEC_DEPTH, '{"type":"Sequential","layers":[', "]}"))), /layers nested more than 100 deep/);
  // As deep as allowed still builds.
  assert.ok(modelFromSpec(JSON.parse(nested(MAX_SPEC_DEPTH - 1, '{"type":"Sequential","layers":[', "]}"))) instanceof Sequential);
});

test("fuzz regression: spec errors quote the offending value shortly (a 1000-deep \"layers\" object was quoted whole, 42 KB)", () => {
  let layers: unknown = { type: "ReLU" };
  for (let i = 0; i < 1000; i++) layers = { type: "Sequential", layers: { layers } };
  assert.throws(() => modelFromSpec({ format: "torch.nn.Sequential", layers: [layers] }), (error: Error) => {
    assert.ok(error instanceof FormatError);
    assert.match(error.message, /^model spec, layer 0: "layers" must be a list of layers, got \{"layers":.*…$/);
    assert.ok(error.message.length < 200, `${error.message.length} characters`);
    return true;
  });
});

test("fuzz regression: a Parallel with no branches is a FormatError naming the layer, not the constructor's TypeError", () => {
  const spec = { format: "torch.nn.Sequential", layers: [{ type: "Parallel", branches: [], combine: "concat" }] };
  assert.throws(() => modelFromSpec(spec), (error: Error) => {
    assert.ok(error instanceof FormatError, error.name);
    assert.equal(error.message, 'model spec, layer 0 (Parallel): "branches" must hold one or more layers, got []');
    return true;
  });
});

test("fuzz regression: a .safetensors header that is not JSON gives a one-line message (the runtime's quoted a newline)", () => {
  const bytes = Uint8Array.from([20, 0, 0, 0, 0, 0, 0, 0, ...new TextEncoder().encode('{"__metadata__":z}}\n')]);
  assert.throws(() => readSafetensors(bytes, "w.safetensors"), (error: Error) => {
    assert.ok(error instanceof FormatError);
    assert.match(error.message, /^w\.safetensors: the header \(bytes 8-27\) is not valid JSON: [^\n]+$/);
    return true;
  });
  assert.throws(() => modelFromSpec('{"format":\n z}'), (error: Error) => error instanceof FormatError && !error.message.includes("\n"));
});

test("fuzz regression: a .safetensors shape nested thousands deep is a FormatError, not a stack overflow in its message", () => {
  const shape = "[".repeat(20000) + "]".repeat(20000);
  const header = `{"w":{"dtype":"F32","shape":${shape},"data_offsets":[0,4]}}`;
  const text = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + text.length + 4);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(text.length), true);
  bytes.set(text, 8);
  assert.throws(() => readSafetensors(bytes, "w.safetensors"), (error: Error) => {
    assert.ok(error instanceof FormatError, `${error.name}: ${error.message.slice(0, 200)}`);
    // "[…]" where JSON.stringify overflows the stack (node), the value cut short where it does not (deno, bun).
    assert.match(error.message, /^w\.safetensors: tensor "w" has shape \[[^\n]*, not a list of non-negative integers$/);
    assert.ok(error.message.length < 200, `${error.message.length} characters`);
    return true;
  });
});
