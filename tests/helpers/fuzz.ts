/**
 * The fuzzer's pieces: how many inputs each target gets, what an acceptable outcome is (a valid
 * result, or one of the library's typed errors, within a time bound), and the generators of
 * inputs: valid .npy and .safetensors files and their mutations, random bytes, random model
 * specs, random command lines. tests/fuzz.test.ts runs them; `npm run fuzz` runs them at scale.
 */
import fc from "fast-check";
import { FileError, FormatError, MemoryError, ShapeError, UnsupportedError, ValueError } from "../../src/errors.ts";
import { SUPPORTED_LAYERS } from "../../src/io/spec.ts";
import { writeNpy } from "../../src/io/npy.ts";
import { writeSafetensors } from "../../src/io/safetensors.ts";
import { environment } from "./runs.ts";

// ---------------------------------------------------------------------------------------------
// Budget


/** The inputs `npm test` runs in all: enough to exercise every generator, quick on every runtime. */
export const DEFAULT_FUZZ_INPUTS = 400;

/**
 * How many generated inputs each target gets: JACOBIAN_WASM_FUZZ_INPUTS in all (`npm run fuzz`
 * sets 100000), DEFAULT_FUZZ_INPUTS otherwise; 30% each to the three parsers, 10% to the
 * command line (each of its inputs may compute a Jacobian and write a file).
 */
export function fuzzBudget(): { total: number; npy: number; safetensors: number; spec: number; cli: number } {
  const text = environment("JACOBIAN_WASM_FUZZ_INPUTS");
  const total = text === undefined || text === "" ? DEFAULT_FUZZ_INPUTS : Number(text);
  if (!Number.isSafeInteger(total) || total < 4) {
    throw new RangeError(`JACOBIAN_WASM_FUZZ_INPUTS must be an integer of at least 4, got "${text}"`);
  }
  const npy = Math.floor(total * 0.3), safetensors = npy, spec = npy;
  return { total, npy, safetensors, spec, cli: total - npy - safetensors - spec };
}

/** The seed of every property when JACOBIAN_WASM_PROPERTY_SEED does not give one: `npm test` runs the same inputs each time. */
export const FUZZ_SEED = 13;

/** fast-check parameters: `numRuns` inputs, the fixed seed unless one was forced, the failing input's error in the report. */
export function fuzzParameters(numRuns: number): fc.Parameters<unknown> {
  const forced = fc.readConfigureGlobal().seed;
  return { numRuns, seed: forced ?? FUZZ_SEED, includeErrorInReport: true };
}

// ---------------------------------------------------------------------------------------------
// Outcomes

/** No input may take longer than this (a pathological size that slips past a check shows here). */
export const TIME_BOUND_MS = 2000;

/** The errors that are the library's answer to bad input; anything else thrown is a bug. */
export const TYPED_ERRORS = [FormatError, ShapeError, ValueError, UnsupportedError, MemoryError, FileError] as const;

export function isTypedError(error: unknown): error is Error {
  return TYPED_ERRORS.some((kind) => error instanceof kind);
}

/** What a run of a target gave: its value, or the typed error it threw. */
export type Outcome<T> = { ok: true; value: T; ms: number } | { ok: false; error: Error; ms: number };

/** Tallies of one target's outcomes, for the summary line. */
export class Tally {
  inputs = 0;
  valid = 0;
  errors = new Map<string, number>();
  slowestMs = 0;
  private readonly started = performance.now();

  count(outcome: Outcome<unknown>): void {
    this.inputs++;
    this.slowestMs = Math.max(this.slowestMs, outcome.ms);
    if (outcome.ok) this.valid++;
    else this.errors.set(outcome.error.name, (this.errors.get(outcome.error.name) ?? 0) + 1);
  }

