/**
 * Runs cli.ts under the runtime the tests run on (node with the tsx loader, deno, or bun).
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The runtime these tests run on. */
export function runtimeName(): "node" | "deno" | "bun" {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (g.Deno !== undefined) return "deno";
  if (g.Bun !== undefined) return "bun";
  return "node";
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `jacobian-wasm <args>` in a child process of the current runtime. */
export function runCli(args: string[], options: { env?: Record<string, string> } = {}): CliResult {
  return runTypeScript(join(root, "cli.ts"), args, options);
}

/**
 * Runs a TypeScript module's source in a child process of the current runtime (fresh module
 * state: nothing loaded yet), from a file in build/ that is removed afterwards.
 */
export function runSource(source: string, options: { env?: Record<string, string> } = {}): CliResult {
  mkdirSync(join(root, "build"), { recursive: true });
  const file = join(root, "build", `child-${process.pid}-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(file, source);
  try {
    return runTypeScript(file, [], options);
  } finally {
    rmSync(file, { force: true });
  }
}

/**
 * Starts `jacobian-wasm <args>` in a child process of the current runtime and returns at once
 * (for tests that act on it while it runs: signals); stdout and stderr are piped.
 */
export function spawnCli(args: string[], options: { env?: Record<string, string> } = {}): ChildProcess {
  return spawn(process.execPath, [...runtimePrefix(join(root, "cli.ts")), ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** The arguments before a script's own: how each runtime runs a TypeScript file. */
function runtimePrefix(script: string): string[] {
  const runtime = runtimeName();
  return runtime === "deno" ? ["run", "-A", script] : runtime === "bun" ? [script] : ["--import", "tsx", script];
}

function runTypeScript(cli: string, args: string[], options: { env?: Record<string, string> }): CliResult {
  const command = process.execPath;
  const prefix = runtimePrefix(cli);
  const run = spawnSync(command, [...prefix, ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    maxBuffer: 1 << 26,
  });
  return { status: run.status, stdout: run.stdout ?? "", stderr: run.stderr ?? "" };
}
