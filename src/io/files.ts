/**
 * The file-system side of the CLI, on `node:fs` (which Deno and Bun provide too). The format
 * modules beside this one take and return bytes; this one only reads and writes them, with
 * errors that name the path.
 */
import { chmodSync, closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { chmod, open, readFile, rename, rm, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { FileError } from "../errors.ts";

/**
 * The temporary files this process has created and not yet renamed into place or removed,
 * each with the path it stands for: what `removeTemporaryFiles` removes when the process is
 * interrupted (the CLI's SIGINT and SIGTERM handlers).
 */
const temporaries = new Map<string, string>();

/**
 * Removes, synchronously, every temporary file of `writeFileAtomic` and `AtomicFile` still
 * open (for a signal handler, on the way out), and returns the paths they stood for. The
 * outputs themselves are untouched: each holds its old contents, or all the new ones if it
 * was renamed into place before the call.
 *
 * @example
 * ```ts
 * import { mkdtempSync, readdirSync, rmSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { AtomicFile, removeTemporaryFiles } from "./src/io/files.ts";
 * const dir = mkdtempSync(join(tmpdir(), "temporaries-"));
 * AtomicFile.create(join(dir, "rows.bin")).write(new Uint8Array(8), 0);
 * removeTemporaryFiles(); // [join(dir, "rows.bin")]
 * readdirSync(dir); // []
 * rmSync(dir, { recursive: true });
 * ```
 */
export function removeTemporaryFiles(): string[] {
  const paths: string[] = [];
  for (const [temporary, path] of temporaries) {
    try {
      rmSync(temporary, { force: true });
    } catch {
      // Already on the way out; the others still matter.
    }
    paths.push(path);
  }
  temporaries.clear();
  return paths;
}

/**
 * TEST ONLY: JACOBIAN_WASM_FAIL_WRITE_AFTER=<bytes> makes a write that would take a file (of
 * `writeFileAtomic` or `AtomicFile`) past that many bytes write up to it and then fail with
 * ENOSPC, as a full disk does, so that tests can check what a full disk leaves (nothing)
 * without filling one. Unset, as in every normal run, writes are not limited.
 */
function injectedWriteLimit(): number | undefined {
  let text: string | undefined;
  try {
    text = process.env.JACOBIAN_WASM_FAIL_WRITE_AFTER;
  } catch {
    return undefined; // a host without environment access (deno without --allow-env) runs no such test
  }
  if (text === undefined || text === "") return undefined;
  const bytes = Number(text);
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`JACOBIAN_WASM_FAIL_WRITE_AFTER must be a number of bytes, got "${text}"`);
  return bytes;
}

function injectedDiskFull(): Error {
  return Object.assign(new Error("ENOSPC: no space left on device, write (JACOBIAN_WASM_FAIL_WRITE_AFTER)"), { code: "ENOSPC" });
}

/**
 * The whole contents of a file.
 *
 * @throws {FileError} naming the path and the reason (no such file, a directory, permission
 *   denied, ...).
 *
 * @example
 * ```ts
 * import { readFileBytes } from "./src/io/files.ts";
 * import { readNpy } from "./src/io/npy.ts";
 * const x = readNpy(await readFileBytes("x.npy"), "x.npy");
 * ```
 */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  try {
    const buffer = await readFile(path);
    // A plain Uint8Array over the same memory: Buffer's slice() shares memory, unlike Uint8Array's.
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    throw fileError(path, "read", error);
  }
}

/**
 * Writes `bytes` to `path` so that `path` holds either its old contents or all the new
 * ones, never part of them: the bytes go to a temporary file in the same directory, which is
 * flushed to disk and renamed over `path`; on failure it is removed. An existing file's
 * permissions are kept.
 *
 * @throws {FileError} naming the path and the reason (no such directory, permission denied,
 *   disk full, ...).
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./src/io/files.ts";
 * import { writeNpy } from "./src/io/npy.ts";
 * await writeFileAtomic("grads.npy", writeNpy(new Float32Array(6), [2, 3]));
 * ```
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = temporaryPath(path);
  let handle: FileHandle | undefined;
  let created = false;
  try {
    const existing = await stat(path).catch(() => undefined);
    if (existing?.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    const limit = injectedWriteLimit();
    handle = await open(temporary, "wx");
    created = true;
    temporaries.set(temporary, path);
    if (limit !== undefined && bytes.length > limit) {
      await handle.writeFile(bytes.subarray(0, limit));
      throw injectedDiskFull();
    }
    await handle.writeFile(bytes);
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (existing) await chmod(temporary, existing.mode & 0o7777);
    await rename(temporary, path);
    temporaries.delete(temporary);
  } catch (error) {
    await handle?.close().catch(() => {});
    if (created) await rm(temporary, { force: true }).catch(() => {});
    temporaries.delete(temporary);
    throw fileError(path, "write", error);
  }
}

/**
 * A file written piece by piece with synchronous calls (for callers that produce their bytes
 * inside a synchronous callback, such as rows of J streamed from WebAssembly memory), with the
 * guarantee of `writeFileAtomic`: `path` holds either its old contents or all the new ones.
 * The pieces go to a temporary file in the same directory (the same file system, so the final
 * rename is atomic); `commit` flushes it to disk and renames it over `path`, `discard` removes it.
 * Every error is a `FileError` naming `path`.
 *
 * @example
 * ```ts
 * import { mkdtempSync, readFileSync, rmSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { AtomicFile } from "./src/io/files.ts";
 * const dir = mkdtempSync(join(tmpdir(), "atomic-file-"));
 * const file = AtomicFile.create(join(dir, "rows.bin"));
 * try {
 *   file.write(new Uint8Array([4, 5, 6]), 3);
 *   file.write(new Uint8Array([1, 2, 3]), 0);
 *   file.commit();
 * } finally {
 *   file.discard(); // removes the temporary file, unless committed
 * }
 * readFileSync(join(dir, "rows.bin")); // bytes 1, 2, 3, 4, 5, 6
 * rmSync(dir, { recursive: true });
 * ```
 */
