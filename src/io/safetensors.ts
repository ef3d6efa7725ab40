/**
 * The `.safetensors` format over bytes: no file system, so it runs in browsers too.
 *
 * A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON (padded with
 * spaces), then the data section. The JSON maps each tensor's name to its `dtype`, `shape`
 * and `data_offsets` `[begin, end)` relative to the data section, plus an optional
 * `__metadata__` map of strings. As the format requires, the tensors must tile the data
 * section exactly: no overlaps, no holes, nothing after the last one.
 */
import { FormatError, oneLine, ShapeError, showValue, ValueError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { formatShape, numel } from "../tensor.ts";
import { bfloat16BitsToNumber, float16BitsToNumber, formatIndex, hostIsLittleEndian } from "./binary.ts";

/** Bytes per element of each dtype we read; all are converted to float32. */
const DTYPE_SIZES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** One tensor's entry in the header, checked. */
interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

interface Header {
  entries: Entry[];
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file. */
  dataStart: number;
}

/**
 * Reads every tensor of a `.safetensors` file as float32, in the order of their data in the
 * file. F32, F64, F16, BF16 and the integer and BOOL types (BatchNorm's
 * `num_batches_tracked` is I64) are converted; each tensor gets its own copy of its data.
 * `__metadata__` is skipped: see `readSafetensorsMetadata`.
 *
 * @param bytes the whole file.
 * @param name how messages refer to the file (its path, say).
 * @throws {FormatError} for a malformed or truncated file, naming `name`, the tensor and the
 *   byte offsets involved.
 * @throws {ValueError} for a finite F64 value too large for float32.
 *
 * @example
 * ```ts
 * import { readSafetensors, tensor, writeSafetensors } from "jacobian-wasm";
 * const bytes = writeSafetensors([["fc.bias", tensor([0.5, -1], [2])]]);
 * readSafetensors(bytes, "model.safetensors").get("fc.bias")?.shape; // [2]
 * ```
 */
export function readSafetensors(bytes: Uint8Array, name = "weights"): Map<string, Tensor> {
  const { entries, dataStart } = readHeader(bytes, name);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tensors = new Map<string, Tensor>();
  for (const entry of entries) {
    tensors.set(entry.name, { shape: entry.shape, data: decode(bytes, view, dataStart, entry, name) });
  }
  return tensors;
}

/**
 * The `__metadata__` string map of a `.safetensors` file (`{}` when it has none). Reads the
 * header only.
 *
 * @throws {FormatError} for a malformed header, or metadata that is not a map of strings.
 *
 * @example
 * ```ts
 * import { readSafetensorsMetadata, writeSafetensors } from "jacobian-wasm";
 * const bytes = writeSafetensors([], { format: "pt" });
 * readSafetensorsMetadata(bytes); // { format: "pt" }
 * ```
 */
export function readSafetensorsMetadata(bytes: Uint8Array, name = "weights"): Record<string, string> {
  return parseHeaderJson(bytes, name).metadata;
}

/**
 * Writes tensors as a `.safetensors` file, as the reference implementation lays it out:
 * F32 data in the order given, compact JSON header padded with spaces to a multiple of 8
 * bytes, `__metadata__` first when given.
 *
 * @throws {ShapeError} when a tensor's data does not hold as many elements as its shape.
 * @throws {ValueError} for a name given twice or the reserved name `__metadata__`.
 *
 * @example
 * ```ts
 * import { tensor, writeSafetensors } from "jacobian-wasm";
 * const weights = new Map([["fc.weight", tensor([1, 2, 3, 4, 5, 6], [2, 3])]]);
 * const bytes = writeSafetensors(weights, { format: "pt" });
 * ```
 */
export function writeSafetensors(
  tensors: Iterable<readonly [string, Tensor]>,
  metadata?: Record<string, string>,
): Uint8Array<ArrayBuffer> {
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        throw new TypeError(`writeSafetensors: metadata "${key}" must be a string, got ${typeof value}`);
      }
    }
  }
  const list: (readonly [string, Tensor])[] = [];
  const seen = new Set<string>();
  for (const item of tensors) {
    const [tensorName, value] = item;
    if (tensorName === "__metadata__") {
      throw new ValueError(`writeSafetensors: "__metadata__" is reserved and cannot name a tensor`);
    }
    if (seen.has(tensorName)) throw new ValueError(`writeSafetensors: tensor "${tensorName}" is given twice`);
    seen.add(tensorName);
    if (!(value.data instanceof Float32Array)) {
      throw new TypeError(`writeSafetensors: tensor "${tensorName}" must hold a Float32Array`);
    }
    for (const size of value.shape) {
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new ShapeError(
          `writeSafetensors: tensor "${tensorName}" has shape ${formatShape(value.shape)}, which must hold ` +
            `non-negative integers`,
        );
      }
    }
    if (numel(value.shape) !== value.data.length) {
      throw new ShapeError(
        `writeSafetensors: tensor "${tensorName}" has shape ${formatShape(value.shape)} (${numel(value.shape)} ` +
          `elements) but ${value.data.length} values`,
      );
    }
    list.push(item);
  }
  const { header, dataBytes } = safetensorsHeader(list.map(([name, value]) => [name, value.shape]), metadata);
  const out = new Uint8Array(header.length + dataBytes);
  const view = new DataView(out.buffer);
  out.set(header, 0);
  let at = header.length;
  for (const [, value] of list) {
    if (hostIsLittleEndian) {
      out.set(new Uint8Array(value.data.buffer, value.data.byteOffset, value.data.byteLength), at);
    } else {
      for (let i = 0; i < value.data.length; i++) view.setFloat32(at + 4 * i, value.data[i], true);
    }
    at += value.data.byteLength;
  }
  return out;
}

