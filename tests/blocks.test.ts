/**
 * Residual and Parallel blocks: forward values by hand, PyTorch-style names, shape errors,
 * the spec form, and per-sample gradients through a small ResNet equal to naive backprop.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Conv2d,
  Flatten,
  Identity,
  jacobian,
  jacobianNaive,
  Linear,
  modelFromSpec,
  Parallel,
  perSampleGradients,
  perSampleGradientsNaive,
  randn,
  ReLU,
  Residual,
  Sequential,
  ShapeError,
  tensor,
} from "../mod.ts";
import type { Tensor } from "../mod.ts";
import { manualSeed } from "../src/layers/init.ts";
import { assertFusedMatchesApart } from "./helpers/fusion.ts";

function linear(inF: number, outF: number, weight: number[], bias: number[]): Linear {
  const layer = new Linear(inF, outF);
  layer.weight.data.set(weight);
  layer.bias!.data.set(bias);
  return layer;
}

test("Residual adds the block's output to its input, or to a projection shortcut's", () => {
  const x = tensor([1, 2, -3, 4], [2, 2]);
  const block = new Residual(linear(2, 2, [1, 0, 0, 2], [0.5, 0]));
  assert.deepEqual(Array.from(block.forward(x).data), [1 + 1.5, 2 + 4, -3 - 2.5, 4 + 8]);
  const projected = new Residual(linear(2, 1, [1, 1], [0]), linear(2, 1, [2, 0], [1]));
  assert.deepEqual(Array.from(projected.forward(x).data), [3 + 3, 1 - 5]);
  assert.deepEqual(projected.parameters().map(([n]) => n), ["block.weight", "block.bias", "shortcut.weight", "shortcut.bias"]);
});

test("Parallel concatenates along dim (channels by default) or sums its branches", () => {
  const x = tensor([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 2, 2]);
  const conv = new Conv2d(2, 1, 1, { bias: false });
  conv.weight.data.set([1, 10]);
  const concat = new Parallel([conv, new Identity()]);
  const y = concat.forward(x);
  assert.deepEqual(y.shape, [1, 3, 2, 2]);
  assert.deepEqual(Array.from(y.data), [51, 62, 73, 84, 1, 2, 3, 4, 5, 6, 7, 8]);
  const last = new Parallel([new Identity(), new Identity()], { dim: -1 }).forward(tensor([1, 2, 3, 4], [1, 2, 2]));
  assert.deepEqual(last.shape, [1, 2, 4]);
  assert.deepEqual(Array.from(last.data), [1, 2, 1, 2, 3, 4, 3, 4]);
  const summed = new Parallel([new Identity(), new ReLU()], { combine: "sum" }).forward(tensor([-1, 2], [1, 2]));
  assert.deepEqual(Array.from(summed.data), [-1, 4]);
});

test("blocks whose branches do not fit say which block and which shapes", () => {
  const bad = new Sequential(new Linear(3, 3), new Residual(new Linear(3, 2)));
  assert.throws(() => bad.forward(randn([2, 3], 0)), (e: Error) =>
    e instanceof ShapeError && e.message.includes("1 (Residual)") && e.message.includes("(2,)") && e.message.includes("(3,)"));
  const mismatch = new Parallel([new Conv2d(1, 2, 3), new Identity()]);
  assert.throws(() => mismatch.forward(randn([1, 1, 5, 5], 0)), /branch outputs must agree on every dim but 1/);
  assert.throws(() => new Parallel([new Identity()], { dim: 0 }).forward(randn([2, 3], 0)), /dim 0 \(samples\) cannot be concatenated/);
});

test("the spec form of Residual and Parallel builds the same network and state-dict names", () => {
  const net = modelFromSpec({
    format: "torch.nn.Sequential",
    layers: [
      { type: "Conv2d", in_channels: 1, out_channels: 4, kernel_size: 3, padding: 1 },
      {
        type: "Residual",
        block: { type: "Sequential", layers: [{ type: "Conv2d", in_channels: 4, out_channels: 4, kernel_size: 3, padding: 1 }, { type: "ReLU" }] },
      },
      {
        type: "Residual",
        block: { type: "Conv2d", in_channels: 4, out_channels: 8, kernel_size: 3, stride: 2, padding: 1 },
        shortcut: { type: "Conv2d", in_channels: 4, out_channels: 8, kernel_size: 1, stride: 2, bias: false },
      },
      { type: "Parallel", combine: "concat", dim: 1, branches: [{ type: "Identity" }, { type: "Conv2d", in_channels: 8, out_channels: 2, kernel_size: 1 }] },
      { type: "Flatten" },
      { type: "Linear", in_features: 10 * 4 * 4, out_features: 3 },
    ],
  });
  assert.deepEqual(net.parameters().map(([n]) => n), [
    "0.weight", "0.bias", "1.block.0.weight", "1.block.0.bias", "2.block.weight", "2.block.bias", "2.shortcut.weight",
    "3.1.weight", "3.1.bias", "5.weight", "5.bias",
  ]);
  assert.deepEqual(net.forward(randn([2, 1, 8, 8], 0)).shape, [2, 3]);
  assert.throws(() => modelFromSpec({ format: "torch.nn.Sequential", layers: [{ type: "Residual", block: { type: "ReLU" }, skip: 1 }] }), /unknown hyperparameter "skip"/);
});

test("a small ResNet gives per-sample gradients and Jacobians equal to naive per-sample backprop", () => {
  manualSeed(7);
  const block = (c: number) => new Residual(new Sequential(new Conv2d(c, c, 3, { padding: 1 }), new ReLU(), new Conv2d(c, c, 3, { padding: 1 })));
  const net = new Sequential(
    new Conv2d(2, 4, 3, { padding: 1 }),
    new ReLU(),
    block(4),
    new ReLU(),
    new Residual(new Sequential(new Conv2d(4, 6, 3, { stride: 2, padding: 1 }), new ReLU()), new Conv2d(4, 6, 1, { stride: 2 })),
    new Parallel([block(6), new Sequential(new Conv2d(6, 2, 1), new ReLU())]),
    new Flatten(),
    new Linear(8 * 3 * 3, 3),
  );
  const x = randn([3, 2, 6, 6], 2);
  const y = { shape: [3], data: new Int32Array([0, 2, 1]) };
  const fast = perSampleGradients(net, x, y, { loss: "cross_entropy" });
  const slow = perSampleGradientsNaive(net, x, y, { loss: "cross_entropy" }) as Tensor;
  const worst = (a: Tensor, b: Tensor) => a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i])), 0);
  const scale = (a: Tensor) => a.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert.ok(scale(fast) > 0);
  assert.ok(worst(fast, slow) <= 1e-5 * scale(slow), `difference ${worst(fast, slow)}`);
  const J = jacobian(net, x);
  const Jn = jacobianNaive(net, x) as Tensor;
  assert.deepEqual(J.shape, [3, 3, fast.shape[1]]);
  assert.ok(worst(J, Jn) <= 1e-5 * scale(Jn), `difference ${worst(J, Jn)}`);
});

test("Residual then ReLU (compiled as one fused step) gives the same outputs, Jacobians, per-sample and batch gradients as the pair apart", () => {
  // A nested Sequential keeps the two apart. The block ends in a convolution, whose per-sample
  // weights read the gradient the fused step masks in place; identity and projection shortcuts.
  for (const [seed, projected] of [[1, false], [2, true], [3, false], [4, true]] as const) {
    const make = (fused: boolean) => {
      manualSeed(seed);
      const residual = new Residual(
        new Sequential(new Conv2d(3, 3, 3, { padding: 1 }), new ReLU(), new Conv2d(3, 3, 3, { padding: 1 })),
        projected ? new Conv2d(3, 3, 1) : null,
      );
      return new Sequential(new Conv2d(2, 3, 1), residual, fused ? new ReLU() : new Sequential(new ReLU()), new Flatten(), new Linear(3 * 5 * 5, 2));
    };
    const x = randn([3, 2, 5, 5], seed);
    assertFusedMatchesApart(make(true), make(false), x, tensor([0, 1, 1], [3]));
  }
});
