/**
 * Branching blocks: `Residual` (y = shortcut(x) + block(x)) and `Parallel` (branches on the
 * same input, concatenated or summed). Each compiles to ONE step that owns its branches'
 * steps: forward runs the branches and combines their outputs; backward seeds every branch
 * with its share of the output gradient and sums their input gradients; the per-sample
 * contraction is the branches' own. The whole network still takes one forward and one
 * backward pass.
 */
import { ShapeError } from "../errors.ts";
import { numel } from "../tensor.ts";
import { kernels } from "../wasm.ts";
import { placeGradients } from "../plan.ts";
import type { PlanBuilder } from "../plan.ts";
import type { CompileContext, Compiled, Step } from "./module.ts";
import { layerLabel, Module, sameShape } from "./module.ts";
import { formatShape } from "../tensor.ts";

/** One branch compiled inside a block: its steps, where its output and input gradient live. */
interface Branch {
  steps: Step[];
  output: number;
  outShape: readonly number[];
  inWidth: number;
  /** Where the branch's output gradient is seeded (placed with the block's gradients). */
  seed: number;
  /** Where its backward pass leaves the gradient w.r.t. the block's input. */
  inputGradient: number;
  trainable: Step[];
}

function compileBranch(module: Module, context: CompileContext, path: string): Branch {
  const compiled = module.compile({ ...context, path });
  return {
    steps: compiled.steps,
    output: compiled.output,
    outShape: compiled.outShape,
    inWidth: numel(context.inShape),
    seed: 0,
    inputGradient: 0,
    trainable: compiled.steps.filter((s) => s.hasParameters),
  };
}

/** Gives a branch its gradient buffers, seeded at `seed` (or a buffer of its own). */
function placeBranch(builder: PlanBuilder, branch: Branch, seed?: number): void {
  const placed = placeGradients(builder, branch.steps, branch.inWidth, { from: 0, seed });
  branch.seed = placed.seed;
  branch.inputGradient = placed.input;
}

function forwardBranch(branch: Branch): void {
  for (const step of branch.steps) step.forward();
}

function backwardBranch(branch: Branch): void {
  for (let i = branch.steps.length - 1; i >= 0; i--) branch.steps[i].backward();
}

function childPath(path: string, name: string): string {
  return path === "" ? name : `${path}.${name}`;
}

/** The step of a block: the branches' steps run inside it; `combine` and `split` are the block's own. */
function blockStep(
  label: string,
  outShape: readonly number[],
  branches: Branch[],
  place: (builder: PlanBuilder, gy: number) => void,
  forward: () => void,
  backward: (gy: number, gx: number) => void,
): Step {
  const trainable = branches.flatMap((b) => b.trainable);
  return {
    label,
    outShape,
    aliasesInput: false,
    hasParameters: trainable.length > 0,
    innerBackward: true,
    gy: 0,
    gx: 0,
    placeGradients(builder: PlanBuilder) {
      place(builder, this.gy);
    },
    forward,
    backward() {
      backward(this.gy, this.gx);
    },
    perSample(firstSample: number, samples: number, J: number) {
      for (const step of trainable) step.perSample(firstSample, samples, J);
    },
    gradient() {
      for (const step of trainable) step.gradient();
    },
  };
}

/** Sums the branches' input gradients into gx (skipped where nothing needs gx). */
function sumInputGradients(builder: PlanBuilder, branches: Branch[], width: number, gx: number): void {
  if (gx === 0) return;
  const k = kernels();
  const count = builder.R * width;
  k.add_arrays(count, branches[0].inputGradient, branches[1].inputGradient, gx);
  for (let b = 2; b < branches.length; b++) k.add_arrays(count, gx, branches[b].inputGradient, gx);
}

/**
 * A residual block, `y = shortcut(x) + block(x)`; the shortcut is the identity unless given
 * (a projection such as a strided 1x1 convolution). State-dict names: `block.*`, `shortcut.*`.
 *
 * @example
 * ```ts
 * import { Residual, Sequential, Conv2d, ReLU, randn } from "jacobian-wasm";
 * const block = new Residual(new Sequential(new Conv2d(4, 4, 3, { padding: 1 }), new ReLU(), new Conv2d(4, 4, 3, { padding: 1 })));
 * const y = block.forward(randn([2, 4, 8, 8], 0)); // [2, 4, 8, 8]
 * ```
 */
export class Residual extends Module {
  /** The class name, `"Residual"` (PyTorch has no such class: torchvision writes the sum in `forward`). */
  readonly typeName = "Residual";

  /**
   * A residual block.
   *
   * @param block The residual branch, whose output must have the shortcut's shape.
   * @param shortcut The shortcut branch (a projection), or null for the identity (default).
   */
  constructor(readonly block: Module, readonly shortcut: Module | null = null) {
    super();
    for (const [what, m] of [["block", block], ["shortcut", shortcut]] as const) {
      if (m !== null && !(m instanceof Module)) throw new TypeError(`Residual: ${what} is not a layer`);
    }
  }

  /** `"block"`, then `"shortcut"` when there is one. */
  override children(): [string, Module][] {
    return this.shortcut ? [["block", this.block], ["shortcut", this.shortcut]] : [["block", this.block]];
  }

