/**
 * Probing (the seed's mechanism, docs/design.md §2): discovering, from a user's plain float64
 * forward function, the 0/1 pattern of a quasi-linear layer,
 *
 *     y_k = Σ_ij M_kij W_i x_j + Σ_i N_ki b_i,
 *
 * as index arrays sorted by weight: for weight i, the (output k, input j) pairs with
 * M_kij = 1; for bias i, the outputs k with N_ki = 1.
 *
 * The seed sets one weight to 1 and feeds the identity batch: P·I calls of the forward
 * function. Here the probes are batched by encoding indices in the probe values, which is
 * exact in float64 because every sum involved is a sum of small integers:
 *
 * 1. Which outputs each weight reaches. With every input 1, weights in groups of 52 set to
 *    1, 2, 4, …, 2^51: output k reads, in binary, the set of weights of the group that reach
 *    it. One more call with every weight 1 counts them all; the binary readings are right
 *    exactly where the bits found at an output number that count (a weight reaching k
 *    through two inputs carries into the next bit and loses one). Where they do not, the
 *    groups involved are checked against their own count, and a group that fails is probed
 *    one weight at a time. P/52 + 1 calls.
 * 2. Through which input. Weights that share no output are coloured alike (greedy colouring
 *    of the "share an output" graph: about as many colours as weights meeting at the busiest
 *    output, e.g. C_in·k for a convolution); one call per colour, that colour's weights set
 *    to 1 and input j to j + 1, reads j + 1 at each output. A weight that reaches an output
 *    through several inputs is resolved on its own by halving the inputs.
 * 3. Bias, as step 1 with zero input.
 * 4. Verification: with all parameters zero the output must be zero, and at random weights,
 *    biases and inputs the user's output must equal what the pattern predicts (this is
 *    where W², W·x·x', W·W'·x, coefficients like 2 and −1 that pass as a count of 1, or a
 *    bias that does more than add show). A failure is located by bisection on the weights
 *    (the shortest prefix of random weights whose output the pattern misses), then on the
 *    biases, so the message names the weight or bias.
 *
 * For a locally connected 1-d convolution with ~10⁴ weights that is ~220 calls instead of
 * the seed's ~4·10⁶ (bench/probing.ts).
 */
import { ShapeError, UnsupportedError } from "./errors.ts";
import { formatShape, mulberry32, numel } from "./tensor.ts";

/** The user's single-sample forward: parameters and input in float64, one sample's output. */
export type ProbeForward = (
  parameters: { weight: Float64Array; bias?: Float64Array },
  x: Float64Array,
  inputShape: readonly number[],
) => ArrayLike<number>;

/**
 * A probed pattern, in the layout the WASM kernels read (docs/kernels.md, `PROBE_PATTERN`):
 * one i32 block holding a 6-int header [P, Q, I, O, nnz, nnzBias], then `weightStarts`
 * (P + 1), `weightPairs` (2·nnz: k, j), `biasStarts` (Q + 1), `biasOutputs` (nnzBias).
 *
 * @example
 * ```ts
 * import { quasiLinear } from "jacobian-wasm";
 * import type { ProbedPattern } from "jacobian-wasm";
 * const shift = quasiLinear({
 *   name: "Shift", parameters: { weight: [1] }, outputShape: ([n]) => [n - 1],
 *   forward: ({ weight }, x) => Array.from({ length: x.length - 1 }, (_, k) => weight[0] * x[k + 1]),
 * });
 * const pattern: ProbedPattern = shift.pattern([4]);
 * pattern.weightPairs; // Int32Array [0, 1, 1, 2, 2, 3]: (output k, input j) pairs of weight 0
 * ```
 */
export interface ProbedPattern {
  /** The per-sample input shape the pattern was probed for. */
  readonly inputShape: readonly number[];
  /** The per-sample output shape at that input shape. */
  readonly outputShape: readonly number[];
  /** P, the number of weights. */
  readonly weights: number;
  /** Q, the number of biases (0 without a bias). */
  readonly biases: number;
  /** I, the number of inputs of one sample. */
  readonly inputs: number;
  /** O, the number of outputs of one sample. */
  readonly outputs: number;
  /** The whole block (header and arrays), copied into WASM memory by each plan. */
  readonly block: Int32Array;
  /** Views into `block`: weight i's pairs are weightPairs[2·weightStarts[i] .. 2·weightStarts[i+1]). */
  readonly weightStarts: Int32Array;
  /** The (output k, input j) pairs of every weight, weight after weight: y_k gets weight_i · x_j. */
  readonly weightPairs: Int32Array;
  /** Bias i's outputs are biasOutputs[biasStarts[i] .. biasStarts[i+1]). */
  readonly biasStarts: Int32Array;
  /** The outputs each bias is added to, bias after bias. */
  readonly biasOutputs: Int32Array;
  /** The calls of the user's forward function that probing took. */
  readonly calls: number;
  /** The number of colours (groups of weights probed together) that probing used. */
  readonly colors: number;
  /** How long probing took, in milliseconds. */
  readonly milliseconds: number;
}

