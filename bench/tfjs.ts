/**
 * TensorFlow.js (WASM backend, XNNPACK, one thread, SIMD build) as the JavaScript peer:
 * its `matMul` for the GEMM comparison and a per-sample `tf.grads` loop for the `mlp` case,
 * which is how a TF.js user gets per-sample gradients today.
 *
 * Loaded lazily: where it cannot load, the rows still appear, with `peer_error` saying why.
 */
import { fileURLToPath } from "node:url";
import type * as TF from "@tensorflow/tfjs-core";

export interface Tfjs {
  tf: typeof TF;
  /** "tfjs-wasm 4.22.0 (XNNPACK, 1 thread, simd)". */
  name: string;
}

let loading: Promise<Tfjs> | undefined;

/** The TF.js WASM backend, initialised once per process; rejects with the reason it cannot load. */
export function loadTfjs(): Promise<Tfjs> {
  loading ??= load();
  return loading;
}

async function load(): Promise<Tfjs> {
  const tf = await import("@tensorflow/tfjs-core");
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  // The threaded binary would need workers; the non-threaded SIMD binary is the one-thread peer.
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  const directory = fileURLToPath(new URL("../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url));
  wasm.setWasmPaths(directory);
  wasm.setThreadsCount(1);
  if (!(await tf.setBackend("wasm"))) throw new Error("tf.setBackend(\"wasm\") returned false");
  await tf.ready();
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  return {
    tf,
    name: `tfjs-wasm ${wasm.version_wasm} (XNNPACK, ${wasm.getThreadsCount()} thread, ${simd ? "simd" : "no simd"})`,
  };
}

let registering: Promise<void> | undefined;

/**
 * tfjs-core alone registers no gradients; the `@tensorflow/tfjs` package (what a TF.js user
 * installs) registers them all, in the registry tfjs-core keeps on `globalThis`.
 */
export function registerGradients(): Promise<void> {
  registering ??= import("@tensorflow/tfjs").then(() => undefined);
  return registering;
}

/** The reason a peer failed, as one line for `peer_error`. */
export function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String((error as { message?: string })?.message ?? error);
  return text.split("\n")[0].slice(0, 300);
}

/** `tf.matMul` of two m×m tensors made once (the output is freed by `tf.tidy`). */
export function matMulTask({ tf }: Tfjs, m: number): { run: () => void; runNewB: () => void; dispose: () => void } {
  const a = tf.randomUniform([m, m], -0.5, 0.5);
  const b = tf.randomUniform([m, m], -0.5, 0.5);
  const bValues = b.dataSync().slice();
  return {
    // The WASM backend runs kernels synchronously: the product is computed when matMul returns.
    run: () => tf.tidy(() => void tf.matMul(a, b)),
    runNewB: () => tf.tidy(() => void tf.matMul(a, tf.tensor2d(bValues, [m, m]))),
    dispose: () => tf.dispose([a, b]),
  };
}

/**
 * The `mlp` case in TF.js: Linear(784,256)-ReLU-Linear(256,128)-ReLU-Linear(128,10), weights
 * stored [in, out] as TF.js layers store them, cross-entropy (sum) per sample, one `tf.grads`
 * per sample, each gradient read back into row n of a J of N × D floats.
 */
export function mlpLoopTask({ tf }: Tfjs, x: Float32Array, classes: Int32Array, N: number) {
  const sizes = [784, 256, 128, 10];
  const params: TF.Tensor[] = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const bound = 1 / Math.sqrt(sizes[l]);
    params.push(tf.randomUniform([sizes[l], sizes[l + 1]], -bound, bound, "float32", l));
    params.push(tf.randomUniform([sizes[l + 1]], -bound, bound, "float32", 100 + l));
  }
  const D = params.reduce((sum, p) => sum + p.size, 0);
  const inputs = tf.tensor2d(x.subarray(0, N * 784), [N, 784]);
  const oneHot = tf.oneHot(tf.tensor1d(classes.subarray(0, N), "int32"), 10);
  const J = new Float32Array(N * D);
  // The sample being differentiated; the loss closes over it so that only parameters get gradients.
  let xi: TF.Tensor2D = inputs;
  let yi: TF.Tensor = oneHot;
  const gradients = tf.grads((...p: TF.Tensor[]) => {
    const [w1, b1, w2, b2, w3, b3] = p as TF.Tensor2D[];
    const h1 = tf.relu(tf.add(tf.matMul(xi, w1), b1)) as TF.Tensor2D;
    const h2 = tf.relu(tf.add(tf.matMul(h1, w2), b2)) as TF.Tensor2D;
    const logits = tf.add(tf.matMul(h2, w3), b3);
    return tf.neg(tf.sum(tf.mul(yi, tf.logSoftmax(logits))));
  });
  /** Per-sample gradients of samples [0, count), written into J. */
  const run = (count: number) => {
    for (let n = 0; n < count; n++) {
      tf.tidy(() => {
        xi = tf.slice(inputs, [n, 0], [1, 784]);
        yi = tf.slice(oneHot, [n, 0], [1, 10]);
        const grads = gradients(params);
        let offset = n * D;
        for (const grad of grads) {
          const values = grad.dataSync() as Float32Array;
          J.set(values, offset);
          offset += values.length;
        }
      });
    }
  };
  return { D, run, dispose: () => tf.dispose([...params, inputs, oneHot]) };
}
