import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import process from "node:process";
import fc from "fast-check";
import "./helpers/runs.ts"; // JACOBIAN_WASM_PROPERTY_RUNS reaches these properties through fast-check's global settings
import { FileError, FormatError, isUserError, ShapeError, ValueError } from "../src/errors.ts";
import { tensor } from "../src/tensor.ts";
import type { Tensor } from "../src/tensor.ts";
import { npyToFloat32, npyToIntegers, readNpy, writeNpy } from "../src/io/npy.ts";
import type { NpyArray } from "../src/io/npy.ts";
import { readSafetensors, readSafetensorsMetadata, writeSafetensors } from "../src/io/safetensors.ts";
import { readFileBytes, writeFileAtomic } from "../src/io/files.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

const fixtures = new URL("./fixtures/io/", import.meta.url);
const fixture = (file: string): Uint8Array => new Uint8Array(readFileSync(new URL(file, fixtures)));
const expected = JSON.parse(readFileSync(new URL("expected.json", fixtures), "utf8")) as Record<string, {
  dtype?: string;
  shape?: number[];
  values?: (number | string)[];
  error?: string;
  metadata?: Record<string, string>;
  order?: string[];
  tensors?: Record<string, { shape: number[]; values: (number | string)[] }>;
}>;

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);
const concat = (...parts: ArrayLike<number>[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
};
const bytesOf = (data: ArrayBufferView): Uint8Array => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** A version-1.0 .npy file with the given header text (no padding added) and data bytes. */
function npyFile(header: string, data: ArrayLike<number> = [], major = 1): Uint8Array {
  const text = ascii(header);
  const length = major === 1 ? [text.length & 0xff, text.length >> 8] : [text.length & 0xff, text.length >> 8, 0, 0];
  return concat([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0], length, text, data);
}

/** A .safetensors file with the given header text and data bytes. */
function safetensorsFile(header: string, data: ArrayLike<number> = []): Uint8Array {
  const text = ascii(header);
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(text.length), true);
  return concat(length, text, data);
}

function assertThrowsWith(run: () => unknown, type: new (...args: never[]) => Error, ...fragments: string[]): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof type, `expected a ${type.name}, got ${String(error)}`);
    for (const fragment of fragments) {
      assert.ok(
        error.message.includes(fragment),
        `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(fragment)}`,
      );
    }
    return true;
  });
}

function assertSameValues(array: NpyArray, values: (number | string)[], label: string): void {
  assert.equal(array.data.length, values.length, label);
  for (let i = 0; i < values.length; i++) {
    const want = array.dtype === "int64" ? BigInt(values[i]) : Number(values[i]);
    assert.ok(Object.is(array.data[i], want), `${label}[${i}]: got ${array.data[i]}, want ${want}`);
  }
}

const shapeArbitrary = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 });
const count = (shape: number[]) => shape.reduce((n, d) => n * d, 1);

type Typed = Float32Array | Float64Array | Int32Array | BigInt64Array;
const npyArbitrary: fc.Arbitrary<{ data: Typed; shape: number[] }> = shapeArbitrary.chain((shape) => {
  const n = count(shape);
  const sized = { minLength: n, maxLength: n };
  return fc.oneof(
    fc.float32Array(sized),
    fc.float64Array(sized),
    fc.array(fc.integer(), sized).map((v) => Int32Array.from(v)),
    fc.bigInt64Array(sized),
  ).map((data: Typed) => ({ data, shape }));
});

const tensorsArbitrary: fc.Arbitrary<[string, Tensor][]> = fc.uniqueArray(
  fc.tuple(
    fc.string({ unit: "binary", minLength: 1, maxLength: 8 }).filter((name) => name !== "__metadata__"),
    shapeArbitrary.chain((shape) => {
      const n = count(shape);
      return fc.float32Array({ minLength: n, maxLength: n }).map((data) => tensor(data, shape));
    }),
  ),
  { selector: ([name]) => name, maxLength: 5 },
);

// ---------------------------------------------------------------------------------------------
// .npy: numpy's own files

test("readNpy reads numpy's files of every format version, byte order and element type exactly", () => {
  let checked = 0;
  for (const [file, want] of Object.entries(expected)) {
    if (!file.endsWith(".npy") || want.error) continue;
    const array = readNpy(fixture(file), file);
    assert.equal(array.dtype, want.dtype, file);
    assert.deepEqual(array.shape, want.shape, file);
    assertSameValues(array, want.values!, file);
    checked++;
  }
  assert.ok(checked >= 15, `only ${checked} fixtures checked`);
});