/**
 * The header `writeSafetensors` writes for F32 tensors of these names and shapes, in this
 * order (the data section follows it: each tensor at `offsets[i]` from its start,
 * little-endian, `dataBytes` in all). A writer that streams tensors writes this first.
 */
export function safetensorsHeader(
  tensors: readonly (readonly [string, readonly number[]])[],
  metadata?: Record<string, string>,
): { header: Uint8Array<ArrayBuffer>; offsets: number[]; dataBytes: number } {
  const fields: string[] = metadata === undefined ? [] : [`"__metadata__":${JSON.stringify(metadata)}`];
  const offsets: number[] = [];
  let offset = 0;
  for (const [name, shape] of tensors) {
    const end = offset + numel(shape) * 4;
    // Built by hand: a JS object would move integer-like names ("0", "1") to the front.
    fields.push(`${JSON.stringify(name)}:{"dtype":"F32","shape":[${shape.join(",")}],"data_offsets":[${offset},${end}]}`);
    offsets.push(offset);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${fields.join(",")}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + headerLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(headerLength), true);
  header.set(json, 8);
  header.fill(0x20, 8 + json.length);
  return { header, offsets, dataBytes: offset };
}

// ---------------------------------------------------------------------------------------------

/** The first 8 bytes (fewer if the file is shorter) in hex: `50 4b 03 04 ...`. */
function hexStart(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** What the first bytes say the file is, when they are a kind given for weights by mistake. */
function fileKind(bytes: Uint8Array): string {
  const startsWith = (magic: number[]) => magic.every((b, i) => bytes[i] === b);
  if (startsWith([0x50, 0x4b, 0x03, 0x04])) {
    return " (a zip archive, as torch.save writes: export the model with tools/export_torch.py)";
  }
  if (startsWith([0x80]) && bytes[1] >= 2 && bytes[1] <= 5) return " (a Python pickle: export the model with tools/export_torch.py)";
  if (startsWith([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59])) return " (a .npy file)";
  return "";
}

/** The JSON header, checked entry by entry, but not yet against the data section. */
function parseHeaderJson(
  bytes: Uint8Array,
  name: string,
): { json: Record<string, unknown>; metadata: Record<string, string>; dataStart: number } {
  const fail = (message: string): never => {
    throw new FormatError(`${name}: ${message}`);
  };
  if (bytes.length < 8) fail(`file ends at byte ${bytes.length}, inside the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  // A header always begins with "{" at byte 8: a length past the end of the file without it is
  // no truncated safetensors file but another kind of file (a .pt, a .npy) given by mistake.
  if (headerLength > BigInt(bytes.length - 8) && bytes.length > 8 && bytes[8] !== 0x7b) {
    fail(`not a safetensors file: it starts with ${hexStart(bytes)}, not an 8-byte header length followed by "{"${fileKind(bytes)}`);
  }
  if (headerLength > BigInt(bytes.length - 8)) {
    fail(
      `the header length at bytes 0-7 says the header runs to byte ${8n + headerLength}, but the file ends ` +
        `at byte ${bytes.length}`,
    );
  }
  const dataStart = 8 + Number(headerLength);
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    fail(`the header (bytes 8-${dataStart - 1}) is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    fail(`the header (bytes 8-${dataStart - 1}) is not valid JSON: ${oneLine((error as Error).message)}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return fail(`the header (bytes 8-${dataStart - 1}) is ${jsonKind(json)}, not a JSON object`);
  }
  const header = json as Record<string, unknown>;
  let metadata: Record<string, string> = {};
  if (Object.hasOwn(header, "__metadata__")) {
    const raw = header.__metadata__;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      return fail(`"__metadata__" is ${jsonKind(raw)}, not a map of strings`);
    }
    for (const [key, value] of Object.entries(raw)) {
      if (typeof value !== "string") fail(`"__metadata__" entry "${key}" is ${jsonKind(value)}, not a string`);
    }
    // A fresh object of own properties: a key "__proto__" stays a key.
    metadata = Object.fromEntries(Object.entries(raw));
  }
  return { json: header, metadata, dataStart };
}

function readHeader(bytes: Uint8Array, name: string): Header {
  const { json, metadata, dataStart } = parseHeaderJson(bytes, name);
  const dataLength = bytes.length - dataStart;
  const fail = (message: string): never => {
    throw new FormatError(`${name}: ${message}`);
  };
  const entries: Entry[] = [];
  for (const [tensorName, raw] of Object.entries(json)) {
    if (tensorName === "__metadata__") continue;
    const where = `tensor "${tensorName}"`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      fail(`${where} is ${jsonKind(raw)} in the header, not an object with dtype, shape and data_offsets`);
    }
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (dtype === undefined || shape === undefined || offsets === undefined) {
      const missing = ["dtype", "shape", "data_offsets"].filter((key) => !Object.hasOwn(raw as object, key));
      fail(`${where} has no ${missing.join(" or ")} in the header`);
    }
    if (typeof dtype !== "string") return fail(`${where} has dtype ${showValue(dtype)}, not a string`);
    const size = Object.hasOwn(DTYPE_SIZES, dtype) ? DTYPE_SIZES[dtype] : undefined;
    if (size === undefined) {
      fail(
        `${where} has dtype "${dtype}", which is not supported: expected one of ${Object.keys(DTYPE_SIZES).join(", ")}`,
      );
    }
    if (!isIntegerList(shape)) {
      return fail(`${where} has shape ${showValue(shape)}, not a list of non-negative integers`);
    }
    if (!isIntegerList(offsets) || offsets.length !== 2 || offsets[0] > offsets[1]) {
      return fail(`${where} has data_offsets ${showValue(offsets)}, not a pair [begin, end] with begin <= end`);
    }
    const [begin, end] = offsets;
    const bytesNeeded = numel(shape) * size!;
    if (end - begin !== bytesNeeded) {
      fail(
        `${where} (${dtype}, shape ${formatShape(shape)}) needs ${bytesNeeded} bytes, but its data_offsets ` +
          `[${begin}, ${end}] span ${end - begin}`,
      );
    }
    if (end > dataLength) {
      fail(
        `${where} has data_offsets [${begin}, ${end}], file bytes ${dataStart + begin}-${dataStart + end}, but the ` +
          `file ends at byte ${bytes.length} (the data section has ${dataLength} bytes from offset ${dataStart})`,
      );
    }
    entries.push({ name: tensorName, dtype, shape, begin, end });
  }

  // The tensors must tile the data section: each begins where the one before it ends.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (entry.begin < covered) {
      const previous = entries[i - 1];
      fail(
        `tensors "${previous.name}" (data_offsets [${previous.begin}, ${previous.end}]) and "${entry.name}" ` +
          `(data_offsets [${entry.begin}, ${entry.end}]) overlap, at file bytes ${dataStart + entry.begin}-` +
          `${dataStart + Math.min(previous.end, entry.end)}`,
      );
    }
    if (entry.begin > covered) {
      fail(
        `data section bytes ${covered}-${entry.begin} (file bytes ${dataStart + covered}-${dataStart + entry.begin}) ` +
          `belong to no tensor: a hole before tensor "${entry.name}"`,
      );
    }
    covered = entry.end;
  }
  if (covered !== dataLength) {
    fail(
      `the tensors end at data section byte ${covered} (file byte ${dataStart + covered}), but the file goes on ` +
        `to byte ${bytes.length}: ${dataLength - covered} bytes belong to no tensor`,
    );
  }
  return { entries, metadata, dataStart };
}

function decode(bytes: Uint8Array, view: DataView, dataStart: number, entry: Entry, name: string): Float32Array {
  const start = dataStart + entry.begin;
  const count = numel(entry.shape);
  if (entry.dtype === "F32" && hostIsLittleEndian) {
    // A copy through the Uint8Array constructor: a Node Buffer's slice() would not copy.
    return new Float32Array(new Uint8Array(bytes.subarray(start, start + 4 * count)).buffer);
  }
  const out = new Float32Array(count);
  switch (entry.dtype) {
    case "F32":
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(start + 4 * i, true);
      break;
    case "F64":
      for (let i = 0; i < count; i++) {
        const value = view.getFloat64(start + 8 * i, true);
        out[i] = value;
        if (!Number.isFinite(out[i]) && Number.isFinite(value)) {
          throw new ValueError(
            `${name}: tensor "${entry.name}" holds ${value} at index ${formatIndex(i, entry.shape)}, too large ` +
              `for float32`,
          );
        }
      }
      break;
    case "F16":
      for (let i = 0; i < count; i++) out[i] = float16BitsToNumber(view.getUint16(start + 2 * i, true));
      break;
    case "BF16":
      for (let i = 0; i < count; i++) out[i] = bfloat16BitsToNumber(view.getUint16(start + 2 * i, true));
      break;
    case "I64":
      for (let i = 0; i < count; i++) out[i] = Number(view.getBigInt64(start + 8 * i, true));
      break;
    case "U64":
      for (let i = 0; i < count; i++) out[i] = Number(view.getBigUint64(start + 8 * i, true));
      break;
    case "I32":
      for (let i = 0; i < count; i++) out[i] = view.getInt32(start + 4 * i, true);
      break;
    case "U32":
      for (let i = 0; i < count; i++) out[i] = view.getUint32(start + 4 * i, true);
      break;
    case "I16":
      for (let i = 0; i < count; i++) out[i] = view.getInt16(start + 2 * i, true);
      break;
    case "U16":
      for (let i = 0; i < count; i++) out[i] = view.getUint16(start + 2 * i, true);
      break;
    case "I8":
      for (let i = 0; i < count; i++) out[i] = view.getInt8(start + i);
      break;
    case "U8":
      for (let i = 0; i < count; i++) out[i] = view.getUint8(start + i);
      break;
    case "BOOL":
      for (let i = 0; i < count; i++) out[i] = view.getUint8(start + i) === 0 ? 0 : 1;
      break;
  }
  return out;
}

function isIntegerList(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((item) => Number.isSafeInteger(item) && item >= 0);
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") {
    return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 37) + "..." : value)}`;
  }
  return `the ${typeof value} ${String(value)}`;
}
