/**
 * Layers that move no numbers: Identity, Flatten, Dropout (in eval mode). Their output is
 * their input, reinterpreted, so they compile to an aliasing step.
 */
import { ShapeError, UnsupportedError } from "../errors.ts";
import type { CompileContext, Compiled } from "./module.ts";
import { aliasStep, layerLabel, Module } from "./module.ts";

/**
 * PyTorch's `nn.Identity`.
 *
 * @example
 * ```ts
 * import { Identity } from "jacobian-wasm";
 * const skip = new Identity();
 * ```
 */
export class Identity extends Module {
  /** PyTorch's class name, `"Identity"`. */
  readonly typeName = "Identity";

  /** The input's shape. */
  outputShape(inShape: readonly number[]): number[] {
    return [...inShape];
  }

  /** @ignore */
  compile({ path, input, inShape }: CompileContext): Compiled {
    const outShape = [...inShape];
    return { steps: [aliasStep(layerLabel(path, this.typeName), outShape)], output: input, outShape };
  }
}

/**
 * Options of `Flatten`, as PyTorch's keyword arguments.
 *
 * @example
 * ```ts
 * import { Flatten } from "jacobian-wasm";
 * import type { FlattenOptions } from "jacobian-wasm";
 * const options: FlattenOptions = { startDim: 2 }; // keep the channels: (N, C, H, W) -> (N, C, H·W)
 * new Flatten(options).outputShape([3, 4, 5]); // [3, 20]
 * ```
 */
export interface FlattenOptions {
  /** First dim to flatten, counting the batch as dim 0 (default 1). */
  startDim?: number;
  /** Last dim to flatten (default -1). */
  endDim?: number;
}

/**
 * PyTorch's `nn.Flatten(start_dim=1, end_dim=-1)`; dims count the batch dimension as 0.
 *
 * @example
 * ```ts
 * import { Flatten } from "jacobian-wasm";
 * const flat = new Flatten(); // (N, C, H, W) -> (N, C·H·W)
 * ```
 */
export class Flatten extends Module {
  /** PyTorch's class name, `"Flatten"`. */
  readonly typeName = "Flatten";
  /** start_dim, counting the batch as dim 0 (default 1). */
  readonly startDim: number;
  /** end_dim, counting the batch as dim 0; negative counts from the end (default -1). */
  readonly endDim: number;

  /**
   * A flatten of dims start_dim … end_dim into one.
   *
   * @param options startDim (default 1) and endDim (default -1); start_dim 0 (merging
   *   samples) is refused.
   */
  constructor(options: FlattenOptions = {}) {
    super();
    this.startDim = options.startDim ?? 1;
    this.endDim = options.endDim ?? -1;
    for (const v of [this.startDim, this.endDim]) {
      if (!Number.isInteger(v)) throw new RangeError(`Flatten: start_dim and end_dim must be integers, got ${v}`);
    }
  }

  /** The dims start_dim … end_dim merged into their product: (C, H, W) → (C·H·W) by default. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const rank = inShape.length + 1; // with the batch dimension
    const resolve = (d: number) => (d < 0 ? d + rank : d);
    const start = resolve(this.startDim);
    const end = resolve(this.endDim);
    if (start < 0 || start >= rank || end < 0 || end >= rank) {
      throw new ShapeError(
        `${label}: start_dim=${this.startDim}, end_dim=${this.endDim} are out of range for an input of ${rank} dims (N, ${inShape.join(", ")})`,
      );
    }
    if (start === 0 && end > 0) {
      throw new UnsupportedError(`${label}: start_dim=0 would merge samples into one; per-sample computation needs start_dim >= 1`);
    }
    if (start > end) {
      throw new ShapeError(`${label}: start_dim=${this.startDim} comes after end_dim=${this.endDim} for an input of ${rank} dims`);
    }
    if (start === end) return [...inShape];
    const dims = [0, ...inShape]; // index 0 stands for the batch
    const merged = dims.slice(start, end + 1).reduce((a, b) => a * b, 1);
    return [...dims.slice(1, start), merged, ...dims.slice(end + 1)];
  }

  /** @ignore */
  compile({ path, input, inShape }: CompileContext): Compiled {
    const outShape = this.outputShape(inShape, path);
    return { steps: [aliasStep(layerLabel(path, this.typeName), outShape)], output: input, outShape };
  }
}

/**
 * PyTorch's `nn.Dropout(p=0.5)`. In eval mode (the default here) it is the identity; in
 * training mode its random masks make per-sample gradients ill-defined, so any computation
 * refuses it clearly.
 *
 * @example
 * ```ts
 * import { Dropout } from "jacobian-wasm";
 * const drop = new Dropout(0.1); // identity while the network is in eval mode
 * ```
 */
export class Dropout extends Module {
  /** PyTorch's class name, `"Dropout"`. */
  readonly typeName = "Dropout";

  /**
   * A dropout layer, the identity in eval mode.
   *
   * @param p p, the probability of an element being zeroed in training mode (default 0.5), in [0, 1].
   */
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }

  /** The input's shape. */
  outputShape(inShape: readonly number[]): number[] {
    return [...inShape];
  }

  /** @ignore */
  compile({ path, input, inShape }: CompileContext): Compiled {
    const label = layerLabel(path, this.typeName);
    const outShape = [...inShape];
    const step = aliasStep(label, outShape);
    const module = this;
    // Checked when the step runs, so a plan built in eval mode still refuses after train().
    step.forward = () => {
      if (module.training) {
        throw new UnsupportedError(
          `${label}: Dropout in training mode is not supported (its random mask differs per sample and call); call net.eval() first`,
        );
      }
    };
    return { steps: [step], output: input, outShape };
  }
}