test("readNpy refuses numpy's Fortran-order, complex, string and structured arrays, naming the file", () => {
  for (const [file, want] of Object.entries(expected)) {
    if (!want.error) continue;
    assertThrowsWith(() => readNpy(fixture(file), `fixtures/${file}`), FormatError, `fixtures/${file}: `, want.error);
  }
});

test("writeNpy writes the same bytes as numpy.save", () => {
  for (const file of ["f4.npy", "f8.npy", "i8.npy", "i4.npy", "scalar.npy", "empty.npy"]) {
    const original = fixture(file);
    const array = readNpy(original, file);
    assert.deepEqual(writeNpy(array.data, array.shape), original, file);
  }
});

test("writeNpy pads the header to a multiple of 64 bytes and ends it with a newline", () => {
  fc.assert(fc.property(npyArbitrary, ({ data, shape }) => {
    const bytes = writeNpy(data, shape);
    const headerLength = bytes[8] | (bytes[9] << 8);
    assert.equal((10 + headerLength) % 64, 0);
    assert.equal(bytes[9 + headerLength], 0x0a);
    assert.equal(bytes.length, 10 + headerLength + data.byteLength);
  }));
});

// ---------------------------------------------------------------------------------------------
// .npy: round trips and layouts

test("writeNpy then readNpy gives back any shape, element type and values bit for bit", () => {
  fc.assert(fc.property(npyArbitrary, ({ data, shape }) => {
    const array = readNpy(writeNpy(data, shape));
    assert.deepEqual(array.shape, shape);
    assert.equal(array.data.constructor, data.constructor);
    assert.deepEqual(bytesOf(array.data), bytesOf(data));
  }));
});

test("readNpy reads big-endian, unaligned and Buffer-held data the same as aligned little-endian data", () => {
  fc.assert(fc.property(npyArbitrary, ({ data, shape }) => {
    const little = writeNpy(data, shape);
    const dataOffset = little.length - data.byteLength;
    const size = data.BYTES_PER_ELEMENT;
    // Big-endian: '<' becomes '>' in the header and every element's bytes are reversed.
    const big = little.slice();
    big[big.indexOf(0x3c)] = 0x3e;
    for (let at = dataOffset; at < big.length; at += size) big.subarray(at, at + size).reverse();
    // Unaligned: the same bytes one byte into a buffer.
    const unaligned = new Uint8Array(little.length + 1).subarray(1);
    unaligned.set(little);
    // A Node Buffer from the shared pool, whose slice() does not copy.
    const buffer = Buffer.concat([Buffer.from([1]), Buffer.from(little)]).subarray(1);
    for (const [label, bytes] of [["big-endian", big], ["unaligned", unaligned], ["Buffer", buffer]] as const) {
      const array = readNpy(bytes, label);
      assert.deepEqual(array.shape, shape, label);
      assert.deepEqual(bytesOf(array.data), bytesOf(data), label);
    }
  }));
});

test("readNpy returns aligned little-endian data as a view of the input and copies unaligned data", () => {
  const bytes = writeNpy(new Float32Array([1, 2, 3]), [3]);
  assert.equal(readNpy(bytes).data.buffer, bytes.buffer);
  const unaligned = new Uint8Array(bytes.length + 1).subarray(1);
  unaligned.set(bytes);
  const copy = readNpy(unaligned);
  assert.notEqual(copy.data.buffer, unaligned.buffer);
  assert.deepEqual([...copy.data], [1, 2, 3]);
});

test("readNpy ignores bytes after the data, as numpy.load does", () => {
  const bytes = concat(writeNpy(new Int32Array([4, 5]), [2]), ascii("trailing garbage"));
  assert.deepEqual([...readNpy(bytes).data], [4, 5]);
});

