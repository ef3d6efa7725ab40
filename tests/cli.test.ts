/**
 * The command line: results equal the library's, a success ends with one line on stderr (the
 * file, its shape, the time), `--time` prints its JSON line instead, the demo runs, `--help`,
 * `<command> --help` and `--version` answer on stdout, no arguments print the usage on stderr
 * (exit code 2), and every kind of bad input ends with exit code 2, one line on stderr, no
 * stack trace, and no output file (an existing one is left as it was).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import {
  jacobian,
  loadModel,
  modelFromSpec,
  perSampleGradients,
  randn,
  readNpy,
  readSafetensors,
  writeNpy,
  writeSafetensors,
} from "../mod.ts";
import type { ModelSpec, Tensor } from "../mod.ts";
import { manualSeed } from "../src/layers/init.ts";
import { root, runCli } from "./helpers/cli.ts";

const SPEC: ModelSpec = {
  format: "torch.nn.Sequential",
  layers: [
    { type: "Conv1d", in_channels: 2, out_channels: 3, kernel_size: 3, padding: 1 },
    { type: "Tanh" },
    { type: "Sequential", layers: [{ type: "Flatten" }, { type: "Linear", in_features: 15, out_features: 4 }] },
  ],
};

interface Files {
  dir: string;
  model: string;
  weights: string;
  input: string;
  target: string;
  targetMse: string;
}

function setUp(): Files {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-cli-"));
  manualSeed(3);
  const net = modelFromSpec(SPEC);
  const files: Files = {
    dir,
    model: join(dir, "model.json"),
    weights: join(dir, "weights.safetensors"),
    input: join(dir, "x.npy"),
    target: join(dir, "y.npy"),
    targetMse: join(dir, "y_mse.npy"),
  };
  writeFileSync(files.model, JSON.stringify(SPEC));
  writeFileSync(files.weights, writeSafetensors(Object.entries(net.stateDict())));
  writeFileSync(files.input, writeNpy(randn([5, 2, 5], 7).data, [5, 2, 5]));
  writeFileSync(files.target, writeNpy(new BigInt64Array([0n, 3n, 1n, 2n, 3n]), [5]));
  writeFileSync(files.targetMse, writeNpy(randn([5, 4], 8).data, [5, 4]));
  return files;
}

function loadFromFiles(files: Files) {
  return loadModel(readFileSync(files.model, "utf8"), new Uint8Array(readFileSync(files.weights)));
}

function inputTensor(files: Files): Tensor {
  const x = readNpy(new Uint8Array(readFileSync(files.input)));
  return { shape: x.shape, data: x.data as Float32Array };
}

function base(files: Files, out: string): string[] {
  return ["jacobian", "--model", files.model, "--weights", files.weights, "--input", files.input, "--out", out];
}

test("cli jacobian writes the output Jacobian [N, K, D] as .npy, equal to the library's", () => {
  const files = setUp();
  try {
    const out = join(files.dir, "J.npy");
    const run = runCli(base(files, out));
    assert.equal(run.status, 0, run.stderr);
    const written = readNpy(new Uint8Array(readFileSync(out)));
    const expected = jacobian(loadFromFiles(files), inputTensor(files));
    assert.deepEqual(written.shape, expected.shape);
    assert.deepEqual(written.shape, [5, 4, 3 * 2 * 3 + 3 + 15 * 4 + 4]);
    assert.deepEqual(Array.from(written.data as Float32Array), Array.from(expected.data));
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

test("cli per-sample loss gradients: cross-entropy with int64 targets to .safetensors, MSE to .npy", () => {
  const files = setUp();
  try {
    const out = join(files.dir, "G.safetensors");
    const run = runCli([...base(files, out), "--target", files.target, "--loss", "cross_entropy", "--reduction", "sum"]);
    assert.equal(run.status, 0, run.stderr);
    const tensors = readSafetensors(new Uint8Array(readFileSync(out)));
    const net = loadFromFiles(files);
    const expected = perSampleGradients(net, inputTensor(files), { shape: [5], data: new Int32Array([0, 3, 1, 2, 3]) }, {
      loss: "cross_entropy",
      reduction: "sum",
      asTuple: true,
    });
    assert.deepEqual([...tensors.keys()], net.parameters().map(([name]) => name));
    [...tensors.values()].forEach((t, i) => {
      assert.deepEqual(t.shape, expected[i].shape);
      assert.deepEqual(Array.from(t.data), Array.from(expected[i].data));
    });

    const outMse = join(files.dir, "G.npy");
    const mse = runCli([...base(files, outMse), "--target", files.targetMse, "--loss", "mse"]);
    assert.equal(mse.status, 0, mse.stderr);
    const target = readNpy(new Uint8Array(readFileSync(files.targetMse)));
    const expectedMse = perSampleGradients(net, inputTensor(files), { shape: target.shape, data: target.data as Float32Array }, {
      loss: "mse",
      reduction: "mean",
    });
    const written = readNpy(new Uint8Array(readFileSync(outMse)));
    assert.deepEqual(written.shape, [5, expectedMse.shape[1]]);
    assert.deepEqual(Array.from(written.data as Float32Array), Array.from(expectedMse.data));
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

test("cli --time R prints one JSON line with N, D, cold_ms and median_ms on stderr", () => {
  const files = setUp();
  try {
    const run = runCli([...base(files, join(files.dir, "J.npy")), "--time", "3"]);
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    const record = JSON.parse(lines[0]);
    assert.deepEqual(Object.keys(record), ["N", "D", "cold_ms", "median_ms"]);
    assert.equal(record.N, 5);
    assert.equal(record.D, 85);
    assert.ok(record.cold_ms > 0 && record.median_ms > 0);
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

test("cli demo runs the seed's example against the naive loop and reports shapes, difference and speedup", () => {
  const run = runCli(["demo", "--n", "40"]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /J shape \[40, 33\]/);
  assert.match(run.stdout, /max \|difference\| \S+/);
  assert.match(run.stdout, /speedup\s+[\d.]+x/);
  const difference = Number(/max \|difference\| (\S+)/.exec(run.stdout)![1]);
  assert.ok(difference <= 1e-5, run.stdout);
});

/** Each bad input: [what, how to break the files, extra args, a pattern the message must match]. */
const BAD_INPUTS: [string, (f: Files) => void, (f: Files) => string[], RegExp][] = [
  ["a missing input file", (f) => rmSync(f.input), () => [], /x\.npy.*no such file/],
  ["an unknown layer type", (f) => writeFileSync(f.model, JSON.stringify({ ...SPEC, layers: [{ type: "Conv7d" }] })), () => [], /layer 0: unknown layer type "Conv7d"/],
  [
    "an unknown hyperparameter",
    (f) => writeFileSync(f.model, JSON.stringify({ ...SPEC, layers: [{ ...SPEC.layers[0], kernal_size: 3 }, ...SPEC.layers.slice(1)] })),
    () => [],
    /layer 0 \(Conv1d\): unknown hyperparameter "kernal_size"/,
  ],
  ["a spec that is not JSON", (f) => writeFileSync(f.model, "{ not json"), () => [], /not valid JSON/],
  [
    "a missing weight",
    (f) => {
      const t = readSafetensors(new Uint8Array(readFileSync(f.weights)));
      t.delete("2.1.bias");
      writeFileSync(f.weights, writeSafetensors(t));
    },
    () => [],
    /"2\.1\.bias" \(4,\) is missing/,
  ],
  [
    "a mis-shaped weight",
    (f) => {
      const t = readSafetensors(new Uint8Array(readFileSync(f.weights)));
      t.set("0.weight", { shape: [3, 2, 2], data: new Float32Array(12) });
      writeFileSync(f.weights, writeSafetensors(t));
    },
    () => [],
    /"0\.weight" has shape \(3, 2, 2\), the model expects \(3, 2, 3\)/,
  ],
  [
    "a truncated .safetensors file",
    (f) => writeFileSync(f.weights, readFileSync(f.weights).subarray(0, 200)),
    () => [],
    /weights\.safetensors/,
  ],
  ["a malformed .npy file", (f) => writeFileSync(f.input, "not an npy file at all"), () => [], /x\.npy/],
  [
    "NaN in a weight",
    (f) => {
      const t = readSafetensors(new Uint8Array(readFileSync(f.weights)));
      t.get("2.1.weight")!.data[7] = NaN;
      writeFileSync(f.weights, writeSafetensors(t));
    },
    () => [],
    /"2\.1\.weight" holds NaN at index \[0, 7\]/,
  ],
  [
    "Infinity in the input",
    (f) => {
      const x = randn([5, 2, 5], 7).data;
      x[13] = Infinity;
      writeFileSync(f.input, writeNpy(x, [5, 2, 5]));
    },
    () => [],
    /input holds Infinity at index \[1, 0, 3\]/,
  ],
  [
    "a target out of range",
    (f) => writeFileSync(f.target, writeNpy(new BigInt64Array([0n, 4n, 1n, 2n, 3n]), [5])),
    (f) => ["--target", f.target, "--loss", "cross_entropy"],
    /target 4 at index 1 is not a class index in \[0, 3\]/,
  ],
  [
    "an input of the wrong shape",
    (f) => writeFileSync(f.input, writeNpy(randn([5, 3, 5], 7).data, [5, 3, 5])),
    () => [],
    /0 \(Conv1d\): expected input \(N, 2, W\), got \(N, 3, 5\)/,
  ],
  ["an unknown option", () => {}, () => ["--frobnicate"], /frobnicate/],
  ["--loss without --target", () => {}, () => ["--loss", "mse"], /--loss needs --target/],
];

