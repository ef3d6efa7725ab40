#!/usr/bin/env node
// A static file server for the repository root, on loopback only, so that a page can
// `import ... from "/dist/mod.js"` (browsers load ES modules over http, not from file://).
//
//   node scripts/serve.mjs [path] [--port N] [--isolated]     (or PORT=N; 0, the default, picks a free port)
//
// prints `open http://127.0.0.1:PORT/<path>` and serves until interrupted. Used by
// `npm run demo:browser` and, through `serve()`, by tests/browser.test.ts. Nothing outside
// the root is served (no `..`, no symlinks out of it), and nothing is cached. `--isolated`
// sends every file with `Cross-Origin-Opener-Policy: same-origin` and
// `Cross-Origin-Embedder-Policy: require-corp`: its pages and their workers are cross-origin
// isolated (`crossOriginIsolated`), which SharedArrayBuffer, and so threads, need.
import { createServer } from "node:http";
import { createReadStream, realpathSync, statSync } from "node:fs";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
};

/** The file a URL path names inside `root`, or undefined when it would leave the root. */
function fileFor(root, urlPath) {
  let path;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (path.includes("\0")) return undefined;
  const candidate = resolve(root, "." + path);
  if (candidate !== root && !candidate.startsWith(root + sep)) return undefined;
  return candidate;
}

/** Whether `file`, symlinks resolved, still lies inside `realRoot`. */
function inside(realRoot, file) {
  try {
    const real = realpathSync(file);
    return real === realRoot || real.startsWith(realRoot + sep);
  } catch {
    return false;
  }
}

function send(res, status, text) {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
  res.end(text + "\n");
}

/** The headers that make a page, and the workers it starts, cross-origin isolated. */
const ISOLATION = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };

/**
 * Starts the server on `host`:`port` (port 0 = a free one) and resolves once it listens.
 * `isolated`: send the cross-origin isolation headers (see above) with every file.
 * @param {{ root?: string, port?: number, host?: string, quiet?: boolean, isolated?: boolean }} [options]
 * @returns {Promise<{ url: string, port: number, close(): Promise<void> }>}
 */
export function serve({ root = REPO, port = 0, host = "127.0.0.1", quiet = true, isolated = false } = {}) {
  const base = resolve(root);
  const realRoot = realpathSync(base);
  const server = createServer((req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "method not allowed");
    const url = new URL(req.url ?? "/", "http://localhost");
    let file = fileFor(base, url.pathname);
    if (!file) return send(res, 403, "forbidden");
    let stats;
    try {
      stats = statSync(file);
      if (stats.isDirectory()) {
        // A directory without the trailing slash: redirect, so that the page's relative URLs work.
        if (!url.pathname.endsWith("/")) {
          res.writeHead(301, { location: url.pathname + "/" + url.search });
          return res.end();
        }
        file = join(file, "index.html");
        stats = statSync(file);
      }
    } catch {
      return send(res, 404, "not found");
    }
    if (!stats.isFile()) return send(res, 404, "not found");
    if (!inside(realRoot, file)) return send(res, 403, "forbidden");
    res.writeHead(200, {
      "content-type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
      "content-length": stats.size,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      ...(isolated ? ISOLATION : {}),
    });
    if (req.method === "HEAD") return res.end();
    createReadStream(file).on("error", () => res.destroy()).pipe(res);
    if (!quiet) console.log(`${req.method} ${url.pathname} 200`);
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address();
      const actual = typeof address === "object" && address ? address.port : port;
      resolvePromise({
        url: `http://${host}:${actual}/`,
        port: actual,
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections?.(); // keep-alive connections would otherwise hold close() open
          }),
      });
    });
  });
}

function parseArgs(argv) {
  let path = "";
  let isolated = false;
  let port = process.env.PORT !== undefined && process.env.PORT !== "" ? process.env.PORT : "0";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--port" || arg === "-p") port = argv[++i] ?? "";
    else if (arg.startsWith("--port=")) port = arg.slice("--port=".length);
    else if (arg === "--isolated") isolated = true;
    else if (arg === "--help" || arg === "-h") {
      console.log("usage: node scripts/serve.mjs [path] [--port N] [--isolated]   (PORT=N also works; 0 = a free port; --isolated: COOP/COEP headers)");
      process.exit(0);
    } else path = arg;
  }
  const number = Number(port);
  if (!Number.isInteger(number) || number < 0 || number > 65535) {
    console.error(`serve: --port must be an integer from 0 to 65535, got ${JSON.stringify(port)}`);
    process.exit(2);
  }
  return { path: path.replace(/^\.?\/+/, ""), port: number, isolated };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { path, port, isolated } = parseArgs(process.argv.slice(2));
  const { url, close } = await serve({ port, isolated });
  console.log(`serving ${REPO} on loopback${isolated ? ", cross-origin isolated (COOP same-origin, COEP require-corp)" : ""}`);
  console.log(`open ${url}${path}`);
  const stop = () => close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
