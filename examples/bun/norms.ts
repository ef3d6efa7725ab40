/**
 * Per-sample gradient norms of a small classifier, under Bun.
 *
 *   bun examples/bun/norms.ts                 a generated batch of 8 samples
 *   bun examples/bun/norms.ts x.npy y.npy     x: (N, 4) floats, y: (N,) class indices
 *
 * Prints one JSON line: { "runtime", "build", "norms" }. In a project, import "jacobian-wasm"
 * (Bun then runs the package's TypeScript sources) instead of the repository's mod.ts.
 */
import {
  Linear,
  manualSeed,
  npyToFloat32,
  npyToIntegers,
  perSampleNorms,
  randn,
  readNpy,
  ReLU,
  Sequential,
  simdBuild,
} from "../../mod.ts";
import type { Tensor } from "../../mod.ts";

manualSeed(0);
const net = new Sequential(new Linear(4, 16), new ReLU(), new Linear(16, 3));

const args = Bun.argv.slice(2);
let x: Tensor;
let y: { shape: number[]; data: Int32Array };
if (args.length === 2) {
  const [xPath, yPath] = args;
  const xs = readNpy(new Uint8Array(await Bun.file(xPath).arrayBuffer()), xPath);
  const ys = readNpy(new Uint8Array(await Bun.file(yPath).arrayBuffer()), yPath);
  x = { shape: xs.shape, data: npyToFloat32(xs, xPath) };
  y = { shape: ys.shape, data: npyToIntegers(ys, yPath) };
} else if (args.length === 0) {
  x = randn([8, 4], 1);
  y = { shape: [8], data: Int32Array.from({ length: 8 }, (_, n) => n % 3) };
} else {
  console.error("usage: bun examples/bun/norms.ts [x.npy y.npy]");
  process.exit(2);
}

try {
  const norms = perSampleNorms(net, x, y, { loss: "cross_entropy" });
  console.log(JSON.stringify({ runtime: `bun ${Bun.version}`, build: simdBuild(), norms: Array.from(norms.data) }));
} catch (error) {
  // The library's errors name what was wrong (ShapeError, ValueError, FormatError): print that alone.
  console.error(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  process.exit(2);
}
