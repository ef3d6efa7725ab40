/**
 * The memory soak as a benchmark row (`npm run bench -- --case soak`): the process's resident
 * memory and the WASM memory after 10,000 calls of `jacobian` / `perSampleGradients` with batch
 * sizes 1-300 and four input shapes (tests/helpers/soak.ts), on one network and on a new
 * network every 3 calls. Nothing is collected by force during the calls, so `rss_bytes` is what
 * an application would see; `rss_after_gc_bytes` is what the process holds once the results'
 * garbage is gone. tests/soak.test.ts asserts the bounds; this reports the numbers.
 */
import type { Module } from "../mod.ts";
import { planCache } from "../src/forward.ts";
import { arena } from "../src/wasm.ts";
import { fullGc, residentBytes, soakNetwork, SoakWorkload } from "../tests/helpers/soak.ts";
import { type Effort, progress, significant } from "./measure.ts";
import type { SoakRow, Where } from "./rows.ts";

const NETWORK = "Sequential(Conv2d(2,4,3,padding=1), ReLU(), AdaptiveAvgPool2d(2), Flatten(), Linear(16,3)); " +
  "batch sizes 1-300, input shapes 2x6x6, 2x8x8, 2x5x7, 2x9x4; jacobian or perSampleGradients (cross-entropy, sum) at random";
const WARM_UP_CALLS = 1000;
const SAMPLE_EVERY = 250;
const CALLS_PER_NETWORK = 3;

/** One row per variant: 10,000 calls (2,000 with --quick) after a warm-up of 1,000. */
export function soakRows(effort: Effort, where: () => Where): SoakRow[] {
  const calls = effort.quick ? 2000 : 10_000;
  const gc = fullGc();
  return (["one-network", "new-networks"] as const).map((variant) => {
    gc?.();
    const workload = new SoakWorkload(3);
    let net: Module = soakNetwork();
    const first = planCache(net);
    const builtBefore = first.built;
    workload.largest(net);
    const next = (call: number) => {
      if (variant === "new-networks" && call % CALLS_PER_NETWORK === 0) net = soakNetwork();
      workload.call(net);
    };
    for (let call = 0; call < WARM_UP_CALLS; call++) next(call);
    const rssAfterWarmUp = residentBytes();
    const wasmAfterWarmUp = arena.byteLength();
    let peak = rssAfterWarmUp;
    const start = performance.now();
    for (let call = 0; call < calls; call++) {
      next(call);
      if (call % SAMPLE_EVERY === 0) peak = Math.max(peak, residentBytes());
    }
    const elapsed = performance.now() - start;
    const rss = residentBytes();
    peak = Math.max(peak, rss);
    gc?.();
    const row: SoakRow = {
      case: "soak",
      variant,
      network: NETWORK,
      ...where(),
      calls,
      warm_up_calls: WARM_UP_CALLS,
      networks: variant === "one-network" ? 1 : Math.ceil((WARM_UP_CALLS + calls) / CALLS_PER_NETWORK),
      mean_ms: significant(elapsed / calls, 4),
      rss_after_warm_up_bytes: rssAfterWarmUp,
      rss_bytes: rss,
      peak_rss_bytes: peak,
      rss_after_gc_bytes: gc ? residentBytes() : null,
      rss_growth: significant(rss / rssAfterWarmUp - 1, 3),
      wasm_bytes_after_warm_up: wasmAfterWarmUp,
      wasm_bytes: arena.byteLength(),
      plans_built: variant === "one-network" ? first.built - builtBefore : null,
      plans_cached: planCache(net).size,
      plan_cache_capacity: planCache(net).capacity,
    };
    const mib = (b: number | null) => (b === null ? "n/a" : `${(b / 2 ** 20).toFixed(1)} MiB`);
    progress(`soak ${variant}: ${calls} calls (${row.mean_ms} ms each): RSS ${mib(rss)} (after warm-up ${mib(rssAfterWarmUp)}, ` +
      `${(row.rss_growth * 100).toFixed(1)}%; peak ${mib(peak)}; after a full collection ${mib(row.rss_after_gc_bytes)}), ` +
      `WASM ${mib(row.wasm_bytes)} (after warm-up ${mib(wasmAfterWarmUp)}), ${row.plans_cached} plans cached`);
    return row;
  });
}