const HEADER = 6;
/** Weights probed together in one binary-coded call: 2^0 … 2^51 sum exactly in float64. */
const GROUP = 52;
const HALF_BITS = 2 ** 26;

/** Probes a quasi-linear layer for one per-sample input shape; throws if it is not quasi-linear. */
export function probePattern(
  name: string,
  forward: ProbeForward,
  weights: number,
  biases: number,
  inputShape: readonly number[],
  outputShape: readonly number[],
): ProbedPattern {
  const start = performance.now();
  const prober = new Prober(name, forward, weights, biases, inputShape, outputShape);
  const pattern = prober.discover();
  return { ...pattern, calls: prober.calls, milliseconds: performance.now() - start };
}

type Discovered = Omit<ProbedPattern, "calls" | "milliseconds">;

class Prober {
  calls = 0;
  private readonly P: number;
  private readonly Q: number;
  private readonly I: number;
  private readonly O: number;
  private readonly W: Float64Array;
  private readonly b: Float64Array | undefined;
  private readonly x: Float64Array;
  /** Per weight, its (k, j) pairs as they are found. */
  private readonly found: number[][];
  /** Per bias, its outputs. */
  private readonly foundBias: number[][];
  /** Outputs of weight i (step 1), for weights reaching each output through one input. */
  private readonly reach: number[][];
  /** Weights reaching some output through several inputs: their counts per output (step 1). */
  private readonly multi = new Map<number, { k: number; count: number }[]>();
  /** A colour read at step 2 that decoded to no input: only a random check can name the weight. */
  private unexplained: { k: number; i: number; value: number } | undefined;
  private colors = 0;

  constructor(
    private readonly name: string,
    private readonly forward: ProbeForward,
    weights: number,
    biases: number,
    private readonly inputShape: readonly number[],
    private readonly outputShape: readonly number[],
  ) {
    this.P = weights;
    this.Q = biases;
    this.I = numel(inputShape);
    this.O = numel(outputShape);
    this.W = new Float64Array(this.P);
    this.b = this.Q > 0 ? new Float64Array(this.Q) : undefined;
    this.x = new Float64Array(this.I);
    this.found = Array.from({ length: this.P }, () => []);
    this.foundBias = Array.from({ length: this.Q }, () => []);
    this.reach = Array.from({ length: this.P }, () => []);
  }

  discover(): Discovered {
    this.checkZero();
    this.incidence("weight", this.reach, (i) => this.singleWeight(i));
    this.weightInputs();
    for (const [i, counts] of this.multi) this.resolveInputs(i, 0, this.I, counts);
    this.incidence("bias", this.foundBias, (i) => this.singleBias(i));
    const pattern = this.assemble();
    this.verify(pattern);
    return pattern;
  }

  // -------------------------------------------------------------------------------------
  // Calling the user's function

  /** Runs the user's forward on the current W, b, x; checks and copies the output. */
  private call(): Float64Array {
    this.calls++;
    const parameters = this.b ? { weight: this.W, bias: this.b } : { weight: this.W };
    const result = this.forward(parameters, this.x, this.inputShape);
    if (result instanceof Float32Array) {
      throw new TypeError(
        `${this.label}: forward returned a Float32Array; compute and return float64 (a Float64Array or an array of numbers): ` +
          `probing reads whole numbers up to 2^52 from the outputs`,
      );
    }
    if (!result || typeof result.length !== "number" || result.length !== this.O) {
      throw new ShapeError(
        `${this.label}: forward returned ${result && typeof result.length === "number" ? `${result.length} values` : String(result)}` +
          `, outputShape ${formatShape(this.outputShape)} for input ${formatShape(this.inputShape)} needs ${this.O}`,
      );
    }
    const y = Float64Array.from(result);
    for (let k = 0; k < y.length; k++) {
      if (!Number.isFinite(y[k])) {
        throw new UnsupportedError(`${this.label}: forward returned ${y[k]} at output ${k} for a probe with finite weights and inputs`);
      }
    }
    return y;
  }

