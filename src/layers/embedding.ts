/**
 * Embedding: y[n, t] = W[idx[n, t]], a lookup of rows of W (num_embeddings × embedding_dim).
 * The indices arrive as float-coded integers in the input tensor (a Tensor holds float32).
 * Per-sample rule: ∂ℓ/∂W[n] is zero except the rows indexed by sample n's tokens, which get
 * the sum of g[n, t] over the positions t holding that token (a scatter-add); the padding_idx
 * row gets no gradient, as in PyTorch. Indices carry no gradient.
 */
import { UnsupportedError, ValueError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { numel } from "../tensor.ts";
import { arena, kernels } from "../wasm.ts";
import { unravel } from "../forward.ts";
import { standardNormal } from "./init.ts";
import type { CompileContext, Compiled, Named } from "./module.ts";
import { layerLabel, Module, weightBiasStep } from "./module.ts";

/**
 * Options of `Embedding`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { Embedding } from "jacobian-wasm";
 * import type { EmbeddingOptions } from "jacobian-wasm";
 * const options: EmbeddingOptions = { paddingIdx: -1 }; // the last row: 9 of 10
 * new Embedding(10, 4, options).paddingIdx; // 9
 * ```
 */
export interface EmbeddingOptions {
  /** A row that gets no gradient and starts at zero; negative counts from the end (default none). */
  paddingIdx?: number | null;
  /** Only null: renormalising rows during the forward pass changes the weights in place. */
  maxNorm?: number | null;
  /** Only used with max_norm (default 2). */
  normType?: number;
  /** Only false: scaling by the batch's token frequencies mixes samples. */
  scaleGradByFreq?: boolean;
  /** Accepted and ignored: it changes how PyTorch stores the gradient, not its values. */
  sparse?: boolean;
}

/**
 * PyTorch's `nn.Embedding(num_embeddings, embedding_dim, padding_idx=None)`: input `(N, *)` of
 * integer indices (float-coded), output `(N, *, embedding_dim)`. Weights start as N(0, 1), the
 * padding row at zero.
 *
 * @example
 * ```ts
 * import { Embedding, tensor } from "jacobian-wasm";
 * const embed = new Embedding(100, 16, { paddingIdx: 0 });
 * const y = embed.forward(tensor([3, 0, 7, 7], [2, 2])); // shape [2, 2, 16]
 * ```
 */
export class Embedding extends Module {
  /** PyTorch's class name, `"Embedding"`. */
  readonly typeName = "Embedding";
  /** The table, (num_embeddings, embedding_dim): row i is index i's vector. */
  readonly weight: Tensor;
  /** Non-negative (PyTorch's normalised form), or null. */
  readonly paddingIdx: number | null;

  /**
   * An embedding table drawn from N(0, 1) (the generator `manualSeed` seeds), its padding row zero.
   *
   * @param numEmbeddings num_embeddings: the number of rows, indices being 0 … num_embeddings − 1.
   * @param embeddingDim embedding_dim: the size of each row.
   * @param options paddingIdx (default none); maxNorm and scaleGradByFreq are refused (they mix
   *   samples or change weights in place), normType and sparse are accepted.
   */
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, options: EmbeddingOptions = {}) {
    super();
    for (const [what, v] of [["num_embeddings", numEmbeddings], ["embedding_dim", embeddingDim]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`Embedding: ${what} must be a positive integer, got ${v}`);
    }
    const padding = options.paddingIdx ?? null;
    if (padding !== null && (!Number.isInteger(padding) || padding < -numEmbeddings || padding >= numEmbeddings)) {
      throw new RangeError(`Embedding: padding_idx must be an integer within num_embeddings (${numEmbeddings}), got ${padding}`);
    }
    this.paddingIdx = padding === null ? null : padding < 0 ? padding + numEmbeddings : padding;
    if (options.maxNorm !== undefined && options.maxNorm !== null) {
      throw new UnsupportedError(
        `Embedding: max_norm=${options.maxNorm} is not supported: it renormalises weight rows in place during the forward pass, ` +
          `so the output is not linear in the weights`,
      );
    }
    if (options.normType !== undefined && !Number.isFinite(options.normType)) {
      throw new RangeError(`Embedding: norm_type must be a number, got ${options.normType}`);
    }
    if (options.scaleGradByFreq) {
      throw new UnsupportedError(
        `Embedding: scale_grad_by_freq=True is not supported: it scales gradients by token counts over the whole batch, which mixes samples`,
      );
    }
    this.weight = { shape: [numEmbeddings, embeddingDim], data: standardNormal("Embedding: weight", [numEmbeddings, embeddingDim]) };
    if (this.paddingIdx !== null) this.weight.data.fill(0, this.paddingIdx * embeddingDim, (this.paddingIdx + 1) * embeddingDim);
  }

  /** `weight`. */
  override ownParameters(): Named[] {
    return [["weight", this.weight]];
  }

  /** `(*)` → `(*, embedding_dim)`: each index becomes a row. */
  outputShape(inShape: readonly number[]): number[] {
    return [...inShape, this.embeddingDim];
  }

  /** @ignore */
  compile({ builder, path, input, inShape }: CompileContext): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape);
    const { N, K, R } = builder;
    const T = numel(inShape); // tokens per sample
    const V = this.numEmbeddings;
    const E = this.embeddingDim;
    const padding = this.paddingIdx ?? -1;
    const output = builder.floats(N * T * E);
    const weight = builder.parameterPtr(this.weight);
    const k = kernels();
    return {
      output,
      outShape,
      steps: [weightBiasStep(builder, label, outShape, this.weight, null, {
        forward() {
          const bad: number = k.embedding_forward(N, T, V, E, input, weight, output);
          if (bad >= 0) {
            const value = arena.f32()[(input >>> 2) + bad];
            const sample = Math.floor(bad / T);
            const position = unravel(bad % T, inShape);
            throw new ValueError(
              `${label}: sample ${sample}, position [${position.join(", ")}] holds index ${value}, ` +
                `not an integer in [0, ${V}) (num_embeddings = ${V})`,
            );
          }
        },
        // Indices have no gradient: zeros, for a (pointless) layer before an Embedding.
        backward: (_gy, gx) => k.embedding_backward_input(R * T, gx),
        perSample: (first, samples, gy, jw, _jb, ldJ) =>
          k.embedding_per_sample(samples * K, K, T, V, E, input + first * T * 4, padding, gy, jw, ldJ),
        gradient: (gy, gw) => k.embedding_grad(R, K, T, V, E, input, padding, gy, gw, 1),
      })],
    };
  }
}
