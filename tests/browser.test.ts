/**
 * The library in a real browser: headless Chromium (Debian's `chromium`, driven by
 * playwright-core) loads the demo page examples/browser/ from scripts/serve.mjs on loopback;
 * the page imports the built ES module /dist/mod.js, computes a batch's per-sample gradients
 * and their norms, and leaves them on `window.results`; this process computes the same from
 * mod.ts and compares. Also: the page without `await initialize()` (the kernels compiled
 * synchronously on the main thread by the first computation), the server itself, and threads
 * in a dedicated worker (tests/browser_threads/): on 2 of them where the page is cross-origin
 * isolated, bit for bit the results of one thread; on 1 where it is not, and on the main thread.
 *
 * playwright-core runs in this process under all three runners (node, deno and bun all drive
 * Chromium over its pipe directly). Chromium missing is a failure, not a skip: CI installs it
 * (.ci/run), elsewhere `apt-get install -y chromium`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import {
  jacobian,
  Linear,
  manualSeed,
  perSampleGradients,
  perSampleNorms,
  randn,
  ReLU,
  Sequential,
} from "../mod.ts";
import { cnnNetwork } from "../src/examples.ts";
import { root, runtimeName } from "./helpers/cli.ts";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
// A fresh temporary profile (playwright's default); no background networking, which the
// closed network of CI machines would refuse.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** What examples/browser/main.js computes from (its `CONFIG`); the page reports its own, compared below. */
const CONFIG = { weightSeed: 0, dataSeed: 1, samples: 24, inputs: 8, hidden: 16, classes: 4 };

interface PageResults {
  error?: string;
  config: typeof CONFIG;
  initialized: boolean;
  build: string;
  shape: number[];
  labels: number[];
  norms: number[];
  grads: number[][];
}

interface Server {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The same computation as the page's, here (mod.ts, this runtime's build of the kernels). */
function expected() {
  const { weightSeed, dataSeed, samples: N, inputs, hidden, classes } = CONFIG;
  manualSeed(weightSeed);
  const net = new Sequential(new Linear(inputs, hidden), new ReLU(), new Linear(hidden, classes));
  const x = randn([N, inputs], dataSeed);
  const labels = { shape: [N], data: Int32Array.from({ length: N }, (_, n) => n % classes) };
  const options = { loss: "cross_entropy", reduction: "sum" } as const;
  const G = perSampleGradients(net, x, labels, options);
  const D = G.shape[1];
  return {
    labels: [...labels.data],
    shape: G.shape,
    norms: [...perSampleNorms(net, x, labels, options).data],
    grads: Array.from({ length: N }, (_, n) => [...G.data.subarray(n * D, (n + 1) * D)]),
  };
}

/**
 * max |actual − expected| ≤ tolerance · max |expected|: the page likely runs the relaxed
 * build (fused multiply-adds) and this process the baseline one (Node 20), so the last bits differ.
 */
function assertClose(actual: number[], wanted: number[], what: string, tolerance = 1e-5) {
  assert.equal(actual.length, wanted.length, `${what}: length`);
  let scale = 0;
  let worst = 0;
  let at = 0;
  for (let i = 0; i < wanted.length; i++) {
    scale = Math.max(scale, Math.abs(wanted[i]));
    const error = Math.abs(actual[i] - wanted[i]);
    if (!(error <= worst)) [worst, at] = [error, i]; // NaN counts as the worst
  }
  assert.ok(scale > 0, `${what}: all zero`);
  assert.ok(
    worst <= tolerance * scale,
    `${what}: max error ${worst} at ${at} (browser ${actual[at]}, here ${wanted[at]}) exceeds ${tolerance} × ${scale}`,
  );
}

// scripts/serve.mjs is plain JavaScript (no declarations): imported by a computed URL, typed here.
async function startServer(isolated = false): Promise<Server> {
  const serveModule = new URL("../scripts/serve.mjs", import.meta.url).href;
  const { serve } = (await import(serveModule)) as { serve(options?: { port?: number; isolated?: boolean }): Promise<Server> };
  return serve({ port: 0, isolated });
}

function requireChromium() {
  if (!existsSync(CHROMIUM)) {
    assert.fail(
      `${CHROMIUM} is missing: the browser tests need Debian's chromium (\`apt-get install -y chromium\`; ` +
        `.ci/run installs it in CI), or CHROMIUM_PATH set to a Chromium binary`,
    );
  }
  if (!existsSync(join(root, "dist", "mod.js"))) {
    assert.fail("dist/mod.js is missing: the page imports the built library (`npm run build`)");
  }
}