  summary(target: string): string {
    const seconds = ((performance.now() - this.started) / 1000).toFixed(1);
    const errors = [...this.errors].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${n} ${name}`).join(", ");
    return `fuzz ${target}: ${this.inputs} inputs in ${seconds} s (slowest ${this.slowestMs.toFixed(0)} ms): ` +
      `${this.valid} valid${errors === "" ? "" : `, ${errors}`}`;
  }
}

/**
 * Runs `run` on one input: returns its value or its typed error, and throws (failing the
 * property, which prints the input) for an untyped error, or for a run over TIME_BOUND_MS.
 */
export async function outcomeOf<T>(run: () => T | Promise<T>, what: () => string): Promise<Outcome<T>> {
  const start = performance.now();
  let outcome: Outcome<T>;
  try {
    const value = await run();
    outcome = { ok: true, value, ms: performance.now() - start };
  } catch (error) {
    if (!isTypedError(error)) {
      const kind = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new Error(`${what()} threw an untyped error, ${kind}`, { cause: error });
    }
    outcome = { ok: false, error, ms: performance.now() - start };
  }
  if (outcome.ms > TIME_BOUND_MS) {
    throw new Error(`${what()} took ${outcome.ms.toFixed(0)} ms, over the bound of ${TIME_BOUND_MS} ms`);
  }
  return outcome;
}

/** How a failing input is shown: bytes as hex, shortened. */
export function showBytes(bytes: Uint8Array): string {
  const hex = [...bytes.subarray(0, 96)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${bytes.length} bytes ${hex}${bytes.length > 96 ? "…" : ""}`;
}

/** `arbitrary` one time in `outOf`, otherwise undefined (fc.option's `freq` counts the other way). */
function sometimes<T>(arbitrary: fc.Arbitrary<T>, outOf: number): fc.Arbitrary<T | undefined> {
  return fc.oneof({ weight: outOf - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary });
}

// ---------------------------------------------------------------------------------------------
// Byte mutations

/** One edit of a file's bytes; positions are taken modulo the length, so any edit applies to any file. */
export type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; count: number }
  | { kind: "copy"; from: number; to: number; count: number }
  /** A little-endian integer field (a header length) set to an extreme: huge, "negative", off by a little. */
  | { kind: "field"; at: number; width: 2 | 4 | 8; value: bigint };

/** Values for length fields: the edges of 16, 32 and 64 bits, signed and unsigned, and small ones. */
const FIELD_VALUES: bigint[] = [
  0n, 1n, 7n, 8n, 63n, 64n, 128n, 0x7fffn, 0xffffn, 0x10000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n,
  2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 8n,
];

/** Edits of a file: byte flips, truncation, inserted, deleted and duplicated bytes, length fields at `fields` set to extremes. */
export function mutationArbitrary(fields: readonly { at: number; width: 2 | 4 | 8 }[]): fc.Arbitrary<Mutation> {
  const at = fc.nat();
  const options: fc.Arbitrary<Mutation>[] = [
    fc.record({ kind: fc.constant("flip" as const), at, bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant("set" as const), at, value: fc.constantFrom(0, 0x20, 0x7f, 0x80, 0xff, 0x27, 0x22, 0x7b, 0x28) }),
    fc.record({ kind: fc.constant("truncate" as const), at }),
    fc.record({ kind: fc.constant("insert" as const), at, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ kind: fc.constant("delete" as const), at, count: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ kind: fc.constant("copy" as const), from: at, to: fc.nat(), count: fc.integer({ min: 1, max: 32 }) }),
  ];
  if (fields.length > 0) {
    options.push(
      fc.record({
        kind: fc.constant("field" as const),
        field: fc.constantFrom(...fields),
        value: fc.oneof(fc.constantFrom(...FIELD_VALUES), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
        nudge: fc.integer({ min: -9, max: 9 }),
      }).map(({ field, value, nudge }) => ({
        kind: "field" as const,
        at: field.at,
        width: field.width,
        value: BigInt.asUintN(field.width * 8, value + BigInt(nudge)),
      })),
    );
  }
  return fc.oneof(...options);
}

/** Applies the edits in order, to a copy. */
export function mutate(original: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let bytes = new Uint8Array(original);
  for (const m of mutations) {
    const length = bytes.length;
    const pos = (p: number) => (length === 0 ? 0 : p % length);
    switch (m.kind) {
      case "flip":
        if (length > 0) bytes[pos(m.at)] ^= 1 << m.bit;
        break;
      case "set":
        if (length > 0) bytes[pos(m.at)] = m.value;
        break;
      case "truncate":
        bytes = bytes.slice(0, length === 0 ? 0 : m.at % (length + 1));
        break;
      case "insert": {
        const at = length === 0 ? 0 : m.at % (length + 1);
        const out = new Uint8Array(length + m.bytes.length);
        out.set(bytes.subarray(0, at), 0);
        out.set(m.bytes, at);
        out.set(bytes.subarray(at), at + m.bytes.length);
        bytes = out;
        break;
      }
      case "delete": {
        const at = pos(m.at);
        const out = new Uint8Array(length - Math.min(m.count, length - at));
        out.set(bytes.subarray(0, at), 0);
        out.set(bytes.subarray(at + m.count), at);
        bytes = out;
        break;
      }
      case "copy":
        if (length > 0) bytes.copyWithin(pos(m.to), pos(m.from), pos(m.from) + m.count);
        break;
      case "field":
        if (m.at + m.width <= length) {
          for (let i = 0; i < m.width; i++) bytes[m.at + i] = Number((m.value >> BigInt(8 * i)) & 0xffn);
        }
        break;
    }
  }
  return bytes;
}

/** Random bytes: empty, short and up to a few hundred, some behind the format's magic bytes. */
export function randomBytesArbitrary(prefixes: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc.tuple(fc.constantFrom(new Uint8Array(0), ...prefixes), fc.uint8Array({ maxLength: 400 })).map(([prefix, rest]) => {
    const out = new Uint8Array(prefix.length + rest.length);
    out.set(prefix, 0);
    out.set(rest, prefix.length);
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// .npy

const NPY_MAGIC = new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);

/** An .npy file put together by hand: any version bytes, any header text (its length written as the version has it). */
export function npyFromParts(major: number, minor: number, header: string, data: Uint8Array): Uint8Array {
  const text = major === 3
    ? new TextEncoder().encode(header)
    : Uint8Array.from(header, (char) => char.charCodeAt(0) & 0xff); // latin-1
  const lengthSize = major === 1 ? 2 : 4;
  const out = new Uint8Array(8 + lengthSize + text.length + data.length);
  out.set(NPY_MAGIC, 0);
  out[6] = major;
  out[7] = minor;
  const view = new DataView(out.buffer);
  if (lengthSize === 2) view.setUint16(8, text.length & 0xffff, true);
  else view.setUint32(8, text.length, true);
  out.set(text, 8 + lengthSize);
  out.set(data, 8 + lengthSize + text.length);
  return out;
}

const smallShape = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 });

/** Valid files as writeNpy writes them, of the four dtypes it writes. */
const writtenNpy: fc.Arbitrary<Uint8Array> = fc.tuple(smallShape, fc.constantFrom("f4", "f8", "i4", "i8")).chain(([shape, dtype]) => {
  const count = shape.reduce((a, b) => a * b, 1);
  const values = fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: count, maxLength: count });
  return values.map((v) =>
    writeNpy(
      dtype === "f4"
        ? Float32Array.from(v, (x) => x / 7)
        : dtype === "f8"
        ? Float64Array.from(v, (x) => x / 7)
        : dtype === "i4"
        ? Int32Array.from(v)
        : BigInt64Array.from(v, (x) => BigInt(x)),
      shape,
    )
  );
});

