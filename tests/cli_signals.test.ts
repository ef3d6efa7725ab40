/**
 * Failure without loss: a CLI run interrupted by SIGINT or SIGTERM (before its output's
 * temporary file exists, as it appears, and in the middle of the write) or stopped by a full
 * disk (an injected write error, and a real full tmpfs where the system lets us mount one)
 * exits 130, 143 or 2 with one line on stderr and leaves neither a temporary file nor a
 * partial output; an existing output keeps its old contents.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Linear, manualSeed, randn, Sequential, Tanh, writeNpy, writeSafetensors } from "../mod.ts";
import { spawnCli } from "./helpers/cli.ts";

/** Inputs and weights of Linear(64, H) → Tanh → Linear(H, 4): D = 65H + 4H + 4 columns, K = 4 rows per sample. */
interface Inputs {
  dir: string;
  args: (out: string) => string[];
}

function setUp(N: number, H: number, withLoss = false): Inputs {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-signals-"));
  manualSeed(3);
  const net = new Sequential(new Linear(64, H), new Tanh(), new Linear(H, 4));
  const spec = {
    format: "torch.nn.Sequential",
    layers: [{ type: "Linear", in_features: 64, out_features: H }, { type: "Tanh" }, { type: "Linear", in_features: H, out_features: 4 }],
  };
  const x = randn([N, 64], 4);
  writeFileSync(join(dir, "model.json"), JSON.stringify(spec));
  writeFileSync(join(dir, "weights.safetensors"), writeSafetensors(Object.entries(net.stateDict())));
  writeFileSync(join(dir, "x.npy"), writeNpy(x.data, x.shape));
  writeFileSync(join(dir, "y.npy"), writeNpy(BigInt64Array.from({ length: N }, (_, n) => BigInt(n % 4)), [N]));
  const loss = withLoss ? ["--target", join(dir, "y.npy"), "--loss", "cross_entropy"] : [];
  return {
    dir,
    args: (out) => ["jacobian", "--model", join(dir, "model.json"), "--weights", join(dir, "weights.safetensors"), "--input", join(dir, "x.npy"), ...loss, "--out", out],
  };
}

/**
 * J of N = 4000 samples of Linear(64, 256) → Tanh → Linear(256, 4): 4000 · 4 · 17668 floats,
 * 1.1 GB, seconds of work: far longer than the few milliseconds the tests take to see the
 * temporary file and signal, and never finished (the signal removes it before).
 */
const BIG_N = 4000;
const BIG_H = 256;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** The child's exit, and its stderr so far (read while it runs). */
function exited(child: ChildProcess): Promise<Exit> & { stderr: () => string } {
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => (stderr += text));
  child.stdout!.resume();
  const done = new Promise<Exit>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stderr })));
  return Object.assign(done, { stderr: () => stderr });
}

/**
 * Sends `signal` to the child by its pid, not with `child.kill`: deno's node:child_process
 * reports every child it was asked to kill as ended by the signal (code null), whatever its
 * real exit code (a child trapping SIGTERM and exiting 7 shows as SIGTERM), which would hide
 * the 130 / 143 these tests require.
 */
