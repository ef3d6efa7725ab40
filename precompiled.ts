/**
 * jacobian-wasm for hosts that forbid compiling WebAssembly from bytes (workerd, Cloudflare
 * Workers, some Content-Security-Policies): the same API as the main entry, but the kernels
 * are never compiled or validated from the embedded bytes. Hand in the precompiled module
 * before the first computation; the package ships both builds as `.wasm` files for the host's
 * bundler to precompile (`jacobian-wasm/kernels.baseline.wasm`, `jacobian-wasm/kernels.relaxed.wasm`).
 * A computation before that is an error that says what to do, never a hang.
 *
 * @example
 * ```ts
 * import { initialize, wasmBytes } from "jacobian-wasm/precompiled";
 * // In a worker: `import kernels from "jacobian-wasm/kernels.baseline.wasm"` gives the module.
 * const kernels = await WebAssembly.compile(wasmBytes("baseline"));
 * await initialize(kernels, "baseline");
 * ```
 * @module
 */
import { requirePrecompiled } from "./src/wasm.ts";

export * from "./mod.ts";

requirePrecompiled();
