/**
/**
 * What a worker thread runs: it instantiates the kernels over the shared memory it is sent,
 * moves their scratch to its own copy, says it is ready, then runs each tape posted to its
 * control block (see pool.ts) until told to stop. Kept as a string so that the package needs
 * no worker file of its own. One function, `runTapes`, wrapped twice: for `node:worker_threads`
 * with `eval: true` (node, deno and bun) and for a Web Worker made from a Blob URL (a browser's
 * dedicated worker, web_workers.ts). The one call on a tape that is not a kernel, TOUCH_PAGES,
 * takes its buffer from the port it was given, synchronously (`receiveMessageOnPort`, which
 * only node:worker_threads has; the pool posts it only there).
 */
const runTapes = `({ module, memory, control, delta, tapeOffset, spinMs: SPIN_MS, port }, receiveMessageOnPort) => {
  const header = control >>> 2;
  const SEQ = 0, DONE = 1, RESULT = 2, FAILED = 3, READY = 4, ACTIVE = 5;
  const TOUCH_PAGES = -1, PAGE_BYTES = 4096;
  // When each tape began and ended, in ms since the epoch (the pool judges from them whether
  // this thread has a core of its own: parallel.ts, contention).
  const BEGAN = (control >>> 3) + 4, ENDED = BEGAN + 1;
  const epochNow = () => performance.timeOrigin + performance.now();
  // [from, to) of the buffer the pool posted to the port: a zero written to each page faults it in.
  // An untouched ArrayBuffer of the buffer's size makes this isolate's collector count it, so
  // that it lets go of the buffer as soon as the caller's does (parallel.ts, sharedResultsFreed).
  const touchPages = (from, to) => {
    const bytes = new Uint8Array(receiveMessageOnPort(port).message);
    for (let at = from; at < to; at += PAGE_BYTES) bytes[at] = 0;
    void new ArrayBuffer(bytes.byteLength);
  };
  let int32 = new Int32Array(memory.buffer);
  let kernels;
  try {
    const imports = { env: { memory, abort(_m, _f, line, column) { throw new Error("kernel aborted at " + line + ":" + column); } } };
    const instance = new WebAssembly.Instance(module, imports);
    kernels = WebAssembly.Module.exports(module).map(({ name }) => instance.exports[name]);
    instance.exports.relocate_scratch(delta);
  } catch (error) {
    console.error("jacobian-wasm worker:", error);
    Atomics.store(int32, header + FAILED, 1);
    Atomics.store(int32, header + READY, 1);
    Atomics.notify(int32, header + READY);
    return;
  }
  Atomics.store(int32, header + READY, 1);
  Atomics.notify(int32, header + READY);
  let seen = 0;
  for (;;) {
    // During a computation (ACTIVE), spin before sleeping: the next tape usually follows within
    // microseconds (the next layer, the next chunk), and a wake-up from Atomics.wait costs
    // hundreds of them on a virtual machine. Between computations, sleep at once.
    const spinUntil = performance.now() + SPIN_MS;
    while (Atomics.load(int32, header + SEQ) === seen && Atomics.load(int32, header + ACTIVE) === 1 && performance.now() < spinUntil) {}
    Atomics.wait(int32, header + SEQ, seen);
    const sequence = Atomics.load(int32, header + SEQ);
    if (sequence < 0) return;
    if (sequence === seen) continue;
    seen = sequence;
    if (int32.buffer !== memory.buffer) int32 = new Int32Array(memory.buffer);
    const times = new Float64Array(memory.buffer);
    times[BEGAN] = epochNow();
    const tape = new Float64Array(memory.buffer, control + tapeOffset);
    let result = 0;
    try {
      let word = 1;
      for (let c = tape[0]; c > 0; c--) {
        const fn = tape[word] === TOUCH_PAGES ? touchPages : kernels[tape[word]];
        const argc = tape[word + 1];
        const args = new Array(argc);
        for (let a = 0; a < argc; a++) args[a] = tape[word + 2 + a];
        word += 2 + argc;
        result = fn(...args) | 0;
      }
    } catch (error) {
      console.error("jacobian-wasm worker:", error);
      Atomics.store(int32, header + FAILED, 1);
    }
    times[ENDED] = epochNow();
    Atomics.store(int32, header + RESULT, result);
    Atomics.store(int32, header + DONE, sequence);
    Atomics.notify(int32, header + DONE);
  }
}`;

/** The worker of `node:worker_threads` (`eval: true`): its first message starts it. */
export const workerSource = `
"use strict";
const { parentPort, receiveMessageOnPort } = require("node:worker_threads");
parentPort.once("message", (data) => (${runTapes})(data, receiveMessageOnPort));
`;

/** The classic Web Worker (from a Blob URL): its first message starts it; it never returns to its event loop. */
export const webWorkerSource = `
"use strict";
self.onmessage = ({ data }) => {
  self.onmessage = null;
  (${runTapes})(data);
};
`;