function send(child: ChildProcess, signal: NodeJS.Signals): void {
  process.kill(child.pid!, signal);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls (every 2 ms, up to `limitMs`) until `ready` returns something; fails the test if it never does. */
async function until<T>(what: string, ready: () => T | undefined, child: ChildProcess, limitMs = 20000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = ready();
    if (value !== undefined) return value;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the CLI ended before ${what}`);
    if (Date.now() - start > limitMs) throw new Error(`no ${what} within ${limitMs} ms`);
    await sleep(2);
  }
}

/** The temporary file beside `out` (".J.npy.<random>.tmp"), if it exists. */
function temporaryOf(dir: string, name: string): string | undefined {
  const found = readdirSync(dir).find((entry) => entry.startsWith(`.${name}.`) && entry.endsWith(".tmp"));
  return found === undefined ? undefined : join(dir, found);
}

function assertOneLine(run: Exit): string {
  const lines = run.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `stderr should be one line: ${run.stderr}`);
  return lines[0];
}

const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

test(
  "cli: SIGINT and SIGTERM as the temporary file appears and in the middle of the write exit 130 / 143 with one line, leaving no temporary file and no output",
  { skip: process.platform === "win32" ? "POSIX signals" : false },
  async () => {
    const inputs = setUp(BIG_N, BIG_H);
    try {
      const out = join(inputs.dir, "J.npy");
      const cases = [
        // The bug this pins: SIGTERM as the file appeared left a 44 MB temporary file (the run held the event loop).
        { signal: "SIGTERM" as const, when: "as the temporary file appears", bytes: 0 },
        { signal: "SIGINT" as const, when: "once 20 MB of rows are written", bytes: 20e6 },
        { signal: "SIGINT" as const, when: "as the temporary file appears", bytes: 0 },
        { signal: "SIGTERM" as const, when: "once 20 MB of rows are written", bytes: 20e6 },
      ];
      for (const { signal, when, bytes } of cases) {
        const child = spawnCli(inputs.args(out));
        const done = exited(child);
        await until(`a temporary file of ${bytes} bytes or more`, () => {
          const temporary = temporaryOf(inputs.dir, "J.npy");
          return temporary !== undefined && (statSync(temporary, { throwIfNoEntry: false })?.size ?? -1) >= bytes ? temporary : undefined;
        }, child);
        send(child, signal);
        const run = await done;
        const what = `${signal} ${when}: exit ${run.code} (signal ${run.signal}); stderr: ${run.stderr}`;
        // A child that a signal killed (no handler ran) has code null: the handler must have run.
        assert.equal(run.code, EXIT_CODES[signal], what);
        assert.equal(
          assertOneLine(run),
          `jacobian-wasm: interrupted by ${signal}; ${out} not written (left as it was; the unfinished temporary file is removed)`,
        );
        assert.deepEqual(readdirSync(inputs.dir).sort(), ["model.json", "weights.safetensors", "x.npy", "y.npy"], what);
      }
    } finally {
      rmSync(inputs.dir, { recursive: true, force: true });
    }
  },
);

test(
  "cli: SIGINT and SIGTERM before the temporary file exists (the model still being read, from a FIFO) exit 130 / 143 with one line and create nothing",
  { skip: process.platform === "win32" ? "POSIX signals and FIFOs" : false },
  async () => {
    const inputs = setUp(BIG_N, BIG_H);
    const fifo = join(inputs.dir, "model.json");
    try {
      rmSync(fifo);
      const made = spawnSync("mkfifo", [fifo]);
      assert.equal(made.status, 0, `mkfifo: ${made.stderr}`);
      const out = join(inputs.dir, "J.npy");
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        const child = spawnCli(inputs.args(out));
        const done = exited(child);
        // A non-blocking open for writing succeeds only once the CLI has the FIFO open for reading:
        // then the CLI is reading its model, its handlers installed, no output created yet.
        const writer = await until("the CLI reading its model", () => {
          try {
            return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
          } catch (error) {
            if ((error as { code?: string }).code === "ENXIO") return undefined;
            throw error;
          }
        }, child);
        try {
          send(child, signal);
          // The writer is closed only once the handler has spoken: an end of file before would
          // make the model empty (exit 2). It is closed then because node's exit waits for the
          // thread blocked reading the FIFO (a node limit, not the CLI's: its handler has run).
          await until("the handler's line on stderr", () => (done.stderr().includes("\n") ? true : undefined), child);
        } finally {
          closeSync(writer);
        }
        const run = await done;
        assert.equal(run.code, EXIT_CODES[signal], `exit ${run.code} (signal ${run.signal}); stderr: ${run.stderr}`);
        assert.equal(assertOneLine(run), `jacobian-wasm: interrupted by ${signal}; no output written`);
        assert.deepEqual(readdirSync(inputs.dir).sort(), ["model.json", "weights.safetensors", "x.npy", "y.npy"]);
      }
    } finally {
      rmSync(inputs.dir, { recursive: true, force: true });
    }
  },
);

/** Runs the CLI to its end, with JACOBIAN_WASM_FAIL_WRITE_AFTER when `failAfter` is given. */
async function runToEnd(args: string[], failAfter?: number): Promise<Exit> {
  const env: Record<string, string> = failAfter === undefined ? {} : { JACOBIAN_WASM_FAIL_WRITE_AFTER: String(failAfter) };
  return await exited(spawnCli(args, { env }));
}

test("cli: a disk that fills during the write (an injected ENOSPC) exits 2 naming the file, removes the temporary file, and keeps the old output", async () => {
  // J: 300 · 4 · 17668 floats, 85 MB, in many chunks; per-sample gradients with a loss give the ntk, [300, 300].
  const inputs = setUp(300, BIG_H);
  const withLoss = setUp(300, BIG_H, true);
  try {
    const runs = [
      { name: "J.npy", args: inputs.args, extra: [], failAfter: 10e6 }, // the streamed write, mid-rows
      { name: "J.safetensors", args: inputs.args, extra: [], failAfter: 10e6 },
      { name: "J.npy", args: inputs.args, extra: [], failAfter: 0 }, // its first write, the header
      { name: "ntk.npy", args: withLoss.args, extra: ["--quantity", "ntk"], failAfter: 1000 }, // a quantity, written whole
    ];
    for (const { name, args, extra, failAfter } of runs) {
      const dir = args === inputs.args ? inputs.dir : withLoss.dir;
      const out = join(dir, name);
      writeFileSync(out, "previous contents");
      const run = await runToEnd([...args(out), ...extra], failAfter);
      assert.equal(run.code, 2, `${name}, failing after ${failAfter} bytes: exit ${run.code} (signal ${run.signal}); stderr: ${run.stderr}`);
      assert.equal(assertOneLine(run), `jacobian-wasm: ${out}: cannot write the file: no space left on the device`);
      assert.equal(readFileSync(out, "utf8"), "previous contents");
      assert.deepEqual(readdirSync(dir).filter((entry) => entry.endsWith(".tmp")), [], name);
      rmSync(out);
    }
    // And without the hook the same run writes its file: the failure above was the injected one.
    const out = join(inputs.dir, "J.npy");
    const run = await runToEnd(inputs.args(out));
    assert.equal(run.code, 0, run.stderr);
    assert.equal(statSync(out).size, 128 + 300 * 4 * 17668 * 4);
  } finally {
    rmSync(inputs.dir, { recursive: true, force: true });
    rmSync(withLoss.dir, { recursive: true, force: true });
  }
});

/** Why a real full disk cannot be tried here (undefined: it can): needs root on Linux to mount a tmpfs. */
function tmpfsUnavailable(): string | undefined {
  if (process.platform !== "linux") return "mounting a tmpfs needs Linux";
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root";
  const probe = mkdtempSync(join(tmpdir(), "jacobian-wasm-tmpfs-probe-"));
  try {
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], { encoding: "utf8" });
    if (mounted.status !== 0) return `mount -t tmpfs is not permitted here: ${(mounted.stderr ?? "").trim() || `exit ${mounted.status}`}`;
    spawnSync("umount", [probe]);
    return undefined;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
const noTmpfs = tmpfsUnavailable();

/** Mounts a tmpfs of `size` on a fresh directory for `body`, and unmounts it afterwards. */
async function withTmpfs(size: string, body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-tmpfs-"));
  try {
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { encoding: "utf8" });
    assert.equal(mounted.status, 0, `mount: ${mounted.stderr}`);
    try {
      await body(dir);
    } finally {
      spawnSync("umount", [dir]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes zeros to `path` until the file system is full (ENOSPC), and returns how many. */
function fill(path: string): number {
  const fd = openSync(path, "w");
  const block = new Uint8Array(1 << 20);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, block);
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOSPC") throw error;
  } finally {
    closeSync(fd);
  }
  return written;
}

test("cli: a real full disk (a small tmpfs) ends the write with exit 2 naming the file, and leaves nothing in it", { skip: noTmpfs ?? false }, async () => {
  const inputs = setUp(300, BIG_H, true);
  try {
    // A quantity written whole: the ntk, [300, 300] floats (360 kB), into 128 kB.
    await withTmpfs("128k", async (dir) => {
      const out = join(dir, "ntk.npy");
      const run = await runToEnd([...inputs.args(out), "--quantity", "ntk"]);
      assert.equal(run.code, 2, `exit ${run.code} (signal ${run.signal}); stderr: ${run.stderr}`);
      assert.equal(assertOneLine(run), `jacobian-wasm: ${out}: cannot write the file: no space left on the device`);
      assert.deepEqual(readdirSync(dir), []);
    });
    // The streamed J (1000 · 4 · 17668 floats, 283 MB), checked against the free space before it starts:
    // the disk fills during the run. The CLI is stopped (SIGSTOP) once its temporary file
    // exists, the rest of the tmpfs filled, and the CLI continued into the full disk.
    const jacobianInputs = setUp(1000, BIG_H);
    try {
      await withTmpfs("320m", async (dir) => {
        const out = join(dir, "J.npy");
        const child = spawnCli(jacobianInputs.args(out));
        const done = exited(child);
        await until("the temporary file", () => temporaryOf(dir, "J.npy"), child);
        send(child, "SIGSTOP");
        try {
          assert.ok(fill(join(dir, "filler")) > 0);
        } finally {
          send(child, "SIGCONT");
        }
        const run = await done;
        assert.equal(run.code, 2, `exit ${run.code} (signal ${run.signal}); stderr: ${run.stderr}`);
        assert.equal(assertOneLine(run), `jacobian-wasm: ${out}: cannot write the file: no space left on the device`);
        assert.deepEqual(readdirSync(dir), ["filler"]);
      });
    } finally {
      rmSync(jacobianInputs.dir, { recursive: true, force: true });
    }
  } finally {
    rmSync(inputs.dir, { recursive: true, force: true });
  }
});