  private set(W: (i: number) => number, b: (i: number) => number, x: (j: number) => number): void {
    for (let i = 0; i < this.P; i++) this.W[i] = W(i);
    if (this.b) for (let i = 0; i < this.Q; i++) this.b[i] = b(i);
    for (let j = 0; j < this.I; j++) this.x[j] = x(j);
  }

  private get label(): string {
    return `quasiLinear '${this.name}'`;
  }

  private refuse(k: number, what: "weight" | "bias", i: number, detail: string): never {
    throw new UnsupportedError(
      `${this.label}: output ${k} depends non-linearly on ${what} ${i} (${detail}); a quasi-linear layer computes ` +
        `y_k = Σ_ij M_kij W_i x_j + Σ_i N_ki b_i with every M_kij and N_ki 0 or 1`,
    );
  }

  // -------------------------------------------------------------------------------------
  // Step 0: nothing without a parameter

  private checkZero(): void {
    const random = signedUniforms(0x51ed);
    this.set(zero, zero, () => random());
    const y = this.call();
    const k = y.findIndex((v) => v !== 0);
    if (k >= 0) {
      throw new UnsupportedError(
        `${this.label}: output ${k} is ${y[k]} with every weight and bias 0; a quasi-linear layer's outputs are ` +
          `sums of weight × input and bias terms, with nothing else added`,
      );
    }
  }

  // -------------------------------------------------------------------------------------
  // Steps 1 and 3: which outputs each weight (every input 1) or bias (zero input) reaches

  /**
   * One call per group of 52 parameters set to 1, 2, …, 2^51 reads, per output, which of them
   * reach it, in binary; one call with every parameter 1 counts them. The binary readings
   * are right where the bits found at an output number the count (a parameter reaching it
   * with coefficient c > 1 carries into the next bit and loses bits). Where they do not, the
   * groups involved are checked on their own (a group's code against its own count), and a
   * group that fails is probed one parameter at a time (`single`).
   */
  private incidence(kind: "weight" | "bias", reach: number[][], single: (i: number) => { k: number; count: number }[]): void {
    const n = kind === "weight" ? this.P : this.Q;
    if (n === 0) return;
    const input = kind === "weight" ? one : zero;
    const probe = (value: (i: number) => number) => {
      if (kind === "weight") this.set(value, zero, input);
      else this.set(zero, value, input);
      return this.call();
    };
    const coded = (g0: number, g1: number) => (i: number) => (i >= g0 && i < g1 ? 2 ** (i - g0) : 0);
    const ones = (g0: number, g1: number) => (i: number) => (i >= g0 && i < g1 ? 1 : 0);
    const total = probe(one);
    const tally = new Float64Array(this.O);
    const singly = (g0: number, g1: number) => {
      for (let i = g0; i < g1; i++) for (const { k, count } of single(i)) tally[k] += count;
    };
    const exact = new Uint8Array(Math.ceil(n / GROUP));
    for (let g0 = 0; g0 < n; g0 += GROUP) {
      const g1 = Math.min(n, g0 + GROUP);
      const decoded = decodeGroup(probe(coded(g0, g1)), undefined, g1 - g0);
      if (!decoded) {
        singly(g0, g1);
        exact[g0 / GROUP] = 1;
        continue;
      }
      for (const [k, bits] of decoded) {
        for (const p of bits) reach[g0 + p].push(k);
        tally[k] += bits.length;
      }
    }
    const short = tally.map((t, k) => (t === total[k] ? 0 : 1));
    if (!short.includes(1)) return;
    const suspects = new Set<number>();
    for (let i = 0; i < n; i++) {
      if (!exact[Math.floor(i / GROUP)] && reach[i].some((k) => short[k])) suspects.add(Math.floor(i / GROUP));
    }
    for (const g of suspects) {
      const g0 = g * GROUP;
      const g1 = Math.min(n, g0 + GROUP);
      if (decodeGroup(probe(coded(g0, g1)), probe(ones(g0, g1)), g1 - g0)) continue;
      for (let i = g0; i < g1; i++) reach[i].length = 0;
      singly(g0, g1);
    }
  }

