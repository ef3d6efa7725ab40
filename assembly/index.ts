// The kernels' entry point: everything exported here becomes a WASM export.
// Kernels are pure functions over byte offsets into the one linear memory; the
// TypeScript side (src/) owns the layout of that memory.
export * from "./memory";
export * from "./gemm";
export * from "./im2col";
export * from "./jacobian";
export * from "./conv";
export * from "./conv_pooled";
export * from "./nn";
export * from "./blocks";
export * from "./conv_transpose";
export * from "./norm";
export * from "./probe";
export * from "./quantities";
export * from "./threads/scratch";
