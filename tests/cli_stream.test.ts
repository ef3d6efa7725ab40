/**
 * The CLI streams J's rows to its output file chunk by chunk: the `.npy` and `.safetensors`
 * files are byte for byte what writing the in-memory result gives (over several chunks, with
 * K > 1 outputs and with a loss); nothing is left behind when a write fails part-way (a
 * file-size limit stops it after the header), and an existing output stays as it was; a run
 * whose stderr is a pipe prints no progress bar there, only its success line. Also the headers against `writeNpy` and
 * `writeSafetensors`, `AtomicFile` on its own, and the progress bar on a fake clock.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jacobian, Linear, manualSeed, perSampleGradients, randn, readNpy, Sequential, Tanh, writeNpy, writeSafetensors } from "../mod.ts";
import type { Target, Tensor } from "../mod.ts";
import { AtomicFile } from "../src/io/files.ts";
import { npyHeader } from "../src/io/npy.ts";
import { ProgressBar } from "../src/io/progress.ts";
import { safetensorsHeader } from "../src/io/safetensors.ts";
import { root, runCli, runtimeName } from "./helpers/cli.ts";

/** D = 16·32 + 32 + 32·4 + 4 = 676 columns, K = 4 outputs per sample. */
const SPEC = {
  format: "torch.nn.Sequential",
  layers: [
    { type: "Linear", in_features: 16, out_features: 32 },
    { type: "Tanh" },
    { type: "Linear", in_features: 32, out_features: 4 },
  ],
};
/** Enough samples for several chunks of about 1 MiB: 300 · 4 · 676 floats (3.2 MB) as a Jacobian, 1200 · 676 (3.2 MB) as gradients. */
const N_JACOBIAN = 300;
const N_LOSS = 1200;

interface Files {
  dir: string;
  model: string;
  weights: string;
  input: string;
  target: string;
  net: Sequential;
  x: Tensor;
  y: Target;
}

function setUp(N: number): Files {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-stream-"));
  manualSeed(11);
  const net = new Sequential(new Linear(16, 32), new Tanh(), new Linear(32, 4));
  const x = randn([N, 16], 5);
  const labels = BigInt64Array.from({ length: N }, (_, n) => BigInt((n * 7) % 4));
  const files: Files = {
    dir,
    model: join(dir, "model.json"),
    weights: join(dir, "weights.safetensors"),
    input: join(dir, "x.npy"),
    target: join(dir, "y.npy"),
    net,
    x,
    y: { shape: [N], data: Int32Array.from(labels, Number) },
  };
  writeFileSync(files.model, JSON.stringify(SPEC));
  writeFileSync(files.weights, writeSafetensors(Object.entries(net.stateDict())));
  writeFileSync(files.input, writeNpy(x.data, x.shape));
  writeFileSync(files.target, writeNpy(labels, [N]));
  return files;
}

function args(files: Files, out: string, withLoss: boolean): string[] {
  const base = ["jacobian", "--model", files.model, "--weights", files.weights, "--input", files.input, "--out", out];
  return withLoss ? [...base, "--target", files.target, "--loss", "cross_entropy", "--reduction", "sum"] : base;
}

/** How many chunks the library streams these rows in: the tests below mean to cover several. */
function chunkCount(files: Files, withLoss: boolean): number {
  let chunks = 0;
  const onChunk = () => void chunks++;
  if (withLoss) perSampleGradients(files.net, files.x, files.y, { loss: "cross_entropy", reduction: "sum", onChunk });
  else jacobian(files.net, files.x, { onChunk });
  return chunks;
}

function expectedRows(files: Files, withLoss: boolean, asTuple: boolean): Tensor | Tensor[] {
  return withLoss
    ? perSampleGradients(files.net, files.x, files.y, { loss: "cross_entropy", reduction: "sum", asTuple })
    : jacobian(files.net, files.x, { asTuple });
}

function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.endsWith(".tmp"));
}

for (const withLoss of [false, true]) {
  const what = withLoss ? "per-sample loss gradients [N, D]" : "the output Jacobian [N, K, D]";
  test(`cli streams ${what} over several chunks to .npy and .safetensors, byte for byte the in-memory result`, () => {
    const files = setUp(withLoss ? N_LOSS : N_JACOBIAN);
    try {
      assert.ok(chunkCount(files, withLoss) >= 3, "the batch should span several chunks");

      const npyPath = join(files.dir, "J.npy");
      const npyRun = runCli(args(files, npyPath, withLoss));
      assert.equal(npyRun.status, 0, npyRun.stderr);
      // No progress bar when stderr is not a terminal: only the success line.
      assert.match(npyRun.stderr, /^jacobian-wasm: wrote \S+J\.npy: [^\n]+ in [\d.]+ s\n$/, "only the success line on stderr when it is not a terminal");
      const matrix = expectedRows(files, withLoss, false) as Tensor;
      assert.deepEqual(matrix.shape, withLoss ? [N_LOSS, 676] : [N_JACOBIAN, 4, 676]);
      assert.deepEqual(new Uint8Array(readFileSync(npyPath)), writeNpy(matrix.data, matrix.shape));

      const safetensorsPath = join(files.dir, "J.safetensors");
      const safetensorsRun = runCli(args(files, safetensorsPath, withLoss));
      assert.equal(safetensorsRun.status, 0, safetensorsRun.stderr);
      assert.match(safetensorsRun.stderr, /^jacobian-wasm: wrote \S+J\.safetensors: [^\n]+ in [\d.]+ s\n$/);
      const parts = expectedRows(files, withLoss, true) as Tensor[];
      const named = files.net.parameters().map(([name], i) => [name, parts[i]] as const);
      assert.deepEqual(new Uint8Array(readFileSync(safetensorsPath)), writeSafetensors(named));

      assert.deepEqual(leftovers(files.dir), []);
    } finally {
      rmSync(files.dir, { recursive: true, force: true });
    }
  });
}

