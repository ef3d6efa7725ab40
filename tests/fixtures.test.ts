/**
 * Models exported from PyTorch (tests/fixtures/, made by make_fixtures.py with PyTorch in
 * float64) give, through the API and through the CLI, the forward outputs, output
 * Jacobians and per-sample loss gradients PyTorch computed: relative error ≤ 1e-4.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jacobian, loadModel, npyToFloat32, npyToIntegers, perSampleGradients, readNpy } from "../mod.ts";
import type { LossName, Reduction, Target, Tensor } from "../mod.ts";
import { root, runCli } from "./helpers/cli.ts";
import { relativeError } from "./reference/mod.ts";

interface Case {
  objective: "output" | LossName;
  reduction?: Reduction;
  target?: string;
  file: string;
}

const fixtures = join(root, "tests", "fixtures");
const names = readdirSync(fixtures, { withFileTypes: true })
  .filter((e) => e.isDirectory() && readdirSync(join(fixtures, e.name)).includes("cases.json"))
  .map((e) => e.name)
  .sort();

function npy(path: string) {
  return readNpy(new Uint8Array(readFileSync(path)), path);
}

function tensorFrom(path: string): Tensor {
  const array = npy(path);
  return { shape: array.shape, data: npyToFloat32(array, path) };
}

function targetFrom(path: string, objective: LossName): Target {
  const array = npy(path);
  return objective === "cross_entropy" && array.dtype !== "float32" && array.dtype !== "float64"
    ? { shape: array.shape, data: npyToIntegers(array, path) }
    : { shape: array.shape, data: npyToFloat32(array, path) };
}

test("the PyTorch fixtures cover every core layer", () => {
  const types = new Set<string>();
  const visit = (layers: { type: string; layers?: unknown }[]) => {
    for (const l of layers) {
      types.add(l.type);
      if (Array.isArray(l.layers)) visit(l.layers);
    }
  };
  for (const name of names) visit(JSON.parse(readFileSync(join(fixtures, name, "model.json"), "utf8")).layers);
  const core = [
    "Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "ELU", "GELU", "SiLU", "Softplus",
    "Identity", "Dropout", "Flatten", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "Sequential",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LayerNorm", "GroupNorm",
    "Embedding", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d", "Unflatten",
  ];
  assert.deepEqual(core.filter((t) => !types.has(t)), []);
});

for (const name of names) {
  const dir = join(fixtures, name);
  const cases: Case[] = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8"));

  test(`fixture ${name}: forward, output Jacobian and per-sample loss gradients equal PyTorch's (API)`, () => {
    const net = loadModel(readFileSync(join(dir, "model.json"), "utf8"), new Uint8Array(readFileSync(join(dir, "weights.safetensors"))));
    const x = tensorFrom(join(dir, "x.npy"));
    const output = npy(join(dir, "output.npy"));
    const y = net.forward(x);
    assert.deepEqual(y.shape, output.shape);
    assert.ok(relativeError(y.data, npyToFloat32(output)) <= 1e-4, `${name}: forward`);
    for (const c of cases) {
      const expected = npy(join(dir, c.file));
      const actual = c.objective === "output"
        ? jacobian(net, x)
        : perSampleGradients(net, x, targetFrom(join(dir, c.target!), c.objective), { loss: c.objective, reduction: c.reduction });
      assert.deepEqual(actual.shape, expected.shape, `${name}/${c.file}`);
      const error = relativeError(actual.data, npyToFloat32(expected));
      assert.ok(error <= 1e-4, `${name}/${c.file}: relative error ${error}`);
    }
  });

  test(`fixture ${name}: the CLI writes PyTorch's per-sample gradients and Jacobians`, () => {
    const out = mkdtempSync(join(tmpdir(), "jacobian-wasm-fixture-"));
    try {
      for (const c of cases) {
        const file = join(out, c.file);
        const args = ["jacobian", "--model", join(dir, "model.json"), "--weights", join(dir, "weights.safetensors"), "--input", join(dir, "x.npy"), "--out", file];
        if (c.objective !== "output") args.push("--target", join(dir, c.target!), "--loss", c.objective, "--reduction", c.reduction!);
        const run = runCli(args);
        assert.equal(run.status, 0, `${name}/${c.file}: ${run.stderr}`);
        const expected = npy(join(dir, c.file));
        const actual = npy(file);
        assert.deepEqual(actual.shape, expected.shape, `${name}/${c.file}`);
        const error = relativeError(npyToFloat32(actual), npyToFloat32(expected));
        assert.ok(error <= 1e-4, `${name}/${c.file}: relative error ${error}`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
}