/** A Python literal's text, as a header might (mis)state a value. */
const pythonValue: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom("True", "False", "None", "0", "-1", "1.5", "1e3", "0x10", "1_0", "3L", "''", "'<f4'", "(", ")", "{", "[", ","),
    fc.integer().map(String),
    fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map(String),
    fc.string({ maxLength: 8 }).map((s) => `'${s}'`),
    fc.array(tie("value"), { maxLength: 4 }).map((items) => `(${items.join(", ")}${items.length === 1 ? "," : ""})`),
    fc.array(tie("value"), { maxLength: 3 }).map((items) => `[${items.join(", ")}]`),
    fc.array(fc.tuple(tie("value"), tie("value")), { maxLength: 2 }).map((kv) => `{${kv.map(([k, v]) => `${k}: ${v}`).join(", ")}}`),
  ),
})).value;

/** Shapes as header text: small ones, and ones whose element count overflows any buffer or 2^53. */
const npyShapeText: fc.Arbitrary<string> = fc.oneof(
  smallShape.map((s) => `(${s.join(", ")}${s.length === 1 ? "," : ""})`),
  fc.array(fc.constantFrom("0", "1", "3", "-1", "65536", "2147483648", "4294967296", "9007199254740993", "18446744073709551616", "1" + "0".repeat(400)), { minLength: 1, maxLength: 6 })
    .map((s) => `(${s.join(", ")},)`),
  pythonValue,
);

const npyDescr = fc.oneof(
  fc.constantFrom("<f4", "<f8", "<f2", ">f4", ">f8", ">f2", "<i4", ">i4", "<i8", ">i8", "|i1", "|u1", "<u2", ">u2", "<u4", "<u8", ">u8", "|b1", "<i2"),
  fc.constantFrom("f4", "=f4", "<f16", "<f3", "<c8", "|O", "<U10", "|S3", "<M8[ns]", "<m8", "|V8", "", "<", "<f", "i"),
  fc.string({ maxLength: 6 }),
).map((d) => `'${d}'`);

