/**
 * `jacobian-wasm jacobian --quantity …` writes each quantity as PyTorch's per-sample gradients
 * give it: the expected values are worked out here in float64 from the rows PyTorch computed
 * (tests/fixtures/<name>/*.npy, made by make_fixtures.py), the actual ones come from the CLI
 * run on the same model, weights, input and target files, on node, deno or bun, whichever runs
 * the tests. Also `--time` with a quantity, the .safetensors layouts, and the refusals.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, npyToFloat32, readNpy, readSafetensors } from "../mod.ts";
import { root, runCli } from "./helpers/cli.ts";
import { relativeError } from "./reference/mod.ts";

const fixtures = join(root, "tests", "fixtures");
const TOLERANCE = 1e-4;
const MAX_NORM = 0.5;

interface Rows {
  rows: Float64Array[];
  /** Columns per parameter tensor, in `parameters()` order. */
  sizes: number[];
}

function npy(path: string) {
  return readNpy(new Uint8Array(readFileSync(path)), path);
}

/** PyTorch's rows of J from a fixture file, [R, D] ([N, K, D] flattened to N·K rows). */
function pytorchRows(name: string, file: string): Rows {
  const dir = join(fixtures, name);
  const array = npy(join(dir, file));
  const data = npyToFloat32(array); // float64 on disk; float32 is far below the tolerance
  const D = array.shape[array.shape.length - 1];
  const rows = Array.from({ length: data.length / D }, (_, r) => Float64Array.from(data.subarray(r * D, (r + 1) * D)));
  const net = loadModel(readFileSync(join(dir, "model.json"), "utf8"), new Uint8Array(readFileSync(join(dir, "weights.safetensors"))));
  return { rows, sizes: net.parameters().map(([, t]) => t.data.length) };
}

function parameterNames(name: string): string[] {
  const dir = join(fixtures, name);
  return loadModel(readFileSync(join(dir, "model.json"), "utf8"), new Uint8Array(readFileSync(join(dir, "weights.safetensors")))).parameters().map(([n]) => n);
}

const squaredNorm = (v: Float64Array) => v.reduce((s, x) => s + x * x, 0);

/** Each quantity, in float64, from the rows. */
const expected = {
  batch_l2({ rows, sizes }: Rows): Float64Array {
    const out = new Float64Array(rows.length * sizes.length);
    rows.forEach((row, n) => {
      let column = 0;
      sizes.forEach((size, p) => {
        out[n * sizes.length + p] = squaredNorm(row.subarray(column, column + size));
        column += size;
      });
    });
    return out;
  },
  sum_grad_squared({ rows }: Rows): Float64Array {
    const out = new Float64Array(rows[0].length);
    for (const row of rows) row.forEach((v, d) => (out[d] += v * v));
    return out;
  },
  variance({ rows }: Rows): Float64Array {
    const mean = new Float64Array(rows[0].length);
    for (const row of rows) row.forEach((v, d) => (mean[d] += v / rows.length));
    const out = new Float64Array(mean.length);
    for (const row of rows) row.forEach((v, d) => (out[d] += (v - mean[d]) ** 2 / rows.length));
    return out;
  },
  ntk({ rows }: Rows): Float64Array {
    const R = rows.length;
    const out = new Float64Array(R * R);
    for (let a = 0; a < R; a++) for (let b = 0; b < R; b++) out[a * R + b] = rows[a].reduce((s, v, d) => s + v * rows[b][d], 0);
    return out;
  },
  clipped_sum({ rows }: Rows): Float64Array {
    const out = new Float64Array(rows[0].length);
    for (const row of rows) {
      const norm = Math.sqrt(squaredNorm(row));
      const factor = norm > MAX_NORM ? MAX_NORM / norm : 1;
      row.forEach((v, d) => (out[d] += factor * v));
    }
    return out;
  },
};
type Quantity = keyof typeof expected;
const QUANTITIES = Object.keys(expected) as Quantity[];

function shapeOf(quantity: Quantity, { rows, sizes }: Rows): number[] {
  if (quantity === "batch_l2") return [rows.length, sizes.length];
  if (quantity === "ntk") return [rows.length, rows.length];
  return [rows[0].length];
}

interface Objective {
  file: string;
  args: string[];
}

function baseArgs(name: string, out: string): string[] {
  const dir = join(fixtures, name);
  return ["jacobian", "--model", join(dir, "model.json"), "--weights", join(dir, "weights.safetensors"), "--input", join(dir, "x.npy"), "--out", out];
}

function lossArgs(name: string, loss: "cross_entropy" | "mse", reduction: "sum" | "mean"): string[] {
  const target = join(fixtures, name, loss === "mse" ? "y_mse.npy" : "y.npy");
  return ["--target", target, "--loss", loss, "--reduction", reduction];
}

/** Fixtures and objectives: losses under both reductions, and an output of one number per sample (conv3d_seed). */
const CASES: { name: string; objectives: Objective[] }[] = [
  {
    name: "mlp",
    objectives: [
      { file: "grad_ce_sum.npy", args: lossArgs("mlp", "cross_entropy", "sum") },
      { file: "grad_mse_mean.npy", args: lossArgs("mlp", "mse", "mean") },
    ],
  },
  { name: "conv2d_cnn", objectives: [{ file: "grad_ce_mean.npy", args: lossArgs("conv2d_cnn", "cross_entropy", "mean") }] },
  { name: "conv3d_seed", objectives: [{ file: "jacobian_output.npy", args: [] }] },
];

