// What probing a user-defined quasi-linear layer costs, once per input shape:
// `node --import tsx bench/probing.ts` (`--json` prints one JSON line per layer).
// For layers with ~10⁴ weights: the probing time and the number of calls of the user's
// forward function, against the seed's scheme (one-hot weight × identity batch: P·I calls,
// timed here on a sample of calls and extrapolated); then what the probed layer costs per
// call (the one-pass computation, N = 128; against the closed-form layer where there is one)
// and the per-call copy of its pattern into the plan's memory.
import { Conv2d, Linear, quasiLinear, randn, Sequential, Tanh } from "../mod.ts";
import { planCache } from "../src/forward.ts";
import { arena } from "../src/wasm.ts";
import type { Module, QuasiLinearDefinition } from "../mod.ts";
import { numel } from "../src/tensor.ts";

const json = process.argv.includes("--json");

interface Case {
  name: string;
  inputShape: number[];
  make(): QuasiLinearDefinition<{ weight: number[]; bias: number[] }>;
  /** The same layer in closed form, where the library has one. */
  closedForm?: () => Module;
}

const random = (n: number) => Array.from({ length: n }, () => Math.random() - 0.5);

/** Locally connected 1-d convolution: weight [Lout, O, C, k], bias [O, Lout]. */
function locallyConnected(C: number, O: number, L: number, k: number): QuasiLinearDefinition<{ weight: number[]; bias: number[] }> {
  const Lout = L - k + 1;
  return {
    name: "LocallyConnected1d",
    parameters: { weight: random(Lout * O * C * k), bias: random(O * Lout) },
    outputShape: () => [O, Lout],
    forward({ weight, bias }, x) {
      const y = new Float64Array(O * Lout);
      for (let o = 0; o < O; o++) {
        for (let l = 0; l < Lout; l++) {
          let sum = bias[o * Lout + l];
          for (let c = 0; c < C; c++) for (let t = 0; t < k; t++) sum += weight[((l * O + o) * C + c) * k + t] * x[c * L + l + t];
          y[o * Lout + l] = sum;
        }
      }
      return y;
    },
  };
}

/** Depthwise 3×3 convolution, padding 1: weight [C, 1, 3, 3], bias [C]. */
function depthwise(C: number, H: number, W: number): QuasiLinearDefinition<{ weight: number[]; bias: number[] }> {
  return {
    name: "Depthwise2d",
    parameters: { weight: random(C * 9), bias: random(C) },
    outputShape: () => [C, H, W],
    forward({ weight, bias }, x) {
      const y = new Float64Array(C * H * W);
      for (let c = 0; c < C; c++) {
        for (let h = 0; h < H; h++) {
          for (let w = 0; w < W; w++) {
            let sum = bias[c];
            for (let a = 0; a < 3; a++) {
              for (let b = 0; b < 3; b++) {
                const ih = h + a - 1;
                const iw = w + b - 1;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) sum += weight[c * 9 + a * 3 + b] * x[(c * H + ih) * W + iw];
              }
            }
            y[(c * H + h) * W + w] = sum;
          }
        }
      }
      return y;
    },
  };
}

/** A dense layer written by hand: every output meets every weight of its row (the most colours). */
function dense(inFeatures: number, outFeatures: number): QuasiLinearDefinition<{ weight: number[]; bias: number[] }> {
  return {
    name: "Dense",
    parameters: { weight: random(inFeatures * outFeatures), bias: random(outFeatures) },
    outputShape: () => [outFeatures],
    forward({ weight, bias }, x) {
      const y = new Float64Array(outFeatures);
      for (let o = 0; o < outFeatures; o++) {
        let sum = bias[o];
        for (let i = 0; i < inFeatures; i++) sum += weight[o * inFeatures + i] * x[i];
        y[o] = sum;
      }
      return y;
    },
  };
}

const cases: Case[] = [
  { name: "locally connected 1-d, C 4 → 8, L 102, k 3", inputShape: [4, 102], make: () => locallyConnected(4, 8, 102, 3) },
  {
    name: "depthwise 3×3, 1024 channels, 4×4",
    inputShape: [1024, 4, 4],
    make: () => depthwise(1024, 4, 4),
    closedForm: () => new Conv2d(1024, 1024, 3, { padding: 1, groups: 1024 }),
  },
  { name: "dense 100 → 100", inputShape: [100], make: () => dense(100, 100), closedForm: () => new Linear(100, 100) },
];

