// The main thread's side of tests/browser.test.ts's threads test: it reports what the library
// does here (one thread: a page's main thread may not block in Atomics.wait), then starts
// worker.js as a module worker and leaves both reports on `window.results`.
import { initialize, setThreads, threads } from "/dist/mod.js";

/** The error `body` throws, as { name, message }, or undefined when it returns. */
function thrown(body) {
  try {
    body();
    return undefined;
  } catch (error) {
    return { name: error?.name, message: String(error?.message ?? error) };
  }
}

async function run() {
  await initialize();
  const main = {
    crossOriginIsolated: self.crossOriginIsolated === true,
    threads: threads(),
    setThreadsTwo: thrown(() => setThreads(2)),
  };
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const report = await new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => resolve(data);
    worker.onerror = (event) => reject(new Error(`worker.js failed: ${event.message}`));
  });
  worker.terminate();
  if (report.error) throw new Error(`in worker.js: ${report.error}`);
  // Typed arrays go to the test as base64 of their bytes (page.evaluate would send each float as JSON).
  const base64 = (array) => {
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  const runs = report.runs.map(({ gradients, jacobian, ...rest }) => ({ ...rest, gradients: base64(gradients), jacobian: base64(jacobian) }));
  return { main, worker: { ...report, runs } };
}

run().then(
  (results) => {
    window.results = results;
    document.getElementById("status").textContent = "done";
  },
  (error) => {
    window.results = { error: String(error?.stack ?? error) };
    document.getElementById("status").textContent = String(error);
  },
);
