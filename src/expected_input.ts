/**
 * Which per-sample input shape a network accepts, derived from the layers' own `outputShape`
 * methods only (no layer knows about it): when a batch does not fit, the error names the
 * given shape, the shape the network takes (where a bounded search finds one) and the first
 * layer that disagrees, with that layer's own message.
 *
 * The search keeps the rank of the given shape. It varies the leading dim (channels, or
 * features for rank 1) first, keeping the value whose shape passes the most layers, then the
 * remaining (spatial) dims, scaled together (keeping their ratios) and each alone, and reports
 * the accepted shape nearest the given one. It runs only on the error path and is bounded by a
 * fixed number of `outputShape` calls, so its answer does not depend on the machine's speed.
 */
import { ShapeError } from "./errors.ts";
import type { Module } from "./layers/module.ts";
import { formatShape } from "./tensor.ts";

/** Leading dims tried: 1..LEADING_MAX, the given value, and a few larger round sizes. */
const LEADING_MAX = 4096;
/** Sizes tried for the spatial dims, scaled together or alone: 1..SPATIAL_MAX and the given ones. */
const SPATIAL_MAX = 1024;
/** Larger round sizes also tried for the leading dim (2^k, 3·2^k, 5·2^k, 7·2^k up to this). */
const ROUND_MAX = 1 << 16;
/** Layer `outputShape` calls the whole search may make (a 30-layer network: well under 0.2 s). */
const CALL_BUDGET = 400_000;
/**
 * Spatial sizes (of the largest spatial dim, the others scaled with it) tried for the leading
 * dim when no leading dim lets the given shape past the first layer (both wrong at once).
 */
const FALLBACK_SIZES = [32, 64, 128, 224, 256];
/** Leading dims tried with those sizes: 1..FALLBACK_LEADING_MAX and the round ones (most throws are here). */
const FALLBACK_LEADING_MAX = 256;

/** One layer of the walk: a module not itself a Sequential, with its dotted path. */
interface Unit {
  readonly module: Module;
  readonly path: string;
}

/** A family of candidates: shapes indexed by ascending values of one parameter (a size). */
interface Family {
  readonly values: readonly number[];
  /** The given value of the parameter (where the given shape sits in the family), or undefined. */
  readonly given: number | undefined;
  shape(value: number): number[];
}

/** An accepted shape, how far it is from the given one, for ranking. */
interface Found {
  readonly shape: number[];
  readonly distance: number;
}

/**
 * A ShapeError for a batch whose per-sample shape `sampleShape` the network rejects with
 * `error` (from `net.outputShape(sampleShape)`): it names the given input (with N when `N` is
 * known), the per-sample input shape the network takes when the search finds one, and the
 * first layer to disagree, with its own message.
 */
export function explainInputMismatch(net: Module, sampleShape: readonly number[], error: ShapeError, N?: number): ShapeError {
  const given = N === undefined ? batchShape(sampleShape) : formatShape([N, ...sampleShape]);
  let expected: number[] | undefined;
  try {
    expected = expectedInputShape(net, sampleShape);
  } catch {
    expected = undefined; // the search never decides the error: without it, say nothing invented
  }
  const takes = expected === undefined ? "" : `, which takes ${batchShape(expected)}`;
  return new ShapeError(`input ${given} does not fit the network${takes}: the first layer to disagree is ${error.message}`, {
    cause: error,
  });
}

/**
 * A per-sample input shape of the same rank as `sampleShape` that the network accepts (its
 * `outputShape` does not throw), the nearest to `sampleShape` the bounded search finds, or
 * undefined. Any error a layer's `outputShape` throws during the search counts as a rejection.
 */
export function expectedInputShape(net: Module, sampleShape: readonly number[]): number[] | undefined {
  // The layers reject most candidates by throwing; without stack traces a throw costs a tenth.
  const errorClass = Error as { stackTraceLimit?: number };
  const limit = errorClass.stackTraceLimit;
  try {
    if (typeof limit === "number") errorClass.stackTraceLimit = 0;
    return search(net, sampleShape);
  } finally {
    if (typeof limit === "number") errorClass.stackTraceLimit = limit;
  }
}

function search(net: Module, sampleShape: readonly number[]): number[] | undefined {
  const given = [...sampleShape];
  if (given.length === 0 || given.some((d) => !Number.isInteger(d) || d < 0)) return undefined;
  const walk = new Search(net, given);
  const found: Found[] = [];

  // 1. The leading dim, the rest as given; if nothing gets past the first layer, with the rest
  //    at a few common sizes too (a wrong channel count and a wrong size at once).
  const rest = given.slice(1);
  const bases = [rest, ...(rest.length === 0 ? [] : FALLBACK_SIZES.map((size) => scaled(rest, size)))];
  let leading = given[0];
  let leadingProgress = -1;
  for (const [b, base] of bases.entries()) {
    const values = leadingValues(given[0], b === 0 ? LEADING_MAX : FALLBACK_LEADING_MAX);
    const family: Family = { values, given: given[0], shape: (v) => [v, ...base] };
    const best = walk.explore(family, found);
    if (best.progress > leadingProgress) {
      leading = best.value;
      leadingProgress = best.progress;
    }
    if (leadingProgress > 0 || walk.exhausted) break;
  }

  // 2. The remaining dims with that leading dim: all scaled together, then each alone.
  if (rest.length > 0 && !walk.exhausted) {
    const ref = rest.reduce((a, b) => Math.max(a, b), 0);
    const sizes = spatialValues(ref);
    if (ref > 0) walk.explore({ values: sizes, given: ref, shape: (m) => [leading, ...scaled(rest, m)] }, found);
    for (let i = 0; i < rest.length && !walk.exhausted; i++) {
      if (rest.length === 1) break; // the same as scaling them together
      walk.explore({
        values: spatialValues(rest[i]),
        given: rest[i],
        shape: (v) => [leading, ...rest.map((d, j) => (j === i ? v : d))],
      }, found);
    }
  }

  found.sort((a, b) =>
    a.distance - b.distance || size(a.shape) - size(b.shape) || compareShapes(a.shape, b.shape)
  );
  for (const { shape } of found) if (accepts(net, shape)) return shape; // the network's own word
  return undefined;
}