for (const c of cases) {
  // Probing, on a fresh layer each round (the first includes the JIT's warm-up): best of 3.
  const definition = c.make();
  let best = Infinity;
  let layer = quasiLinear(definition);
  let pattern = layer.pattern(c.inputShape);
  for (let round = 0; round < 3; round++) {
    layer = quasiLinear(definition);
    pattern = layer.pattern(c.inputShape);
    best = Math.min(best, pattern.milliseconds);
  }
  // Calls of the user's forward with one input set, to price the seed's P·I calls.
  const weight = Float64Array.from(definition.parameters.weight);
  const bias = Float64Array.from(definition.parameters.bias);
  const x = new Float64Array(numel(c.inputShape));
  const sampleCalls = 100;
  const oneCall = (i: number) => {
    x[i % x.length] = 1;
    definition.forward({ weight, bias }, x, c.inputShape);
    x[i % x.length] = 0;
  };
  for (let i = 0; i < 20; i++) oneCall(i); // warm-up
  const start = performance.now();
  for (let i = 0; i < sampleCalls; i++) oneCall(i);
  const perCall = (performance.now() - start) / sampleCalls;
  const seedCalls = pattern.weights * pattern.inputs + pattern.biases;

  // The layer in a network (layer, Tanh): the one-pass computation alone (forward, backward,
  // per-sample rows handed to a sink that keeps nothing), N = 128, from a random output gradient.
  const N = 128;
  const xb = randn([N, ...c.inputShape], 1);
  const time = (layer: Module) => {
    const net = new Sequential(layer, new Tanh());
    const plan = planCache(net).get(net, c.inputShape, N, 1, "per-sample"); // builds the plan (and probes)
    const seed = randn([N * pattern.outputs], 2).data;
    let fastest = Infinity;
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      plan.prepare();
      plan.writeInput(xb.data);
      plan.forward();
      arena.f32().set(seed, plan.seedPtr >>> 2);
      plan.backwardPerSample(() => {});
      fastest = Math.min(fastest, performance.now() - t);
    }
    return fastest;
  };
  const callBest = time(layer);
  const closedBest = c.closedForm ? time(c.closedForm()) : undefined;
  const copyTarget = new Int32Array(pattern.block.length);
  const copies = 200;
  const copyStart = performance.now();
  for (let i = 0; i < copies; i++) copyTarget.set(pattern.block);
  const copyMs = (performance.now() - copyStart) / copies;

  const result = {
    layer: c.name,
    weights: pattern.weights,
    biases: pattern.biases,
    pattern_entries: pattern.weightPairs.length / 2,
    probe_ms: Number(best.toFixed(1)),
    probe_calls: pattern.calls,
    colors: pattern.colors,
    seed_calls: seedCalls,
    seed_ms_estimated: Math.round(seedCalls * perCall),
    one_pass_ms_n128: Number(callBest.toFixed(2)),
    closed_form_one_pass_ms_n128: closedBest === undefined ? null : Number(closedBest.toFixed(2)),
    pattern_copy_ms: Number(copyMs.toFixed(4)),
  };
  if (json) console.log(JSON.stringify(result));
  else {
    console.log(
      `${c.name}: ${result.weights} weights, ${result.pattern_entries} pattern entries — probed in ${result.probe_ms} ms, ` +
        `${result.probe_calls} calls (${result.colors} colours); the seed's one-hot × identity batch: ${result.seed_calls} calls ≈ ` +
        `${(result.seed_ms_estimated / 1000).toFixed(1)} s. One pass (forward, backward, per-sample rows; N = ${N}): ${result.one_pass_ms_n128} ms` +
        (closedBest === undefined ? "" : ` (closed form: ${result.closed_form_one_pass_ms_n128} ms)`) +
        `, of which copying the pattern: ${result.pattern_copy_ms} ms`,
    );
  }
}