  /** Weight i alone, every input 1: its count of inputs per output (a whole number). */
  private singleWeight(i: number): { k: number; count: number }[] {
    this.set((l) => (l === i ? 1 : 0), zero, one);
    const y = this.call();
    const counts: { k: number; count: number }[] = [];
    for (let k = 0; k < this.O; k++) {
      const c = y[k];
      if (c === 0) continue;
      if (!Number.isInteger(c) || c < 0) {
        this.refuse(k, "weight", i, `with weight ${i} = 1, the other weights 0 and every input 1 the probe gave ${c}, where a count of 0/1 connections is a whole number`);
      }
      counts.push({ k, count: c });
    }
    if (counts.some((c) => c.count > 1)) this.multi.set(i, counts);
    else for (const { k } of counts) this.reach[i].push(k);
    return counts;
  }

  /** Bias i alone, zero input: 0 or 1 at every output. */
  private singleBias(i: number): { k: number; count: number }[] {
    this.set(zero, (l) => (l === i ? 1 : 0), zero);
    const y = this.call();
    const counts: { k: number; count: number }[] = [];
    for (let k = 0; k < this.O; k++) {
      if (y[k] === 0) continue;
      if (y[k] !== 1) this.refuse(k, "bias", i, `with bias ${i} = 1 and zero input the probe gave ${y[k]} where 0 or 1 is allowed`);
      this.foundBias[i].push(k);
      counts.push({ k, count: 1 });
    }
    return counts;
  }

  // -------------------------------------------------------------------------------------
  // Step 2: through which input (one call per colour)

  private weightInputs(): void {
    const colorOf = new Int32Array(this.P).fill(-1);
    const colorsAt: number[][] = Array.from({ length: this.O }, () => []);
    const classes: number[][] = [];
    let mark = new Int32Array(16);
    for (let i = 0; i < this.P; i++) {
      const outputs = this.reach[i];
      if (outputs.length === 0) continue;
      const stamp = i + 1;
      for (const k of outputs) for (const c of colorsAt[k]) mark[c] = stamp;
      let c = 0;
      while (c < classes.length && mark[c] === stamp) c++;
      if (c === classes.length) {
        classes.push([]);
        if (mark.length < classes.length) {
          const grown = new Int32Array(mark.length * 2);
          grown.set(mark);
          mark = grown;
        }
      }
      colorOf[i] = c;
      classes[c].push(i);
      for (const k of outputs) colorsAt[k].push(c);
    }
    this.colors = classes.length;
    for (const members of classes) {
      const member = new Uint8Array(this.P);
      for (const i of members) member[i] = 1;
      this.set((i) => member[i], zero, (j) => j + 1);
      const y = this.call();
      for (const i of members) {
        for (const k of this.reach[i]) {
          const j = y[k] - 1;
          if (Number.isInteger(j) && j >= 0 && j < this.I) this.found[i].push(k, j);
          else this.unexplained ??= { k, i, value: y[k] };
        }
      }
    }
  }

  /**
   * Weight i reaches some outputs through several inputs: halve the inputs until every
   * output's count in a half is at most 1, then read the input as in step 2.
   */
  private resolveInputs(i: number, lo: number, hi: number, counts: { k: number; count: number }[]): void {
    if (counts.length === 0) return;
    const alone = (l: number) => (l === i ? 1 : 0);
    if (counts.every((c) => c.count === 1)) {
      this.set(alone, zero, (j) => (j >= lo && j < hi ? j + 1 : 0));
      const y = this.call();
      for (const { k } of counts) {
        const j = y[k] - 1;
        if (!(Number.isInteger(j) && j >= lo && j < hi)) {
          this.refuse(k, "weight", i, `with weight ${i} = 1 and input j set to j + 1 for j in [${lo}, ${hi}), the probe gave ${y[k]}, which names no input`);
        }
        this.found[i].push(k, j);
      }
      return;
    }
    if (hi - lo === 1) {
      const worst = counts.find((c) => c.count !== 1)!;
      this.refuse(worst.k, "weight", i, `through input ${lo}, probe gave ${worst.count} where 0 or 1 is allowed`);
    }
    const mid = (lo + hi) >>> 1;
    this.set(alone, zero, (j) => (j >= lo && j < mid ? 1 : 0));
    const y = this.call();
    const left: { k: number; count: number }[] = [];
    const right: { k: number; count: number }[] = [];
    for (const { k, count } of counts) {
      const c = y[k];
      if (!Number.isInteger(c) || c < 0 || c > count) {
        this.refuse(k, "weight", i, `with weight ${i} = 1 and inputs [${lo}, ${mid}) set to 1 the probe gave ${c}, where a count between 0 and ${count} is expected`);
      }
      if (c > 0) left.push({ k, count: c });
      if (count - c > 0) right.push({ k, count: count - c });
    }
    this.resolveInputs(i, lo, mid, left);
    this.resolveInputs(i, mid, hi, right);
  }