/** Headers of every kind: numpy's, with wrong dtypes, overflowing shapes, missing or extra keys, garbage, deep nesting. */
const npyHeaderText: fc.Arbitrary<string> = fc.oneof(
  fc.record({
    descr: fc.oneof({ weight: 4, arbitrary: npyDescr }, pythonValue),
    fortran: fc.oneof({ weight: 4, arbitrary: fc.constantFrom("False", "True") }, pythonValue),
    shape: npyShapeText,
    drop: fc.constantFrom(undefined, "descr", "fortran_order", "shape"),
    extra: sometimes(fc.tuple(fc.constantFrom("'extra'", "'descr'", "1", "None"), pythonValue), 6),
    padding: fc.constantFrom("", " ", "   \n", "\n", "\0", "\t  "),
  }).map(({ descr, fortran, shape, drop, extra, padding }) => {
    const entries = [["'descr'", descr], ["'fortran_order'", fortran], ["'shape'", shape]].filter(([key]) => key !== `'${drop}'`);
    if (extra) entries.push(extra);
    return `{${entries.map(([k, v]) => `${k}: ${v}`).join(", ")}, }${padding}`;
  }),
  pythonValue,
  fc.string({ maxLength: 120 }),
  fc.integer({ min: 1, max: 20000 }).map((depth) => "{'descr': " + "(".repeat(depth) + ")".repeat(depth) + "}"),
);

/** Files put together from a header text, a version and data bytes of a length that may or may not fit. */
const assembledNpy: fc.Arbitrary<Uint8Array> = fc.record({
  version: fc.oneof({ weight: 6, arbitrary: fc.constantFrom([1, 0], [2, 0], [3, 0]) }, fc.tuple(fc.nat(255), fc.nat(255))),
  header: npyHeaderText,
  data: fc.uint8Array({ maxLength: 256 }),
}).map(({ version, header, data }) => npyFromParts(version[0], version[1], header, data));

/** The .npy inputs: valid files, edited valid files, hand-assembled headers (edited or not), random bytes. */
export const npyInputs: fc.Arbitrary<Uint8Array> = fc.oneof(
  writtenNpy,
  fc.tuple(writtenNpy, fc.array(mutationArbitrary([{ at: 8, width: 2 }, { at: 8, width: 4 }]), { minLength: 1, maxLength: 4 }))
    .map(([file, edits]) => mutate(file, edits)),
  assembledNpy,
  fc.tuple(assembledNpy, fc.array(mutationArbitrary([{ at: 8, width: 2 }, { at: 8, width: 4 }]), { minLength: 1, maxLength: 3 }))
    .map(([file, edits]) => mutate(file, edits)),
  randomBytesArbitrary([NPY_MAGIC, Uint8Array.of(...NPY_MAGIC, 1, 0), Uint8Array.of(...NPY_MAGIC, 3, 0)]),
);

// ---------------------------------------------------------------------------------------------
// .safetensors

/** A .safetensors file put together by hand: header text, its length as the 8-byte prefix, data bytes. */
export function safetensorsFromParts(header: string, data: Uint8Array): Uint8Array {
  const text = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

const SAFETENSORS_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"];
const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1 };

/** JSON values of every kind, for fields that hold the wrong thing. */
const jsonValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2 ** 53, 2 ** 64, 1e308, -0, "", "F32", "__proto__"),
  fc.integer(),
  fc.string({ maxLength: 8 }),
  fc.array(fc.oneof(fc.integer({ min: -2, max: 8 }), fc.constantFrom(null, 1.5, 2 ** 60, "2")), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.string({ maxLength: 4 }), fc.integer()), { maxKeys: 3 }),
);

/** How an entry's data_offsets are chosen: tiled as the format wants, or wrong in one of the ways files go wrong. */
type OffsetRule = "tile" | "beyond" | "overlap" | "hole" | "reversed" | "negative" | "huge" | "short" | "value";

const safetensorsEntry = fc.record({
  name: fc.oneof(fc.constantFrom("w", "0.weight", "__proto__", "constructor", "", "__metadata__", "toString"), fc.string({ maxLength: 6 })),
  dtype: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...SAFETENSORS_DTYPES) }, fc.constantFrom("F8_E4M3", "f32", "C64", ""), jsonValue),
  shape: fc.oneof(
    { weight: 6, arbitrary: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }) },
    fc.array(fc.constantFrom(0, 1, 65536, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, -1, 1.5), { minLength: 1, maxLength: 5 }),
    jsonValue,
  ),
  offsets: fc.oneof({ weight: 6, arbitrary: fc.constant<OffsetRule>("tile") }, fc.constantFrom<OffsetRule>("beyond", "overlap", "hole", "reversed", "negative", "huge", "short", "value")),
  offsetValue: jsonValue,
  drop: fc.constantFrom(undefined, "dtype", "shape", "data_offsets"),
  extra: sometimes(fc.tuple(fc.constantFrom("extra", "dtype"), jsonValue), 6),
});

