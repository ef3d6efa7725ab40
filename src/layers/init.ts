/**
 * PyTorch's default initialisation, from a seedable generator so results repeat; and the one
 * place every layer's parameters and buffers are allocated, where their sizes are checked first.
 */
import { FormatError, MemoryError } from "../errors.ts";
import { formatShape, mulberry32 } from "../tensor.ts";

let next = mulberry32(0x5eed);

/**
 * Seeds the generator that initialises new layers' parameters (PyTorch's `manual_seed`).
 *
 * @example
 * ```ts
 * import { manualSeed, Linear } from "jacobian-wasm";
 * manualSeed(0);
 * const layer = new Linear(3, 2); // the same weights on every run
 * ```
 */
export function manualSeed(seed: number): void {
  next = mulberry32(seed >>> 0);
}

/**
 * The most floats a network's parameters and buffers may hold: 2²⁸ (1 GiB of float32). A
 * layer constructor asking for more in one tensor, or a model spec (`modelFromSpec`,
 * `loadModel`) asking for more in all, is refused with a `MemoryError` naming the layer, the
 * tensor, its size and this limit, before any memory is allocated. (A network's parameters are
 * also copied into WebAssembly memory, 4 GiB at most, beside the batch's activations.)
 *
 * @example
 * ```ts
 * import { Linear, MAX_PARAMETERS, MemoryError } from "jacobian-wasm";
 * MAX_PARAMETERS; // 268435456
 * try {
 *   new Linear(4, 1e9); // 4·10⁹ weights: refused at once, nothing allocated
 *   throw new Error("not reached");
 * } catch (error) {
 *   if (!(error instanceof MemoryError)) throw error;
 * }
 * ```
 */
export const MAX_PARAMETERS = 2 ** 28;

/** The allocation budget of a network being built (from a spec), and whether to draw random values. */
interface Budget {
  /** Floats left to allocate within MAX_PARAMETERS. */
  remaining: number;
  /** The weights file the network is to be loaded from, and how many floats it holds and has left. */
  weights?: { name: string; floats: number; remaining: number };
  /** false when weights are going to be loaded: allocate zeros, draw nothing from the generator. */
  initialise: boolean;
}

let budget: Budget | null = null;

/**
 * How many floats a network loaded from a weights file may allocate beyond what the file holds:
 * 2²⁴ (64 MiB), so that a few missing or mis-shaped tensors are still built, and reported all
 * together and by name when the weights are loaded; a spec far larger than its file is refused
 * while it is built, naming the layer.
 */
const WEIGHTS_SLACK = 2 ** 24;

/**
 * Runs `build` (which constructs layers) with one budget of floats for all of its parameters and
 * buffers: at most `MAX_PARAMETERS`, and at most `weights.floats` when the weights are to be
 * loaded from a file (then nothing is randomly initialised: the generator is left as it was).
 *
 * @ignore
 */
export function withParameterBudget<T>(build: () => T, weights?: { name: string; floats: number }): T {
  const saved = budget;
  budget = weights === undefined
    ? { remaining: MAX_PARAMETERS, initialise: true }
    : { remaining: MAX_PARAMETERS, weights: { ...weights, remaining: weights.floats + WEIGHTS_SLACK }, initialise: false };
  try {
    return build();
  } finally {
    budget = saved;
  }
}

function floatsText(count: number): string {
  const bytes = count * 4;
  const size = bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(2)} MiB` : `${bytes} bytes`;
  return `${count} floats (${size})`;
}

/**
 * A zeroed Float32Array for a layer's tensor (`what`, e.g. `Linear: weight`, of `shape`), after
 * checking its size against the limits: MAX_PARAMETERS per tensor, and the budget of the
 * network being built. Returns whether random initialisation is wanted too.
 */
function allocate(what: string, shape: readonly number[]): { data: Float32Array; initialise: boolean } {
  const count = shape.reduce((a, b) => a * b, 1);
  const described = `${what} ${formatShape(shape)}`;
  const file = budget?.weights;
  if (file !== undefined && count > file.remaining) {
    // Checked first: a spec that does not match its weights file is the likelier mistake.
    const left = file.floats + WEIGHTS_SLACK - file.remaining;
    throw new FormatError(
      `${described} would hold ${floatsText(count)}, but ${file.name} holds ${file.floats} float${file.floats === 1 ? "" : "s"} in all` +
        (left > 0 ? ` and the layers before it take ${left}` : "") + ` (a model loaded from a file may have at most ${WEIGHTS_SLACK} floats more than the file holds)`,
    );
  }
  if (!Number.isSafeInteger(count) || count > MAX_PARAMETERS) {
    throw new MemoryError(
      `${described} would hold ${floatsText(count)}, over the limit of ${MAX_PARAMETERS} floats (1 GiB) a network's parameters may hold (MAX_PARAMETERS)`,
    );
  }
  if (budget !== null) {
    if (count > budget.remaining) {
      throw new MemoryError(
        `${described} would hold ${floatsText(count)}, and the layers before it ${MAX_PARAMETERS - budget.remaining}: over the limit of ` +
          `${MAX_PARAMETERS} floats (1 GiB) a network's parameters may hold (MAX_PARAMETERS)`,
      );
    }
    budget.remaining -= count;
    if (file !== undefined) file.remaining -= count;
  }
  return { data: new Float32Array(count), initialise: budget === null || budget.initialise };
}

/**
 * A layer's tensor `what` of `shape`, filled with `value` (γ = 1, β = 0, running statistics).
 * Sizes are checked first (see `MAX_PARAMETERS`).
 */
export function filledParameter(what: string, shape: readonly number[], value: number): Float32Array {
  const { data } = allocate(what, shape);
  if (value !== 0) data.fill(value);
  return data;
}

/**
 * U(-1/√fan_in, 1/√fan_in): what PyTorch's `kaiming_uniform_(a=√5)` gives Linear and ConvNd
 * weights, and what it gives their biases. Sizes are checked first (see `MAX_PARAMETERS`);
 * zeros, drawing nothing, when the network's weights are about to be loaded.
 */
export function uniformFanIn(what: string, shape: readonly number[], fanIn: number): Float32Array {
  const { data: out, initialise } = allocate(what, shape);
  if (!initialise) return out;
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  const count = out.length;
  for (let i = 0; i < count; i++) out[i] = (2 * next() - 1) * bound;
  return out;
}

/** N(0, 1) by Box–Muller: what PyTorch's `normal_()` gives Embedding weights. As `uniformFanIn`, sizes checked first. */
export function standardNormal(what: string, shape: readonly number[]): Float32Array {
  const { data: out, initialise } = allocate(what, shape);
  if (!initialise) return out;
  const count = out.length;
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - next())); // 1 - u ∈ (0, 1]: no log(0)
    const angle = 2 * Math.PI * next();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}