  /** The block's output shape, which must equal the shortcut's. */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const blockShape = this.block.outputShape(inShape, childPath(path, "block"));
    const shortcutShape = this.shortcut ? this.shortcut.outputShape(inShape, childPath(path, "shortcut")) : [...inShape];
    if (!sameShape(blockShape, shortcutShape)) {
      throw new ShapeError(
        `${layerLabel(path, this.typeName)}: the block's output ${formatShape(blockShape)} must have the shortcut's shape ${
          formatShape(shortcutShape)
        } (input ${formatShape(inShape)}); give a projection shortcut to change shapes`,
      );
    }
    return blockShape;
  }

  /** @ignore */
  compile(context: CompileContext): Compiled {
    return this.compileWith(context, false);
  }

  /**
   * This block and the ReLU after it as one step (Sequential fuses them, the ResNet pattern
   * relu(x + block(x))): the sum is written through max(·, 0), one pass instead of two, and the
   * backward pass masks the output gradient in place before the branches read it.
   *
   * @ignore
   */
  compileWithReLU(context: CompileContext): Compiled {
    return this.compileWith(context, true);
  }

  /** `compile`, with or without the ReLU after the sum. */
  private compileWith(context: CompileContext, relu: boolean): Compiled {
    const { builder, path, input, inShape } = context;
    const outShape = this.outputShape(inShape, path);
    const width = numel(outShape);
    const inWidth = numel(inShape);
    const output = builder.floats(builder.N * width);
    const branches = [compileBranch(this.block, context, childPath(path, "block"))];
    if (this.shortcut) branches.push(compileBranch(this.shortcut, context, childPath(path, "shortcut")));
    const [block, shortcut] = branches;
    const k = kernels();
    const step = blockStep(
      layerLabel(path, this.typeName),
      outShape,
      branches,
      // Both branches read the block's output gradient where it is.
      (b, gy) => branches.forEach((branch) => placeBranch(b, branch, gy)),
      () => {
        forwardBranch(block);
        if (shortcut) forwardBranch(shortcut);
        const add = relu ? k.add_arrays_relu : k.add_arrays;
        add(builder.N * width, block.output, shortcut ? shortcut.output : input, output);
      },
      (gy, gx) => {
        // The fused ReLU's backward, in place: gy passes where the output is > 0 (or NaN),
        // as threshold_backward on the pre-activation would (ReLU is kind 0 of act_backward).
        if (relu) k.act_backward(0, builder.R, builder.K, width, output, output, gy, gy, 0, 0);
        backwardBranch(block);
        if (shortcut) {
          backwardBranch(shortcut);
          sumInputGradients(builder, branches, inWidth, gx);
        } else if (gx !== 0) {
          k.add_arrays(builder.R * inWidth, block.inputGradient, gy, gx);
        }
      },
    );
    return { steps: [step], output, outShape };
  }
}

/**
 * How `Parallel` combines its branches' outputs.
 *
 * @example
 * ```ts
 * import { Parallel, Conv2d } from "jacobian-wasm";
 * import type { ParallelOptions } from "jacobian-wasm";
 * const options: ParallelOptions = { combine: "sum" };
 * const block = new Parallel([new Conv2d(4, 4, 3, { padding: 1 }), new Conv2d(4, 4, 1)], options);
 * block.outputShape([4, 8, 8]); // [4, 8, 8]
 * ```
 */
export interface ParallelOptions {
  /** "concat" (default) joins the outputs along `dim`; "sum" adds them (equal shapes). */
  combine?: "concat" | "sum";
  /** The concatenation dim, counting the batch as 0 (default 1, the channels); negative counts from the end. */
  dim?: number;
}

/**
 * Branches applied to the same input, their outputs concatenated along `dim` (an Inception
 * block, a DenseNet-style skip) or summed. State-dict names: `0.*`, `1.*`, … per branch.
 *
 * @example
 * ```ts
 * import { Parallel, Conv2d, Identity, randn } from "jacobian-wasm";
 * const block = new Parallel([new Conv2d(3, 5, 1), new Identity()], { combine: "concat", dim: 1 });
 * const y = block.forward(randn([2, 3, 4, 4], 0)); // [2, 8, 4, 4]
 * ```
 */
export class Parallel extends Module {
  /** The class name, `"Parallel"`. */
  readonly typeName = "Parallel";
  /** The branches, each applied to the block's input. */
  readonly branches: readonly Module[];
  /** How the branches' outputs are combined: `"concat"` along `dim`, or `"sum"`. */
  readonly combine: "concat" | "sum";
  /** The concatenation dim as given, counting the batch as 0; negative counts from the end. */
  readonly dim: number;

