/**
 * numpy's `.npy` format over bytes: no file system, so it runs in browsers too.
 *
 * A file is the magic `\x93NUMPY`, a version byte pair, a little-endian header length (2 bytes
 * in version 1.0, 4 in 2.0 and 3.0), a Python dict literal such as
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` (latin-1 in 1.0 and 2.0,
 * UTF-8 in 3.0), then the raw elements. The header is parsed here, never evaluated.
 *
 * Like `numpy.load`, the reader ignores bytes after the elements the shape needs.
 */
import { FormatError, ShapeError, showValue, ValueError } from "../errors.ts";
import { formatShape, numel } from "../tensor.ts";
import { float16BitsToNumber, formatIndex, hostIsLittleEndian } from "./binary.ts";

/**
 * An array read from a `.npy` file: its shape, element type and row-major elements.
 *
 * @example
 * ```ts
 * import { readNpy, writeNpy } from "jacobian-wasm";
 * import type { NpyArray } from "jacobian-wasm";
 * const array: NpyArray = readNpy(writeNpy(new Int32Array([1, 2, 3]), [3]));
 * if (array.dtype === "int32") array.data; // Int32Array [1, 2, 3]: the dtype narrows data
 * ```
 */
export type NpyArray =
  | { shape: number[]; dtype: "float32"; data: Float32Array }
  | { shape: number[]; dtype: "float64"; data: Float64Array }
  | { shape: number[]; dtype: "int64"; data: BigInt64Array }
  | { shape: number[]; dtype: "int32"; data: Int32Array };

/**
 * The element types an `NpyArray` holds.
 *
 * @example
 * ```ts
 * import { readNpy, writeNpy } from "jacobian-wasm";
 * import type { NpyDtype } from "jacobian-wasm";
 * const dtype: NpyDtype = readNpy(writeNpy(new Float64Array(2), [2])).dtype; // "float64"
 * ```
 */
export type NpyDtype = NpyArray["dtype"];

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const ALIGN = 64; // numpy pads the header so the data starts on a 64-byte boundary
const GROWTH_AXIS_MAX_DIGITS = 21; // numpy leaves room to grow shape[0] in place

/**
 * Reads a `.npy` file (format 1.0, 2.0 or 3.0, either byte order, C order).
 *
 * Element types: `f4` and `f2` read as float32, `f8` as float64, `i4` and the narrower
 * `i1`, `i2`, `u1`, `u2`, `b1` as int32, `i8`, `u4` and `u8` as int64 (a `u8` value past the
 * int64 range is a `ValueError`). Little-endian data aligned in memory is returned as a view
 * of `bytes`, without copying; anything else is copied. `fortran_order: True` is refused
 * unless the layout is the same as C order (at most one axis longer than 1).
 *
 * @param bytes the whole file.
 * @param name how messages refer to the file (its path, say).
 * @throws {FormatError} for a malformed or truncated file or an unsupported element type;
 *   the message names `name`, what is wrong and at which byte.
 *
 * @example
 * ```ts
 * import { readNpy, writeNpy } from "jacobian-wasm";
 * const x = readNpy(writeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]), "x.npy");
 * x.shape; // [2, 3]
 * x.dtype; // "float32"
 * ```
 */
