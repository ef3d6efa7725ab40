/**
 * Test-only readers for the fixture files: `.npy` (v1-v3, C order, little-endian f4/f8/i4/i8/u1)
 * and `.safetensors` (F32/F64), every array widened to float64, plus `loadFixture`, which reads
 * one `tests/fixtures/<name>/` directory. Deliberately independent of the library's readers in
 * `src/io/`: the fixtures must check those, not share their bugs.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Model, type Params, paramsFromTensors, parseSpec } from "./model.ts";
import type { BatchObjective } from "./finite_differences.ts";

/** An n-dimensional array in row-major order, widened to float64. */
export interface Float64Tensor {
  shape: number[];
  data: Float64Array;
}

const npyReaders: Record<string, [number, (view: DataView, offset: number) => number]> = {
  "<f4": [4, (v, o) => v.getFloat32(o, true)],
  "<f8": [8, (v, o) => v.getFloat64(o, true)],
  "<i4": [4, (v, o) => v.getInt32(o, true)],
  "<i8": [8, (v, o) => Number(v.getBigInt64(o, true))],
  "|u1": [1, (v, o) => v.getUint8(o)],
  "|i1": [1, (v, o) => v.getInt8(o)],
};

/** Parses the bytes of a `.npy` file. */
export function parseNpy(bytes: Uint8Array, where = ".npy"): Float64Tensor & { dtype: string } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(...bytes.subarray(0, 6));
  if (magic !== "\x93NUMPY") throw new TypeError(`${where}: not a .npy file (bad magic)`);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new TypeError(`${where}: unreadable header ${header}`);
  }
  if (fortran === "True") throw new TypeError(`${where}: Fortran order is not supported`);
  const reader = npyReaders[descr];
  if (reader === undefined) throw new TypeError(`${where}: dtype ${descr} is not supported`);
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const [itemSize, read] = reader;
  const start = headerStart + headerLength;
  if (start + count * itemSize > bytes.byteLength) throw new TypeError(`${where}: truncated`);
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++) data[i] = read(view, start + i * itemSize);
  return { shape, data, dtype: descr };
}

/** Reads a `.npy` file. */
export function readNpy(path: string): Float64Tensor & { dtype: string } {
  return parseNpy(readFileSync(path), path);
}

/** Parses the bytes of a `.safetensors` file into tensors keyed by name (F32 and F64 only). */
export function parseSafetensors(bytes: Uint8Array, where = ".safetensors"): Map<string, Float64Tensor> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (8 + headerLength > bytes.byteLength) throw new TypeError(`${where}: header runs past the end of the file`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const tensors = new Map<string, Float64Tensor>();
  for (const [name, entry] of Object.entries<any>(header)) {
    if (name === "__metadata__") continue;
    const [begin, end] = entry.data_offsets as [number, number];
    const count = (entry.shape as number[]).reduce((a, b) => a * b, 1);
    const itemSize = entry.dtype === "F32" ? 4 : entry.dtype === "F64" ? 8 : 0;
    if (itemSize === 0) throw new TypeError(`${where}: tensor ${name} has dtype ${entry.dtype}, expected F32 or F64`);
    if (end - begin !== count * itemSize) throw new TypeError(`${where}: tensor ${name} has ${end - begin} bytes for shape ${entry.shape}`);
    const start = 8 + headerLength + begin;
    if (8 + headerLength + end > bytes.byteLength) throw new TypeError(`${where}: tensor ${name} runs past the end of the file`);
    const data = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      data[i] = itemSize === 4 ? view.getFloat32(start + 4 * i, true) : view.getFloat64(start + 8 * i, true);
    }
    tensors.set(name, { shape: entry.shape, data });
  }
  return tensors;
}

/** Reads a `.safetensors` file. */
export function readSafetensors(path: string): Map<string, Float64Tensor> {
  return parseSafetensors(readFileSync(path), path);
}

/** One entry of a fixture's `cases.json`, with its target and expected values read. */
export interface FixtureCase {
  objective: "output" | "cross_entropy" | "mse";
  reduction?: "sum" | "mean";
  file: string;
  target?: Float64Tensor;
  expected: Float64Tensor;
  /** The same case as a batch objective for `finiteDifferenceBatch`. */
  batchObjective: BatchObjective;
}

/** A fixture directory read whole: spec, parameters, inputs, PyTorch's output and cases. */
export interface Fixture {
  name: string;
  spec: unknown;
  model: Model;
  params: Params;
  /** The batch, shape [N, ...inputShape]. */
  x: Float64Tensor;
  inputShape: number[];
  output: Float64Tensor;
  cases: FixtureCase[];
}

/** Reads `dir` (a `tests/fixtures/<name>/` directory); `name` is used in messages. */
export function loadFixture(dir: string, name = dir): Fixture {
  const spec = JSON.parse(readFileSync(join(dir, "model.json"), "utf8"));
  const model = parseSpec(spec);
  const params = paramsFromTensors(model, readSafetensors(join(dir, "weights.safetensors")));
  const x = readNpy(join(dir, "x.npy"));
  const output = readNpy(join(dir, "output.npy"));
  const listing = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8")) as any[];
  const cases = listing.map((c): FixtureCase => {
    const expected = readNpy(join(dir, c.file));
    if (c.objective === "output") return { objective: "output", file: c.file, expected, batchObjective: { objective: "output" } };
    const target = readNpy(join(dir, c.target));
    return {
      objective: c.objective,
      reduction: c.reduction,
      file: c.file,
      target,
      expected,
      batchObjective: { objective: c.objective, reduction: c.reduction, target: target.data },
    };
  });
  return { name, spec, model, params, x, inputShape: x.shape.slice(1), output, cases };
}