  /**
   * A block of parallel branches.
   *
   * @param branches One or more layers, each applied to the same input.
   * @param options combine (default "concat") and dim (default 1, the channels).
   */
  constructor(branches: Module[], options: ParallelOptions = {}) {
    super();
    if (!Array.isArray(branches) || branches.length < 1) throw new TypeError("Parallel: give a list of one or more branches");
    branches.forEach((b, i) => {
      if (!(b instanceof Module)) throw new TypeError(`Parallel: branch ${i} is not a layer`);
    });
    this.branches = branches;
    this.combine = options.combine ?? "concat";
    if (this.combine !== "concat" && this.combine !== "sum") {
      throw new RangeError(`Parallel: combine must be "concat" or "sum", got ${JSON.stringify(this.combine)}`);
    }
    this.dim = options.dim ?? 1;
    if (!Number.isInteger(this.dim)) throw new RangeError(`Parallel: dim must be an integer, got ${this.dim}`);
  }

  /** The branches named by their index: `"0"`, `"1"`, … */
  override children(): [string, Module][] {
    return this.branches.map((b, i) => [String(i), b]);
  }

  /** The per-sample dim of the concatenation, checked. */
  private concatDim(shapes: readonly (readonly number[])[], label: string): number {
    const rank = shapes[0].length + 1;
    const dim = this.dim < 0 ? this.dim + rank : this.dim;
    if (dim < 1 || dim >= rank) {
      throw new ShapeError(`${label}: dim=${this.dim} is out of range for outputs (N, ${shapes[0].join(", ")}); dim 0 (samples) cannot be concatenated`);
    }
    return dim - 1;
  }

  /** The branches' output shapes joined along `dim` (equal on every other dim), or their common shape for "sum". */
  outputShape(inShape: readonly number[], path = ""): number[] {
    const label = layerLabel(path, this.typeName);
    const shapes = this.branches.map((b, i) => b.outputShape(inShape, childPath(path, String(i))));
    const describe = () => shapes.map((s, i) => `branch ${i} ${formatShape(s)}`).join(", ");
    if (this.combine === "sum") {
      if (shapes.some((s) => !sameShape(s, shapes[0]))) throw new ShapeError(`${label}: summed branches need equal output shapes, got ${describe()}`);
      return [...shapes[0]];
    }
    const d = this.concatDim(shapes, label);
    const fits = shapes.every((s) => s.length === shapes[0].length && s.every((v, i) => i === d || v === shapes[0][i]));
    if (!fits) throw new ShapeError(`${label}: branch outputs must agree on every dim but ${this.dim} to be concatenated, got ${describe()}`);
    const out = [...shapes[0]];
    out[d] = shapes.reduce((sum, s) => sum + s[d], 0);
    return out;
  }

  /** @ignore */
  compile(context: CompileContext): Compiled {
    const { builder, path, inShape } = context;
    const label = layerLabel(path, this.typeName);
    const outShape = this.outputShape(inShape, path);
    const width = numel(outShape);
    const inWidth = numel(inShape);
    const output = builder.floats(builder.N * width);
    const summed = this.combine === "sum";
    const branches = this.branches.map((b, i) => compileBranch(b, context, childPath(path, String(i))));
    // Summed branches all read the block's output gradient; concatenated ones get their slice
    // copied into a seed buffer of their own.
    const place = (b: PlanBuilder, gy: number) => branches.forEach((branch) => placeBranch(b, branch, summed ? gy : undefined));
    const k = kernels();
    const { N, R } = builder;
    if (summed) {
      return {
        output,
        outShape,
        steps: [blockStep(label, outShape, branches, place, () => {
          branches.forEach(forwardBranch);
          if (branches.length === 1) k.copy_blocks(1, N * width, branches[0].output, 0, output, 0);
          else k.add_arrays(N * width, branches[0].output, branches[1].output, output);
          for (let b = 2; b < branches.length; b++) k.add_arrays(N * width, output, branches[b].output, output);
        }, (_gy, gx) => {
          branches.forEach(backwardBranch);
          this.sumInto(builder, branches, inWidth, gx);
        })],
      };
    }
    const d = this.concatDim(branches.map((b) => b.outShape), label);
    const outer = numel(outShape.slice(0, d));
    const total = numel(outShape.slice(d));
    const slices = branches.map((b) => numel(b.outShape.slice(d)));
    const offsets = slices.map((_, i) => slices.slice(0, i).reduce((a, v) => a + v, 0));
    return {
      output,
      outShape,
      steps: [blockStep(label, outShape, branches, place, () => {
        branches.forEach((branch, b) => {
          forwardBranch(branch);
          k.copy_blocks(N * outer, slices[b], branch.output, slices[b], output + offsets[b] * 4, total);
        });
      }, (gy, gx) => {
        branches.forEach((branch, b) => {
          k.copy_blocks(R * outer, slices[b], gy + offsets[b] * 4, total, branch.seed, slices[b]);
          backwardBranch(branch);
        });
        this.sumInto(builder, branches, inWidth, gx);
      })],
    };
  }

  /** Sums (or copies, for one branch) the branches' input gradients into gx. */
  private sumInto(builder: PlanBuilder, branches: Branch[], inWidth: number, gx: number): void {
    if (gx === 0) return;
    if (branches.length === 1) kernels().copy_blocks(1, builder.R * inWidth, branches[0].inputGradient, 0, gx, 0);
    else sumInputGradients(builder, branches, inWidth, gx);
  }
}
