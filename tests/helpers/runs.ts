/**
 * How many cases each property test tries. The counts in the test files are what `npm test`
 * runs; `JACOBIAN_WASM_PROPERTY_RUNS=3000` runs every property that many times instead (a
 * sweep for bounds that only a rare case exceeds), and `JACOBIAN_WASM_PROPERTY_SEED=…`
 * replays a run whose fast-check seed a failure printed.
 */
import fc from "fast-check";

/** An environment variable on node, deno and bun (undefined where deno was not given --allow-env). */
export function environment(name: string): string | undefined {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  try {
    return g.process?.env?.[name] ?? g.Deno?.env?.get?.(name);
  } catch {
    return undefined; // Deno without --allow-env
  }
}

function integer(name: string, min: number): number | undefined {
  const text = environment(name);
  if (text === undefined || text === "") return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${name} must be an integer of at least ${min}, got "${text}"`);
  return value;
}

const forcedRuns = integer("JACOBIAN_WASM_PROPERTY_RUNS", 1);
// fast-check's seeds are 32-bit integers, negative ones included.
const forcedSeed = integer("JACOBIAN_WASM_PROPERTY_SEED", -(2 ** 31));
// Properties that give no count of their own (fast-check's default of 100) take the forced one too.
fc.configureGlobal({
  ...fc.readConfigureGlobal(),
  ...(forcedRuns !== undefined ? { numRuns: forcedRuns } : {}),
  ...(forcedSeed !== undefined ? { seed: forcedSeed } : {}),
});

/** The number of runs for a property: `count`, unless JACOBIAN_WASM_PROPERTY_RUNS says otherwise. */
export function runs(count: number): number {
  return forcedRuns ?? count;
}
