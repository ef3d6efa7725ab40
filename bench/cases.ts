/**
 * The public benchmark cases (docs/bench_cases.md) through the public API, against
 * our own naive per-sample loop and TF.js's; and the one-pass speedup as the batch grows.
 */
import { jacobian, jacobianNaive, manualSeed, perSampleGradients, perSampleGradientsNaive, randn, simdBuild, threads } from "../mod.ts";
import type { Module, ResultOptions, Target, Tensor } from "../mod.ts";
import { cnnNetwork, mlpNetwork, seedNetwork } from "../src/examples.ts";
import {
  currentRuntime,
  glibcTunables,
  loadAverage,
  type Effort,
  medians,
  progress,
  runtimeVersion,
  significant,
  timeOnce,
  uniformClasses,
} from "./measure.ts";
import type { CaseRow, PeerLoopRow, QuantityRow, ScalingRow, Where } from "./rows.ts";
import { quantityRows, quantityTasks } from "./quantities.ts";
import { describeError, loadTfjs, mlpLoopTask, registerGradients } from "./tfjs.ts";

export type CaseName = "seed3d" | "mlp" | "cnn";

interface CaseDefinition {
  network: () => Module;
  sampleShape: number[];
  N: number;
  /** true: the objective is the output itself (`jacobian`); false: cross-entropy, sum. */
  outputObjective: boolean;
}

export const CASES: Record<CaseName, CaseDefinition> = {
  seed3d: { network: seedNetwork, sampleShape: [1, 6, 6, 6], N: 1000, outputObjective: true },
  mlp: { network: mlpNetwork, sampleShape: [784], N: 256, outputObjective: false },
  cnn: { network: cnnNetwork, sampleShape: [3, 32, 32], N: 128, outputObjective: false },
};

/** The data of a case: inputs standard normal, targets uniform class indices 0..9. */
interface Batch {
  x: Tensor;
  y: Target & { data: Int32Array };
}

function makeBatch(definition: CaseDefinition, N: number): Batch {
  return { x: randn([N, ...definition.sampleShape], 1), y: uniformClasses(N, 10, 2) };
}

/** The first `n` samples of a batch, sharing its memory. */
function firstSamples(batch: Batch, n: number): Batch {
  const per = batch.x.data.length / batch.x.shape[0];
  return {
    x: { shape: [n, ...batch.x.shape.slice(1)], data: batch.x.data.subarray(0, n * per) },
    y: { shape: [n], data: batch.y.data.subarray(0, n) },
  };
}

/** A new network of the case with the same weights every time (seeded): its plan cache is empty. */
function freshNetwork(definition: CaseDefinition): Module {
  manualSeed(0);
  return definition.network();
}

function onePass(definition: CaseDefinition, net: Module, batch: Batch, options: ResultOptions = {}): () => Tensor {
  if (definition.outputObjective) return () => jacobian(net, batch.x, options) as Tensor;
  const lossOptions = { ...options, loss: "cross_entropy", reduction: "sum" } as const;
  return () => perSampleGradients(net, batch.x, batch.y, lossOptions) as Tensor;
}

function naive(definition: CaseDefinition, net: Module, batch: Batch, options: ResultOptions = {}): () => unknown {
  if (definition.outputObjective) return () => jacobianNaive(net, batch.x, options);
  return () => perSampleGradientsNaive(net, batch.x, batch.y, { ...options, loss: "cross_entropy", reduction: "sum" });
}

export function where(): Where {
  return { runtime: currentRuntime(), runtime_version: runtimeVersion(), build: simdBuild(), threads: threads(), load_avg_1m: loadAverage(), glibc_tunables: glibcTunables() };
}

/** D: the number of parameters, the columns of J. */
function parameterCount(net: Module): number {
  return net.parameters().reduce((sum, [, parameter]) => sum + parameter.data.length, 0);
}

/**
 * How many samples to time our naive loop on (about a sixth of the budget per run): its cost
 * is linear in N, one batch-of-one pass per sample, so the time is scaled to N.
 */