for (const { name, objectives } of CASES) {
  test(`fixture ${name}: every --quantity equals the quantity of PyTorch's per-sample gradients`, () => {
    const out = mkdtempSync(join(tmpdir(), "jacobian-wasm-quantity-"));
    try {
      for (const objective of objectives) {
        const rows = pytorchRows(name, objective.file);
        for (const quantity of QUANTITIES) {
          const file = join(out, `${quantity}.npy`);
          const maxNorm = quantity === "clipped_sum" ? ["--max-norm", String(MAX_NORM)] : [];
          const run = runCli([...baseArgs(name, file), ...objective.args, "--quantity", quantity, ...maxNorm]);
          const what = `${name}/${objective.file}/${quantity}`;
          assert.equal(run.status, 0, `${what}: ${run.stderr}`);
          const actual = npy(file);
          assert.deepEqual(actual.shape, shapeOf(quantity, rows), `${what}: shape`);
          const error = relativeError(npyToFloat32(actual), expected[quantity](rows));
          assert.ok(error <= TOLERANCE, `${what}: relative error ${error}`);
        }
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
}

test("for an output of K > 1 numbers per sample, --quantity ntk is [N·K, N·K] and the per-sample quantities are refused", () => {
  const out = mkdtempSync(join(tmpdir(), "jacobian-wasm-quantity-"));
  try {
    const rows = pytorchRows("mlp", "jacobian_output.npy");
    const file = join(out, "ntk.npy");
    const run = runCli([...baseArgs("mlp", file), "--quantity", "ntk"]);
    assert.equal(run.status, 0, run.stderr);
    const actual = npy(file);
    assert.deepEqual(actual.shape, [rows.rows.length, rows.rows.length]);
    assert.ok(relativeError(npyToFloat32(actual), expected.ntk(rows)) <= TOLERANCE);

    const refused = join(out, "variance.npy");
    const refusal = runCli([...baseArgs("mlp", refused), "--quantity", "variance"]);
    assert.equal(refusal.status, 2);
    assert.match(refusal.stderr, /^jacobian-wasm: variance: needs one row of J per sample .* has \d+ elements per sample/);
    assert.doesNotMatch(refusal.stderr, /\n\s+at /);
    assert.ok(!existsSync(refused));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("--time R reports the same JSON line for a quantity, and .safetensors splits a quantity by parameter", () => {
  const out = mkdtempSync(join(tmpdir(), "jacobian-wasm-quantity-"));
  try {
    const rows = pytorchRows("mlp", "grad_ce_sum.npy");
    const file = join(out, "clipped.safetensors");
    const run = runCli([...baseArgs("mlp", file), ...lossArgs("mlp", "cross_entropy", "sum"), "--quantity", "clipped_sum", "--max-norm", String(MAX_NORM), "--time", "3"]);
    assert.equal(run.status, 0, run.stderr);
    const record = JSON.parse(run.stderr.trim());
    assert.deepEqual(Object.keys(record), ["N", "D", "cold_ms", "median_ms"]);
    assert.equal(record.N, rows.rows.length);
    assert.equal(record.D, rows.rows[0].length);
    assert.ok(record.median_ms > 0);

    const tensors = readSafetensors(new Uint8Array(readFileSync(file)));
    const names = parameterNames("mlp");
    assert.deepEqual([...tensors.keys()].sort(), [...names].sort());
    const flat = Float64Array.from(names.flatMap((name) => [...tensors.get(name)!.data]));
    assert.ok(relativeError(flat, expected.clipped_sum(rows)) <= TOLERANCE);

    const l2File = join(out, "l2.safetensors");
    assert.equal(runCli([...baseArgs("mlp", l2File), ...lossArgs("mlp", "cross_entropy", "sum"), "--quantity", "batch_l2"]).status, 0);
    const columns = readSafetensors(new Uint8Array(readFileSync(l2File)));
    const l2 = expected.batch_l2(rows);
    const P = rows.sizes.length;
    names.forEach((name, p) => {
      const t = columns.get(name)!;
      assert.deepEqual(t.shape, [rows.rows.length]);
      assert.ok(relativeError(t.data, Float64Array.from(t.data, (_, n) => l2[n * P + p])) <= TOLERANCE);
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("bad --quantity and --max-norm combinations end with exit code 2 and one line", () => {
  const out = mkdtempSync(join(tmpdir(), "jacobian-wasm-quantity-"));
  try {
    const file = join(out, "q.npy");
    const ce = lossArgs("mlp", "cross_entropy", "sum");
    const cases: [string[], RegExp][] = [
      [["--quantity", "norms"], /--quantity must be one of jacobian, batch_l2, sum_grad_squared, variance, ntk, clipped_sum; got "norms"/],
      [["--quantity", "clipped_sum"], /--quantity clipped_sum needs --max-norm C/],
      [["--quantity", "clipped_sum", "--max-norm=-1"], /--max-norm must be a positive number, got "-1"/],
      [["--quantity", "batch_l2", "--max-norm", "1"], /--max-norm is the bound of --quantity clipped_sum/],
      [["--max-norm", "1"], /it means nothing to --quantity jacobian/],
    ];
    for (const [args, message] of cases) {
      const run = runCli([...baseArgs("mlp", file), ...ce, ...args]);
      assert.equal(run.status, 2, args.join(" "));
      assert.match(run.stderr, message);
      assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
      assert.ok(!existsSync(file));
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
