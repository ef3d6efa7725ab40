#!/usr/bin/env node
/**
 * The command line: `jacobian-wasm jacobian ...` computes per-sample gradients or output
 * Jacobians of a model file on a batch file; `jacobian-wasm demo` runs the seed's example.
 * Runs under node (built to dist/cli.js), `deno run -A cli.ts` and `bun cli.ts`. The commands
 * are in src/command_line.ts; this file gives them the process's arguments and exit code.
 * Bad input ends with one line on stderr and exit code 2, and never a half-written file; so
 * does a full disk; SIGINT and SIGTERM end it with one line and exit code 130 or 143, also
 * in the middle of a long write, with any temporary file removed.
 */
import process from "node:process";
import { interrupted, runCommandLine, SIGNAL_EXIT_CODES } from "./src/command_line.ts";

// A file-size limit (ulimit -f) must end a write with EFBIG, reported like any write error and
// with the temporary file removed, not kill the process: deno's default for SIGXFSZ (node and
// bun ignore it already).
if (process.platform !== "win32") {
  try {
    process.on("SIGXFSZ", () => {});
  } catch {
    // A runtime without this signal has no such default either.
  }
}

const signalHandlers = (Object.keys(SIGNAL_EXIT_CODES) as (keyof typeof SIGNAL_EXIT_CODES)[]).map((signal) => {
  const handler = () => {
    console.error(interrupted(signal));
    process.exit(SIGNAL_EXIT_CODES[signal]);
  };
  process.on(signal, handler);
  return [signal, handler] as const;
});

let code: number;
try {
  code = await runCommandLine(process.argv.slice(2));
} finally {
  // The run is over: a listener left would only keep a runtime's event loop waiting for signals.
  for (const [signal, handler] of signalHandlers) process.off(signal, handler);
}
if (code !== 0) process.exit(code);
