/**
 * The errors the library throws for bad input. Each message names what was wrong and where
 * (layer, expected and given shape, file, offset); the CLI prints the message alone, with
 * exit code 2, for any of them.
 */

/**
 * A tensor's shape does not fit a layer or an argument.
 *
 * @example
 * ```ts
 * import { Linear, ShapeError, randn } from "jacobian-wasm";
 * try {
 *   new Linear(3, 2).forward(randn([4, 5], 0)); // 5 features where the layer takes 3
 *   throw new Error("not reached");
 * } catch (error) {
 *   if (!(error instanceof ShapeError)) throw error; // "input (4, 5) does not fit the network, which takes (N, 3): …"
 * }
 * ```
 */
export class ShapeError extends RangeError {
  /** `"ShapeError"`, so messages and stacks name the kind of error. */
  override name = "ShapeError";
}

/**
 * A file (`.npy`, `.safetensors`, model spec) is malformed, truncated or of an unsupported kind.
 *
 * @example
 * ```ts
 * import { FormatError, modelFromSpec } from "jacobian-wasm";
 * try {
 *   modelFromSpec({ format: "torch.nn.Sequential", layers: [{ type: "LSTM" }] });
 *   throw new Error("not reached");
 * } catch (error) {
 *   if (!(error instanceof FormatError)) throw error; // "… unknown layer type \"LSTM\"; supported: …"
 * }
 * ```
 */
export class FormatError extends TypeError {
  /** `"FormatError"`, so messages and stacks name the kind of error. */
  override name = "FormatError";
}

/**
 * A value is out of range or not finite (NaN/Inf in weights or inputs, class index out of range).
 *
 * @example
 * ```ts
 * import { Linear, ValueError, tensor } from "jacobian-wasm";
 * try {
 *   new Linear(2, 1).forward(tensor([1, NaN], [1, 2]));
 *   throw new Error("not reached");
 * } catch (error) {
 *   if (!(error instanceof ValueError)) throw error; // "input holds NaN at index [0, 1]"
 * }
 * ```
 */
export class ValueError extends RangeError {
  /** `"ValueError"`, so messages and stacks name the kind of error. */
  override name = "ValueError";
}

/**
 * The computation asked for is not defined for this network (e.g. Dropout in training mode).
 *
 * @example
 * ```ts
 * import { Dropout, Linear, Sequential, UnsupportedError, perSampleGradients, randn, tensor } from "jacobian-wasm";
 * const net = new Sequential(new Linear(4, 2), new Dropout(0.5)).train();
 * try {
 *   perSampleGradients(net, randn([3, 4], 0), tensor([0, 1, 0], [3]), { loss: "cross_entropy" });
 *   throw new Error("not reached");
 * } catch (error) {
 *   if (!(error instanceof UnsupportedError)) throw error; // Dropout in training mode; net.eval() first
 * }
 * ```
 */
export class UnsupportedError extends TypeError {
  /** `"UnsupportedError"`, so messages and stacks name the kind of error. */
  override name = "UnsupportedError";
}

/**
 * A computation needs more memory than it may have: more WebAssembly memory than it may have (one sample alone does not
 * fit, or a result must be held whole), parameters over `MAX_PARAMETERS`, or a J returned whole over `MAX_RESULT_BYTES`.
 * Always thrown before the memory is allocated.
 *
 * @example
 * ```ts
 * import { Linear, MemoryError, jacobian, randn } from "jacobian-wasm";
 * try {
 *   jacobian(new Linear(1, 65536), randn([2, 1], 0)); // one sample's 65536 rows of J are 32 GiB
 *   throw new Error("not reached");
 * } catch (error) {
 *   if (!(error instanceof MemoryError)) throw error; // "one sample of shape (1,) alone needs 48.00 GiB …"
 * }
 * ```
 */
export class MemoryError extends RangeError {
  /** `"MemoryError"`, so messages and stacks name the kind of error. */
  override name = "MemoryError";
}

/**
 * A file cannot be read or written: missing, a directory, no permission, disk full.
 *
 * @example
 * ```ts
 * import { FileError } from "jacobian-wasm";
 * // The CLI's reads and writes throw it (`jacobian-wasm … --input missing.npy`), with the
 * // path, what it was doing and the reason in the message, and the system error as `cause`.
 * const error = new FileError("missing.npy: cannot read the file: no such file or directory");
 * error.name; // "FileError"
 * ```
 */
export class FileError extends Error {
  /** `"FileError"`, so messages and stacks name the kind of error. */
  override name = "FileError";
}

/**
 * A value as JSON text for an error message: at most `limit` characters (cut short with "…"), and
 * never a throw of its own (a value nested too deep for JSON.stringify is shown by its kind), so
 * that a message about a malformed file is one short line whatever the file holds.
 */
export function showValue(value: unknown, limit = 100): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = Array.isArray(value) ? "[…]" : typeof value === "object" && value !== null ? "{…}" : undefined;
  }
  text ??= String(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/**
 * Another error's message (JSON.parse's, a system call's) made fit to quote in one of ours: one
 * line (runtimes quote the text they failed on, newlines and all) of at most `limit` characters.
 */
export function oneLine(message: string, limit = 200): string {
  const line = message.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

/** Whether an error is the user's (bad input) rather than a bug: the CLI prints these without a stack. */
export function isUserError(error: unknown): error is Error {
  return error instanceof ShapeError || error instanceof FormatError || error instanceof ValueError ||
    error instanceof UnsupportedError || error instanceof FileError || error instanceof MemoryError;
}
