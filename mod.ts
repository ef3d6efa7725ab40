export { tensor, randn, zeros, numel } from "./src/tensor.ts";
export type { Tensor } from "./src/tensor.ts";
export { initialize, simdBuild, wasmBytes } from "./src/wasm.ts";
