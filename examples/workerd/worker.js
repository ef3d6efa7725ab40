// A workerd (Cloudflare Workers) module worker: per-sample gradient norms over HTTP.
//
//   POST /norms  Content-Type: application/json
//     { "x": [[...4 numbers], ...], "y": [class, ...] }          rows of 4 features
//     { "x": [...], "shape": [N, 4], "y": [class, ...] }          or flat, row-major, with a shape
//   POST /norms?y=0,2,1  Content-Type: application/octet-stream
//     body: x as a .npy file (float32 or float64, shape (N, 4)); y: the class indices in the query
//   GET /        what the worker serves, as JSON
//
// Answers { "norms": [...] }: sample n's gradient norm ‖∇θ loss_n‖ for the cross-entropy loss of
// a fixed model, Linear(4, 16) - ReLU - Linear(16, 3) initialised with manualSeed(0). Bad input is
// a 4xx with { "error": message }, the library's own message (ShapeError, ValueError,
// FormatError, ...), and the worker goes on serving.
//
// workerd forbids compiling WebAssembly from bytes, so the worker imports the precompiled entry
// (which never tries) and the kernels as a WebAssembly.Module: the bundler leaves the `.wasm`
// import alone (esbuild --external:*.wasm) and config.capnp declares a `wasm` module of that
// name (Wrangler resolves it from the package by itself). The worker hands the module in before
// the first computation; instantiating a precompiled module settles at start-up, so this
// top-level await is fine in workerd.
import {
  FormatError,
  initialize,
  isInitialized,
  Linear,
  manualSeed,
  MemoryError,
  npyToFloat32,
  perSampleNorms,
  readNpy,
  ReLU,
  Sequential,
  ShapeError,
  simdBuild,
  UnsupportedError,
  ValueError,
} from "jacobian-wasm/precompiled";
import kernels from "jacobian-wasm/kernels.baseline.wasm";

await initialize(kernels, "baseline");

const FEATURES = 4;
const CLASSES = 3;
const MAX_BODY = 1 << 20; // 1 MiB

manualSeed(0);
const net = new Sequential(new Linear(FEATURES, 16), new ReLU(), new Linear(16, CLASSES));

/** A request the worker refuses, with its HTTP status. */
class HttpError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** @param {unknown} error */
function isInputError(error) {
  return error instanceof ShapeError || error instanceof ValueError || error instanceof FormatError ||
    error instanceof UnsupportedError;
}

/** @param {number} status @param {unknown} body */
function json(status, body) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

/** The body's bytes, refused past MAX_BODY. @param {Request} request */
async function bodyBytes(request) {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY) throw new HttpError(413, `the body has ${declared} bytes, more than the ${MAX_BODY} this worker takes`);
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.length > MAX_BODY) throw new HttpError(413, `the body has ${bytes.length} bytes, more than the ${MAX_BODY} this worker takes`);
  return bytes;
}

/**
 * The shape of a nested array of numbers, checked to be rectangular, and its elements in order.
 * @param {unknown} value @param {string} name
 */
function nested(value, name) {
  /** @type {number[]} */
  const shape = [];
  for (let level = value; Array.isArray(level); level = level[0]) shape.push(level.length);
  /** @type {number[]} */
  const data = [];
  /** @param {unknown} v @param {number} depth @param {string} where */
  const walk = (v, depth, where) => {
    if (depth === shape.length) {
      if (typeof v !== "number") throw new FormatError(`${name}${where} is ${v === null ? "null" : typeof v}, not a number`);
      data.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new ShapeError(`${name} is not rectangular: ${name}${where} ${Array.isArray(v) ? `has ${v.length} elements, not ${shape[depth]}` : "is not an array"}`);
    }
    v.forEach((item, i) => walk(item, depth + 1, `${where}[${i}]`));
  };
  walk(value, 0, "");
  return { shape, data };
}

/** Class indices from the JSON body's array or the `y` query parameter ("0,2,1"). @param {unknown} y */
function labels(y) {
  if (y === undefined || y === null) throw new FormatError('the labels "y" are missing: give one class index per sample');
  const values = typeof y === "string" ? (y.trim() === "" ? [] : y.split(",").map((s) => Number(s.trim()))) : y;
  if (!Array.isArray(values)) throw new FormatError(`"y" must be an array of class indices, got ${typeof values}`);
  const { data } = nested(values, "y");
  // Float64: the library itself reports a label that is not a whole number or out of range.
  return { shape: [data.length], data: Float64Array.from(data) };
}

/** The batch of a JSON body. @param {Uint8Array} bytes */
function fromJson(bytes) {
  let body;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new FormatError(`the body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new FormatError('the JSON body must be an object { "x": ..., "y": [...] }');
  }
  if (body.x === undefined) throw new FormatError('the JSON body has no "x"');
  const x = nested(body.x, "x");
  if (body.shape !== undefined) {
    const shape = body.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new ShapeError(`"shape" must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (x.shape.length !== 1) throw new ShapeError(`with "shape", "x" must be flat; it has shape (${x.shape.join(", ")})`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== x.data.length) {
      throw new ShapeError(`"shape" (${shape.join(", ")}) holds ${count} values, "x" has ${x.data.length}`);
    }
    x.shape = shape;
  }
  if (typeof body.y === "string") throw new FormatError('"y" must be an array of class indices, got a string');
  return { x: { shape: x.shape, data: Float32Array.from(x.data) }, y: labels(body.y) };
}

/** The batch of a `.npy` body, labels in the query. @param {Uint8Array} bytes @param {URL} url */
function fromNpy(bytes, url) {
  const array = readNpy(bytes, "x.npy");
  return { x: { shape: array.shape, data: npyToFloat32(array, "x.npy") }, y: labels(url.searchParams.get("y")) };
}

/** @param {Request} request */
async function norms(request) {
  const url = new URL(request.url);
  const type = (request.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  const bytes = await bodyBytes(request);
  let batch;
  if (type === "application/json") batch = fromJson(bytes);
  else if (type === "application/octet-stream" || type === "application/x-npy") batch = fromNpy(bytes, url);
  else throw new HttpError(415, `Content-Type must be application/json or application/octet-stream (.npy), got "${type}"`);
  const result = perSampleNorms(net, batch.x, batch.y, { loss: "cross_entropy" });
  return json(200, { norms: Array.from(result.data) });
}

/** @param {Request} request */
async function handle(request) {
  const { pathname } = new URL(request.url);
  if (pathname === "/") {
    if (request.method !== "GET" && request.method !== "HEAD") throw new HttpError(405, `${request.method} / is not served: use GET`);
    return json(200, {
      model: `Linear(${FEATURES}, 16) - ReLU - Linear(16, ${CLASSES}), manualSeed(0)`,
      post: "/norms",
      loaded: isInitialized() ? simdBuild() : false,
    });
  }
  if (pathname !== "/norms") throw new HttpError(404, `${pathname} is not served: POST /norms`);
  if (request.method !== "POST") throw new HttpError(405, `${request.method} /norms is not served: use POST`);
  return norms(request);
}

export default {
  /** @param {Request} request */
  async fetch(request) {
    try {
      return await handle(request);
    } catch (error) {
      if (error instanceof HttpError) return json(error.status, { error: error.message });
      if (isInputError(error)) return json(400, { error: `${error.name}: ${error.message}` });
      if (error instanceof MemoryError) return json(413, { error: `${error.name}: ${error.message}` });
      // A bug or a misconfigured host: the message, never a stack.
      return json(500, { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    }
  },
};