for (const [what, breakFiles, extra, message] of BAD_INPUTS) {
  test(`cli: ${what} gives exit code 2, one line on stderr, and leaves the output file as it was`, () => {
    const files = setUp();
    try {
      breakFiles(files);
      const out = join(files.dir, "J.npy");
      writeFileSync(out, "previous contents");
      const run = runCli([...base(files, out), ...extra(files)]);
      assert.equal(run.status, 2, `exit code ${run.status}; stderr: ${run.stderr}`);
      const lines = run.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `one line expected, got: ${run.stderr}`);
      assert.match(lines[0], message);
      assert.doesNotMatch(run.stderr, /\n\s+at /, "no stack trace");
      assert.equal(readFileSync(out, "utf8"), "previous contents");
      assert.deepEqual(readdirSync(files.dir).filter((f) => f.endsWith(".tmp")), []);
    } finally {
      rmSync(files.dir, { recursive: true, force: true });
    }
  });
}

test("cli: an input of the wrong size names the input shape the model takes, exit code 2, no output file", () => {
  const files = setUp();
  try {
    // The model's Conv1d keeps the width and its Linear wants 3 × 5 features: a width of 7 fits no layer after Flatten.
    writeFileSync(files.input, writeNpy(randn([5, 2, 7], 7).data, [5, 2, 7]));
    const out = join(files.dir, "J.npy");
    const run = runCli(base(files, out));
    assert.equal(run.status, 2, `exit code ${run.status}; stderr: ${run.stderr}`);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `one line expected, got: ${run.stderr}`);
    assert.equal(
      lines[0],
      "jacobian-wasm: input (5, 2, 7) does not fit the network, which takes (N, 2, 5): the first layer to disagree is " +
        "2.1 (Linear): expected input (N, *, 15), got (N, 21) — the last dimension must be in_features = 15",
    );
    assert.doesNotMatch(run.stderr, /\n\s+at /, "no stack trace");
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(files.dir).filter((f) => f.endsWith(".tmp")), []);
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

test("cli: an output file that cannot be written gives exit code 2 and creates nothing", () => {
  const files = setUp();
  try {
    const out = join(files.dir, "no-such-dir", "J.npy");
    const run = runCli(base(files, out));
    assert.equal(run.status, 2, run.stderr);
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
    assert.match(run.stderr, /no-such-dir/);
    assert.equal(existsSync(out), false);
    const wrongKind = runCli(base(files, join(files.dir, "J.txt")));
    assert.equal(wrongKind.status, 2);
    assert.match(wrongKind.stderr, /--out must end in \.npy or \.safetensors/);
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

test("cli: a successful run ends with one line on stderr naming the file, what it holds, its shape and the time", () => {
  const files = setUp();
  try {
    const npy = join(files.dir, "J.npy");
    const jacobianRun = runCli(base(files, npy));
    assert.equal(jacobianRun.status, 0, jacobianRun.stderr);
    assert.equal(jacobianRun.stdout, "");
    assert.match(jacobianRun.stderr, new RegExp(`^jacobian-wasm: wrote ${escape(npy)}: output Jacobian \\[5, 4, 85\\] in \\d+\\.\\d\\d s\\n$`));

    const safetensors = join(files.dir, "G.safetensors");
    const gradients = runCli([...base(files, safetensors), "--target", files.target, "--loss", "cross_entropy"]);
    assert.equal(gradients.status, 0, gradients.stderr);
    assert.match(
      gradients.stderr,
      new RegExp(`^jacobian-wasm: wrote ${escape(safetensors)}: per-sample gradients \\[5, 85\\] as 4 tensors, one per parameter, in \\d+\\.\\d\\d s\\n$`),
    );

    const ntk = runCli([...base(files, safetensors), "--quantity", "ntk"]);
    assert.equal(ntk.status, 0, ntk.stderr);
    assert.match(ntk.stderr, new RegExp(`^jacobian-wasm: wrote ${escape(safetensors)}: ntk \\[20, 20\\] as 1 tensor in \\d+\\.\\d\\d s\\n$`));
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

test("cli --version prints package.json's version on stdout, from the sources and from the built dist/cli.js", () => {
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const run = runCli(["--version"]);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, `jacobian-wasm ${version}\n`);
  assert.equal(run.stderr, "");
  if (existsSync(join(root, "dist", "cli.js"))) {
    const built = spawnSync("node", [join(root, "dist", "cli.js"), "--version"], { encoding: "utf8" });
    assert.equal(built.status, 0, built.stderr);
    assert.equal(built.stdout, `jacobian-wasm ${version}\n`);
  }
});

test("cli <command> --help prints that command's help on stdout, exit code 0; --help prints both", () => {
  const jacobianHelp = runCli(["jacobian", "--help"]);
  assert.equal(jacobianHelp.status, 0, jacobianHelp.stderr);
  assert.equal(jacobianHelp.stderr, "");
  assert.match(jacobianHelp.stdout, /^usage:\n  jacobian-wasm jacobian --model M\.json/);
  assert.match(jacobianHelp.stdout, /--quantity \(default jacobian\)/);
  assert.doesNotMatch(jacobianHelp.stdout, /jacobian-wasm demo|naive loop/);
  // -h, and --help after other options, alike; `help jacobian` too
  for (const args of [["jacobian", "-h"], ["jacobian", "--model", "m.json", "--help"], ["help", "jacobian"]]) {
    const run = runCli(args);
    assert.equal(run.status, 0, `${args.join(" ")}: ${run.stderr}`);
    assert.equal(run.stdout, jacobianHelp.stdout, args.join(" "));
  }
  const demoHelp = runCli(["demo", "--help"]);
  assert.equal(demoHelp.status, 0, demoHelp.stderr);
  assert.match(demoHelp.stdout, /^usage:\n  jacobian-wasm demo \[--n N\]\n\ndemo {7}the seed's example/);
  assert.doesNotMatch(demoHelp.stdout, /--model/);
  const all = runCli(["--help"]);
  assert.equal(all.status, 0, all.stderr);
  assert.ok(all.stdout.includes(jacobianHelp.stdout.split("\n\n")[1]) && all.stdout.includes(demoHelp.stdout.split("\n\n")[1]), all.stdout);
});

test("cli with no arguments prints the usage on stderr and exits with code 2", () => {
  const run = runCli([]);
  assert.equal(run.status, 2, run.stderr);
  assert.equal(run.stdout, "");
  assert.equal(
    run.stderr,
    "usage:\n" +
      "  jacobian-wasm jacobian --model M.json --weights W.safetensors --input X.npy\n" +
      "                         [--target Y.npy --loss cross_entropy|mse] [--reduction sum|mean]\n" +
      "                         [--quantity jacobian|batch_l2|sum_grad_squared|variance|ntk|clipped_sum]\n" +
      "                         [--max-norm C] --out J.npy|J.safetensors [--max-out BYTES] [--time R]\n" +
      "  jacobian-wasm demo [--n N]\n" +
      "  jacobian-wasm --help | jacobian --help | demo --help | --version\n",
  );
});

/** Mistakes in the command line itself: [arguments, the one line on stderr]; exit code 2 for each. */
const ARGUMENT_MISTAKES: [string[], string][] = [
  [["jacobian", "--frobnicate"], `jacobian-wasm: unknown option "--frobnicate" (see jacobian-wasm jacobian --help)`],
  [["jacobian", "-x"], `jacobian-wasm: unknown option "-x" (see jacobian-wasm jacobian --help)`],
  [["jacobian", "--model=m.json", "--weights"], "jacobian-wasm: --weights needs a value (see jacobian-wasm jacobian --help)"],
  [
    ["jacobian", "--max-norm", "-1"],
    `jacobian-wasm: --max-norm needs a value, and "-1" looks like an option; if it is the value, write --max-norm=-1 (see jacobian-wasm jacobian --help)`,
  ],
  [["jacobian", "model.json"], `jacobian-wasm: unexpected argument "model.json": jacobian takes options only (see jacobian-wasm jacobian --help)`],
  [["jacobian", "--model", "m.json"], "jacobian-wasm: --weights is required (see jacobian-wasm jacobian --help)"],
  [["demo", "--m", "3"], `jacobian-wasm: unknown option "--m" (see jacobian-wasm demo --help)`],
  [["demo", "--n", "0"], `jacobian-wasm: --n must be an integer from 1 to 200000, got "0" (see jacobian-wasm demo --help)`],
  [["--bogus"], `jacobian-wasm: unknown option "--bogus"; a command (jacobian or demo) comes first (see jacobian-wasm --help)`],
  [["jacobain"], `jacobian-wasm: unknown command "jacobain"; the commands are "jacobian" and "demo" (see jacobian-wasm --help)`],
  [["help", "nope"], `jacobian-wasm: no help for "nope"; the commands are "jacobian" and "demo" (see jacobian-wasm --help)`],
];

for (const [args, line] of ARGUMENT_MISTAKES) {
  test(`cli: \`jacobian-wasm ${args.join(" ")}\` is refused with exit code 2 and its one line`, () => {
    const run = runCli(args);
    assert.equal(run.status, 2, `exit code ${run.status}; stderr: ${run.stderr}`);
    assert.equal(run.stderr, `${line}\n`);
    assert.equal(run.stdout, "");
  });
}

test("cli: weights that are not a safetensors file (a torch.save zip) and an input that is not a .npy file get one line saying so", () => {
  const files = setUp();
  try {
    // The start of a torch.save file: a zip archive whose first entry is archive/data.pkl.
    const zip = new Uint8Array(600);
    zip.set([0x50, 0x4b, 0x03, 0x04, 0x00, 0x00, 0x08, 0x08], 0);
    writeFileSync(files.weights, zip);
    const out = join(files.dir, "J.npy");
    const weights = runCli(base(files, out));
    assert.equal(weights.status, 2, weights.stderr);
    assert.equal(
      weights.stderr,
      `jacobian-wasm: ${files.weights}: not a safetensors file: it starts with 50 4b 03 04 00 00 08 08, not an 8-byte header length ` +
        `followed by "{" (a zip archive, as torch.save writes: export the model with tools/export_torch.py)\n`,
    );
    const again = setUp();
    try {
      writeFileSync(again.input, readFileSync(again.weights)); // a safetensors file given as the input
      const header = [...readFileSync(again.weights).subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
      const input = runCli(base(again, join(again.dir, "J.npy")));
      assert.equal(input.status, 2, input.stderr);
      assert.equal(
        input.stderr,
        `jacobian-wasm: ${again.input}: not a .npy file: it starts with ${header}, not the magic bytes 93 4e 55 4d 50 59 ("\\x93NUMPY")\n`,
      );
    } finally {
      rmSync(again.dir, { recursive: true, force: true });
    }
    assert.equal(existsSync(out), false);
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});
