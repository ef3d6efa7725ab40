/**
 * Rows of J written to a file as they are computed, so that N × D never has to fit in memory:
 * `.npy` (the matrix) and `.safetensors` (one tensor per parameter), byte for byte what
 * `writeNpy` and `writeSafetensors` make of the whole result (the same header builders). The
 * bytes go through `AtomicFile`, so a failed run leaves no file.
 */
import type { Tensor } from "../tensor.ts";
import { formatShape } from "../tensor.ts";
import { hostIsLittleEndian } from "./binary.ts";
import { AtomicFile } from "./files.ts";
import { npyHeader } from "./npy.ts";
import { safetensorsHeader } from "./safetensors.ts";

/** A parameter's name and shape: the columns of J it owns, in `net.parameters()` order. */
export type ParameterShape = readonly [name: string, shape: readonly number[]];

/**
 * Where streamed rows go: `write` takes the rows of samples
 * [firstSample, firstSample + rows.shape[0]) as `[samples, D]` or `[samples, K, D]` (what
 * `onChunk` gives, read during the call only); `commit` puts the complete file in place;
 * `discard` removes the unfinished one (a no-op after `commit`).
 */
export interface RowFile {
  write(firstSample: number, rows: Tensor): void;
  commit(): void;
  discard(): void;
}

/**
 * Creates the temporary file for rows of J of `N` samples going to `path`, as `.npy` (`[N, D]`
 * or `[N, K, D]`) or `.safetensors` (per parameter `[N, ...shape]` or `[N, K, ...shape]`).
 * K is read from the first chunk, so nothing but the empty temporary file exists before the
 * computation delivers rows.
 *
 * @throws {FileError} naming `path` when it cannot be created, now or on any later write.
 */
export function createRowFile(path: string, format: "npy" | "safetensors", N: number, parameters: readonly ParameterShape[]): RowFile {
  const file = AtomicFile.create(path);
  return format === "npy" ? new NpyRowFile(file, N, parameters) : new SafetensorsRowFile(file, N, parameters);
}

/** What both formats share: the sample count, the layout fixed by the first chunk, the completeness check. */
abstract class StreamedRows implements RowFile {
  private samplesWritten = 0;
  /** Outputs per sample (rows of J per sample), known from the first chunk. */
  protected K = 0;
  protected readonly D: number;

  constructor(protected readonly file: AtomicFile, protected readonly N: number, protected readonly parameters: readonly ParameterShape[]) {
    this.D = parameters.reduce((sum, [, shape]) => sum + size(shape), 0);
  }

  write(firstSample: number, rows: Tensor): void {
    const samples = rows.shape[0];
    const K = rows.shape.length === 3 ? rows.shape[1] : 1;
    if (rows.shape[rows.shape.length - 1] !== this.D || (this.K !== 0 && K !== this.K) || firstSample + samples > this.N) {
      throw new Error(
        `rows of J for samples from ${firstSample} have shape ${formatShape(rows.shape)}; ` +
          `expected (samples, ${this.K > 1 ? `${this.K}, ` : ""}${this.D}) within N = ${this.N}`,
      );
    }
    if (this.K === 0) {
      this.K = K;
      this.start();
    }
    this.writeRows(firstSample * K, samples * K, rows.data);
    this.samplesWritten += samples;
  }

  commit(): void {
    // The chunks tile the batch, so a count short of N is a bug upstream, not a file to keep.
    if (this.samplesWritten !== this.N) {
      throw new Error(`${this.file.path}: rows of ${this.samplesWritten} of ${this.N} samples arrived; not writing a partial file`);
    }
    this.file.commit();
  }

  discard(): void {
    this.file.discard();
  }

  /** The leading axes of every tensor in the file: [N], or [N, K] for K outputs per sample. */
  protected lead(): number[] {
    return this.K === 1 ? [this.N] : [this.N, this.K];
  }

  /** Writes the header, once K is known. */
  protected abstract start(): void;
  /** Writes rows [firstRow, firstRow + rowCount) of the N·K × D matrix, held in `chunk` with row stride D. */
  protected abstract writeRows(firstRow: number, rowCount: number, chunk: Float32Array): void;
}

/** `.npy`: the header, then the rows in order, each chunk one write. */
class NpyRowFile extends StreamedRows {
  private dataStart = 0;

  protected start(): void {
    const header = npyHeader("<f4", [...this.lead(), this.D]);
    this.dataStart = header.length;
    this.file.write(header, 0);
  }

  protected writeRows(firstRow: number, rowCount: number, chunk: Float32Array): void {
    this.file.write(littleEndianBytes(chunk.subarray(0, rowCount * this.D)), this.dataStart + firstRow * this.D * 4);
  }
}

/**
 * `.safetensors`: each parameter's tensor is contiguous in the file, so a chunk's columns of
 * one parameter are gathered into a staging buffer and written with one positioned write.
 */
class SafetensorsRowFile extends StreamedRows {
  /** Per parameter: its first column in a row of J, its size, and the file offset of its tensor. */
  private layout: { column: number; size: number; offset: number }[] = [];
  private staging = new Float32Array(0);

  protected start(): void {
    const lead = this.lead();
    const { header, offsets } = safetensorsHeader(this.parameters.map(([name, shape]) => [name, [...lead, ...shape]] as const));
    let column = 0;
    this.layout = this.parameters.map(([, shape], p) => {
      const entry = { column, size: size(shape), offset: header.length + offsets[p] };
      column += entry.size;
      return entry;
    });
    this.file.write(header, 0);
  }

  protected writeRows(firstRow: number, rowCount: number, chunk: Float32Array): void {
    const D = this.D;
    for (const { column, size, offset } of this.layout) {
      let part: Float32Array;
      if (size === D) {
        part = chunk.subarray(0, rowCount * D); // one parameter: its columns are whole rows already
      } else {
        if (this.staging.length < rowCount * size) this.staging = new Float32Array(rowCount * size);
        part = this.staging.subarray(0, rowCount * size);
        for (let r = 0; r < rowCount; r++) {
          const from = r * D + column;
          if (size >= 64) part.set(chunk.subarray(from, from + size), r * size);
          else for (let i = 0; i < size; i++) part[r * size + i] = chunk[from + i];
        }
      }
      this.file.write(littleEndianBytes(part), offset + firstRow * size * 4);
    }
  }
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The bytes of `data` in little-endian order: a view on little-endian hosts (all current ones), a copy otherwise. */
function littleEndianBytes(data: Float32Array): Uint8Array {
  if (hostIsLittleEndian) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i], true);
  return out;
}