export function readNpy(bytes: Uint8Array, name = "array"): NpyArray {
  const fail = (message: string): never => {
    throw new FormatError(`${name}: ${message}`);
  };
  if (bytes.length === 0) fail("the file is empty, not a .npy file");
  for (let i = 0; i < Math.min(MAGIC.length, bytes.length); i++) {
    if (bytes[i] !== MAGIC[i]) {
      const start = hexBytes(bytes, 0, 8);
      fail(`not a .npy file: it starts with ${start}, not the magic bytes 93 4e 55 4d 50 59 ("\\x93NUMPY")`);
    }
  }
  if (bytes.length < 8) fail(`file ends at byte ${bytes.length}, before the format version at bytes 6-7`);
  const major = bytes[6];
  const minor = bytes[7];
  if ((major !== 1 && major !== 2 && major !== 3) || minor !== 0) {
    fail(`unsupported .npy format version ${major}.${minor} (bytes 6-7): supported are 1.0, 2.0 and 3.0`);
  }
  const lengthSize = major === 1 ? 2 : 4;
  const headerStart = 8 + lengthSize;
  if (bytes.length < headerStart) {
    fail(`file ends at byte ${bytes.length}, inside the header length at bytes 8-${headerStart - 1}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = lengthSize === 2 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataOffset = headerStart + headerLength;
  if (dataOffset > bytes.length) {
    fail(
      `the header length at bytes 8-${headerStart - 1} says the header runs to byte ${dataOffset}, ` +
        `but the file ends at byte ${bytes.length}`,
    );
  }
  const header = decodeHeader(bytes.subarray(headerStart, dataOffset), major, name, headerStart);
  const { descr, shape } = interpretHeader(header, name, headerStart);
  const type = elementType(descr, name);

  const count = numel(shape);
  const needed = count * type.size;
  if (dataOffset + needed > bytes.length) {
    fail(
      `data ends at byte ${bytes.length}, the shape ${formatShape(shape)} needs ${needed} bytes ` +
        `from offset ${dataOffset}`,
    );
  }
  return decodeElements(bytes, view, dataOffset, count, type, shape, name);
}

/**
 * The elements of an array as float32: float32 data as is (the same array, not a copy),
 * float64 and integers converted (integers past 2^24 round to the nearest float32).
 *
 * @throws {ValueError} for a finite float64 too large for float32, naming its index.
 *
 * @example
 * ```ts
 * import { npyToFloat32, readNpy, writeNpy } from "jacobian-wasm";
 * const x = readNpy(writeNpy(new Float64Array([0.5, 1.5]), [2]));
 * npyToFloat32(x); // Float32Array [0.5, 1.5]
 * ```
 */
export function npyToFloat32(array: NpyArray, name = "array"): Float32Array {
  switch (array.dtype) {
    case "float32":
      return array.data;
    case "float64": {
      const out = new Float32Array(array.data.length);
      for (let i = 0; i < out.length; i++) {
        const value = array.data[i];
        out[i] = value;
        if (!Number.isFinite(out[i]) && Number.isFinite(value)) {
          throw new ValueError(
            `${name}: value ${value} at index ${formatIndex(i, array.shape)} is too large for float32 ` +
              `(largest 3.4028234663852886e+38)`,
          );
        }
      }
      return out;
    }
    case "int32":
      return Float32Array.from(array.data);
    case "int64": {
      const out = new Float32Array(array.data.length);
      for (let i = 0; i < out.length; i++) out[i] = Number(array.data[i]);
      return out;
    }
  }
}

/**
 * The elements of an array as 32-bit integers, for class-index targets: int32 data as is
 * (the same array), int64 and float values checked and converted.
 *
 * @throws {ValueError} for a value that is not an integer or does not fit in 32 bits, naming
 *   `name` and the value's index.
 *
 * @example
 * ```ts
 * import { npyToIntegers, readNpy, writeNpy } from "jacobian-wasm";
 * const y = readNpy(writeNpy(new BigInt64Array([3n, 0n, 9n]), [3]), "y.npy");
 * npyToIntegers(y, "y.npy"); // Int32Array [3, 0, 9]
 * ```
 */
export function npyToIntegers(array: NpyArray, name = "array"): Int32Array {
  const outOfRange = (value: unknown, i: number): never => {
    throw new ValueError(
      `${name}: value ${value} at index ${formatIndex(i, array.shape)} does not fit in a 32-bit integer`,
    );
  };
  switch (array.dtype) {
    case "int32":
      return array.data;
    case "int64": {
      const out = new Int32Array(array.data.length);
      for (let i = 0; i < out.length; i++) {
        const value = array.data[i];
        if (value < -2147483648n || value > 2147483647n) outOfRange(value, i);
        out[i] = Number(value);
      }
      return out;
    }
    case "float32":
    case "float64": {
      const out = new Int32Array(array.data.length);
      for (let i = 0; i < out.length; i++) {
        const value = array.data[i];
        if (!Number.isInteger(value)) {
          throw new ValueError(
            `${name}: value ${value} at index ${formatIndex(i, array.shape)} is not an integer ` +
              `(class indices must be whole numbers)`,
          );
        }
        if (value < -2147483648 || value > 2147483647) outOfRange(value, i);
        out[i] = value;
      }
      return out;
    }
  }
}

/**
 * Writes an array as a `.npy` file, byte for byte as `numpy.save` does: format 1.0
 * (2.0 only for a header too long for 1.0), little-endian, C order, the header padded with
 * spaces and ended by `'\n'` so the data starts at a multiple of 64 bytes.
 *
 * @throws {ShapeError} when `shape` is not a list of non-negative integers or does not hold
 *   `data.length` elements.
 *
 * @example
 * ```ts
 * import { writeNpy } from "jacobian-wasm";
 * const bytes = writeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 * bytes.length; // 152: a 128-byte header, then 24 bytes of data
 * ```
 */
export function writeNpy(
  data: Float32Array | Float64Array | Int32Array | BigInt64Array,
  shape: readonly number[],
): Uint8Array<ArrayBuffer> {
  for (const size of shape) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ShapeError(`writeNpy: shape ${formatShape(shape)} must hold non-negative integers`);
    }
  }
  if (numel(shape) !== data.length) {
    throw new ShapeError(
      `writeNpy: shape ${formatShape(shape)} holds ${numel(shape)} elements, data has ${data.length}`,
    );
  }
  const descr = data instanceof Float32Array
    ? "<f4"
    : data instanceof Float64Array
    ? "<f8"
    : data instanceof Int32Array
    ? "<i4"
    : data instanceof BigInt64Array
    ? "<i8"
    : undefined;
  if (descr === undefined) {
    throw new TypeError("writeNpy: data must be a Float32Array, Float64Array, Int32Array or BigInt64Array");
  }
  const header = npyHeader(descr, shape);
  const out = new Uint8Array(header.length + data.byteLength);
  out.set(header, 0);
  writeLittleEndian(data, out, new DataView(out.buffer), header.length);
  return out;
}

/**
 * The header of an `.npy` file of `shape` and dtype `descr` ("<f4", ...), as numpy writes it:
 * format 1.0 (2.0 when the dict is too long for it), room to grow shape[0], the data 64-byte
 * aligned. The data follows it, row-major, little-endian (a writer that streams rows writes
 * this first).
 */
export function npyHeader(descr: string, shape: readonly number[]): Uint8Array<ArrayBuffer> {
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${formatShape(shape)}, }`;
  if (shape.length > 0) dict += " ".repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length));

  // numpy's _wrap_header: always at least one space of padding, then '\n'.
  const headerBytes = new TextEncoder().encode(dict); // ASCII: the same bytes as latin-1
  let lengthSize = 2;
  let padding = ALIGN - ((8 + lengthSize + headerBytes.length + 1) % ALIGN);
  if (headerBytes.length + 1 + padding > 0xffff) {
    lengthSize = 4;
    padding = ALIGN - ((8 + lengthSize + headerBytes.length + 1) % ALIGN);
  }
  const headerLength = headerBytes.length + padding + 1;
  const dataOffset = 8 + lengthSize + headerLength;
  const out = new Uint8Array(dataOffset);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[6] = lengthSize === 2 ? 1 : 2;
  out[7] = 0;
  if (lengthSize === 2) view.setUint16(8, headerLength, true);
  else view.setUint32(8, headerLength, true);
  out.set(headerBytes, 8 + lengthSize);
  out.fill(0x20, 8 + lengthSize + headerBytes.length, dataOffset - 1);
  out[dataOffset - 1] = 0x0a;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Header

/** A Python literal as numpy writes them: str, int, bool, None, tuple, list, dict. */
type PyValue = string | number | boolean | null | PyTuple | PyList | PyDict;
interface PyTuple {
  kind: "tuple";
  items: PyValue[];
}
interface PyList {
  kind: "list";
  items: PyValue[];
}
interface PyDict {
  kind: "dict";
  entries: Map<string, PyValue>;
}

function decodeHeader(raw: Uint8Array, major: number, name: string, headerStart: number): string {
  if (major === 3) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(raw);
    } catch {
      throw new FormatError(
        `${name}: the header (bytes ${headerStart}-${headerStart + raw.length - 1}) is not valid UTF-8, ` +
          `as format 3.0 requires`,
      );
    }
  }
  let text = "";
  for (let i = 0; i < raw.length; i++) text += String.fromCharCode(raw[i]); // latin-1
  return text;
}