/** Walks the network's layers over candidate shapes, counting layer calls against the budget. */
class Search {
  private readonly units: Unit[];
  private readonly progress = new Map<string, number>();
  private calls = 0;

  constructor(net: Module, readonly given: readonly number[]) {
    this.units = flatten(net, "");
  }

  get exhausted(): boolean {
    return this.calls >= CALL_BUDGET;
  }

  /** How many layers (Sequentials flattened) the shape passes before one rejects it. */
  passes(shape: readonly number[]): number {
    const key = shape.join("x");
    const known = this.progress.get(key);
    if (known !== undefined) return known;
    let current: readonly number[] = shape;
    let passed = 0;
    for (const { module, path } of this.units) {
      this.calls++;
      let next: unknown;
      try {
        next = module.outputShape(current, path);
      } catch {
        break; // any error counts as a rejection (a user layer may throw RangeError or worse)
      }
      if (!isShape(next)) break;
      current = next;
      passed++;
    }
    this.progress.set(key, passed);
    return passed;
  }

  /**
   * Tries the family's shapes in order and adds each run of consecutive accepted values to
   * `found`, as the run's given value if inside it, else its smallest (pooling's floor accepts
   * 16 and 17 alike: 16 is the size meant); ranked by the distance of the run's nearest member.
   * Returns the value that passes the most layers (ties: nearest the given value, then smaller).
   */
  explore(family: Family, found: Found[]): { value: number; progress: number } {
    let best = { value: family.given ?? family.values[0], progress: -1, distance: Infinity };
    let run: number[] = [];
    const closeRun = () => {
      if (run.length === 0) return;
      const inside = family.given !== undefined && run.includes(family.given);
      const representative = inside ? family.given! : run[0];
      const distance = Math.min(...run.map((v) => squaredDistance(family.shape(v), this.given)));
      found.push({ shape: family.shape(representative), distance });
      run = [];
    };
    let previous = -Infinity;
    for (const value of family.values) {
      if (this.exhausted) break;
      const shape = family.shape(value);
      if (shape.some((d) => d < 1)) continue;
      const passed = this.passes(shape);
      const distance = Math.abs(value - (family.given ?? value));
      if (passed > best.progress || (passed === best.progress && distance < best.distance)) {
        best = { value, progress: passed, distance };
      }
      if (value !== previous + 1) closeRun();
      if (passed === this.units.length) run.push(value);
      else closeRun();
      previous = value;
    }
    closeRun();
    return { value: best.value, progress: best.progress };
  }
}

/** The network as a list of layers: Sequentials (at any depth) opened, other modules whole. */
function flatten(module: Module, path: string): Unit[] {
  if (module.typeName !== "Sequential") return [{ module, path }];
  return module.children().flatMap(([name, child]) => flatten(child, path === "" ? name : `${path}.${name}`));
}

function accepts(net: Module, shape: readonly number[]): boolean {
  try {
    return isShape(net.outputShape(shape));
  } catch {
    return false;
  }
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isInteger(d) && d >= 0);
}

/** The leading dims tried (1..max, the round sizes, the given one), ascending and distinct. */
function leadingValues(given: number, max: number): number[] {
  const values = new Set<number>();
  for (let v = 1; v <= max; v++) values.add(v);
  for (const base of [1, 3, 5, 7]) for (let v = base; v <= ROUND_MAX; v *= 2) values.add(v);
  if (given >= 1) values.add(given);
  return [...values].sort((a, b) => a - b);
}

/** The sizes tried for a spatial dim whose given size is `given`, ascending and distinct. */
function spatialValues(given: number): number[] {
  const values = new Set<number>();
  for (let v = 1; v <= SPATIAL_MAX; v++) values.add(v);
  if (given >= 1) values.add(given);
  return [...values].sort((a, b) => a - b);
}

/** The dims scaled so that the largest becomes `size`, keeping their ratios (at least 1 each). */
function scaled(dims: readonly number[], size: number): number[] {
  const ref = dims.reduce((a, b) => Math.max(a, b), 0);
  if (ref === 0) return dims.map(() => size);
  return dims.map((d) => Math.max(1, Math.round((d * size) / ref)));
}

/** Squared Euclidean distance: a change spread over the dims counts less than all of it in one. */
function squaredDistance(a: readonly number[], b: readonly number[]): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return sum;
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function compareShapes(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** `(N, 3, 16, 16)`: a per-sample shape with the batch dim named N. */
function batchShape(sampleShape: readonly number[]): string {
  return `(${["N", ...sampleShape].join(", ")})`;
}
