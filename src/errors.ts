/**
 * The errors the library throws for bad input. Each message names what was wrong and where
 * (layer, expected and given shape, file, offset); the CLI prints the message alone, with
 * exit code 2, for any of them.
 */

/** A tensor's shape does not fit a layer or an argument. */
export class ShapeError extends RangeError {
  override name = "ShapeError";
}

/** A file (`.npy`, `.safetensors`, model spec) is malformed, truncated or of an unsupported kind. */
export class FormatError extends TypeError {
  override name = "FormatError";
}

/** A value is out of range or not finite (NaN/Inf in weights or inputs, class index out of range). */
export class ValueError extends RangeError {
  override name = "ValueError";
}

/** The computation asked for is not defined for this network (e.g. Dropout in training mode). */
export class UnsupportedError extends TypeError {
  override name = "UnsupportedError";
}

/** A computation needs more WebAssembly memory than it may have (one sample alone does not fit, or a result must be held whole). */
export class MemoryError extends RangeError {
  override name = "MemoryError";
}

/** A file cannot be read or written: missing, a directory, no permission, disk full. */
export class FileError extends Error {
  override name = "FileError";
}

/** Whether an error is the user's (bad input) rather than a bug: the CLI prints these without a stack. */
export function isUserError(error: unknown): error is Error {
  return error instanceof ShapeError || error instanceof FormatError || error instanceof ValueError ||
    error instanceof UnsupportedError || error instanceof FileError || error instanceof MemoryError;
}