function interpretHeader(
  header: string,
  name: string,
  headerStart: number,
): { descr: string; shape: number[] } {
  const fail = (message: string): never => {
    throw new FormatError(`${name}: ${message}; the header is ${quoteHeader(header)}`);
  };
  let dict: PyValue;
  try {
    dict = new LiteralParser(header).parseWhole();
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    const at = Number(error.cause);
    const byte = headerStart + new TextEncoder().encode(header.slice(0, at)).length;
    return fail(`the header is not a valid Python dict literal: ${error.message} at byte ${byte}`);
  }
  if (!isKind(dict, "dict")) return fail(`the header is ${describe(dict)}, not a Python dict`);
  for (const key of dict.entries.keys()) {
    if (key !== "descr" && key !== "fortran_order" && key !== "shape") {
      fail(`the header has an unexpected key '${key}' (numpy writes only 'descr', 'fortran_order' and 'shape')`);
    }
  }
  const descr = dict.entries.get("descr");
  const fortranOrder = dict.entries.get("fortran_order");
  const shapeValue = dict.entries.get("shape");
  if (descr === undefined) fail(`the header has no 'descr' key`);
  if (fortranOrder === undefined) fail(`the header has no 'fortran_order' key`);
  if (shapeValue === undefined) fail(`the header has no 'shape' key`);

  if (!isKind(shapeValue, "tuple")) {
    return fail(`'shape' is ${describe(shapeValue)}, not a tuple of non-negative integers`);
  }
  const shape: number[] = [];
  for (const size of shapeValue.items) {
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
      fail(`'shape' holds ${describe(size)}, not a non-negative integer`);
    }
    shape.push(size as number);
  }
  if (typeof fortranOrder !== "boolean") fail(`'fortran_order' is ${describe(fortranOrder)}, not True or False`);
  if (fortranOrder && shape.filter((size) => size > 1).length > 1) {
    fail(
      `the array of shape ${formatShape(shape)} is stored in Fortran (column-major) order; only C order ` +
        `is supported: save np.ascontiguousarray(a) instead`,
    );
  }
  if (isKind(descr, "list")) {
    fail(`structured dtypes (a list of named fields) are not supported: save one plain array per field`);
  }
  if (typeof descr !== "string") return fail(`'descr' is ${describe(descr)}, not a dtype string such as '<f4'`);
  return { descr, shape };
}

