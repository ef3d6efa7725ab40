// npm's "prepare": run by `npm install` / `npm ci` in a clone, by `npm pack` and `npm publish`,
// and by installs from a directory or from git (never by an install of the packed tarball or
// from the registry: those get dist/ as packed). It builds only what is out of date, so that
// a clone whose outputs are fresh does nothing:
// - the kernels: compiled (scripts/build-wasm.mjs, some 45 s) only when the hash of their sources
//   differs from the one src/wasm/kernels.generated.ts (committed) records; otherwise
//   dist/kernels.*.wasm are written from the modules that file embeds, if they differ;
// - dist/: tsc, only when a .ts file it is built from is newer than its output (or missing).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { kernelSourcesHash, SOURCES_LINE } from "./kernel-sources.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`prepare: ${args.join(" ")} failed (${result.error?.message ?? `exit code ${result.status ?? result.signal}`})`);
    process.exit(1);
  }
}

// The kernels.
const generated = join(root, "src", "wasm", "kernels.generated.ts");
const recorded = existsSync(generated) ? SOURCES_LINE.exec(readFileSync(generated, "utf8"))?.[1] : undefined;
if (recorded !== kernelSourcesHash(root)) {
  console.error("prepare: assembly/ changed since src/wasm/kernels.generated.ts was built: compiling the kernels");
  run(process.execPath, [join("scripts", "build-wasm.mjs")]);
} else {
  const text = readFileSync(generated, "utf8");
  const embedded = (name) => Buffer.from(new RegExp(`export const ${name} =\\s*"([A-Za-z0-9+/=]*)"`).exec(text)[1], "base64");
  mkdirSync(join(root, "dist"), { recursive: true });
  for (const [name, file] of [["baselineWasmBase64", "kernels.baseline.wasm"], ["relaxedWasmBase64", "kernels.relaxed.wasm"]]) {
    const bytes = embedded(name);
    const path = join(root, "dist", file);
    if (!existsSync(path) || !bytes.equals(readFileSync(path))) writeFileSync(path, bytes);
  }
}

// dist/ from the TypeScript sources (tsconfig.build.json: mod.ts, precompiled.ts, cli.ts, src/).
function sources() {
  const walk = (directory) =>
    readdirSync(join(root, directory), { withFileTypes: true }).flatMap((entry) => {
      const path = join(directory, entry.name);
      return entry.isDirectory() ? walk(path) : path.endsWith(".ts") && !path.endsWith(".d.ts") ? [path] : [];
    });
  return ["mod.ts", "precompiled.ts", "cli.ts", ...walk("src")];
}
const mtime = (path) => (existsSync(join(root, path)) ? statSync(join(root, path)).mtimeMs : -Infinity);
const configTime = mtime("tsconfig.build.json");
const stale = sources().filter((source) => {
  const built = mtime(join("dist", source.replace(/\.ts$/, ".js")));
  return built < mtime(source) || built < configTime;
});
if (stale.length > 0) {
  console.error(`prepare: building dist/ (${stale.length} of its sources newer than their output, ${stale[0]} among them)`);
  run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"]);
}
