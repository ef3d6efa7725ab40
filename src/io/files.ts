/**
 * The file-system side of the CLI, on `node:fs` (which Deno and Bun provide too). The format
 * modules beside this one take and return bytes; this one only reads and writes them, with
 * errors that name the path.
 */
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
  const suffix = [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const temporary = join(dirname(path), `.${basename(path)}.${suffix}.tmp`);
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

const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "it is a directory",
  ENOTDIR: "a part of the path is not a directory",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "the file system is read-only",
  EMFILE: "too many open files",
  ENAMETOOLONG: "the name is too long",
  ELOOP: "too many symbolic links",
};

function fileError(path: string, action: "read" | "write", error: unknown): FileError {
  const code = (error as { code?: unknown })?.code;
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
