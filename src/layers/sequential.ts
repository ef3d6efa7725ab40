/**
 * Sequential: children run in order; nests to any depth. Parameter names are the children's
 * indices joined by dots ("2.1.weight"), as in PyTorch.
 */
import type { CompileContext, Compiled, Step } from "./module.ts";
import { Module } from "./module.ts";
import { ReLU } from "./activation.ts";
import { MaxPoolNd } from "./pooling.ts";
import { BatchNormNd } from "./norm.ts";
import { AdaptiveAvgPoolNd } from "./adaptive_pooling.ts";
import { Residual } from "./blocks.ts";

/**
 * PyTorch's `nn.Sequential`.
 *
 * @example
 * ```ts
 * import { Sequential, Conv2d, ReLU, Flatten, Linear } from "jacobian-wasm";
 * const net = new Sequential(new Conv2d(1, 4, 3), new ReLU(), new Flatten(), new Linear(4 * 26 * 26, 10));
 * ```
 */
export class Sequential extends Module {
  /** PyTorch's class name, `"Sequential"`. */
  readonly typeName = "Sequential";
  /** The children, in the order they run. */
  readonly layers: readonly Module[];

  /**
   * A network of `layers` run one after the other; Sequentials nest.
   *
   * @param layers The children, in order: each a `Module`.
   */
  constructor(...layers: Module[]) {
    super();
    for (const [i, layer] of layers.entries()) {
      if (!(layer instanceof Module)) {
        throw new TypeError(`Sequential: argument ${i} is not a layer (got ${typeof layer})`);
      }
    }
    this.layers = layers;
  }

  /** The children named by their index: `"0"`, `"1"`, … */
  override children(): [string, Module][] {
    return this.layers.map((layer, i) => [String(i), layer]);
  }

  /** The number of children. */
  get length(): number {
    return this.layers.length;
  }

  /** The i-th child. */
  at(i: number): Module | undefined {
    return this.layers.at(i);
  }

  /** The last child's output shape, each child's input being the previous one's output. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    let shape = [...inShape];
    for (const [i, layer] of this.layers.entries()) shape = layer.outputShape(shape, childPath(path, i));
    return shape;
  }

  /** @ignore */
  compile(context: CompileContext): Compiled {
    const steps: Step[] = [];
    let input = context.input;
    let inShape = context.inShape;
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i];
      const next = this.layers[i + 1];
      let compiled: Compiled;
      if (layer instanceof ReLU && next instanceof MaxPoolNd) {
        // One pass instead of two: pooling first, ReLU on the (smaller) pooled values.
        i++;
        compiled = next.compileAfterReLU({ builder: context.builder, path: childPath(context.path, i), input, inShape });
      } else if (layer instanceof ReLU && next instanceof AdaptiveAvgPoolNd) {
        // One pass each way: the pooling sums max(x, 0) and masks its gradient by x.
        i++;
        compiled = next.compileAfterReLU({ builder: context.builder, path: childPath(context.path, i), input, inShape });
      } else if ((layer instanceof BatchNormNd || layer instanceof Residual) && next instanceof ReLU) {
        // The ReLU applied as the normalisation (or the residual sum) writes its output.
        compiled = layer.compileWithReLU({ builder: context.builder, path: childPath(context.path, i), input, inShape });
        i++;
      } else {
        compiled = layer.compile({ builder: context.builder, path: childPath(context.path, i), input, inShape });
      }
      const last = compiled.steps[compiled.steps.length - 1];
      if (last !== undefined && last.output === undefined) last.output = compiled.output;
      steps.push(...compiled.steps);
      input = compiled.output;
      inShape = compiled.outShape;
    }
    return { steps, output: input, outShape: inShape };
  }
}

function childPath(path: string, i: number): string {
  return path === "" ? String(i) : `${path}.${i}`;
}