/** Loads the page, collects everything it reports as going wrong, and returns its results (and the URLs of the workers it started). */
async function load(browser: Browser, url: string, timeoutMs = 20_000): Promise<{ results: unknown; problems: string[]; workers: string[] }> {
  const page: Page = await browser.newPage();
  const problems: string[] = [];
  const workers: string[] = [];
  page.on("worker", (worker) => workers.push(worker.url()));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console.error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.stack ?? error.message}`));
  page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`));
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
  try {
    await page.goto(url);
    try {
      await page.waitForFunction(() => (window as unknown as { results?: unknown }).results !== undefined, null, { timeout: timeoutMs });
    } catch (error) {
      throw new Error(`the page set no window.results within ${timeoutMs / 1000} s; it reported: ${JSON.stringify(problems)}`, { cause: error });
    }
    const results = await page.evaluate(() => (window as unknown as { results: unknown }).results);
    return { results, problems, workers };
  } finally {
    await page.close();
  }
}

test("Chromium: the demo page's per-sample gradients and norms equal this process's", { timeout: 90_000 }, async () => {
  requireChromium();
  const want = expected();
  const server = await startServer();
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const pages = {
      "await initialize()": `${server.url}examples/browser/`,
      // The first computation compiles the ~115 KB kernels synchronously on the main thread
      // (Chromium allows that up to 8 MiB).
      "no initialize()": `${server.url}examples/browser/?initialize=0`,
    };
    for (const [name, url] of Object.entries(pages)) {
      const loaded = await load(browser, url);
      const [results, problems] = [loaded.results as PageResults, loaded.problems];
      assert.equal(results.error, undefined, `${name}: the page failed: ${results.error}`);
      assert.deepEqual(problems, [], `${name}: the page reported problems`);
      assert.deepEqual(results.config, CONFIG, `${name}: examples/browser/main.js's CONFIG changed; update this test's`);
      assert.equal(results.initialized, name === "await initialize()");
      assert.ok(results.build === "relaxed" || results.build === "baseline", `${name}: build ${results.build}`);
      assert.deepEqual(results.labels, want.labels);
      assert.deepEqual(results.shape, want.shape, `${name}: the gradients' shape`);
      assertClose(results.norms, want.norms, `${name}: per-sample norms`);
      results.grads.forEach((row, n) => assertClose(row, want.grads[n], `${name}: per-sample gradient ${n}`));
      // The norms are those of the gradients (in the page's own arithmetic).
      assertClose(results.norms, results.grads.map((row) => Math.hypot(...row)), `${name}: norms of the page's gradients`);
    }
  } finally {
    await browser?.close();
    await server.close();
  }
});

/** What tests/browser_threads/worker.js computes from (its `CONFIG`). */
const THREADS_CONFIG = { weightSeed: 3, dataSeed: 4, cnnSamples: 16, mlpSamples: 40 };

interface ThreadsRun {
  when: string;
  threads: number;
  gradientsShape: number[];
  gradients: string; // base64 of the Float32Array's bytes
  gradientsMs: number;
  jacobianShape: number[];
  jacobian: string;
  jacobianMs: number;
}

interface ThrownError {
  name: string;
  message: string;
}

interface ThreadsPageResults {
  error?: string;
  main: { crossOriginIsolated: boolean; threads: number; setThreadsTwo?: ThrownError };
  worker: {
    config: typeof THREADS_CONFIG;
    crossOriginIsolated: boolean;
    hardwareConcurrency: number;
    build: string;
    setThreadsOne: number;
    setThreadsTwo?: ThrownError;
    setThreadsTwoReturned?: number;
    runs: ThreadsRun[];
  };
}

/** worker.js's computation, here: a CNN's per-sample gradients and an MLP's Jacobian. */
function threadsExpected(): { gradients: Float32Array; gradientsShape: readonly number[]; jacobian: Float32Array; jacobianShape: readonly number[] } {
  const { weightSeed, dataSeed, cnnSamples: N, mlpSamples } = THREADS_CONFIG;
  manualSeed(weightSeed);
  const cnn = cnnNetwork();
  const mlp = new Sequential(new Linear(32, 64), new ReLU(), new Linear(64, 4));
  const x = randn([N, 3, 32, 32], dataSeed);
  const labels = { shape: [N], data: Int32Array.from({ length: N }, (_, n) => (n * 7) % 10) };
  const G = perSampleGradients(cnn, x, labels, { loss: "cross_entropy", reduction: "sum" });
  const J = jacobian(mlp, randn([mlpSamples, 32], dataSeed + 1));
  return { gradients: G.data.slice(), gradientsShape: G.shape, jacobian: J.data.slice(), jacobianShape: J.shape };
}

