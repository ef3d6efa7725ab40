/**
 * Unflatten: one dim split into several, numbers unmoved; it compiles to an aliasing step,
 * as Flatten does.
 */
import { ShapeError, UnsupportedError } from "../errors.ts";
import { numel } from "../tensor.ts";
import type { CompileContext, Compiled } from "./module.ts";
import { aliasStep, layerLabel, Module } from "./module.ts";

/**
 * PyTorch's `nn.Unflatten(dim, unflattened_size)`; `dim` counts the batch as dim 0 (negative
 * counts from the end), and one entry of `unflattened_size` may be -1 (inferred).
 *
 * @example
 * ```ts
 * import { Unflatten } from "jacobian-wasm";
 * const unflatten = new Unflatten(1, [2, 5, 5]); // (N, 50) -> (N, 2, 5, 5)
 * ```
 */
export class Unflatten extends Module {
  /** PyTorch's class name, `"Unflatten"`. */
  readonly typeName = "Unflatten";
  /** unflattened_size, as given (a -1 stays -1; `outputShape` infers it). */
  readonly unflattenedSize: number[];

  /**
   * A split of dim `dim` into `unflattenedSize`.
   *
   * @param dim dim: the dim to split, counting the batch as dim 0 (which cannot be split);
   *   negative counts from the end.
   * @param unflattenedSize unflattened_size: the sizes it becomes, their product the dim's size;
   *   one of them may be -1, inferred.
   */
  constructor(readonly dim: number, unflattenedSize: readonly number[]) {
    super();
    if (!Number.isInteger(dim)) throw new RangeError(`Unflatten: dim must be an integer, got ${dim}`);
    const sizes = [...unflattenedSize];
    if (
      sizes.length === 0 || sizes.some((s) => !Number.isInteger(s) || (s < 0 && s !== -1)) ||
      sizes.filter((s) => s === -1).length > 1
    ) {
      throw new RangeError(
        `Unflatten: unflattened_size must be a non-empty list of non-negative integers with at most one -1, got ${JSON.stringify(unflattenedSize)}`,
      );
    }
    this.unflattenedSize = sizes;
  }

  /** The dim split into unflattened_size: (50) → (2, 5, 5) for `new Unflatten(1, [2, 5, 5])`. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const rank = inShape.length + 1; // with the batch dimension
    const dim = this.dim < 0 ? this.dim + rank : this.dim;
    if (dim < 0 || dim >= rank) {
      throw new ShapeError(`${label}: dim=${this.dim} is out of range for an input of ${rank} dims (N, ${inShape.join(", ")})`);
    }
    if (dim === 0) throw new UnsupportedError(`${label}: dim=0 would split the batch dimension; per-sample computation needs dim >= 1`);
    const size = inShape[dim - 1];
    const known = numel(this.unflattenedSize.filter((s) => s !== -1));
    const inferred = this.unflattenedSize.includes(-1);
    const fits = inferred ? known > 0 && size % known === 0 : known === size;
    if (!fits) {
      throw new ShapeError(
        `${label}: unflattened_size ${JSON.stringify(this.unflattenedSize)} does not split dim ${dim} of size ${size}` +
          ` (input (N, ${inShape.join(", ")}))`,
      );
    }
    const sizes = this.unflattenedSize.map((s) => (s === -1 ? size / known : s));
    return [...inShape.slice(0, dim - 1), ...sizes, ...inShape.slice(dim)];
  }

  /** @ignore */
  compile({ path, input, inShape }: CompileContext): Compiled {
    const outShape = this.outputShape(inShape, path);
    return { steps: [aliasStep(layerLabel(path, this.typeName), outShape)], output: input, outShape };
  }
}