/** Headers: entries whose offsets tile the data or not, odd dtypes and shapes, metadata right or wrong, data of the length they need or not. */
const assembledSafetensors: fc.Arbitrary<Uint8Array> = fc.record({
  entries: fc.array(safetensorsEntry, { maxLength: 4 }),
  metadata: fc.oneof(fc.constant(undefined), fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }), jsonValue),
  slack: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.integer({ min: -8, max: 8 })),
  padding: fc.constantFrom("", "   ", "\n", "\0"),
  fill: fc.nat(255),
}).map(({ entries, metadata, slack, padding, fill }) => {
  const fields: string[] = metadata === undefined ? [] : [`"__metadata__":${JSON.stringify(metadata)}`];
  let offset = 0;
  for (const e of entries) {
    const size = typeof e.dtype === "string" && Object.hasOwn(DTYPE_BYTES, e.dtype) ? DTYPE_BYTES[e.dtype] : 4;
    const count = Array.isArray(e.shape) ? e.shape.reduce((a: number, b: unknown) => a * (typeof b === "number" ? b : 1), 1) : 1;
    const bytes = Number.isSafeInteger(count * size) ? count * size : 16;
    const begin = offset, end = offset + bytes;
    const offsets = {
      tile: [begin, end],
      beyond: [begin + 1024, end + 1024],
      overlap: [Math.max(0, begin - 2), Math.max(0, end - 2)],
      hole: [begin + 4, end + 4],
      reversed: [end + 1, begin],
      negative: [-4, end],
      huge: [2 ** 53, 2 ** 53 + bytes],
      short: [begin],
      value: e.offsetValue,
    }[e.offsets];
    if (e.offsets === "tile") offset = end;
    const object: Record<string, unknown> = { dtype: e.dtype, shape: e.shape, data_offsets: offsets };
    if (e.drop !== undefined) delete object[e.drop];
    if (e.extra) object[e.extra[0]] = e.extra[1];
    fields.push(`${JSON.stringify(e.name)}:${JSON.stringify(object)}`);
  }
  // Shapes of 2^31 elements tile to gigabytes: such a file is cut short (a truncated file is an input too).
  const dataLength = Math.min(Math.max(0, offset + slack), 1 << 16);
  return safetensorsFromParts(`{${fields.join(",")}}${padding}`, new Uint8Array(dataLength).fill(fill));
});

/** Valid files as writeSafetensors writes them. */
const writtenSafetensors: fc.Arbitrary<Uint8Array> = fc.uniqueArray(
  fc.tuple(fc.string({ minLength: 1, maxLength: 6 }), fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 })),
  { maxLength: 4, selector: ([name]: [string, number[]]) => name },
).map((list) => writeSafetensors(list.filter(([name]) => name !== "__metadata__").map(([name, shape]) => {
  const count = shape.reduce((a, b) => a * b, 1);
  return [name, { shape, data: Float32Array.from({ length: count }, (_, i) => i / 3) }] as const;
})));

/** The .safetensors inputs: valid files, edited, hand-assembled headers (edited or not), random bytes. */
export const safetensorsInputs: fc.Arbitrary<Uint8Array> = fc.oneof(
  writtenSafetensors,
  fc.tuple(writtenSafetensors, fc.array(mutationArbitrary([{ at: 0, width: 8 }, { at: 0, width: 4 }]), { minLength: 1, maxLength: 4 }))
    .map(([file, edits]) => mutate(file, edits)),
  assembledSafetensors,
  fc.tuple(assembledSafetensors, fc.array(mutationArbitrary([{ at: 0, width: 8 }]), { minLength: 1, maxLength: 3 }))
    .map(([file, edits]) => mutate(file, edits)),
  randomBytesArbitrary([Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d), Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)]),
);

// ---------------------------------------------------------------------------------------------
// Model specs

/** Every hyperparameter name the spec format knows, for layers that get the wrong ones. */
const HYPERPARAMETERS = [
  "in_features", "out_features", "bias", "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
  "groups", "padding_mode", "output_padding", "inplace", "negative_slope", "alpha", "approximate", "beta", "threshold", "p",
  "start_dim", "end_dim", "return_indices", "ceil_mode", "count_include_pad", "divisor_override", "num_features", "eps",
  "momentum", "affine", "track_running_stats", "normalized_shape", "elementwise_affine", "num_groups", "num_channels",
  "num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse", "output_size",
  "dim", "unflattened_size", "combine",
];