  // -------------------------------------------------------------------------------------
  // The kernels' layout

  private assemble(): Discovered {
    const { P, Q, I, O } = this;
    let nnz = 0;
    for (const pairs of this.found) nnz += pairs.length / 2;
    let nnzBias = 0;
    for (const outputs of this.foundBias) nnzBias += outputs.length;
    const block = new Int32Array(HEADER + (P + 1) + 2 * nnz + (Q + 1) + nnzBias);
    block.set([P, Q, I, O, nnz, nnzBias]);
    let at = HEADER;
    const weightStarts = block.subarray(at, (at += P + 1));
    const weightPairs = block.subarray(at, (at += 2 * nnz));
    const biasStarts = block.subarray(at, (at += Q + 1));
    const biasOutputs = block.subarray(at, (at += nnzBias));
    let t = 0;
    for (let i = 0; i < P; i++) {
      weightStarts[i] = t;
      // Within a weight, by output then input: the kernels then sweep each row forward.
      const pairs = this.found[i];
      const order = Array.from({ length: pairs.length / 2 }, (_, e) => e)
        .sort((a, b) => pairs[2 * a] - pairs[2 * b] || pairs[2 * a + 1] - pairs[2 * b + 1]);
      for (const e of order) {
        weightPairs[2 * t] = pairs[2 * e];
        weightPairs[2 * t + 1] = pairs[2 * e + 1];
        t++;
      }
    }
    weightStarts[P] = t;
    t = 0;
    for (let i = 0; i < Q; i++) {
      biasStarts[i] = t;
      for (const k of [...this.foundBias[i]].sort((a, b) => a - b)) biasOutputs[t++] = k;
    }
    biasStarts[Q] = t;
    return {
      inputShape: [...this.inputShape],
      outputShape: [...this.outputShape],
      weights: P,
      biases: Q,
      inputs: I,
      outputs: O,
      block,
      weightStarts,
      weightPairs,
      biasStarts,
      biasOutputs,
      colors: this.colors,
    };
  }

  // -------------------------------------------------------------------------------------
  // Step 4: the pattern must explain the layer at random points

  private verify(pattern: Discovered): void {
    for (let round = 0; round < 2; round++) {
      const random = signedUniforms(0xc0ffee + round);
      const Wr = Float64Array.from({ length: this.P }, () => random());
      const br = Float64Array.from({ length: this.Q }, () => random());
      const xr = Float64Array.from({ length: this.I }, () => random());
      // The first output where the user's function and the pattern disagree, with the
      // first m weights and q biases random and the rest 0 (undefined when they agree).
      const mismatch = (m: number, q: number): { k: number; actual: number; predicted: number } | undefined => {
        this.set((i) => (i < m ? Wr[i] : 0), (i) => (i < q ? br[i] : 0), (j) => xr[j]);
        const actual = this.call();
        const { value, scale } = predict(pattern, Wr, m, br, q, xr);
        for (let k = 0; k < this.O; k++) {
          if (!(Math.abs(actual[k] - value[k]) <= 1e-9 * scale[k] + 1e-12)) return { k, actual: actual[k], predicted: value[k] };
        }
        return undefined;
      };
      const full = mismatch(this.P, this.Q);
      if (!full) continue;
      const weightsOnly = mismatch(this.P, 0);
      if (weightsOnly) {
        const m = this.bisect(this.P, (m) => mismatch(m, 0) !== undefined);
        this.explain("weight", m - 1, mismatch(m, 0) ?? weightsOnly);
      }
      if (this.Q > 0) {
        const q = this.bisect(this.Q, (q) => mismatch(this.P, q) !== undefined);
        this.explain("bias", q - 1, mismatch(this.P, q) ?? full);
      }
      throw new UnsupportedError(`${this.label}: forward gave different outputs for the same weights and input; it must be a deterministic function`);
    }
    if (this.unexplained) {
      const { k, i, value } = this.unexplained;
      this.refuse(k, "weight", i, `with weight ${i} and others that reach other outputs set to 1, and input j set to j + 1, the probe gave ${value}, which names no input`);
    }
  }