test("cli --time with streamed rows prints its one JSON line and still writes the whole file", () => {
  const files = setUp(N_JACOBIAN);
  try {
    const out = join(files.dir, "J.npy");
    const run = runCli([...args(files, out, false), "--time", "2"]);
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    const record = JSON.parse(lines[0]);
    assert.deepEqual(Object.keys(record), ["N", "D", "cold_ms", "median_ms"]);
    assert.equal(record.N, N_JACOBIAN);
    assert.equal(record.D, 676);
    const matrix = jacobian(files.net, files.x);
    assert.deepEqual(new Uint8Array(readFileSync(out)), writeNpy(matrix.data, matrix.shape));
    assert.deepEqual(leftovers(files.dir), []);
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

/**
 * Runs the CLI under a file-size limit of `blocks` (POSIX sh: 512-byte blocks), which stops a
 * write part-way with EFBIG. Deno runs without its V8 code cache, whose writes (megabytes, into
 * DENO_DIR, before cli.ts runs) would hit the limit first.
 */
function runCliWithFileSizeLimit(cliArgs: string[], blocks: number) {
  const runtime = runtimeName();
  const cli = join(root, "cli.ts");
  const prefix = runtime === "deno" ? ["run", "-A", "--no-code-cache", cli] : runtime === "bun" ? [cli] : ["--import", "tsx", cli];
  const run = spawnSync("/bin/sh", ["-c", `ulimit -f ${blocks} && exec "$@"`, "sh", process.execPath, ...prefix, ...cliArgs], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { status: run.status, signal: run.signal, stderr: run.stderr ?? "" };
}

test(
  "cli: a write that fails after the header (a file-size limit) exits 2 naming the path, removes the temporary file, and leaves the old output",
  { skip: process.platform === "win32" ? "needs a POSIX shell's ulimit" : false },
  () => {
    const files = setUp(N_LOSS); // as a Jacobian: 1200 · 4 · 676 floats, 13 MB
    try {
      for (const name of ["J.npy", "J.safetensors"]) {
        const out = join(files.dir, name);
        writeFileSync(out, "previous contents");
        // 2 MiB: room for the runtime's own cache files, the header and a chunk or two, not for the 13 MB of rows.
        const run = runCliWithFileSizeLimit(args(files, out, false), 4096);
        assert.equal(run.status, 2, `exit ${run.status} (signal ${run.signal}); stderr: ${run.stderr}`);
        const lines = run.stderr.trim().split("\n");
        assert.equal(lines.length, 1, run.stderr);
        assert.ok(lines[0].includes(`${out}: cannot write the file:`), lines[0]);
        assert.match(lines[0], /the file would exceed the largest file allowed/);
        assert.equal(readFileSync(out, "utf8"), "previous contents");
        assert.deepEqual(leftovers(files.dir), []);
      }
    } finally {
      rmSync(files.dir, { recursive: true, force: true });
    }
  },
);

test("cli: an output path that is a directory exits 2 before computing, leaving nothing behind", () => {
  const files = setUp(4);
  try {
    const out = join(files.dir, "J.npy");
    mkdirSync(out);
    const run = runCli(args(files, out, false));
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr.trim(), /J\.npy: cannot write the file: it is a directory$/);
    assert.deepEqual(leftovers(files.dir), []);
  } finally {
    rmSync(files.dir, { recursive: true, force: true });
  }
});

test("npyHeader and safetensorsHeader are the headers writeNpy and writeSafetensors write", () => {
  for (const shape of [[1, 1], [7, 3], [12, 4, 5], [1000, 2], [3, 1, 1], [100000, 1]]) {
    const count = shape.reduce((a, b) => a * b, 1);
    const whole = writeNpy(new Float32Array(count), shape);
    const header = npyHeader("<f4", shape);
    assert.equal(header.length % 64, 0);
    assert.deepEqual(header, whole.subarray(0, whole.length - count * 4), `shape ${shape}`);
  }
  const tensors: [string, number[]][] = [["0.weight", [3, 4, 2]], ["0.bias", [3, 4]], ["1", [3, 1]], ["naïve \"name\"", [3, 2, 2]]];
  const whole = writeSafetensors(tensors.map(([name, shape]) => [name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) }]));
  const { header, offsets } = safetensorsHeader(tensors);
  const dataBytes = tensors.reduce((sum, [, shape]) => sum + 4 * shape.reduce((a, b) => a * b, 1), 0);
  assert.deepEqual(header, whole.subarray(0, whole.length - dataBytes));
  assert.deepEqual(offsets, [0, 96, 144, 156]);
});

test("AtomicFile: pieces in any order, renamed into place on commit keeping the old file's mode; discard leaves nothing", () => {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-atomic-"));
  try {
    const path = join(dir, "out.bin");
    writeFileSync(path, "old");
    if (process.platform !== "win32") chmodSync(path, 0o640);
    const file = AtomicFile.create(path);
    file.write(new Uint8Array([4, 5, 6]), 3);
    file.write(new Uint8Array([1, 2, 3]), 0);
    assert.equal(readFileSync(path, "utf8"), "old", "untouched until the commit");
    file.commit();
    file.discard(); // a no-op after the commit
    assert.deepEqual([...readFileSync(path)], [1, 2, 3, 4, 5, 6]);
    if (process.platform !== "win32") assert.equal(statSync(path).mode & 0o777, 0o640);

    const abandoned = AtomicFile.create(path);
    abandoned.write(new Uint8Array(10), 0);
    abandoned.discard();
    assert.deepEqual([...readFileSync(path)], [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(readdirSync(dir), ["out.bin"]);
    assert.throws(() => AtomicFile.create(join(dir, "missing", "out.bin")), /missing.out\.bin: cannot write the file: the directory .*missing does not exist/);
    assert.equal(existsSync(join(dir, "missing")), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A progress bar on a fake clock, writing into an array. */
function fakeBar(total: number, columns = 80) {
  const written: string[] = [];
  const bar = new ProgressBar({ total, write: (text) => void written.push(text), start: 1000, columns });
  return { bar, written };
}

test("progress bar: nothing in the first second, then at most one redraw per 100 ms, with count, percentage, elapsed and ETA", () => {
  const { bar, written } = fakeBar(2048);
  for (let t = 1000; t < 2000; t += 10) bar.update(Math.floor((t - 1000) / 2), t);
  assert.equal(written.length, 0, "quiet for the first second");

  bar.update(512, 2000); // one second in, a quarter done: three more seconds to go
  assert.equal(written.length, 1);
  assert.ok(written[0].startsWith("\r"), "redrawn in place");
  assert.ok(written[0].endsWith("\x1b[K"), "clears what a longer line left");
  assert.match(written[0], /^\r 512\/2048 samples \[#{7}-{22}\]   25%  0:01 elapsed, ETA 0:03\x1b\[K$/);
  assert.ok(written[0].length - 4 <= 79, "fits the terminal");

  for (let t = 2001; t < 2100; t += 1) bar.update(600, t);
  assert.equal(written.length, 1, "no redraw within 100 ms");
  bar.update(1024, 2100);
  assert.equal(written.length, 2);
  assert.match(written[1], /1024\/2048 samples .* 50%  0:01 elapsed, ETA 0:01/);

  bar.finish(64_000);
  assert.equal(written.length, 3);
  assert.match(written[2], /^\r2048\/2048 samples \[#{29}\]  100%  1:03 elapsed, ETA 0:00\x1b\[K\n$/);
  bar.update(2048, 70_000);
  bar.finish(70_000);
  bar.interrupt();
  assert.equal(written.length, 3, "nothing after the end");
});

test("progress bar: a run under a second shows nothing, even at the end; an interrupted bar ends its line", () => {
  const quick = fakeBar(10);
  quick.bar.update(5, 1500);
  quick.bar.update(10, 1900);
  quick.bar.finish(1950);
  assert.deepEqual(quick.written, []);

  const failed = fakeBar(10);
  failed.bar.update(3, 2500);
  failed.bar.interrupt();
  assert.equal(failed.written.length, 2);
  assert.equal(failed.written[1], "\n");
  failed.bar.finish(3000);
  assert.equal(failed.written.length, 2);

  const silent = fakeBar(10);
  silent.bar.interrupt();
  assert.deepEqual(silent.written, []);
});

test("progress bar: the bar narrows to the terminal's width, and goes when there is no room", () => {
  const narrow = fakeBar(100, 60);
  narrow.bar.update(50, 61_000);
  const line = narrow.written[0].slice(1, -3);
  assert.ok(line.length <= 59, line);
  assert.match(line, /^ 50\/100 samples \[#{5}-{6}\]   50%  1:00 elapsed, ETA 1:00$/);

  const tiny = fakeBar(100, 30);
  tiny.bar.update(50, 4000);
  assert.equal(tiny.written[0], "\r 50/100 samples   50%  0:03 elapsed, ETA 0:03\x1b[K");

  const long = fakeBar(10, 80);
  long.bar.update(1, 3_601_000 + 1000);
  assert.match(long.written[0], /1:00:01 elapsed, ETA 9:00:09/);
});