/** The hyperparameters each layer cannot do without, so that many generated layers are whole. */
const REQUIRED: Record<string, string[]> = {
  Linear: ["in_features", "out_features"],
  Conv1d: ["in_channels", "out_channels", "kernel_size"],
  Conv2d: ["in_channels", "out_channels", "kernel_size"],
  Conv3d: ["in_channels", "out_channels", "kernel_size"],
  ConvTranspose1d: ["in_channels", "out_channels", "kernel_size"],
  ConvTranspose2d: ["in_channels", "out_channels", "kernel_size"],
  ConvTranspose3d: ["in_channels", "out_channels", "kernel_size"],
  MaxPool1d: ["kernel_size"], MaxPool2d: ["kernel_size"], MaxPool3d: ["kernel_size"],
  AvgPool1d: ["kernel_size"], AvgPool2d: ["kernel_size"], AvgPool3d: ["kernel_size"],
  BatchNorm1d: ["num_features"], BatchNorm2d: ["num_features"], BatchNorm3d: ["num_features"],
  InstanceNorm1d: ["num_features"], InstanceNorm2d: ["num_features"], InstanceNorm3d: ["num_features"],
  LayerNorm: ["normalized_shape"],
  GroupNorm: ["num_groups", "num_channels"],
  Embedding: ["num_embeddings", "embedding_dim"],
  AdaptiveAvgPool1d: ["output_size"], AdaptiveAvgPool2d: ["output_size"], AdaptiveAvgPool3d: ["output_size"],
  AdaptiveMaxPool1d: ["output_size"], AdaptiveMaxPool2d: ["output_size"], AdaptiveMaxPool3d: ["output_size"],
  Unflatten: ["dim", "unflattened_size"],
};

/**
 * Hyperparameter values: mostly small sizes (so that many layers build, and none allocates much),
 * and the odd ones: zero, negative, huge (alone they overflow any limit), fractional, non-finite
 * as JSON can carry them (1e400 parses as Infinity), the wrong type, lists with nulls.
 */
const hyperparameterValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 6 }) },
  { weight: 3, arbitrary: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }) },
  { weight: 2, arbitrary: fc.constantFrom(0, -1, -7, 2 ** 31, 2 ** 32 + 1, 2 ** 53, 2 ** 60, 1e300, 0.5, 1.5, -0) },
  { weight: 2, arbitrary: fc.constantFrom(true, false, null, "same", "valid", "zeros", "reflect", "none", "tanh", "sum", "concat", "") },
  { weight: 1, arbitrary: fc.array(fc.constantFrom(0, 1, 2, -1, null, 2 ** 40, 1.5, "2"), { maxLength: 4 }) },
  { weight: 1, arbitrary: jsonValue },
);

/** A leaf layer: its type from the real set (or not), required hyperparameters (some dropped), others at random. */
const leafLayer: fc.Arbitrary<Record<string, unknown>> = fc.record({
  type: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...SUPPORTED_LAYERS) }, fc.constantFrom("LSTM", "", "__proto__", "linear"), jsonValue),
  values: fc.array(hyperparameterValue, { minLength: 3, maxLength: 3 }),
  drop: sometimes(fc.nat(2), 6),
  extra: fc.array(fc.tuple(fc.constantFrom(...HYPERPARAMETERS, "type", "unknown", "__proto__"), hyperparameterValue), { maxLength: 3 }),
}).map(({ type, values, drop, extra }) => {
  const layer: Record<string, unknown> = { type };
  const required = typeof type === "string" && Object.hasOwn(REQUIRED, type) ? REQUIRED[type] : [];
  required.forEach((key, i) => {
    if (i !== drop) layer[key] = values[i];
  });
  for (const [key, value] of extra) {
    if (key === "__proto__") Object.defineProperty(layer, key, { value, enumerable: true, writable: true, configurable: true });
    else layer[key] = value;
  }
  return layer;
});

