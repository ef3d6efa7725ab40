/**
 * jacobian-wasm: per-sample gradients and Jacobians of a network's outputs or losses with
 * respect to its parameters, for a whole batch, in one forward and one backward pass.
 *
 * @example
 * ```ts
 * import { Sequential, Linear, ReLU, perSampleGradients, randn, tensor } from "jacobian-wasm";
 * const net = new Sequential(new Linear(784, 256), new ReLU(), new Linear(256, 10));
 * const x = randn([32, 784], 0);
 * const y = tensor(new Float32Array(32).map((_, i) => i % 10), [32]);
 * const G = perSampleGradients(net, x, y, { loss: "cross_entropy", reduction: "sum" }); // [32, D]
 * ```
 * @module
 */
export type { Tensor } from "./src/tensor.ts";
export { numel, randn, tensor, zeros } from "./src/tensor.ts";
export { initialize, isInitialized, memoryLimit, setMemoryLimit, setThreads, simdBuild, threads, wasmBytes } from "./src/wasm.ts";
export type { SimdBuild } from "./src/wasm.ts";
export { FileError, FormatError, MemoryError, ShapeError, UnsupportedError, ValueError } from "./src/errors.ts";

export { Module } from "./src/layers/module.ts";
export type { Named } from "./src/layers/module.ts";
export { MAX_PARAMETERS, manualSeed } from "./src/layers/init.ts";
export { Sequential } from "./src/layers/sequential.ts";
export { Parallel, Residual } from "./src/layers/blocks.ts";
export type { ParallelOptions } from "./src/layers/blocks.ts";
export { Linear } from "./src/layers/linear.ts";
export type { LinearOptions } from "./src/layers/linear.ts";
export { Conv1d, Conv2d, Conv3d, ConvNd } from "./src/layers/conv.ts";
export type { ConvOptions, Size } from "./src/layers/conv.ts";
export { ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, ConvTransposeNd } from "./src/layers/conv_transpose.ts";
export type { ConvTransposeOptions } from "./src/layers/conv_transpose.ts";
export { ELU, Elementwise, GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh } from "./src/layers/activation.ts";
export type { GELUApproximation } from "./src/layers/activation.ts";
export { Dropout, Flatten, Identity } from "./src/layers/reshape.ts";
export type { FlattenOptions } from "./src/layers/reshape.ts";
export { AvgPool1d, AvgPool2d, AvgPool3d, AvgPoolNd, MaxPool1d, MaxPool2d, MaxPool3d, MaxPoolNd, PoolNd } from "./src/layers/pooling.ts";
export type { AvgPoolOptions, MaxPoolOptions } from "./src/layers/pooling.ts";
export { BatchNorm1d, BatchNorm2d, BatchNorm3d, BatchNormNd, ChannelNorm, GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, InstanceNormNd, LayerNorm } from "./src/layers/norm.ts";
export type { BatchNormOptions, GroupNormOptions, InstanceNormOptions, LayerNormOptions } from "./src/layers/norm.ts";
export { Embedding } from "./src/layers/embedding.ts";
export type { EmbeddingOptions } from "./src/layers/embedding.ts";
export { AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveAvgPoolNd, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d, AdaptiveMaxPoolNd, AdaptivePoolNd } from "./src/layers/adaptive_pooling.ts";
export type { AdaptiveMaxPoolOptions, AdaptiveSize } from "./src/layers/adaptive_pooling.ts";
export { Unflatten } from "./src/layers/unflatten.ts";

export { QuasiLinear, quasiLinear } from "./src/layers/quasi_linear.ts";
export type { ForwardParameters, ParameterValues, QuasiLinearDefinition, QuasiLinearParameters } from "./src/layers/quasi_linear.ts";
export type { ProbedPattern } from "./src/probing.ts";

export { batchGradient, jacobian, jacobianNaive, perSampleGradients, perSampleGradientsNaive } from "./src/jacobian.ts";
export type { LossOptions, ResultOptions, StreamOptions } from "./src/jacobian.ts";
export { MAX_RESULT_BYTES } from "./src/results.ts";
export { batchL2, clippedGradientSum, ntk, perSampleNorms, sumGradSquared, variance } from "./src/quantities.ts";
export type { ClipOptions, ClippedSum, GhostNorms, QuantityOptions } from "./src/quantities.ts";
export type { LossName, Reduction, Target } from "./src/losses.ts";

export { Adam, SGD } from "./src/optim.ts";
export type { AdamOptions, SGDOptions } from "./src/optim.ts";
export { privateGradient } from "./src/privacy/private_gradient.ts";
export type { PrivateGradientOptions } from "./src/privacy/private_gradient.ts";
export { poissonSample, secureUniform, seededUniform } from "./src/privacy/random.ts";
export type { Uniform } from "./src/privacy/random.ts";
export { RDPAccountant } from "./src/privacy/accountant.ts";
export type { HistorySegment, StepOptions } from "./src/privacy/accountant.ts";
export { computeRdp, DEFAULT_ORDERS, privacySpent } from "./src/privacy/rdp.ts";
export type { PrivacySpent, PrivacySpentOptions, RdpOptions } from "./src/privacy/rdp.ts";

export { loadModel, loadWeights, modelFromSpec, SUPPORTED_LAYERS } from "./src/io/spec.ts";
export type { LayerSpec, ModelSpec } from "./src/io/spec.ts";
export { readSafetensors, readSafetensorsMetadata, writeSafetensors } from "./src/io/safetensors.ts";
export { npyToFloat32, npyToIntegers, readNpy, writeNpy } from "./src/io/npy.ts";
export type { NpyArray, NpyDtype } from "./src/io/npy.ts";
