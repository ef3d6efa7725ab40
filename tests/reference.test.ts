// The float64 reference (tests/reference/) against PyTorch's fixtures (tests/fixtures/): its
// forward pass must reproduce PyTorch's float64 output, and finite differences of it every
// per-sample Jacobian and loss gradient PyTorch computed. The library's tests then trust it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  erf,
  type Fixture,
  finiteDifferenceBatch,
  forwardSample,
  loadFixture,
  parameterCount,
  parameterList,
  parseSpec,
  relativeError,
} from "./reference/mod.ts";

const fixturesDir = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
const fixtureNames = readdirSync(fixturesDir)
  .filter((name) => existsSync(join(fixturesDir, name, "cases.json")))
  .sort();

const loaded = new Map<string, Fixture>();
function fixture(name: string): Fixture {
  if (!loaded.has(name)) loaded.set(name, loadFixture(join(fixturesDir, name), name));
  return loaded.get(name)!;
}

const FORWARD_TOLERANCE = 1e-10;
const FINITE_DIFFERENCE_TOLERANCE = 1e-5;

test("there are PyTorch fixtures to check against", () => {
  assert.ok(fixtureNames.length >= 10, `found ${fixtureNames.length} fixtures in ${fixturesDir}`);
});

for (const name of fixtureNames) {
  test(`reference forward reproduces PyTorch's float64 output on fixture ${name}`, () => {
    const fx = fixture(name);
    const [n, ...outShape] = fx.output.shape;
    assert.equal(n, fx.x.shape[0]);
    const sampleIn = fx.inputShape.reduce((a, b) => a * b, 1);
    const sampleOut = outShape.reduce((a, b) => a * b, 1);
    const actual = new Float64Array(fx.output.data.length);
    for (let s = 0; s < n; s++) {
      const { output, shape } = forwardSample(fx.model, fx.params, fx.x.data.slice(s * sampleIn, (s + 1) * sampleIn), fx.inputShape);
      assert.deepEqual(shape, outShape, `${name}: per-sample output shape`);
      actual.set(output, s * sampleOut);
    }
    const error = relativeError(actual, fx.output.data);
    assert.ok(error <= FORWARD_TOLERANCE, `${name}: relative error ${error}`);
  });

  test(`reference parameters of fixture ${name} follow named_parameters() order and the expected files' width`, () => {
    const fx = fixture(name);
    const d = parameterCount(fx.model);
    assert.deepEqual([...fx.params.keys()], parameterList(fx.model).map((p) => p.name));
    for (const c of fx.cases) assert.equal(c.expected.shape.at(-1), d, `${name}/${c.file}: last dim is D`);
  });

  for (const c of JSON.parse(readFileSync(join(fixturesDir, name, "cases.json"), "utf8")) as { file: string }[]) {
    test(`finite differences of the reference match PyTorch's ${c.file} on fixture ${name}`, () => {
      const fx = fixture(name);
      const expected = fx.cases.find((k) => k.file === c.file)!;
      const { data, shape } = finiteDifferenceBatch(fx.model, fx.params, fx.x.data, fx.x.shape, expected.batchObjective);
      assert.deepEqual(shape, expected.expected.shape, `${name}/${c.file}: shape`);
      const error = relativeError(data, expected.expected.data);
      assert.ok(error <= FINITE_DIFFERENCE_TOLERANCE, `${name}/${c.file}: relative error ${error}`);
    });
  }
}

test("fixture safetensors headers are padded to a multiple of 8 bytes", () => {
  for (const name of fixtureNames) {
    const bytes = readFileSync(join(fixturesDir, name, "weights.safetensors"));
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true));
    assert.equal(headerLength % 8, 0, name);
  }
});

test("reference erf matches known values to 1e-15", () => {
  // Values from glibc erf (Python math.erf), within an ulp of the true ones.
  const known: [number, number][] = [
    [0, 0],
    [1e-8, 1.1283791670955126e-8],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [-2, -0.9953222650189527],
    [3.5, 0.9999992569016276],
    [5.5, 0.9999999999999927],
  ];
  for (const [x, expected] of known) assert.ok(Math.abs(erf(x) - expected) <= 1e-15 * Math.max(1, Math.abs(expected)), `erf(${x}) = ${erf(x)}`);
});

test("reference spec parser rejects unsupported layers and options with the layer's path", () => {
  const spec = (layer: object) => ({ format: "torch.nn.Sequential", layers: [{ type: "Sequential", layers: [layer] }] });
  assert.throws(() => parseSpec(spec({ type: "LSTM", input_size: 3, hidden_size: 2 })), /layer 0\.0 \(LSTM\): unsupported/);
  assert.throws(() => parseSpec(spec({ type: "Conv2d", in_channels: 1, out_channels: 1, kernel_size: 3, padding_mode: "reflect" })), /padding_mode/);
  assert.throws(() => parseSpec(spec({ type: "MaxPool2d", kernel_size: 2, return_indices: true })), /return_indices/);
  assert.throws(() => parseSpec(spec({ type: "AvgPool1d", kernel_size: 2, divisor_override: 2 })), /unknown argument divisor_override/);
  assert.throws(() => parseSpec(spec({ type: "Conv1d", in_channels: 1, out_channels: 1, kernel_size: 3, stride: 2, padding: "same" })), /stride 1/);
  assert.throws(() => parseSpec(spec({ type: "Linear", in_features: 2, out_feature: 3 })), /unknown argument out_feature/);
  assert.throws(() => parseSpec({ format: "onnx", layers: [] }), /format/);
});

test("reference 'same' padding puts the odd extra zero after, as PyTorch does", () => {
  const model = parseSpec({
    format: "torch.nn.Sequential",
    layers: [{ type: "Conv1d", in_channels: 1, out_channels: 1, kernel_size: 2, padding: "same", bias: false }],
  });
  const params = new Map([["0.weight", new Float64Array([1, 10])]]);
  // y[i] = x[i] + 10 x[i+1], x[3] = 0 (the pad after)
  const { output } = forwardSample(model, params, new Float64Array([1, 2, 3]), [1, 3]);
  assert.deepEqual([...output], [21, 32, 3]);
});