function naiveSubset(definition: CaseDefinition, net: Module, batch: Batch, effort: Effort): number {
  const N = batch.x.shape[0];
  const probe = Math.min(N, 4);
  const run = naive(definition, net, firstSamples(batch, probe));
  run(); // builds the batch-of-one plan
  const perSample = Math.max(timeOnce(run) / probe, 1e-4);
  return Math.max(probe, Math.min(N, Math.floor(effort.budgetMs / 6 / perSample)));
}

/** Whether this version of the API writes into a caller's `{ out }` buffer (it came later). */
function writesIntoOut(result: Tensor, out: Float32Array): boolean {
  return result.data === out;
}

/**
 * The rows of one public case: "fresh" and "out" variants, for mlp TF.js's loop, and the
 * quantities without J ("clipped_sum", "batch_l2": bench/quantities.ts), timed interleaved
 * with the one pass so that their ratios to it are same-run.
 */
export async function caseRows(name: CaseName, effort: Effort): Promise<(CaseRow | PeerLoopRow | QuantityRow)[]> {
  const definition = CASES[name];
  const { N } = definition;
  const batch = makeBatch(definition, N);

  // Cold calls first, each on a fresh network (empty plan cache).
  const net = freshNetwork(definition);
  const D = parameterCount(net);
  const cold = timeOnce(onePass(definition, net, batch));
  const out = new Float32Array(N * D);
  const netOut = freshNetwork(definition);
  let outSupported = false;
  const outCold = timeOnce(() => (outSupported = writesIntoOut(onePass(definition, netOut, batch, { out })(), out)));
  if (!outSupported) progress(`${name}: the API does not write into { out } (not in this version): no "out" row`);

  // The quantities' cold calls, each on a fresh network of its own.
  const quantities = quantityTasks(() => freshNetwork(definition), batch.x, definition.outputObjective ? undefined : batch.y);

  // Then one pass (fresh result, reused buffer), the naive loop and the quantities, interleaved.
  const timedN = naiveSubset(definition, net, batch, effort);
  const tasks = [onePass(definition, net, batch), naive(definition, net, firstSamples(batch, timedN))];
  if (outSupported) tasks.push(onePass(definition, netOut, batch, { out }));
  const firstQuantity = tasks.length;
  tasks.push(...quantities.map((q) => q.run));
  const timings = medians(tasks, effort);
  const [fresh, naiveTiming] = timings;
  const withOut = outSupported ? timings[2] : undefined;
  const naiveMs = significant((naiveTiming.median_ms * N) / timedN, 4);
  const base = { case: name, N, D, ...where(), naive_ms: naiveMs, naive_timed_n: timedN, naive_scaled: timedN < N };
  const rows: (CaseRow | PeerLoopRow | QuantityRow)[] = [{
    ...base,
    variant: "fresh",
    median_ms: fresh.median_ms,
    cold_ms: cold,
    samples: fresh.samples,
    speedup: significant(naiveMs / fresh.median_ms, 4),
  }];
  if (withOut) {
    rows.push({
      ...base,
      variant: "out",
      median_ms: withOut.median_ms,
      cold_ms: outCold,
      samples: withOut.samples,
      speedup: significant(naiveMs / withOut.median_ms, 4),
    });
  }
  progress(`${name}: one pass ${fresh.median_ms} ms (cold ${cold} ms)` +
    (withOut ? `, with out ${withOut.median_ms} ms (cold ${outCold} ms)` : "") +
    `, naive ${naiveMs} ms (timed on ${timedN} of ${N})`);
  rows.push(...quantityRows({ case: name, N, D, ...where() }, quantities, timings.slice(firstQuantity), fresh, withOut));

  if (name === "mlp") {
    const ours = [onePass(definition, net, batch), ...(outSupported ? [onePass(definition, netOut, batch, { out })] : [])];
    rows.push(await tfjsLoopRow(batch, ours, effort));
  }
  return rows;
}