function isKind<K extends "tuple" | "list" | "dict">(
  value: PyValue | undefined,
  kind: K,
): value is Extract<PyValue, { kind: K }> {
  return typeof value === "object" && value !== null && value.kind === kind;
}

function describe(value: PyValue | undefined): string {
  if (typeof value === "string") return `the string ${showValue(value)}`;
  if (typeof value === "number") return `the number ${value}`;
  if (typeof value === "boolean") return value ? "True" : "False";
  if (value === null || value === undefined) return "None";
  return `a ${value.kind}`;
}

function quoteHeader(header: string): string {
  const trimmed = header.trimEnd();
  const shown = trimmed.length > 120 ? trimmed.slice(0, 117) + "..." : trimmed;
  return JSON.stringify(shown);
}

/**
 * A recursive-descent parser for the Python literals numpy writes in headers. Failures are
 * `SyntaxError`s whose `cause` is the character position.
 */
class LiteralParser {
  private position = 0;
  private depth = 0;
  constructor(private readonly text: string) {}

  parseWhole(): PyValue {
    const value = this.value();
    this.skipSpace();
    if (this.position < this.text.length) this.fail(`unexpected ${this.shown()} after the dict`);
    return value;
  }

  private value(): PyValue {
    this.skipSpace();
    const char = this.text[this.position];
    if (char === "{" || char === "(" || char === "[") {
      // A header nests two levels; a deep one is garbage, and must not overflow the stack.
      if (++this.depth > 32) this.fail("brackets nested too deeply");
      const value = char === "{" ? this.dict() : char === "(" ? this.tuple() : this.list();
      this.depth--;
      return value;
    }
    if (char === "'" || char === '"') return this.string();
    if (char === "-" || char === "+" || (char >= "0" && char <= "9")) return this.integer();
    for (const [word, value] of [["True", true], ["False", false], ["None", null]] as const) {
      if (this.text.startsWith(word, this.position) && !/\w/.test(this.text[this.position + word.length] ?? "")) {
        this.position += word.length;
        return value;
      }
    }
    return this.fail(`expected a value, found ${this.shown()}`);
  }