/** Layers, with Sequential, Residual and Parallel containers nesting them a few levels deep. */
const layerArbitrary: fc.Arbitrary<unknown> = fc.letrec<{ layer: unknown }>((tie) => ({
  layer: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { weight: 6, arbitrary: leafLayer },
    fc.array(tie("layer"), { maxLength: 3 }).map((layers) => ({ type: "Sequential", layers })),
    fc.tuple(tie("layer"), fc.option(tie("layer"))).map(([block, shortcut]) => ({ type: "Residual", block, shortcut })),
    fc.record({ branches: fc.array(tie("layer"), { maxLength: 3 }), combine: fc.constantFrom("concat", "sum", undefined, "max"), dim: fc.option(fc.integer({ min: -3, max: 3 })) })
      .map(({ branches, combine, dim }) => ({ type: "Parallel", branches, ...(combine === undefined ? {} : { combine }), ...(dim === null ? {} : { dim }) })),
    { weight: 1, arbitrary: jsonValue },
  ),
})).layer;

/**
 * Containers nested `depth` deep around one layer: deep enough to overflow a recursive builder's
 * stack. Built only when the spec is used (see specArgument), so that fast-check never prints it.
 */
export interface DeepSpec {
  depth: number;
  kind: "Sequential" | "Residual" | "Parallel" | "array" | "object";
}
const deepSpec: fc.Arbitrary<DeepSpec> = fc.record({
  depth: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.constantFrom(1000, 10000, 50000)),
  kind: fc.constantFrom<DeepSpec["kind"]>("Sequential", "Residual", "Parallel", "array", "object"),
});

/** The JSON text of a deep spec, put together as text: JSON.stringify itself overflows the stack on it. */
function deepSpecText({ depth, kind }: DeepSpec): string {
  const [open, close] = {
    Sequential: ['{"type":"Sequential","layers":[', "]}"],
    Residual: ['{"type":"Residual","block":', "}"],
    Parallel: ['{"type":"Parallel","branches":[', "]}"],
    array: ["[", "]"],
    object: ['{"type":"Sequential","layers":{"layers":', "}}"],
  }[kind];
  return `{"format":"torch.nn.Sequential","layers":[${open.repeat(depth)}{"type":"ReLU"}${close.repeat(depth)}]}`;
}

/** A spec and how it is passed: as an object or as JSON text (sometimes cut short or edited). */
export interface SpecInput {
  spec: unknown;
  /** When given, the spec is this deep nesting instead of `spec`. */
  deep?: DeepSpec;
  /** Whether it is given to modelFromSpec as JSON text, and if so which edit of that text. */
  text?: { cut?: number; insert?: { at: number; what: string } };
}

/** Model specs: the right top level around random layers, wrong top levels, deep nesting, edited JSON text. */
export const specInputs: fc.Arbitrary<SpecInput> = fc.record({
  spec: fc.oneof(
    { weight: 8, arbitrary: fc.array(layerArbitrary, { maxLength: 4 }).map((layers) => ({ format: "torch.nn.Sequential", layers })) },
    fc.record({
      format: fc.oneof(fc.constant("torch.nn.Sequential"), jsonValue),
      layers: fc.oneof(fc.array(layerArbitrary, { maxLength: 2 }), jsonValue),
      extra: jsonValue,
    }, { requiredKeys: [] }),
    jsonValue,
  ),
  deep: sometimes(deepSpec, 12),
  text: sometimes(
    fc.record({
      cut: sometimes(fc.nat(), 4),
      insert: sometimes(fc.record({ at: fc.nat(), what: fc.constantFrom("[", "{", "}", ",", '"', "1e999", "\u0000", "-", "\ud800") }), 4),
    }),
    2,
  ),
});

/** The spec as modelFromSpec gets it (`argument`: an object or JSON text), and as JSON text (loadModel's form). */
export function specArgument(input: SpecInput): { argument: unknown; text: string } {
  let text = input.deep === undefined ? JSON.stringify(input.spec) ?? "undefined" : deepSpecText(input.deep);
  if (input.text === undefined) {
    // A deep spec as an object is parsed from its text (V8's and JSC's JSON.parse do not recurse).
    return { argument: input.deep === undefined ? input.spec : JSON.parse(text), text };
  }
  if (input.text.cut !== undefined) text = text.slice(0, input.text.cut % (text.length + 1));
  if (input.text.insert !== undefined) {
    const at = input.text.insert.at % (text.length + 1);
    text = text.slice(0, at) + input.text.insert.what + text.slice(at);
  }
  return { argument: text, text };
}

/** Edits of a state dict before loadModel gets it: a key dropped or added, a tensor's shape or values wrong. */
export type WeightsEdit = "none" | "drop" | "extra" | "reshape" | "nan" | "bytes";
export const weightsEdits: fc.Arbitrary<{ edit: WeightsEdit; which: number; bytes: Mutation[] }> = fc.record({
  edit: fc.constantFrom<WeightsEdit>("none", "none", "drop", "extra", "reshape", "nan", "bytes"),
  which: fc.nat(),
  bytes: fc.array(mutationArbitrary([{ at: 0, width: 8 }]), { minLength: 1, maxLength: 3 }),
});

