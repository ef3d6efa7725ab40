/**
 * tools/export_torch.py as a script, on the files a PyTorch user has: a model saved whole
 * exports; a saved state_dict, a model of a class defined in the training script (which
 * cannot be unpickled elsewhere) and a model with a module jacobian-wasm does not support
 * each end with one line on stderr (what, where, and what to do instead), exit code 2 and
 * no traceback. Needs /usr/bin/python3 with torch: without it the tests are reported as
 * skipped, with the reason, not passed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../mod.ts";
import { root } from "./helpers/cli.ts";

const PYTHON = "/usr/bin/python3";
const EXPORTER = join(root, "tools", "export_torch.py");

/** Why the tests cannot run here, or false when /usr/bin/python3 imports torch. */
function withoutTorch(): string | false {
  const probe = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
  if (probe.error !== undefined) return `${PYTHON} cannot be run here (${probe.error.message}): the exporter needs Python with PyTorch`;
  if (probe.status !== 0) return `${PYTHON} cannot import torch: the exporter needs PyTorch`;
  return false;
}
const skip = withoutTorch();

/** Saves the files of each case, as a training script would (run as __main__, its own class Net included). */
const SAVE = `
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
torch.save(model, "model.pt")
torch.save(model.state_dict(), "state_dict.pt")
torch.save(Net(), "net.pt")
torch.save(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=1))), "softmax.pt")
`;

const SUPPORTED = "AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, " +
  "AdaptiveMaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d, BatchNorm1d, BatchNorm2d, BatchNorm3d, Conv1d, Conv2d, Conv3d, " +
  "ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, Dropout, ELU, Embedding, Flatten, GELU, GroupNorm, Identity, " +
  "InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, LayerNorm, LeakyReLU, Linear, MaxPool1d, MaxPool2d, MaxPool3d, ReLU, " +
  "SiLU, Sigmoid, Softplus, Tanh, Unflatten, Sequential";

const HINT = "pass the model, or use export_model in the training script";

/** Each refused file: [what, the file, the one line on stderr]. */
const REFUSALS: [string, string, string][] = [
  [
    "a saved state_dict",
    "state_dict.pt",
    `export_torch.py: state_dict.pt holds a state_dict (4 tensors), not the model: jacobian-wasm needs its layers too: ${HINT}`,
  ],
  [
    "a model of a class defined in the training script",
    "net.pt",
    "export_torch.py: net.pt: cannot load the model: its class Net is defined in the script that saved it, and unpickling " +
      `needs that class importable here: ${HINT}`,
  ],
  [
    "a model with an unsupported module",
    "softmax.pt",
    `export_torch.py: module 2.1 is a torch.nn.modules.activation.Softmax, which jacobian-wasm does not support; supported: ${SUPPORTED}`,
  ],
  ["a file that is not there", "missing.pt", "export_torch.py: missing.pt: no such file"],
];

/** A directory with the saved files of SAVE, removed by the caller. */
function savedFiles(): string {
  const dir = mkdtempSync(join(tmpdir(), "jacobian-wasm-export-"));
  writeFileSync(join(dir, "save.py"), SAVE);
  const saved = spawnSync(PYTHON, ["save.py"], { cwd: dir, encoding: "utf8" });
  assert.equal(saved.status, 0, `save.py: ${saved.stderr}`);
  return dir;
}

function exportFile(dir: string, file: string) {
  return spawnSync(PYTHON, [EXPORTER, file, "model.json", "weights.safetensors"], { cwd: dir, encoding: "utf8" });
}

test("export_torch.py exports a model saved whole with torch.save(model), and says what it wrote", { skip }, () => {
  const dir = savedFiles();
  try {
    const run = exportFile(dir, "model.pt");
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, "wrote model.json (3 top-level layers) and weights.safetensors\n");
    assert.equal(run.stderr, "");
    const net = loadModel(readFileSync(join(dir, "model.json"), "utf8"), new Uint8Array(readFileSync(join(dir, "weights.safetensors"))));
    assert.deepEqual(net.parameters().map(([name, p]) => [name, p.shape]), [
      ["0.weight", [4, 3]],
      ["0.bias", [4]],
      ["2.weight", [2, 4]],
      ["2.bias", [2]],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const [what, file, line] of REFUSALS) {
  test(`export_torch.py refuses ${what} with one line on stderr, exit code 2, no traceback and no files written`, { skip }, () => {
    const dir = savedFiles();
    try {
      const run = exportFile(dir, file);
      assert.equal(run.status, 2, `exit code ${run.status}; stderr: ${run.stderr}`);
      assert.equal(run.stderr, `${line}\n`);
      assert.equal(run.stdout, "");
      assert.equal(existsSync(join(dir, "model.json")) || existsSync(join(dir, "weights.safetensors")), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