  private dict(): PyDict {
    const entries = new Map<string, PyValue>();
    this.position++; // {
    for (;;) {
      this.skipSpace();
      if (this.text[this.position] === "}") break;
      const keyAt = this.position;
      const key = this.value();
      if (typeof key !== "string") {
        this.position = keyAt;
        this.fail(`expected a string key, found ${this.shown()}`);
      }
      this.expect(":");
      entries.set(key as string, this.value());
      this.skipSpace();
      if (this.text[this.position] === ",") this.position++;
      else if (this.text[this.position] !== "}") this.fail(`expected ',' or '}', found ${this.shown()}`);
    }
    this.position++; // }
    return { kind: "dict", entries };
  }

  private list(): PyList {
    return { kind: "list", items: this.sequence("]").items };
  }

  /** `()` and `(a,)` are tuples; `(a)` is just `a`, as in Python. */
  private tuple(): PyValue {
    const { items, commas } = this.sequence(")");
    return items.length === 1 && commas === 0 ? items[0] : { kind: "tuple", items };
  }

  /** The items up to `close`, and how many separating commas there were (to tell `(a)` from `(a,)`). */
  private sequence(close: string): { items: PyValue[]; commas: number } {
    const items: PyValue[] = [];
    let commas = 0;
    this.position++; // the opening bracket
    for (;;) {
      this.skipSpace();
      if (this.text[this.position] === close) break;
      items.push(this.value());
      this.skipSpace();
      if (this.text[this.position] === ",") {
        this.position++;
        commas++;
      } else if (this.text[this.position] !== close) {
        this.fail(`expected ',' or '${close}', found ${this.shown()}`);
      }
    }
    this.position++; // close
    return { items, commas };
  }

  private string(): string {
    const quote = this.text[this.position++];
    let out = "";
    for (;;) {
      if (this.position >= this.text.length) this.fail("unterminated string");
      const char = this.text[this.position++];
      if (char === quote) return out;
      if (char === "\n") this.fail("unterminated string");
      if (char === "\\") {
        const escaped = this.text[this.position++] ?? "";
        out += escaped === "n" ? "\n" : escaped === "t" ? "\t" : escaped === "r" ? "\r" : escaped;
      } else {
        out += char;
      }
    }
  }

  /** Decimal integers; an `L` suffix (Python 2 longs, in files from old numpy) is allowed. */
  private integer(): number {
    const match = /^[-+]?\d+[lL]?/.exec(this.text.slice(this.position, this.position + 400));
    if (!match || /[.eEjJxX_]/.test(this.text[this.position + match[0].length] ?? "")) {
      this.fail(`expected an integer, found ${this.shown()}`);
    }
    this.position += match![0].length;
    return Number(match![0].replace(/[lL]$/, ""));
  }

  private expect(char: string): void {
    this.skipSpace();
    if (this.text[this.position] !== char) this.fail(`expected '${char}', found ${this.shown()}`);
    this.position++;
  }

  private skipSpace(): void {
    while (this.position < this.text.length && " \t\n\r\f\v".includes(this.text[this.position])) this.position++;
  }

  private shown(): string {
    return this.position >= this.text.length ? "the end of the header" : JSON.stringify(this.text[this.position]);
  }

  private fail(message: string): never {
    throw new SyntaxError(message, { cause: this.position });
  }
}

// ---------------------------------------------------------------------------------------------
// Elements

interface ElementType {
  /** numpy's kind letter: f, i, u or b. */
  kind: string;
  size: number;
  littleEndian: boolean;
  descr: string;
}

const UNSUPPORTED_KINDS: Record<string, string> = {
  c: "complex numbers",
  O: "Python objects (pickled)",
  U: "unicode strings",
  S: "byte strings",
  a: "byte strings",
  V: "raw void records",
  M: "datetimes",
  m: "timedeltas",
};

function elementType(descr: string, name: string): ElementType {
  const match = /^([<>|=]?)([a-zA-Z])(\d+)/.exec(descr);
  const kind = match?.[2] ?? "";
  const size = Number(match?.[3]);
  const supported = match !== null && match[0] === descr && (
    (kind === "f" && (size === 2 || size === 4 || size === 8)) ||
    ((kind === "i" || kind === "u") && (size === 1 || size === 2 || size === 4 || size === 8)) ||
    (kind === "b" && size === 1)
  );
  if (!supported) {
    const what = UNSUPPORTED_KINDS[kind] ?? UNSUPPORTED_KINDS[descr.replace(/^[<>|=]/, "")[0]];
    throw new FormatError(
      `${name}: dtype '${descr}'${what ? ` (${what})` : ""} is not supported: save floats (f2, f4, f8), ` +
        `integers (i1-i8, u1-u8) or booleans, e.g. a.astype(np.float32)`,
    );
  }
  const order = match![1];
  if (size > 1 && order !== "<" && order !== ">") {
    throw new FormatError(
      `${name}: dtype '${descr}' does not say its byte order: a ${size}-byte type needs '<' (little-endian) ` +
        `or '>' (big-endian)`,
    );
  }
  return { kind, size, littleEndian: order !== ">", descr };
}