export class AtomicFile {
  private fd: number | undefined;
  private committed = false;
  /** Bytes written so far, against the test-only limit of JACOBIAN_WASM_FAIL_WRITE_AFTER. */
  private bytesWritten = 0;
  private readonly writeLimit = injectedWriteLimit();

  private constructor(
    readonly path: string,
    private readonly temporary: string,
    fd: number,
    /** The permissions of the file being replaced, to keep; undefined for a new file. */
    private readonly mode: number | undefined,
  ) {
    this.fd = fd;
  }

  /** Creates the temporary file for `path` (checked up front, so a bad path fails before any work). */
  static create(path: string): AtomicFile {
    let mode: number | undefined;
    try {
      const existing = statSync(path, { throwIfNoEntry: false });
      if (existing?.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
      if (existing) mode = existing.mode & 0o7777;
      const temporary = temporaryPath(path);
      const file = new AtomicFile(path, temporary, openSync(temporary, "wx"), mode);
      temporaries.set(temporary, path);
      return file;
    } catch (error) {
      throw fileError(path, "write", error);
    }
  }

  /** Writes all of `bytes` at byte `position` of the file (pieces may come in any order). */
  write(bytes: Uint8Array, position: number): void {
    if (this.fd === undefined) throw new Error(`AtomicFile: ${this.path} is already committed or discarded`);
    try {
      const allowed = this.writeLimit === undefined ? bytes.length : Math.min(bytes.length, Math.max(0, this.writeLimit - this.bytesWritten));
      for (let done = 0; done < allowed;) {
        const count = writeSync(this.fd, bytes, done, allowed - done, position + done);
        if (count <= 0) throw new Error(`the system wrote nothing at byte ${position + done}`);
        done += count;
      }
      this.bytesWritten += allowed;
      if (allowed < bytes.length) throw injectedDiskFull();
    } catch (error) {
      throw fileError(this.path, "write", error);
    }
  }

  /** Flushes the file to disk and renames it over `path`. */
  commit(): void {
    if (this.fd === undefined) throw new Error(`AtomicFile: ${this.path} is already committed or discarded`);
    try {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = undefined;
      if (this.mode !== undefined) chmodSync(this.temporary, this.mode);
      renameSync(this.temporary, this.path);
      this.committed = true;
      temporaries.delete(this.temporary);
    } catch (error) {
      this.discard();
      throw fileError(this.path, "write", error);
    }
  }

  /** Closes and removes the temporary file, unless committed; never throws (it runs on the way out of a failure). */
  discard(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // Already failing: the removal below is what matters.
      }
      this.fd = undefined;
    }
    if (!this.committed) {
      try {
        rmSync(this.temporary, { force: true });
      } catch {
        // Nothing more to do; the caller reports the original error.
      }
      temporaries.delete(this.temporary);
    }
  }
}

/** A fresh hidden name beside `path`: the same directory, so renaming it over `path` is atomic. */
function temporaryPath(path: string): string {
  const suffix = [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
  return join(dirname(path), `.${basename(path)}.${suffix}.tmp`);
}

const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "it is a directory",
  ENOTDIR: "a part of the path is not a directory",
  ENOSPC: "no space left on the device",
  EFBIG: "the file would exceed the largest file allowed (the file system's, or the process's limit: ulimit -f)",
  EDQUOT: "disk quota exceeded",
  EROFS: "the file system is read-only",
  EMFILE: "too many open files",
  ENAMETOOLONG: "the name is too long",
  ELOOP: "too many symbolic links",
};

/**
 * Error codes by the OS error number, for errors that carry only a message such as deno's
 * "File too large (os error 27)" (it sets `code` for most, not all). The numbers up to 30
 * are the same on Linux and macOS.
 */
const CODES_BY_ERRNO: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  13: "EACCES",
  20: "ENOTDIR",
  21: "EISDIR",
  24: "EMFILE",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
};

function fileError(path: string, action: "read" | "write", error: unknown): FileError {
  const errno = error instanceof Error ? /\(os error (\d+)\)$/.exec(error.message)?.[1] : undefined;
  const code = (error as { code?: unknown })?.code ?? (errno === undefined ? undefined : CODES_BY_ERRNO[Number(errno)]);
  let reason: string;
  if (code === "ENOENT") {
    reason = action === "read" ? "no such file" : `the directory ${dirname(path)} does not exist`;
  } else if (typeof code === "string" && Object.hasOwn(REASONS, code)) {
    reason = REASONS[code];
  } else {
    reason = error instanceof Error ? error.message : String(error);
  }
  return new FileError(`${path}: cannot ${action} the file: ${reason}`, { cause: error });
}