  /** Smallest n in [1, hi] with fails(n), given fails(hi) and not fails(0). */
  private bisect(hi: number, fails: (n: number) => boolean): number {
    let lo = 0;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (fails(mid)) hi = mid;
      else lo = mid;
    }
    return hi;
  }

  /** Refuses the layer for parameter i, saying what a single-parameter probe shows if it can. */
  private explain(what: "weight" | "bias", i: number, at: { k: number; actual: number; predicted: number }): never {
    const alone = (scale: number) => (l: number) => (l === i ? scale : 0);
    const probes: [string, (j: number) => number][] = what === "weight"
      ? [["every input 1", () => 1], ["random inputs", signedUniforms(0xfeed)]]
      : [["zero input", zero]];
    for (const [inputs, input] of probes) {
      const x = Float64Array.from({ length: this.I }, (_, j) => input(j));
      const run = (scale: number) => {
        if (what === "weight") this.set(alone(scale), zero, (j) => x[j]);
        else this.set(zero, alone(scale), (j) => x[j]);
        return this.call();
      };
      const once = run(1);
      const twice = run(2);
      for (let k = 0; k < this.O; k++) {
        if (!(Math.abs(twice[k] - 2 * once[k]) <= 1e-9 * Math.abs(once[k]) + 1e-12)) {
          this.refuse(k, what, i, `with ${inputs}, ${what} ${i} = 1 gives ${round(once[k])} and ${what} ${i} = 2 gives ${round(twice[k])}, not ${round(2 * once[k])}`);
        }
      }
    }
    const setting = what === "weight"
      ? `weights 0 to ${i} random, the others and the biases 0`
      : `random weights, biases 0 to ${i} random and the others 0`;
    this.refuse(at.k, what, i, `with ${setting} and random inputs the layer gives ${round(at.actual)} where its probed 0/1 pattern predicts ${round(at.predicted)}`);
  }
}

const zero = () => 0;
const one = () => 1;

function round(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(6);
}

/** Uniform magnitudes in [0.5, 1.5) with random signs: no product of probe values is near 0. */
function signedUniforms(seed: number): () => number {
  const next = mulberry32(seed);
  return () => (next() < 0.5 ? -1 : 1) * (0.5 + next());
}

/**
 * Reads a binary-coded group probe: per output k, the parameters p of the group (bit p of
 * code[k]) that reach it. Undefined when a reading is not a whole number below 2^width or,
 * given the group's counts, its bits do not number count[k] (a carry).
 */
function decodeGroup(code: Float64Array, count: Float64Array | undefined, width: number): Map<number, number[]> | undefined {
  const out = new Map<number, number[]>();
  const limit = 2 ** width;
  for (let k = 0; k < code.length; k++) {
    const c = code[k];
    if (c === 0 && (count === undefined || count[k] === 0)) continue;
    if (!Number.isInteger(c) || c < 0 || c >= limit) return undefined;
    const bits: number[] = [];
    const low = c % HALF_BITS;
    const high = (c - low) / HALF_BITS;
    for (const [half, offset] of [[low, 0], [high, 26]] as const) {
      let v = half;
      while (v !== 0) {
        const lowest = v & -v;
        bits.push(31 - Math.clz32(lowest) + offset);
        v ^= lowest;
      }
    }
    if (count !== undefined && bits.length !== count[k]) return undefined;
    out.set(k, bits);
  }
  return out;
}

/**
 * What the pattern gives with the first m weights and q biases set (the rest 0): the value
 * per output and the sum of the magnitudes of its terms (the scale of rounding differences).
 */
function predict(
  pattern: Discovered,
  W: Float64Array,
  m: number,
  b: Float64Array,
  q: number,
  x: Float64Array,
): { value: Float64Array; scale: Float64Array } {
  const value = new Float64Array(pattern.outputs);
  const scale = new Float64Array(pattern.outputs);
  const { weightStarts, weightPairs, biasStarts, biasOutputs } = pattern;
  for (let i = 0; i < m; i++) {
    for (let t = weightStarts[i]; t < weightStarts[i + 1]; t++) {
      const k = weightPairs[2 * t];
      const term = W[i] * x[weightPairs[2 * t + 1]];
      value[k] += term;
      scale[k] += Math.abs(term);
    }
  }
  for (let i = 0; i < q; i++) {
    for (let t = biasStarts[i]; t < biasStarts[i + 1]; t++) {
      value[biasOutputs[t]] += b[i];
      scale[biasOutputs[t]] += Math.abs(b[i]);
    }
  }
  return { value, scale };
}