function decodeElements(
  bytes: Uint8Array,
  view: DataView,
  offset: number,
  count: number,
  type: ElementType,
  shape: number[],
  name: string,
): NpyArray {
  const { kind, size, littleEndian: le } = type;
  const key = `${kind}${size}`;
  // Whole-array views and copies for the four native types in host byte order.
  if (le === hostIsLittleEndian && (key === "f4" || key === "f8" || key === "i4" || key === "i8")) {
    const aligned = (bytes.byteOffset + offset) % size === 0;
    // A copy through the Uint8Array constructor: a Node Buffer's slice() would not copy.
    const buffer = aligned ? bytes.buffer : new Uint8Array(bytes.subarray(offset, offset + count * size)).buffer;
    const start = aligned ? bytes.byteOffset + offset : 0;
    if (key === "f4") return { shape, dtype: "float32", data: new Float32Array(buffer, start, count) };
    if (key === "f8") return { shape, dtype: "float64", data: new Float64Array(buffer, start, count) };
    if (key === "i4") return { shape, dtype: "int32", data: new Int32Array(buffer, start, count) };
    return { shape, dtype: "int64", data: new BigInt64Array(buffer, start, count) };
  }
  switch (key) {
    case "f2": {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = float16BitsToNumber(view.getUint16(offset + 2 * i, le));
      return { shape, dtype: "float32", data };
    }
    case "f4": {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(offset + 4 * i, le);
      return { shape, dtype: "float32", data };
    }
    case "f8": {
      const data = new Float64Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat64(offset + 8 * i, le);
      return { shape, dtype: "float64", data };
    }
    case "i8":
    case "u4":
    case "u8": {
      const data = new BigInt64Array(count);
      for (let i = 0; i < count; i++) {
        const at = offset + size * i;
        if (key === "u4") {
          data[i] = BigInt(view.getUint32(at, le));
        } else {
          data[i] = view.getBigInt64(at, le);
          if (key === "u8" && data[i] < 0n) {
            throw new ValueError(
              `${name}: value ${view.getBigUint64(at, le)} at index ${formatIndex(i, shape)} of the uint64 ` +
                `array does not fit in a 64-bit signed integer`,
            );
          }
        }
      }
      return { shape, dtype: "int64", data };
    }
    default: {
      const data = new Int32Array(count);
      const read = key === "i1"
        ? (at: number) => view.getInt8(at)
        : key === "u1"
        ? (at: number) => view.getUint8(at)
        : key === "b1"
        ? (at: number) => (view.getUint8(at) === 0 ? 0 : 1)
        : key === "i2"
        ? (at: number) => view.getInt16(at, le)
        : key === "u2"
        ? (at: number) => view.getUint16(at, le)
        : (at: number) => view.getInt32(at, le);
      for (let i = 0; i < count; i++) data[i] = read(offset + size * i);
      return { shape, dtype: "int32", data };
    }
  }
}

function writeLittleEndian(
  data: Float32Array | Float64Array | Int32Array | BigInt64Array,
  out: Uint8Array,
  view: DataView,
  offset: number,
): void {
  if (hostIsLittleEndian) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    return;
  }
  for (let i = 0; i < data.length; i++) {
    const at = offset + i * data.BYTES_PER_ELEMENT;
    if (data instanceof Float32Array) view.setFloat32(at, data[i], true);
    else if (data instanceof Float64Array) view.setFloat64(at, data[i], true);
    else if (data instanceof Int32Array) view.setInt32(at, data[i], true);
    else view.setBigInt64(at, data[i], true);
  }
}

function hexBytes(bytes: Uint8Array, start: number, end: number): string {
  const shown = [...bytes.subarray(start, end)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  return shown === "" ? "nothing" : shown;
}
