// What the compiled kernels depend on, as one hash: assembly/ (every file), asconfig.json, and the
// versions of the compiler and optimiser that turn them into WebAssembly. scripts/build-wasm.mjs
// writes it into src/wasm/kernels.generated.ts; scripts/prepare.mjs compares it to decide
// whether the committed kernels are those of these sources (then there is nothing to compile).
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

function filesUnder(directory) {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

function installedVersion(root, name) {
  try {
    return JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return "not installed";
  }
}

/** The hash (hex sha256) of the kernels' sources and tools, from the repository at `root`. */
export function kernelSourcesHash(root) {
  const hash = createHash("sha256");
  const files = [...filesUnder(join(root, "assembly")), join(root, "asconfig.json")].map((f) => relative(root, f).split("\\").join("/")).sort();
  for (const file of files) {
    const bytes = readFileSync(join(root, file));
    hash.update(`${file}\0${bytes.length}\0`).update(bytes);
  }
  for (const tool of ["assemblyscript", "binaryen"]) hash.update(`${tool}@${installedVersion(root, tool)}\0`);
  return hash.digest("hex");
}

/** The line of kernels.generated.ts that records the hash of the sources it was compiled from. */
export const SOURCES_LINE = /^\/\/ Sources: sha256 ([0-9a-f]{64}) of assembly\/, asconfig\.json and the compiler's versions\.$/m;
export const sourcesLine = (hash) => `// Sources: sha256 ${hash} of assembly/, asconfig.json and the compiler's versions.`;
