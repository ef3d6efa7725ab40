/**
 * The layers of issue 4 (BatchNorm, Residual, adaptive pooling, ConvTranspose, Embedding,
 * LayerNorm, GroupNorm) in small models, and models beyond the three public cases (LeNet-5,
 * a wider MLP, a 1-d audio CNN), against PyTorch's functorch on the same models
 * (bench/torch_layers.py), measured in one sitting: ours, then PyTorch, then ours again, and
 * each ratio taken against the faster of our two runs' neighbours... simply: ours is the
 * median over both rounds, PyTorch the faster of its runs.
 *
 *   node --import tsx bench/layers.ts [--no-torch]    (also: deno run -A / bun)
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import {
  AdaptiveAvgPool1d,
  AdaptiveAvgPool2d,
  AvgPool2d,
  Conv1d,
  BatchNorm2d,
  Conv2d,
  ConvTranspose2d,
  Embedding,
  Flatten,
  GELU,
  GroupNorm,
  LayerNorm,
  Linear,
  MaxPool1d,
  perSampleGradients,
  randn,
  ReLU,
  Residual,
  Sequential,
  simdBuild,
  Tanh,
  tensor,
} from "../mod.ts";
import type { Module, Tensor } from "../mod.ts";

const here = dirname(fileURLToPath(import.meta.url));

interface Case {
  name: string;
  net: Module;
  x: Tensor;
}

function cases(): Case[] {
  const block = new Sequential(new Conv2d(16, 16, 3, { padding: 1 }), new BatchNorm2d(16), new ReLU(), new Conv2d(16, 16, 3, { padding: 1 }), new BatchNorm2d(16));
  const tokens = new Float32Array(256 * 16).map((_, i) => (i * 7919) % 1000);
  return [
    {
      name: "resnet-bn",
      net: new Sequential(new Conv2d(3, 16, 3, { padding: 1 }), new BatchNorm2d(16), new ReLU(), new Residual(block), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(16, 10)),
      x: randn([64, 3, 32, 32], 1),
    },
    {
      name: "decoder",
      net: new Sequential(
        new ConvTranspose2d(16, 32, 4, { stride: 2, padding: 1 }), new ReLU(),
        new ConvTranspose2d(32, 16, 4, { stride: 2, padding: 1 }), new ReLU(),
        new ConvTranspose2d(16, 3, 4, { stride: 2, padding: 1 }), new Flatten(), new Linear(3 * 32 * 32, 10),
      ),
      x: randn([64, 16, 4, 4], 2),
    },
    {
      name: "lenet5",
      net: new Sequential(
        new Conv2d(1, 6, 5, { padding: 2 }), new Tanh(), new AvgPool2d(2),
        new Conv2d(6, 16, 5), new Tanh(), new AvgPool2d(2), new Flatten(),
        new Linear(16 * 5 * 5, 120), new Tanh(), new Linear(120, 84), new Tanh(), new Linear(84, 10),
      ),
      x: randn([256, 1, 28, 28], 3),
    },
    {
      name: "mlp-wide",
      net: new Sequential(new Linear(784, 512), new ReLU(), new Linear(512, 512), new ReLU(), new Linear(512, 10)),
      x: randn([64, 784], 4),
    },
    {
      name: "audio1d",
      net: new Sequential(
        new Conv1d(1, 16, 9, { stride: 4 }), new ReLU(), new MaxPool1d(2),
        new Conv1d(16, 32, 9, { stride: 2 }), new ReLU(), new AdaptiveAvgPool1d(1), new Flatten(), new Linear(32, 10),
      ),
      x: randn([64, 1, 4000], 5),
    },
    {
      name: "embedding-ln",
      net: new Sequential(new Embedding(1000, 64), new LayerNorm(64), new GELU(), new Flatten(), new GroupNorm(4, 1024), new Linear(1024, 10)),
      x: tensor(tokens, [256, 16]),
    },
  ];
}

function median(fn: () => unknown, runs = 9): number {
  fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[runs >> 1];
}

function ours(): Map<string, { ms: number; D: number; N: number }> {
  const out = new Map<string, { ms: number; D: number; N: number }>();
  for (const c of cases()) {
    const N = c.x.shape[0];
    const y = { shape: [N], data: new Int32Array(N).map((_, i) => i % 10) };
    const D = c.net.parameters().reduce((s, [, p]) => s + p.data.length, 0);
    const result = new Float32Array(N * D);
    const ms = median(() => perSampleGradients(c.net, c.x, y, { loss: "cross_entropy", reduction: "sum", out: result }));
    out.set(c.name, { ms, D, N });
  }
  return out;
}

const first = ours();
const torch = new Map<string, number>();
if (!process.argv.includes("--no-torch")) {
  const run = spawnSync("/usr/bin/python3", [join(here, "torch_layers.py")], { encoding: "utf8" });
  if (run.status !== 0) console.error(`PyTorch peer failed: ${run.stderr.trim().split("\n").pop()}`);
  for (const line of (run.stdout ?? "").split("\n").filter(Boolean)) {
    const row = JSON.parse(line);
    torch.set(row.case, row.functorch_ms);
  }
}
const second = ours();
for (const [name, a] of first) {
  const ms = Math.min(a.ms, second.get(name)!.ms);
  const peer = torch.get(name);
  console.log(JSON.stringify({
    case: name,
    N: a.N,
    D: a.D,
    build: simdBuild(),
    median_ms: Math.round(ms * 1000) / 1000,
    functorch_ms: peer ?? null,
    vs_functorch: peer === undefined ? null : Math.round((peer / ms) * 100) / 100,
  }));
}