/**
 * TF.js's per-sample loop on `mlp`, timed on the first `timed_n` samples and scaled to N,
 * interleaved with our one pass (`ours`: fresh result, then with `out` where supported).
 */
async function tfjsLoopRow(batch: Batch, ours: (() => unknown)[], effort: Effort): Promise<PeerLoopRow> {
  const N = batch.x.shape[0];
  const timedN = Math.min(N, effort.quick ? 16 : 32);
  const row = { case: "mlp" as const, variant: "tfjs-loop" as const, N, ...where(), timed_n: timedN, scaled: timedN < N };
  try {
    const tfjs = await loadTfjs();
    await registerGradients();
    const task = mlpLoopTask(tfjs, batch.x.data, batch.y.data, N);
    const [peer, fresh, withOut] = medians([() => task.run(timedN), ...ours], effort);
    task.dispose();
    const median = significant((peer.median_ms * N) / timedN, 4);
    progress(`mlp TF.js loop ${median} ms (timed on ${timedN} samples); ours ${fresh.median_ms} ms` +
      (withOut ? `, with out ${withOut.median_ms} ms` : ""));
    return {
      ...row,
      peer: tfjs.name,
      D: task.D,
      median_ms: median,
      ours_ms: fresh.median_ms,
      ours_speedup: significant(median / fresh.median_ms, 4),
      ...(withOut ? { ours_out_ms: withOut.median_ms, ours_out_speedup: significant(median / withOut.median_ms, 4) } : {}),
    };
  } catch (error) {
    progress(`mlp TF.js loop failed: ${describeError(error)}`);
    return { ...row, peer: "tfjs-wasm", D: 0, median_ms: null, ours_ms: null, ours_speedup: null, peer_error: describeError(error) };
  }
}

/** Batch sizes of the scaling sweep: 1, 2, 4, …, 1024 (quick: 1, 4, 16, …, 1024). */
export function scalingSizes(quick: boolean): number[] {
  const sizes: number[] = [];
  for (let N = 1; N <= 1024; N *= quick ? 4 : 2) sizes.push(N);
  return sizes;
}

/**
 * One pass against our naive loop for N = 1 … 1024, both writing into a reused `out` buffer
 * where the API has it (so the curve shows computation, not page faults), else fresh results.
 */
export function scalingRows(name: "seed3d" | "mlp", effort: Effort): ScalingRow[] {
  const definition = CASES[name];
  const all = makeBatch(definition, 1024);
  const rows: ScalingRow[] = [];
  const net = freshNetwork(definition);
  const D = parameterCount(net);
  const probe = new Float32Array(D);
  const useOut = writesIntoOut(onePass(definition, net, firstSamples(all, 1), { out: probe })(), probe);
  const buffer = (rows: number) => (useOut ? { out: new Float32Array(rows * D) } : {});
  // Smaller budgets: the sweep has eleven points per case.
  const sweep: Effort = { ...effort, budgetMs: effort.budgetMs / 4, minIterations: 4 };
  for (const N of scalingSizes(effort.quick)) {
    const batch = firstSamples(all, N);
    const timedN = naiveSubset(definition, net, batch, sweep);
    const [timing, naiveTiming] = medians([
      onePass(definition, net, batch, buffer(N)),
      naive(definition, net, firstSamples(batch, timedN), buffer(timedN)),
    ], sweep);
    const naiveMs = significant((naiveTiming.median_ms * N) / timedN, 4);
    rows.push({
      case: `${name}-scaling`,
      variant: useOut ? "out" : "fresh",
      N,
      D,
      ...where(),
      median_ms: timing.median_ms,
      naive_ms: naiveMs,
      naive_timed_n: timedN,
      speedup: significant(naiveMs / timing.median_ms, 4),
    });
  }
  progress(`${name}-scaling: ${rows.map((r) => `N=${r.N} ${r.speedup}x`).join(", ")}`);
  return rows;
}
