/**
 * The randomness of DP-SGD: uniform and Gaussian sources, cryptographically secure by default
 * (`crypto.getRandomValues`, on every runtime the library runs on), seeded for tests; and
 * Opacus's Poisson sampling of a batch.
 */
import { ValueError } from "../errors.ts";
import { mulberry32 } from "../tensor.ts";

/**
 * A source of uniform numbers in [0, 1).
 *
 * @example
 * ```ts
 * import { poissonSample } from "jacobian-wasm";
 * import type { Uniform } from "jacobian-wasm";
 * const everyOther: Uniform = (() => { let i = 0; return () => (i++ % 2) * 0.99; })();
 * poissonSample(6, 0.5, everyOther); // Int32Array [0, 2, 4]
 * ```
 */
export type Uniform = () => number;

/** Words fetched from the secure source at a time: `getRandomValues` accepts up to 65536 bytes a call. */
const SECURE_WORDS = 4096;

/**
 * Uniforms in [0, 1) from `crypto.getRandomValues`, 53 random bits each (every double in
 * [0, 1) on the 2⁻⁵³ grid equally likely).
 *
 * @example
 * ```ts
 * import { secureUniform } from "jacobian-wasm";
 * const uniform = secureUniform();
 * const u = uniform(); // in [0, 1), unpredictable
 * ```
 */
export function secureUniform(): Uniform {
  const words = new Uint32Array(SECURE_WORDS);
  let next = SECURE_WORDS;
  return () => {
    if (next + 2 > SECURE_WORDS) {
      crypto.getRandomValues(words);
      next = 0;
    }
    const high = words[next++] >>> 5; // 27 bits
    const low = words[next++] >>> 6; // 26 bits
    return (high * 67108864 + low) / 9007199254740992;
  };
}

/**
 * Reproducible uniforms in [0, 1) from a 32-bit seed (53 bits each, from two draws of
 * mulberry32). For tests and experiments only: anyone who knows or guesses the seed knows
 * the noise, so a result made with it is not private.
 *
 * @example
 * ```ts
 * import { poissonSample, seededUniform } from "jacobian-wasm";
 * const a = poissonSample(100, 0.1, seededUniform(7));
 * const b = poissonSample(100, 0.1, seededUniform(7)); // the same indices as a
 * ```
 */
export function seededUniform(seed: number): Uniform {
  if (!Number.isInteger(seed)) throw new ValueError(`seed must be an integer, got ${seed}`);
  const next = mulberry32(seed >>> 0);
  return () => {
    const high = Math.floor(next() * 134217728); // 27 bits
    const low = Math.floor(next() * 67108864); // 26 bits
    return (high * 67108864 + low) / 9007199254740992;
  };
}

/**
 * Fills `out` with independent normal samples of mean 0 and standard deviation `std`, by
 * Box-Muller: each pair of uniforms gives two normals; 1 − u keeps the logarithm finite.
 */
export function fillGaussian(out: Float64Array, std: number, uniform: Uniform): Float64Array {
  for (let i = 0; i < out.length; i += 2) {
    const radius = std * Math.sqrt(-2 * Math.log(1 - uniform()));
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < out.length) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

/**
 * Poisson sampling of a batch, as Opacus's `UniformWithReplacementSampler` draws it: each of
 * the `n` examples is in the batch independently with probability `rate`, so the batch size
 * varies (it can be empty) and the sampled Gaussian mechanism's privacy analysis applies.
 * Returns the chosen indices in increasing order. `rng` (uniforms in [0, 1)) defaults to the secure source.
 *
 * @example
 * ```ts
 * import { poissonSample } from "jacobian-wasm";
 * const batch = poissonSample(60000, 256 / 60000); // about 256 indices into the data set
 * ```
 */
export function poissonSample(n: number, rate: number, rng: Uniform = secureUniform()): Int32Array {
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 31 - 1) throw new ValueError(`poissonSample: n must be an integer in [0, 2^31), got ${n}`);
  if (typeof rate !== "number" || !(rate >= 0 && rate <= 1)) throw new ValueError(`poissonSample: rate must be in [0, 1], got ${rate}`);
  const chosen: number[] = [];
  for (let i = 0; i < n; i++) if (rng() < rate) chosen.push(i);
  return Int32Array.from(chosen);
}