// ---------------------------------------------------------------------------------------------
// Command lines

/** The flags of `jacobian-wasm jacobian`, each with the values the fuzzer draws from (paths resolved by the test). */
export const JACOBIAN_FLAG_VALUES: Record<string, readonly string[]> = {
  "--model": ["@mlp.json", "@conv.json", "@garbage.bin", "@empty.bin", "@bad_spec.json", "@mlp_x.npy", "@missing.json", "@dir"],
  "--weights": ["@mlp.safetensors", "@conv.safetensors", "@garbage.bin", "@empty.bin", "@mlp_x.npy", "@missing.safetensors", "@dir"],
  "--input": ["@mlp_x.npy", "@conv_x.npy", "@mlp_x_nan.npy", "@mlp_x_int.npy", "@scalar.npy", "@empty_batch.npy", "@garbage.bin", "@mlp.safetensors", "@missing.npy", "@dir"],
  "--target": ["@classes.npy", "@classes_bad.npy", "@mlp_y.npy", "@classes_short.npy", "@classes_float.npy", "@garbage.bin", "@missing.npy"],
  "--loss": ["cross_entropy", "mse", "nll", ""],
  "--reduction": ["sum", "mean", "none", ""],
  "--quantity": ["jacobian", "batch_l2", "sum_grad_squared", "variance", "ntk", "clipped_sum", "hessian", ""],
  "--max-norm": ["1", "0.5", "0", "-1", "NaN", "Infinity", "1e400", "abc", ""],
  "--max-out": ["4G", "1", "100", "1K", "1.5M", "10T", "0", "-1", "abc", "99999999999999999999T", "1e3", ""],
  "--time": ["1", "2", "0", "-1", "1.5", "x", ""],
  "--out": ["@out.npy", "@out.safetensors", "@out.txt", "@no_such_dir/out.npy", "@dir.npy", "@dir"],
};

/** One command line: a command, flags with values in random order, and odd tokens (unknown flags, positionals, `--flag=value`). */
export const commandLines: fc.Arbitrary<string[]> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      flags: fc.uniqueArray(fc.constantFrom(...Object.keys(JACOBIAN_FLAG_VALUES)), { maxLength: 4 }),
      // The four required flags usually, so that most lines get past the usage checks.
      required: fc.nat(5).map((n) => n !== 0),
      picks: fc.array(fc.nat(), { minLength: 13, maxLength: 13 }),
      odd: sometimes(fc.constantFrom("--bogus", "-x", "extra", "--model", "--", "--out=@out.npy", "--help"), 5),
      oddAt: fc.nat(),
    }).map(({ flags, required, picks, odd, oddAt }) => {
      const chosen = required ? [...new Set(["--model", "--weights", "--input", "--out", ...flags])] : [...flags];
      // Flags that need another come with it, mostly: --loss and --target, --max-norm and --quantity.
      for (const [flag, needs] of [["--loss", "--target"], ["--target", "--loss"], ["--max-norm", "--quantity"]]) {
        if (chosen.includes(flag) && !chosen.includes(needs) && picks[12] % 5 !== 0) chosen.push(needs);
      }
      const line = ["jacobian"];
      chosen.forEach((flag, i) => {
        const values = JACOBIAN_FLAG_VALUES[flag];
        // Four times in five a good value: one of the two models, their own weights and input ("@same"),
        // the first value of the others; otherwise any, good or bad.
        const good = flag === "--weights" || flag === "--input"
          ? "@same"
          : flag === "--quantity" && chosen.includes("--max-norm")
          ? "clipped_sum"
          : values[flag === "--model" || flag === "--quantity" ? (picks[i] >> 4) % (flag === "--model" ? 2 : 6) : 0];
        line.push(flag, picks[i] % 5 !== 0 ? good : values[(picks[i] >> 3) % values.length]);
      });
      if (odd !== undefined) line.splice(1 + (oddAt % line.length), 0, odd);
      return line;
    }),
  },
  fc.tuple(fc.constantFrom("demo", "help", "--help", "-h", "jacobian", "nope", ""), fc.array(fc.constantFrom("--n", "1", "3", "0", "-2", "abc", "1e12", "200001", "2.5", "--bogus"), { maxLength: 3 }))
    .map(([command, rest]) => [command, ...rest]),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 4 }),
);