function decodeFloats(base64: string): Float32Array {
  const bytes = Buffer.from(base64, "base64");
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function assertIdentical(actual: Float32Array, wanted: Float32Array, what: string): void {
  assert.equal(actual.length, wanted.length, `${what}: length`);
  for (let i = 0; i < wanted.length; i++) {
    if (!Object.is(actual[i], wanted[i])) assert.fail(`${what}: element ${i} is ${actual[i]}, ${wanted[i]} on one thread`);
  }
}

/** Compares per sample (row n of a [N, ...] result), as assertClose does per row. */
function assertCloseBySample(actual: Float32Array, wanted: Float32Array, samples: number, what: string): void {
  assert.equal(actual.length, wanted.length, `${what}: length`);
  const width = wanted.length / samples;
  for (let n = 0; n < samples; n++) {
    assertClose([...actual.subarray(n * width, (n + 1) * width)], [...wanted.subarray(n * width, (n + 1) * width)], `${what}, sample ${n}`);
  }
}

test("Chromium: a dedicated worker of a cross-origin-isolated page runs navigator.hardwareConcurrency threads after await initialize(), bit for bit one thread's results; one thread elsewhere", { timeout: 180_000 }, async () => {
  requireChromium();
  const want = threadsExpected();
  const servers = { isolated: await startServer(true), "not isolated": await startServer(false) };
  let browser: Browser | undefined;
  try {
    // The isolation headers are on every file of the isolated server, and on none of the other.
    for (const [name, server] of Object.entries(servers)) {
      const response = await fetch(`${server.url}tests/browser_threads/worker.js`);
      await response.arrayBuffer();
      const isolated = name === "isolated";
      assert.equal(response.headers.get("cross-origin-opener-policy"), isolated ? "same-origin" : null, name);
      assert.equal(response.headers.get("cross-origin-embedder-policy"), isolated ? "require-corp" : null, name);
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    for (const [name, server] of Object.entries(servers)) {
      const isolated = name === "isolated";
      const loaded = await load(browser, `${server.url}tests/browser_threads/`, 120_000);
      const results = loaded.results as ThreadsPageResults;
      assert.equal(results.error, undefined, `${name}: the page failed: ${results.error}`);
      assert.deepEqual(loaded.problems, [], `${name}: the page reported problems`);
      const { main, worker } = results;
      assert.deepEqual(worker.config, THREADS_CONFIG, `${name}: tests/browser_threads/worker.js's CONFIG changed; update this test's`);
      assert.equal(main.crossOriginIsolated, isolated, `${name}: the page's crossOriginIsolated`);
      assert.equal(worker.crossOriginIsolated, isolated, `${name}: the worker's crossOriginIsolated`);
      // The main thread may not block in Atomics.wait: one thread, and more is refused.
      assert.equal(main.threads, 1, `${name}: threads() on the main thread`);
      assert.equal(main.setThreadsTwo?.name, "UnsupportedError", `${name}: setThreads(2) on the main thread: ${JSON.stringify(main.setThreadsTwo)}`);
      assert.match(main.setThreadsTwo!.message, /dedicated worker of a cross-origin-isolated page/);
      const cores = Math.min(worker.hardwareConcurrency, 64);
      const runs = Object.fromEntries(worker.runs.map((run) => [run.when, run]));
      // Until `await initialize()` started the workers, one thread.
      assert.equal(runs["before initialize()"].threads, 1, `${name}: threads() before initialize()`);
      if (isolated) {
        assert.ok(cores > 1, `${name}: this test needs a machine of 2 or more cores (navigator.hardwareConcurrency ${worker.hardwareConcurrency})`);
        assert.equal(runs["after initialize()"].threads, cores, `${name}: threads() after initialize() is navigator.hardwareConcurrency`);
        assert.equal(runs["again"].threads, cores);
        // More than one thread later takes effect at the next `await initialize()`; until then, the number in force.
        assert.equal(worker.setThreadsTwo, undefined, `${name}: setThreads(2) in the worker threw ${JSON.stringify(worker.setThreadsTwo)}`);
        assert.equal(worker.setThreadsTwoReturned, 1, `${name}: setThreads(2) returns the number in force until initialize()`);
        assert.equal(runs["setThreads(2), initialize()"].threads, 2);
        // The pool's workers are Web Workers made from a Blob URL.
        assert.ok(loaded.workers.filter((url) => url.startsWith("blob:")).length >= cores - 1, `${name}: the workers started: ${JSON.stringify(loaded.workers)}`);
      } else {
        for (const run of worker.runs) assert.equal(run.threads, 1, `${name}: threads() ${run.when}`);
        assert.equal(worker.setThreadsTwo?.name, "UnsupportedError", `${name}: setThreads(2) in the worker: ${JSON.stringify(worker.setThreadsTwo)}`);
        assert.deepEqual(loaded.workers.filter((url) => url.startsWith("blob:")), [], `${name}: no workers of the pool`);
      }
      assert.equal(worker.setThreadsOne, 1);
      assert.equal(runs["setThreads(1)"].threads, 1);
      // Every run, on any number of threads, gives the one-thread run's results, bit for bit.
      const one = runs["setThreads(1)"];
      const oneGradients = decodeFloats(one.gradients);
      const oneJacobian = decodeFloats(one.jacobian);
      for (const run of worker.runs) {
        assert.deepEqual(run.gradientsShape, want.gradientsShape, `${name}, ${run.when}: the gradients' shape`);
        assert.deepEqual(run.jacobianShape, want.jacobianShape, `${name}, ${run.when}: the Jacobian's shape`);
        assertIdentical(decodeFloats(run.gradients), oneGradients, `${name}, ${run.when} (${run.threads} threads): per-sample gradients`);
        assertIdentical(decodeFloats(run.jacobian), oneJacobian, `${name}, ${run.when} (${run.threads} threads): Jacobian`);
      }
      // And this process's, to the tolerance of another build (relaxed SIMD's fused multiply-adds).
      assertCloseBySample(oneGradients, want.gradients, THREADS_CONFIG.cnnSamples, `${name}: per-sample gradients`);
      assertCloseBySample(oneJacobian, want.jacobian, THREADS_CONFIG.mlpSamples, `${name}: Jacobian`);
    }
  } finally {
    await browser?.close();
    for (const server of Object.values(servers)) await server.close();
  }
});

/** The node binary: this one under node; under deno and bun, `node` on PATH (as npm test's). */
function nodeBinary(): string {
  return runtimeName() === "node" ? process.execPath : "node";
}

test("scripts/serve.mjs (npm run demo:browser) prints the URL and serves the repository on loopback, nothing outside it", { timeout: 30_000 }, async () => {
  const child = spawn(nodeBinary(), [join(root, "scripts", "serve.mjs"), "examples/browser/", "--port", "0"], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      let err = "";
      const timer = setTimeout(() => reject(new Error(`no URL printed within 10 s: ${out}${err}`)), 10_000);
      child.stdout!.on("data", (chunk) => {
        out += chunk;
        const match = /^open (http:\/\/127\.0\.0\.1:\d+\/examples\/browser\/)$/m.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.stderr!.on("data", (chunk) => (err += chunk));
      child.on("exit", (code) => reject(new Error(`serve.mjs exited (${code}): ${out}${err}`)));
    });
    const origin = new URL(url).origin;
    const types: Record<string, string> = {
      "/examples/browser/": "text/html",
      "/examples/browser/main.js": "text/javascript",
      "/dist/mod.js": "text/javascript",
      "/dist/kernels.baseline.wasm": "application/wasm",
      "/package.json": "application/json",
      "/scripts/serve.mjs": "text/javascript",
    };
    for (const [path, type] of Object.entries(types)) {
      const response = await fetch(origin + path);
      await response.arrayBuffer();
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get("content-type")?.split(";")[0], type, path);
    }
    const redirect = await fetch(origin + "/examples/browser", { redirect: "manual" });
    await redirect.arrayBuffer();
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get("location"), "/examples/browser/");
    for (const [path, status] of [
      ["/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 403],
      ["/..%2f..%2fetc%2fpasswd", 403],
      ["/no/such/file.js", 404],
    ] as const) {
      const response = await fetch(origin + path);
      await response.arrayBuffer();
      assert.equal(response.status, status, path);
    }
  } finally {
    child.kill("SIGTERM");
    if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once("exit", resolve));
  }
});
