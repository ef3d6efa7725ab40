/**
 * Where per-sample rows end up: one N·K × D matrix (a fresh array or the caller's `out`), or
 * one tensor per parameter (`asTuple`). Rows arrive in chunks and are copied straight to
 * their destination.
 */
import { MemoryError, ShapeError } from "./errors.ts";
import type { Module } from "./layers/module.ts";
import type { RowSink } from "./plan.ts";
import type { Tensor } from "./tensor.ts";
import { freshFloats } from "./threads/parallel.ts";

/**
 * Options shared by `jacobian` and `perSampleGradients`.
 *
 * @example
 * ```ts
 * import { Linear, perSampleGradients, randn } from "jacobian-wasm";
 * import type { ResultOptions } from "jacobian-wasm";
 * const net = new Linear(3, 2), out = new Float32Array(4 * 8);
 * const options: ResultOptions = { out }; // reused across steps: no new 4 × 8 array each time
 * for (let step = 0; step < 3; step++) perSampleGradients(net, randn([4, 3], step), randn([4, 2], 9), { loss: "mse", ...options });
 * ```
 */
export interface ResultOptions {
  /** One tensor per parameter, `[N, ...param.shape]` (or `[N, K, ...]`), instead of the flat matrix. */
  asTuple?: boolean;
  /**
   * A buffer of N·D (or N·K·D) floats to write the flat result into, instead of a new array:
   * reusing one across calls saves allocating (and the OS zeroing) a large matrix each time.
   */
  out?: Float32Array;
}

/**
 * Rows of J streamed instead of returned: `onChunk(firstSample, rows)` receives the rows of
 * samples [firstSample, firstSample + rows.shape[0]) as `[samples, D]` (or `[samples, K, D]`),
 * in order. `rows.data` is a view of WebAssembly memory that the next chunk overwrites: copy
 * what you keep. Peak memory is one chunk (about 1 MiB), whatever N is. The callback may not
 * call jacobian-wasm itself (the call shares that memory): such a call throws an UnsupportedError.
 *
 * @example
 * ```ts
 * import { Linear, jacobian, randn } from "jacobian-wasm";
 * import type { StreamOptions } from "jacobian-wasm";
 * const norms = new Float64Array(1000);
 * const options: StreamOptions = {
 *   onChunk(firstSample, rows) {
 *     const [samples, , D] = rows.shape; // [samples, K, D]: rows of K = 2 outputs
 *     for (let s = 0; s < samples; s++) {
 *       let sum = 0;
 *       for (let i = 0; i < 2 * D; i++) sum += rows.data[s * 2 * D + i] ** 2;
 *       norms[firstSample + s] = Math.sqrt(sum);
 *     }
 *   },
 * };
 * jacobian(new Linear(16, 2), randn([1000, 16], 0), options); // J is never held whole
 * ```
 */
export interface StreamOptions {
  /**
   * Called once per chunk, in order: `rows` holds the rows of samples [firstSample,
   * firstSample + rows.shape[0]), a view that the next chunk overwrites.
   */
  onChunk: (firstSample: number, rows: Tensor) => void;
}

/**
 * The most bytes `jacobian` and `perSampleGradients` allocate for a result they return whole:
 * 2³² (4 GiB, 2³⁰ floats), as much as one WebAssembly memory holds. A larger J (N × K × D
 * floats) is refused with a `MemoryError` naming N, K, D and the bytes before anything is
 * computed or allocated. For more, stream the rows with `onChunk`, write them into a
 * Float32Array of your own with `out` (not capped), or use the CLI, which streams them to a file.
 *
 * @example
 * ```ts
 * import { Linear, MAX_RESULT_BYTES, MemoryError, jacobian, randn } from "jacobian-wasm";
 * MAX_RESULT_BYTES; // 4294967296
 * const net = new Linear(1000, 1000); // D = 1,001,000
 * try {
 *   jacobian(net, randn([2, 1000], 0)); // J: 2 × 1000 × 1001000 floats = 7.46 GiB, refused at once
 *   throw new Error("not reached");
 * } catch (error) {
 *   if (!(error instanceof MemoryError)) throw error;
 * }
 * ```
 */
export const MAX_RESULT_BYTES = 2 ** 32;

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

/**
 * Refuses a result of N × K × D floats over MAX_RESULT_BYTES, before it is allocated.
 *
 * @ignore
 */
export function checkResultSize(N: number, K: number, D: number): void {
  const bytes = N * K * D * 4;
  if (bytes > MAX_RESULT_BYTES) {
    throw new MemoryError(
      `the result J would be N × K × D = ${N} × ${K} × ${D} floats = ${bytes} bytes (${gib(bytes)}), over the ` +
        `${gib(MAX_RESULT_BYTES)} a result returned whole may take (MAX_RESULT_BYTES): pass onChunk to receive the rows ` +
        `in chunks, out to write them into a Float32Array of your own, or use the CLI, which streams them to a file`,
    );
  }
}

/** Collects rows of J into the result the caller asked for. */
export class ResultWriter {
  readonly sink: RowSink;
  private readonly result: Tensor | Tensor[];

  constructor(net: Module, N: number, K: number, D: number, options: ResultOptions) {
    const lead = K === 1 ? [N] : [N, K];
    const R = N * K;
    if (options.out === undefined) checkResultSize(N, K, D);
    if (!options.asTuple) {
      const data = options.out ?? freshFloats(R * D);
      if (options.out !== undefined && !(options.out instanceof Float32Array && options.out.length === R * D)) {
        throw new ShapeError(
          `out: expected a Float32Array of ${R * D} floats (${lead.join(" × ")} × ${D}), got ${
            options.out instanceof Float32Array ? `${options.out.length} floats` : typeof options.out
          }`,
        );
      }
      this.result = { shape: [...lead, D], data };
      this.sink = (firstRow, _rows, chunk) => data.set(chunk, firstRow * D);
      return;
    }
    if (options.out !== undefined) throw new ShapeError("out: not supported with asTuple (each parameter gets its own tensor)");
    const parts: Tensor[] = [];
    const columns: number[] = [];
    let column = 0;
    for (const [, parameter] of net.parameters()) {
      parts.push({ shape: [...lead, ...parameter.shape], data: freshFloats(R * parameter.data.length) });
      columns.push(column);
      column += parameter.data.length;
    }
    this.result = parts;
    this.sink = (firstRow, rows, chunk) => {
      for (let p = 0; p < parts.length; p++) {
        const data = parts[p].data;
        const size = data.length / R;
        const start = columns[p];
        for (let r = 0; r < rows; r++) {
          const from = r * D + start;
          const to = (firstRow + r) * size;
          if (size >= 64) data.set(chunk.subarray(from, from + size), to);
          else for (let i = 0; i < size; i++) data[to + i] = chunk[from + i];
        }
      }
    };
  }

  /** The result, once every row has been sunk. */
  value(): Tensor | Tensor[] {
    return this.result;
  }
}