test("readNpy accepts headers written by other writers: double quotes, any key order, Python 2 longs, no padding", () => {
  const data = bytesOf(new Float32Array([1, 2, 3, 4, 5, 6]));
  for (
    const header of [
      `{"descr": "<f4", "fortran_order": False, "shape": (2, 3)}`,
      `{'shape': (2L, 3L), 'fortran_order': False, 'descr': '<f4', }\n`,
      `  {'descr':'<f4','fortran_order':False,'shape':(2,3,)}  \n`,
    ]
  ) {
    const array = readNpy(npyFile(header, data), "other.npy");
    assert.deepEqual(array.shape, [2, 3], header);
    assert.deepEqual([...array.data], [1, 2, 3, 4, 5, 6], header);
  }
  assert.deepEqual(readNpy(npyFile(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}`, data, 2)).shape, [
    2,
    3,
  ]);
});

test("readNpy reads Fortran-order files whose layout is the same as C order (at most one axis longer than 1)", () => {
  const data = bytesOf(new Float32Array([1, 2, 3]));
  for (const shape of ["(3,)", "(1, 3)", "(3, 1, 1)"]) {
    const array = readNpy(npyFile(`{'descr': '<f4', 'fortran_order': True, 'shape': ${shape}, }`, data));
    assert.deepEqual([...array.data], [1, 2, 3], shape);
  }
});

// ---------------------------------------------------------------------------------------------
// .npy: malformed files, one message each

test("readNpy names the file and the exact bytes when the data is shorter than the shape needs", () => {
  const bytes = writeNpy(new Float32Array(280), [10, 28]).subarray(0, 1040);
  assertThrowsWith(
    () => readNpy(bytes, "x.npy"),
    FormatError,
    "x.npy: data ends at byte 1040, the shape (10, 28) needs 1120 bytes from offset 128",
  );
});

test("readNpy reports a bad magic, an unsupported version and a header past the end of the file", () => {
  assertThrowsWith(
    () => readNpy(ascii("PK\x03\x04 a zip file"), "a.npy"),
    FormatError,
    "a.npy: not a .npy file",
    "50 4b 03 04",
  );
  assertThrowsWith(() => readNpy(new Uint8Array(), "a.npy"), FormatError, "a.npy: the file is empty, not a .npy file");
  assertThrowsWith(
    () => readNpy(new Uint8Array([0x93, 0x4e, 0x55]), "a.npy"),
    FormatError,
    "ends at byte 3, before the format version",
  );
  const v4 = npyFile(`{'descr': '<f4', 'fortran_order': False, 'shape': (), }`, [0, 0, 0, 0]);
  v4[6] = 4;
  assertThrowsWith(() => readNpy(v4, "a.npy"), FormatError, "a.npy: unsupported .npy format version 4.0 (bytes 6-7)");
  v4[6] = 1;
  v4[7] = 1;
  assertThrowsWith(() => readNpy(v4, "a.npy"), FormatError, "version 1.1");
  assertThrowsWith(
    () => readNpy(npyFile("").subarray(0, 9), "a.npy"),
    FormatError,
    "ends at byte 9, inside the header length at bytes 8-9",
  );
  assertThrowsWith(
    () => readNpy(npyFile("", [], 2).subarray(0, 11), "a.npy"),
    FormatError,
    "inside the header length at bytes 8-11",
  );
  const long = npyFile(`{'descr': '<f4', 'fortran_order': False, 'shape': (), }`);
  long[8] = 200;
  assertThrowsWith(
    () => readNpy(long, "a.npy"),
    FormatError,
    "a.npy: the header length at bytes 8-9 says the header runs to byte 210, but the file ends at byte 65",
  );
});

test("readNpy reports a header that is not a valid Python dict literal, with the byte where parsing stopped", () => {
  const cases: [string, string][] = [
    [`{'descr': '<f4' 'fortran_order': False, 'shape': (3,), }`, "expected ',' or '}', found \"'\" at byte 26"],
    [`{'descr': '<f4', 'fortran_order': False, 'shape': (3,), `, "found the end of the header"],
    [`{'descr: '<f4', }`, "expected ':'"],
    [`{'descr': '<f4, 'fortran_order': False}`, "expected ',' or '}', found \"f\" at byte 27"],
    [`{'descr': <f4, }`, 'expected a value, found "<"'],
    [`{'shape': (3.5,), }`, "expected an integer"],
    [`{'descr': '<f4', 'fortran_order': false, 'shape': (3,), }`, 'expected a value, found "f"'],
    [`{3: '<f4'}`, "expected a string key"],
    [`{'descr': '<f4'} extra`, 'unexpected "e" after the dict'],
    ["[".repeat(100), "nested too deeply"],
    [`{'descr': 'a\n'}`, "unterminated string"],
  ];
  for (const [header, fragment] of cases) {
    assertThrowsWith(
      () => readNpy(npyFile(header), "h.npy"),
      FormatError,
      "h.npy: the header is not a valid Python dict literal: ",
      fragment,
      "the header is ",
    );
  }
});

test("readNpy reports a header with missing, extra or mistyped keys", () => {
  const cases: [string, string][] = [
    [`['descr', '<f4']`, "the header is a list, not a Python dict"],
    [`{'descr': '<f4', 'shape': (3,), }`, "the header has no 'fortran_order' key"],
    [`{'fortran_order': False, 'shape': (3,), }`, "the header has no 'descr' key"],
    [`{'descr': '<f4', 'fortran_order': False, }`, "the header has no 'shape' key"],
    [`{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'order': 'C'}`, "unexpected key 'order'"],
    [`{'descr': '<f4', 'fortran_order': False, 'shape': [3], }`, "'shape' is a list, not a tuple"],
    [`{'descr': '<f4', 'fortran_order': False, 'shape': (3), }`, "'shape' is the number 3, not a tuple"],
    [
      `{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }`,
      "'shape' holds the number -3, not a non-negative integer",
    ],
    [`{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }`, "not a non-negative integer"],
    [`{'descr': '<f4', 'fortran_order': None, 'shape': (3,), }`, "'fortran_order' is None, not True or False"],
    [`{'descr': 4, 'fortran_order': False, 'shape': (3,), }`, "'descr' is the number 4, not a dtype string"],
    [`{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }`, "structured dtypes"],
  ];
  for (const [header, fragment] of cases) {
    assertThrowsWith(() => readNpy(npyFile(header), "h.npy"), FormatError, "h.npy: ", fragment);
  }
});

test("readNpy reports unsupported element types and missing byte orders", () => {
  const cases: [string, string][] = [
    ["<f16", "dtype '<f16' is not supported"],
    ["<c16", "dtype '<c16' (complex numbers) is not supported"],
    ["|O", "dtype '|O' (Python objects (pickled)) is not supported"],
    ["<M8[ns]", "(datetimes) is not supported"],
    ["|f4", "dtype '|f4' does not say its byte order"],
    ["=i8", "a 8-byte type needs '<' (little-endian) or '>' (big-endian)"],
  ];
  for (const [descr, fragment] of cases) {
    const header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (1,), }`;
    assertThrowsWith(() => readNpy(npyFile(header, new Uint8Array(16)), "d.npy"), FormatError, "d.npy: ", fragment);
  }
});

test("readNpy reports a version 3.0 header that is not UTF-8", () => {
  const bytes = npyFile(`{'descr': '<f4', 'fortran_order': False, 'shape': (), }`, [0, 0, 0, 0], 3);
  bytes[14] = 0xff;
  assertThrowsWith(() => readNpy(bytes, "u.npy"), FormatError, "u.npy: the header (bytes 12-", "is not valid UTF-8");
});

test("readNpy refuses uint64 values past the int64 range with a ValueError naming the index", () => {
  const data = new Uint8Array(16).fill(0xff, 8);
  const bytes = npyFile(`{'descr': '<u8', 'fortran_order': False, 'shape': (1, 2), }`, data);
  assertThrowsWith(() => readNpy(bytes, "big.npy"), ValueError, "big.npy: value 18446744073709551615 at index [0, 1]");
});

test("any truncation of a valid .npy file is a FormatError, never a crash or garbage", () => {
  const whole = fixture("f8_be.npy");
  for (let length = 0; length < whole.length; length++) {
    assert.throws(() => readNpy(whole.subarray(0, length), "cut.npy"), FormatError, `length ${length}`);
  }
  fc.assert(fc.property(npyArbitrary, fc.nat(), ({ data, shape }, cut) => {
    const bytes = writeNpy(data, shape);
    const length = cut % bytes.length;
    assert.throws(() => readNpy(bytes.subarray(0, length), "cut.npy"), FormatError);
  }));
});

test("any corrupted byte in a .npy file gives a FormatError, a ValueError or an array that fits the file", () => {
  fc.assert(fc.property(npyArbitrary, fc.nat(), fc.integer({ min: 0, max: 255 }), ({ data, shape }, at, value) => {
    const bytes = writeNpy(data, shape);
    bytes[at % bytes.length] = value;
    try {
      const array = readNpy(bytes, "bad.npy");
      assert.equal(array.data.length, count(array.shape));
    } catch (error) {
      assert.ok(error instanceof FormatError || error instanceof ValueError, String(error));
    }
  }));
});

// ---------------------------------------------------------------------------------------------
// .npy: conversions

test("npyToFloat32 returns float32 data as is and converts float64 and integers", () => {
  const single = readNpy(writeNpy(new Float32Array([1.5, -2]), [2]));
  assert.equal(npyToFloat32(single), single.data);
  assert.deepEqual([...npyToFloat32(readNpy(writeNpy(new Float64Array([0.1, -3]), [2])))], [Math.fround(0.1), -3]);
  assert.deepEqual([...npyToFloat32(readNpy(fixture("u1.npy")))], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual([...npyToFloat32(readNpy(fixture("i8.npy")))], [-(2 ** 40), 2 ** 62, -1, 0, 7]);
});

test("npyToFloat32 refuses a float64 too large for float32 with a ValueError naming the index", () => {
  assertThrowsWith(
    () => npyToFloat32(readNpy(fixture("f8.npy")), "f8.npy"),
    ValueError,
    "f8.npy: value 1e+300 at index [1, 0]",
  );
});

test("npyToIntegers converts whole-number targets and names the index of any value that is not one", () => {
  const int32 = readNpy(fixture("i4.npy"));
  assert.equal(npyToIntegers(int32), int32.data);
  assert.deepEqual([...npyToIntegers(readNpy(writeNpy(new BigInt64Array([3n, -2n]), [2])))], [3, -2]);
  assert.deepEqual([...npyToIntegers(readNpy(writeNpy(new Float32Array([3, 0, 9]), [3])))], [3, 0, 9]);
  assert.deepEqual([...npyToIntegers(readNpy(fixture("u1.npy")))], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assertThrowsWith(
    () => npyToIntegers(readNpy(fixture("i8.npy")), "y.npy"),
    ValueError,
    "y.npy: value -1099511627776 at index [0] does not fit in a 32-bit integer",
  );
  assertThrowsWith(
    () => npyToIntegers(readNpy(writeNpy(new Float64Array([1, 2.5]), [1, 2])), "y.npy"),
    ValueError,
    "y.npy: value 2.5 at index [0, 1] is not an integer",
  );
  assertThrowsWith(
    () => npyToIntegers(readNpy(writeNpy(new Float32Array([NaN]), [1])), "y.npy"),
    ValueError,
    "value NaN at index [0]",
  );
  assertThrowsWith(
    () => npyToIntegers(readNpy(writeNpy(new Float64Array([2 ** 31]), [1])), "y.npy"),
    ValueError,
    "value 2147483648 at index [0] does not fit",
  );
});

test("writeNpy refuses a shape that does not match the data", () => {
  assertThrowsWith(
    () => writeNpy(new Float32Array(10), [3, 4]),
    ShapeError,
    "writeNpy: shape (3, 4) holds 12 elements, data has 10",
  );
  assertThrowsWith(() => writeNpy(new Float32Array(0), [-1]), ShapeError, "must hold non-negative integers");
  assertThrowsWith(() => writeNpy(new Float32Array(2), [1.5]), ShapeError, "must hold non-negative integers");
});

// ---------------------------------------------------------------------------------------------
// .safetensors

test("readSafetensors reads F32, F16, BF16, F64, I64 and I32 tensors of a hand-made file exactly, in file order", () => {
  const want = expected["model.safetensors"];
  const bytes = fixture("model.safetensors");
  const tensors = readSafetensors(bytes, "model.safetensors");
  assert.deepEqual([...tensors.keys()], want.order);
  for (const [name, { shape, values }] of Object.entries(want.tensors!)) {
    const got = tensors.get(name)!;
    assert.deepEqual(got.shape, shape, name);
    assert.ok(got.data instanceof Float32Array, name);
    assert.deepEqual([...got.data], values.map(Number), name);
  }
  assert.deepEqual(readSafetensorsMetadata(bytes, "model.safetensors"), want.metadata);
});

test("writeSafetensors then readSafetensors gives back any tensors and metadata, in the given order, bit for bit", () => {
  const metadataArbitrary = fc.option(fc.dictionary(fc.string(), fc.string()), { nil: undefined });
  fc.assert(fc.property(tensorsArbitrary, metadataArbitrary, (tensors, metadata) => {
    const bytes = writeSafetensors(tensors, metadata);
    const back = readSafetensors(bytes);
    assert.deepEqual([...back.keys()], tensors.map(([name]) => name));
    for (const [name, value] of tensors) {
      assert.deepEqual(back.get(name)!.shape, value.shape, name);
      assert.deepEqual(bytesOf(back.get(name)!.data), bytesOf(value.data), name);
    }
    assert.deepEqual(readSafetensorsMetadata(bytes), Object.fromEntries(Object.entries(metadata ?? {})));
  }));
});

test("writeSafetensors lays out the header as the reference does: compact JSON, metadata first, spaces to a multiple of 8", () => {
  const bytes = writeSafetensors(new Map([["10", tensor([1, 2], [2])], ["2", tensor([3], [])]]), { format: "pt" });
  const header = `{"__metadata__":{"format":"pt"},"10":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
    `"2":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}`;
  const padded = header + " ".repeat((8 - (header.length % 8)) % 8);
  assert.deepEqual(bytes, safetensorsFile(padded, bytesOf(new Float32Array([1, 2, 3]))));
  assert.deepEqual(writeSafetensors([]), safetensorsFile("{}      "));
  fc.assert(fc.property(tensorsArbitrary, (tensors) => {
    const written = writeSafetensors(tensors);
    const length = Number(new DataView(written.buffer).getBigUint64(0, true));
    assert.equal(length % 8, 0);
  }));
});

test("writeSafetensors refuses repeated or reserved names and data that does not fit the shape", () => {
  const one = tensor([1], [1]);
  assertThrowsWith(() => writeSafetensors([["a", one], ["a", one]]), ValueError, `tensor "a" is given twice`);
  assertThrowsWith(() => writeSafetensors([["__metadata__", one]]), ValueError, `"__metadata__" is reserved`);
  const bad = { shape: [2, 2], data: new Float32Array(3) };
  assertThrowsWith(
    () => writeSafetensors([["w", bad]]),
    ShapeError,
    `tensor "w" has shape (2, 2) (4 elements) but 3 values`,
  );
});

test("readSafetensors reports a short file, a header past the end and a header that is not a JSON object", () => {
  assertThrowsWith(
    () => readSafetensors(new Uint8Array(5), "m.st"),
    FormatError,
    "m.st: file ends at byte 5, inside the 8-byte header length",
  );
  const long = safetensorsFile("{}      ");
  long[0] = 100;
  assertThrowsWith(
    () => readSafetensors(long, "m.st"),
    FormatError,
    "m.st: the header length at bytes 0-7 says the header runs to byte 108, but the file ends at byte 16",
  );
  const huge = safetensorsFile("{}");
  huge.fill(0xff, 0, 8);
  assertThrowsWith(() => readSafetensors(huge, "m.st"), FormatError, "runs to byte 18446744073709551623");
  assertThrowsWith(
    () => readSafetensors(safetensorsFile('{"a": '), "m.st"),
    FormatError,
    "m.st: the header (bytes 8-13) is not valid JSON",
  );
  assertThrowsWith(
    () => readSafetensors(safetensorsFile("[1, 2]"), "m.st"),
    FormatError,
    "m.st: the header (bytes 8-13) is an array, not a JSON object",
  );
  const latin = safetensorsFile('{"\xe9": 1}');
  latin[10] = 0xe9;
  assertThrowsWith(() => readSafetensors(latin, "m.st"), FormatError, "is not valid UTF-8");
  assertThrowsWith(
    () => readSafetensors(safetensorsFile(`{"__metadata__": {"epoch": 3}}`), "m.st"),
    FormatError,
    `"__metadata__" entry "epoch" is the number 3, not a string`,
  );
  assertThrowsWith(
    () => readSafetensorsMetadata(safetensorsFile(`{"__metadata__": []}`), "m.st"),
    FormatError,
    `"__metadata__" is an array, not a map of strings`,
  );
});

test("readSafetensors reports each bad tensor entry by file and tensor name", () => {
  const entry = (fields: string) => safetensorsFile(`{"w": ${fields}}`, new Uint8Array(8));
  const cases: [string, string][] = [
    [`[1]`, `tensor "w" is an array in the header, not an object with dtype, shape and data_offsets`],
    [`{"shape": [2], "data_offsets": [0, 8]}`, `tensor "w" has no dtype in the header`],
    [`{"dtype": "F32"}`, `tensor "w" has no shape or data_offsets in the header`],
    [`{"dtype": 7, "shape": [2], "data_offsets": [0, 8]}`, `tensor "w" has dtype 7, not a string`],
    [
      `{"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}`,
      `tensor "w" has dtype "F8_E4M3", which is not supported`,
    ],
    [`{"dtype": "toString", "shape": [2], "data_offsets": [0, 8]}`, `has dtype "toString", which is not supported`],
    [
      `{"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}`,
      `tensor "w" has shape [2.5], not a list of non-negative integers`,
    ],
    [`{"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}`, `has shape "2", not a list`],
    [
      `{"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}`,
      `tensor "w" has data_offsets [8,0], not a pair [begin, end] with begin <= end`,
    ],
    [`{"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]}`, `not a pair`],
    [
      `{"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}`,
      `tensor "w" (F32, shape (3,)) needs 12 bytes, but its data_offsets [0, 8] span 8`,
    ],
    [`{"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}`, `tensor "w" has data_offsets [0, 16], file bytes`],
  ];
  for (const [fields, fragment] of cases) {
    assertThrowsWith(() => readSafetensors(entry(fields), "m.st"), FormatError, "m.st: ", fragment);
  }
  assertThrowsWith(
    () => readSafetensors(entry(`{"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}`), "m.st"),
    FormatError,
    "but the file ends at byte",
  );
});

test("readSafetensors reports overlapping tensors, holes and trailing bytes with their offsets", () => {
  const header = (a: string, b: string) =>
    `{"a":{"dtype":"F32","shape":[2],"data_offsets":${a}},"b":{"dtype":"F32","shape":[2],"data_offsets":${b}}}`;
  const overlap = safetensorsFile(header("[0,8]", "[4,12]"), new Uint8Array(12));
  const start = overlap.length - 12;
  assertThrowsWith(
    () => readSafetensors(overlap, "m.st"),
    FormatError,
    `m.st: tensors "a" (data_offsets [0, 8]) and "b" (data_offsets [4, 12]) overlap, at file bytes ${start + 4}-${
      start + 8
    }`,
  );
  const hole = safetensorsFile(header("[0,8]", "[12,20]"), new Uint8Array(20));
  assertThrowsWith(
    () => readSafetensors(hole, "m.st"),
    FormatError,
    `m.st: data section bytes 8-12`,
    `belong to no tensor: a hole before tensor "b"`,
  );
  const trailing = safetensorsFile(header("[0,8]", "[8,16]"), new Uint8Array(20));
  assertThrowsWith(
    () => readSafetensors(trailing, "m.st"),
    FormatError,
    "m.st: the tensors end at data section byte 16",
    "4 bytes belong to no tensor",
  );
});

test("readSafetensors refuses an F64 value too large for float32 with a ValueError naming the tensor and index", () => {
  const bytes = safetensorsFile(
    `{"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}`,
    bytesOf(new Float64Array([1, 1e300])),
  );
  assertThrowsWith(
    () => readSafetensors(bytes, "m.st"),
    ValueError,
    `m.st: tensor "d" holds 1e+300 at index [1], too large for float32`,
  );
});

test("readSafetensors reads from unaligned input and Buffers, and copies each tensor's data", () => {
  const bytes = writeSafetensors([["a", tensor([1, 2, 3], [3])], ["b", tensor([4], [1])]]);
  const unaligned = new Uint8Array(bytes.length + 1).subarray(1);
  unaligned.set(bytes);
  const buffer = Buffer.concat([Buffer.from([1]), Buffer.from(bytes)]).subarray(1);
  for (const input of [bytes, unaligned, buffer]) {
    const tensors = readSafetensors(input);
    assert.deepEqual([...tensors.get("a")!.data], [1, 2, 3]);
    assert.deepEqual([...tensors.get("b")!.data], [4]);
    assert.notEqual(tensors.get("a")!.data.buffer, input.buffer);
  }
});

test("any truncation of a valid .safetensors file is a FormatError, never a crash or garbage", () => {
  const whole = fixture("model.safetensors");
  for (let length = 0; length < whole.length; length++) {
    assert.throws(() => readSafetensors(whole.subarray(0, length), "cut.st"), FormatError, `length ${length}`);
  }
  fc.assert(fc.property(tensorsArbitrary, fc.nat(), (tensors, cut) => {
    const bytes = writeSafetensors(tensors);
    assert.throws(() => readSafetensors(bytes.subarray(0, cut % bytes.length), "cut.st"), FormatError);
  }));
});

test("any corrupted byte in a .safetensors file gives a FormatError or tensors that fit their shapes", () => {
  fc.assert(fc.property(tensorsArbitrary, fc.nat(), fc.integer({ min: 0, max: 255 }), (tensors, at, value) => {
    const bytes = writeSafetensors(tensors);
    bytes[at % bytes.length] = value;
    try {
      for (const t of readSafetensors(bytes, "bad.st").values()) assert.equal(t.data.length, count([...t.shape]));
    } catch (error) {
      assert.ok(error instanceof FormatError, String(error));
    }
  }));
});

// ---------------------------------------------------------------------------------------------
// Files

async function withTemporaryDirectory(run: (directory: string) => Promise<void>): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), "jacobian-wasm-io-"));
  try {
    await run(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

test("readFileBytes reads a file and names the path of a missing file or a directory", async () => {
  await withTemporaryDirectory(async (directory) => {
    const path = join(directory, "x.npy");
    await writeFile(path, writeNpy(new Float32Array([7]), [1]));
    const bytes = await readFileBytes(path);
    assert.equal(Object.getPrototypeOf(bytes), Uint8Array.prototype);
    assert.deepEqual([...readNpy(bytes, path).data], [7]);
    const missing = join(directory, "missing.npy");
    await assert.rejects(readFileBytes(missing), (error: unknown) => {
      assert.ok(error instanceof FileError && isUserError(error));
      assert.equal(error.message, `${missing}: cannot read the file: no such file`);
      return true;
    });
    await assert.rejects(readFileBytes(directory), (error: unknown) => {
      assert.ok(error instanceof FileError);
      assert.ok(error.message.startsWith(`${directory}: cannot read the file: `), error.message);
      return true;
    });
  });
});

test("writeFileAtomic writes and replaces files, keeps their permissions and leaves no temporary file", async () => {
  await withTemporaryDirectory(async (directory) => {
    const path = join(directory, "out.safetensors");
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...await readFile(path)], [1, 2, 3]);
    await chmod(path, 0o640);
    await writeFileAtomic(path, new Uint8Array([4, 5]));
    assert.deepEqual([...await readFile(path)], [4, 5]);
    if (process.platform !== "win32") assert.equal((await stat(path)).mode & 0o777, 0o640);
    assert.deepEqual(await readdir(directory), ["out.safetensors"]);
  });
});

test("writeFileAtomic names the path it cannot write and leaves nothing behind", async () => {
  await withTemporaryDirectory(async (directory) => {
    const inMissing = join(directory, "no", "such", "out.npy");
    await assert.rejects(writeFileAtomic(inMissing, new Uint8Array(1)), (error: unknown) => {
      assert.ok(error instanceof FileError && isUserError(error));
      assert.equal(
        error.message,
        `${inMissing}: cannot write the file: the directory ${join(directory, "no", "such")} does not exist`,
      );
      return true;
    });
    const file = join(directory, "file");
    await writeFile(file, "old");
    const underFile = join(file, "out.npy");
    await assert.rejects(writeFileAtomic(underFile, new Uint8Array(1)), FileError);
    const subdirectory = join(directory, "sub");
    await mkdir(subdirectory);
    await assert.rejects(writeFileAtomic(subdirectory, new Uint8Array(1)), (error: unknown) => {
      assert.ok(error instanceof FileError);
      assert.equal(error.message, `${subdirectory}: cannot write the file: it is a directory`);
      return true;
    });
    assert.deepEqual((await readdir(directory)).sort(), ["file", "sub"]);
    assert.deepEqual(await readdir(subdirectory), []);
    assert.equal(await readFile(file, "utf8"), "old");
  });
});

test("readSafetensors says 'not a safetensors file' when the header length runs past the end and byte 8 is not '{'", () => {
  const zip = new Uint8Array(64);
  zip.set([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00]);
  assertThrowsWith(
    () => readSafetensors(zip, "model.pt"),
    FormatError,
    'model.pt: not a safetensors file: it starts with 50 4b 03 04 14 00 00 00, not an 8-byte header length followed by "{" ' +
      "(a zip archive, as torch.save writes: export the model with tools/export_torch.py)",
  );
  const npy = writeNpy(new Float32Array(4), [4]);
  assertThrowsWith(() => readSafetensors(npy, "x.npy"), FormatError, "x.npy: not a safetensors file: it starts with 93 4e 55 4d 50 59 01 00", "(a .npy file)");
  // A header that begins with "{" but runs past the end is a truncated safetensors file, and said so.
  const truncated = safetensorsFile('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}').subarray(0, 20);
  assertThrowsWith(() => readSafetensors(truncated, "w.st"), FormatError, "w.st: the header length at bytes 0-7 says the header runs to byte");
});
