// A dedicated (module) worker, the place of a browser where the library runs threads (when the
// page is cross-origin isolated): tests/browser.test.ts repeats this computation in its own
// process and compares. The sizes split with the default tuning: a CNN's per-sample gradients
// (its convolutions split by samples) and an MLP's Jacobian in several chunks of rows.
import {
  initialize,
  jacobian,
  Linear,
  manualSeed,
  perSampleGradients,
  randn,
  ReLU,
  Sequential,
  setThreads,
  simdBuild,
  threads,
} from "/dist/mod.js";
import { cnnNetwork } from "/dist/src/examples.js";

/** What the computation depends on; the test builds the same from it. */
export const CONFIG = { weightSeed: 3, dataSeed: 4, cnnSamples: 16, mlpSamples: 40 };

function networks() {
  manualSeed(CONFIG.weightSeed);
  const cnn = cnnNetwork(); // the public cnn case's network
  const mlp = new Sequential(new Linear(32, 64), new ReLU(), new Linear(64, 4));
  return { cnn, mlp };
}

/** One run: the CNN's per-sample gradients and the MLP's Jacobian, on the threads in force. */
function compute() {
  const { cnn, mlp } = networks();
  const N = CONFIG.cnnSamples;
  const x = randn([N, 3, 32, 32], CONFIG.dataSeed);
  const labels = { shape: [N], data: Int32Array.from({ length: N }, (_, n) => (n * 7) % 10) };
  const t0 = performance.now();
  const gradients = perSampleGradients(cnn, x, labels, { loss: "cross_entropy", reduction: "sum" });
  const t1 = performance.now();
  const J = jacobian(mlp, randn([CONFIG.mlpSamples, 32], CONFIG.dataSeed + 1));
  const t2 = performance.now();
  return {
    threads: threads(),
    gradientsShape: gradients.shape,
    gradients: gradients.data,
    gradientsMs: t1 - t0,
    jacobianShape: J.shape,
    jacobian: J.data,
    jacobianMs: t2 - t1,
  };
}

function thrown(body) {
  try {
    body();
    return undefined;
  } catch (error) {
    return { name: error?.name, message: String(error?.message ?? error) };
  }
}

async function run() {
  const report = {
    config: CONFIG,
    crossOriginIsolated: self.crossOriginIsolated === true,
    hardwareConcurrency: navigator.hardwareConcurrency,
    runs: [],
  };
  // Before `await initialize()`: the first computation loads the kernels synchronously, on one thread.
  report.runs.push({ when: "before initialize()", ...compute() });
  await initialize(); // where threads can run, starts the workers and reloads the kernels for them
  report.build = simdBuild();
  report.runs.push({ when: "after initialize()", ...compute() });
  report.runs.push({ when: "again", ...compute() }); // the plans made, the workers warm: the times to compare
  report.setThreadsOne = setThreads(1);
  report.runs.push({ when: "setThreads(1)", ...compute() });
  report.runs.push({ when: "setThreads(1), again", ...compute() });
  // More than one thread: an UnsupportedError where threads cannot run; elsewhere the number
  // in force until `await initialize()` starts them.
  report.setThreadsTwo = thrown(() => (report.setThreadsTwoReturned = setThreads(2)));
  await initialize();
  report.runs.push({ when: "setThreads(2), initialize()", ...compute() });
  setThreads(undefined);
  return report;
}

run().then(
  (report) => postMessage(report, [...report.runs.flatMap((r) => [r.gradients.buffer, r.jacobian.buffer])]),
  (error) => postMessage({ error: String(error?.stack ?? error) }),
);
