/**
 * Memory soak: thousands of calls with batch sizes 1-300 and four input shapes, on one network
 * and on networks created and dropped, leave the WASM memory where the warm-up left it, every
 * plan cache within its capacity, and the process's resident memory within 15% of what it was
 * after the warm-up. Plans hold no WASM memory of their own (every plan lays itself out from
 * the same base address), and a network's plan cache is the value of a WeakMap keyed by the
 * network: a dropped network's plans are collected with it, with no dispose() to call.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Module, Tensor } from "../mod.ts";
import { planCache } from "../src/forward.ts";
import { arena } from "../src/wasm.ts";
import { fullGc, MAX_BATCH, nextTurn, residentBytes, SHAPES, type SoakCall, soakNetwork, SoakWorkload } from "./helpers/soak.ts";

const gc = fullGc();
/**
 * Calls before the resident memory is taken as warmed up. Read after a full collection, it
 * settles within a few hundred calls. Without one (a V8 that refuses --expose-gc at run time;
 * bun always has Bun.gc), V8's lazy collection of the results' garbage (on deno, up to ~70 MB
 * of dead ArrayBuffers before it collects) takes some 4000 calls to reach its working size.
 */
const WARM_UP_CALLS = gc ? 1500 : 4000;
/** Calls measured after the warm-up, on one network. */
const CALLS = 3000;
/** Networks created, called 3 times and dropped: as many as the warm-up takes, then 500. */
const CALLS_PER_NETWORK = 3;
const NETWORKS = Math.ceil(WARM_UP_CALLS / CALLS_PER_NETWORK) + 500;
/** Resident memory is read every this many calls (after a full collection where one can be forced). */
const SAMPLE_EVERY = 250;
const MAX_RSS_GROWTH = 0.15;

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function resident(): number {
  gc?.();
  return residentBytes();
}

/**
 * Resident memory read through a run of calls: the peak over the warm-up's second half (its
 * first half is the runtime growing its heaps to their working size) and the peak after it.
 */
class ResidentSamples {
  private warmUp: number[] = [];
  private after: number[] = [];

  read(call: number): void {
    if (call % SAMPLE_EVERY !== 0 || call < WARM_UP_CALLS / 2) return;
    (call < WARM_UP_CALLS ? this.warmUp : this.after).push(resident());
  }

  /** Asserts that the peak after the warm-up is within MAX_RSS_GROWTH of the warm-up's; returns the line reported. */
  check(what: string): string {
    assert.ok(this.warmUp.length > 0 && this.after.length > 0, "resident memory was read during and after the warm-up");
    const base = Math.max(...this.warmUp);
    const peak = Math.max(...this.after);
    const growth = peak / base - 1;
    const line = `${what}: resident memory ${MiB(base)} after warm-up, at most ${MiB(peak)} after ` +
      `(${(growth * 100).toFixed(1)}%; ${gc ? "read after a full collection" : "no collection could be forced"})`;
    assert.ok(growth < MAX_RSS_GROWTH, `${line}: over ${MAX_RSS_GROWTH * 100}%`);
    return line;
  }
}

/** The last sample's row of a call's result. */
function lastRow(result: Tensor, N: number): Float32Array {
  const width = result.data.length / N;
  return result.data.subarray((N - 1) * width, N * width);
}

/**
 * Asserts that a call's last row equals that sample's row of the full-batch result: a sample's
 * rows of J, and its gradient of a summed loss, do not depend on the batch around it.
 */
function checkAgainst(reference: SoakCall[], call: SoakCall): void {
  const full = reference.find((r) => r.shape === call.shape && r.kind === call.kind)!;
  const got = lastRow(call.result, call.N);
  const width = got.length;
  const row = full.result.data.subarray((call.N - 1) * width, call.N * width);
  for (let i = 0; i < width; i++) {
    const tolerance = 1e-5 * (1 + Math.abs(row[i]));
    if (!(Math.abs(got[i] - row[i]) <= tolerance)) {
      assert.fail(`${call.kind}, shape ${SHAPES[call.shape].join("x")}, N = ${call.N}: element ${i} of the last row is ${got[i]}, the full batch's ${row[i]}`);
    }
  }
}

test("thousands of calls with batch sizes 1-300 and four input shapes on one network: WASM memory fixed after warm-up, the plan cache within its capacity, resident memory within 15%", () => {
  const net = soakNetwork();
  const workload = new SoakWorkload(1);
  const reference = workload.largest(net);
  const wasmBytes = arena.byteLength();
  const cache = planCache(net);
  const builtBefore = cache.built;
  const samples = new ResidentSamples();
  for (let call = 0; call < WARM_UP_CALLS + CALLS; call++) {
    const made = workload.call(net);
    if (call % 37 === 0) checkAgainst(reference, made);
    assert.ok(cache.size <= cache.capacity, `call ${call}: ${cache.size} plans cached, over the capacity of ${cache.capacity}`);
    if (call % SAMPLE_EVERY === 0) {
      assert.equal(arena.byteLength(), wasmBytes, `call ${call}: the WASM memory grew after the largest plans were built`);
    }
    samples.read(call);
  }
  assert.equal(arena.byteLength(), wasmBytes, "the WASM memory grew after the largest plans were built");
  // Batch sizes 1-300 over four shapes and two kinds: far more plans than the cache holds were built and evicted.
  assert.ok(cache.built - builtBefore > 10 * cache.capacity, `only ${cache.built - builtBefore} plans built: the cache was not exercised`);
  console.log(`soak, one network: ${samples.check(`${WARM_UP_CALLS + CALLS} calls`)}; WASM memory ${MiB(wasmBytes)}; ` +
    `${cache.built - builtBefore} plans built, at most ${cache.capacity} cached`);
});

test("networks created, called and dropped: their plans are collected with them (no dispose), WASM memory fixed, resident memory within 15%", async () => {
  const workload = new SoakWorkload(2);
  workload.largest(soakNetwork());
  const wasmBytes = arena.byteLength();
  const samples = new ResidentSamples();
  // WeakRefs to some dropped networks' plan caches: cleared once the network is collected.
  const dropped: WeakRef<object>[] = [];
  let call = 0;
  const useAndDrop = (keep: boolean) => {
    let net: Module | undefined = soakNetwork();
    for (let i = 0; i < CALLS_PER_NETWORK; i++, call++) {
      workload.call(net);
      const cache = planCache(net);
      assert.ok(cache.size <= cache.capacity, `network ${dropped.length}: ${cache.size} plans cached, over ${cache.capacity}`);
      samples.read(call);
    }
    if (keep) dropped.push(new WeakRef(planCache(net)));
    net = undefined;
  };
  for (let n = 0; n < NETWORKS; n++) useAndDrop(n % 10 === 0);
  assert.equal(arena.byteLength(), wasmBytes, "new networks of the same shapes grew the WASM memory");
  const line = samples.check(`${NETWORKS} networks, ${call} calls`);
  if (gc) {
    await nextTurn(); // a WeakRef read in this job keeps its target to the job's end
    gc();
    await nextTurn();
    gc();
    const alive = dropped.filter((ref) => ref.deref() !== undefined).length;
    assert.equal(alive, 0, `${alive} of ${dropped.length} dropped networks' plan caches survived a full collection`);
  }
  console.log(`soak, networks dropped: ${line}; WASM memory ${MiB(wasmBytes)}; ` +
    (gc ? `all ${dropped.length} dropped networks' plan caches watched were collected` : "collection of dropped networks not checked (no gc)"));
});
