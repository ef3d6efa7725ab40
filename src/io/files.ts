/**
 * The file-system side of the CLI, on `node:fs` (which Deno and Bun provide too). The format
 * modules beside this one take and return bytes; this one only reads and writes them, with
 * errors that name the path.
 */
import { chmodSync, closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { chmod, open, readFile, rename, rm, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { FileError } from "../errors.ts";

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
    handle = await open(temporary, "wx");
    created = true;
    await handle.writeFile(bytes);
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (existing) await chmod(temporary, existing.mode & 0o7777);
    await rename(temporary, path);
  } catch (error) {
    await handle?.close().catch(() => {});
    if (created) await rm(temporary, { force: true }).catch(() => {});
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
      return new AtomicFile(path, temporary, openSync(temporary, "wx"), mode);
    } catch (error) {
      throw fileError(path, "write", error);
    }
  }

  /** Writes all of `bytes` at byte `position` of the file (pieces may come in any order). */
  write(bytes: Uint8Array, position: number): void {
    if (this.fd === undefined) throw new Error(`AtomicFile: ${this.path} is already committed or discarded`);
    try {
      for (let done = 0; done < bytes.length;) {
        const count = writeSync(this.fd, bytes, done, bytes.length - done, position + done);
        if (count <= 0) throw new Error(`the system wrote nothing at byte ${position + done}`);
        done += count;
      }
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
