/**
 * Side by side with PyTorch: runs `torch_peer.py` (functorch vmap(grad) and one backward per
 * sample) just before our cases on each runtime, in one sitting, and prints the ratios as
 * the README's markdown tables. The same as `npm run bench -- --markdown` (which implies
 * `--runtime all --torch`); any bench flag may be added.
 *
 *   node --import tsx bench/compare.ts [--quick] [--runtime node] [--plot docs/bench.svg]
 */
import process from "node:process";
import { main } from "./bench.ts";

const argv = process.argv.slice(2);
const defaults = [
  "--torch",
  ...(argv.includes("--json") ? [] : ["--markdown"]),
  ...(argv.includes("--runtime") ? [] : ["--runtime", "all"]),
];
try {
  await main([...defaults, ...argv]);
  process.exit(0);
} catch (error) {
  console.error(`compare: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(2);
}
