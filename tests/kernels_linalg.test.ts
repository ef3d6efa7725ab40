// The GEMM, im2col/col2im, Linear and convolution kernels against plain float64 loops.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./helpers/runs.ts";
import { kernels } from "../src/wasm.ts";
import { absolute, assertClose, randomFloats, SENTINEL, WasmBuffers } from "./helpers/linalg_memory.ts";
import {
  convBackwardInputReference,
  convForwardReference,
  type ConvGeometry,
  convGeometryBlock,
  convOutputSize,
  convWeightPerSampleReference,
  winogradConvScale,
  winogradWeightScale,
  gemmReference,
  im2colReference,
  linearBackwardInputReference,
  linearForwardReference,
  linearWeightPerSampleReference,
  volume,
} from "./helpers/linalg_reference.ts";
import { maxPoolBackwardReference, maxPoolReference, pooledSize, poolGeomInts, type PoolGeometry } from "./helpers/nn_reference.ts";

const k = kernels();
const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 });

// ---------------------------------------------------------------------------------------
// GEMM

type GemmVariant = "gemm_nn" | "gemm_nt" | "gemm_tn";

interface GemmCase {
  M: number;
  N: number;
  K: number;
  padA: number;
  padB: number;
  padC: number;
  accumulate: boolean;
  seed: number;
}

function checkGemm(variant: GemmVariant, c: GemmCase): void {
  const transA = variant === "gemm_tn";
  const transB = variant === "gemm_nt";
  const { M, N, K } = c;
  const lda = (transA ? M : K) + c.padA;
  const ldb = (transB ? K : N) + c.padB;
  const ldc = N + c.padC;
  const A = randomFloats(c.seed, (transA ? K : M) * lda);
  const B = randomFloats(c.seed + 1, (transB ? N : K) * ldb);
  const C = randomFloats(c.seed + 2, M * ldc);
  const memory = new WasmBuffers();
  const pA = memory.put(A), pB = memory.put(B), pC = memory.put(C);
  k[variant](M, N, K, pA, lda, pB, ldb, pC, ldc, c.accumulate ? 1 : 0);
  // The reference copies C, so the columns past N (the leading-dim padding) must stay as they were.
  const expected = gemmReference(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, c.accumulate);
  const magnitude = gemmReference(
    transA,
    transB,
    M,
    N,
    K,
    absolute(A),
    lda,
    absolute(B),
    ldb,
    absolute(C),
    ldc,
    c.accumulate,
  );
  assertClose(memory.read(pC, M * ldc), expected, magnitude, K, `${variant} ${JSON.stringify(c)}`);
  memory.assertGuardsIntact();
}

const gemmCase = (maxSize: number) =>
  fc.record({
    M: fc.integer({ min: 1, max: maxSize }),
    N: fc.integer({ min: 1, max: maxSize }),
    K: fc.integer({ min: 1, max: maxSize }),
    padA: fc.integer({ min: 0, max: 5 }),
    padB: fc.integer({ min: 0, max: 5 }),
    padC: fc.integer({ min: 0, max: 5 }),
    accumulate: fc.boolean(),
    seed,
  });

for (const variant of ["gemm_nn", "gemm_nt", "gemm_tn"] as const) {
  test(`${variant} matches float64 loops for any size 1..70, leading dims and accumulate flag`, () => {
    fc.assert(fc.property(gemmCase(70), (c) => checkGemm(variant, c)), { numRuns: runs(150) });
  });

  test(`${variant} matches float64 loops on sizes spanning several packed blocks`, () => {
    const sizes = [[300, 150, 270], [129, 257, 131], [1, 700, 300], [650, 3, 140], [7, 9, 1000], [256, 256, 256], [37, 1030, 520]];
    for (const [i, [M, N, K]] of sizes.entries()) {
      checkGemm(variant, { M, N, K, padA: i % 3, padB: (i + 1) % 4, padC: i % 2, accumulate: i % 2 === 1, seed: i });
    }
  });
}

test("gemm with K = 0 zeroes C, or leaves it as it was when accumulating", () => {
  for (const variant of ["gemm_nn", "gemm_nt", "gemm_tn"] as const) {
    for (const accumulate of [0, 1]) {
      const memory = new WasmBuffers();
      const C = randomFloats(7, 5 * 6);
      const pC = memory.put(C);
      const pA = memory.alloc(8), pB = memory.alloc(8);
      k[variant](5, 4, 0, pA, 1, pB, 4, pC, 6, accumulate);
      const got = memory.read(pC, 30);
      for (let i = 0; i < 30; i++) {
        const inside = i % 6 < 4;
        assert.equal(got[i], inside && accumulate === 0 ? 0 : C[i], `${variant} accumulate=${accumulate}`);
      }
      memory.assertGuardsIntact();
    }
  }
});

// ---------------------------------------------------------------------------------------
// Convolution geometry: 1-, 2- or 3-d (the last `dims` of D, H, W), any stride, padding and
// dilation, with groups; a quarter of the cases are pointwise (1×1, stride 1, no padding).

const triple = (min: number, max: number) =>
  fc.tuple(fc.integer({ min, max }), fc.integer({ min, max }), fc.integer({ min, max }));

const convGeometry: fc.Arbitrary<ConvGeometry> = fc
  .record({
    dims: fc.integer({ min: 1, max: 3 }),
    groups: fc.integer({ min: 1, max: 3 }),
    cinPerGroup: fc.integer({ min: 1, max: 3 }),
    coutPerGroup: fc.integer({ min: 1, max: 3 }),
    size: triple(1, 7),
    kernel: triple(1, 3),
    stride: triple(1, 3),
    padding: triple(0, 2),
    dilation: triple(1, 2),
    pointwise: fc.integer({ min: 0, max: 3 }).map((v) => v === 0),
    // padding="same": stride 1, output = input, the odd padding element at the far end only.
    same: fc.integer({ min: 0, max: 4 }).map((v) => v === 0),
  })
  .map((r) => {
    const g: ConvGeometry = {
      groups: r.groups,
      cin: r.groups * r.cinPerGroup,
      cout: r.groups * r.coutPerGroup,
      input: [1, 1, 1],
      output: [1, 1, 1],
      kernel: [1, 1, 1],
      stride: [1, 1, 1],
      padding: [0, 0, 0],
      dilation: [1, 1, 1],
    };
    for (let j = 3 - r.dims; j < 3; j++) {
      // 3-d cases stay small so the reference loops stay fast.
      let size = r.dims === 3 ? Math.min(r.size[j], 5) : r.size[j];
      if (!r.pointwise) {
        g.kernel[j] = r.kernel[j];
        g.stride[j] = r.stride[j];
        g.padding[j] = r.padding[j];
        g.dilation[j] = r.dilation[j];
        size = Math.max(size, g.dilation[j] * (g.kernel[j] - 1) + 1 - 2 * g.padding[j]);
      }
      g.input[j] = size;
    }
    for (let j = 0; j < 3; j++) {
      g.output[j] = convOutputSize(g.input[j], g.kernel[j], g.stride[j], g.padding[j], g.dilation[j]);
    }
    if (r.same && !r.pointwise) {
      for (let j = 0; j < 3; j++) {
        g.stride[j] = 1;
        g.padding[j] = Math.floor((g.dilation[j] * (g.kernel[j] - 1)) / 2);
        g.output[j] = g.input[j];
      }
    }
    return g;
  });

const describeGeometry = (g: ConvGeometry) => JSON.stringify(g);
const columnRows = (g: ConvGeometry) => g.cin * volume(g.kernel);
const weightCount = (g: ConvGeometry) => g.cout * (g.cin / g.groups) * volume(g.kernel);

test("im2col matches a naive im2col for 1-, 2- and 3-d geometries with any stride, padding and dilation", () => {
  fc.assert(
    fc.property(convGeometry, seed, (g, s) => {
      const memory = new WasmBuffers();
      const x = randomFloats(s, g.cin * volume(g.input));
      const pGeom = memory.putInts(convGeometryBlock(g));
      const pX = memory.put(x);
      const count = columnRows(g) * volume(g.output);
      const pCols = memory.alloc(count);
      k.im2col(pGeom, pX, pCols);
      const expected = im2colReference(g, x);
      assertClose(memory.read(pCols, count), expected, new Float64Array(count), 0, describeGeometry(g));
      memory.assertGuardsIntact();
    }),
    { numRuns: runs(200) },
  );
});

test("col2im is the adjoint of im2col: <col2im(c), x> = <c, im2col(x)>", () => {
  fc.assert(
    fc.property(convGeometry, seed, (g, s) => {
      const memory = new WasmBuffers();
      const inCount = g.cin * volume(g.input);
      const colCount = columnRows(g) * volume(g.output);
      const x = randomFloats(s, inCount);
      const c = randomFloats(s + 1, colCount);
      const pGeom = memory.putInts(convGeometryBlock(g));
      const pX = memory.put(x), pC = memory.put(c);
      const pColsOfX = memory.alloc(colCount), pImOfC = memory.alloc(inCount);
      k.im2col(pGeom, pX, pColsOfX);
      k.col2im(pGeom, pC, pImOfC);
      const colsOfX = memory.read(pColsOfX, colCount);
      const imOfC = memory.read(pImOfC, inCount);
      let left = 0, right = 0, scale = 0;
      for (let i = 0; i < inCount; i++) left += imOfC[i] * x[i];
      for (let i = 0; i < colCount; i++) {
        right += c[i] * colsOfX[i];
        scale += Math.abs(c[i] * colsOfX[i]);
      }
      const kvol = volume(g.kernel);
      assert.ok(
        Math.abs(left - right) <= (kvol + 8) * 2 ** -23 * scale + 1e-30,
        `${describeGeometry(g)}: <col2im(c), x> = ${left}, <c, im2col(x)> = ${right}`,
      );
      memory.assertGuardsIntact();
    }),
    { numRuns: runs(200) },
  );
});

/** magnitude[i] = max(magnitude[i], floor[i]): a path's own error scale where it is larger. */
function atLeast(magnitude: Float64Array, floor: Float64Array): void {
  for (let i = 0; i < magnitude.length; i++) magnitude[i] = Math.max(magnitude[i], floor[i]);
}

/** Whether a pass's path mixes a whole tile's inputs into each output (F(4×4, 3×3), 1-d F(4, 5)). */
function winogradTiles(path: number): boolean {
  return path === PATH.winograd4x4 || path === PATH.winograd1d;
}

function checkConvForward(g: ConvGeometry, N: number, withBias: boolean, s: number): void {
  const memory = new WasmBuffers();
  const L = volume(g.output);
  const x = randomFloats(s, N * g.cin * volume(g.input));
  const W = randomFloats(s + 1, weightCount(g));
  const b = withBias ? randomFloats(s + 2, g.cout) : undefined;
  const pGeom = memory.putInts(convGeometryBlock(g));
  const pX = memory.put(x), pW = memory.put(W), pB = b ? memory.put(b) : 0;
  const pY = memory.alloc(N * g.cout * L);
  const pWork = memory.alloc(columnRows(g) * L);
  k.conv_forward(pGeom, N, pX, pW, pB, pY, pWork);
  const expected = convForwardReference(g, N, x, W, b);
  const magnitude = convForwardReference(g, N, absolute(x), absolute(W), b && absolute(b));
  if (winogradTiles(k.conv_strategy(pGeom, 0))) atLeast(magnitude, winogradConvScale(g, N, x, W, false));
  const depth = (g.cin / g.groups) * volume(g.kernel) + 1;
  assertClose(memory.read(pY, N * g.cout * L), expected, magnitude, depth, describeGeometry(g));
  memory.assertGuardsIntact();
}

test("conv_forward matches a direct convolution with groups, with and without bias", () => {
  fc.assert(
    fc.property(convGeometry, fc.integer({ min: 1, max: 3 }), fc.boolean(), seed, checkConvForward),
    { numRuns: runs(300) },
  );
});

function checkConvBackwardInput(g: ConvGeometry, R: number, s: number): void {
  const memory = new WasmBuffers();
  const L = volume(g.output);
  const inCount = R * g.cin * volume(g.input);
  const gy = randomFloats(s, R * g.cout * L);
  const W = randomFloats(s + 1, weightCount(g));
  const pGeom = memory.putInts(convGeometryBlock(g));
  const pGy = memory.put(gy), pW = memory.put(W);
  const pGx = memory.alloc(inCount);
  const pWork = memory.alloc(columnRows(g) * L);
  k.conv_backward_input(pGeom, R, pGy, pW, pGx, pWork);
  const expected = convBackwardInputReference(g, R, gy, W);
  const magnitude = convBackwardInputReference(g, R, absolute(gy), absolute(W));
  if (winogradTiles(k.conv_strategy(pGeom, 1))) atLeast(magnitude, winogradConvScale(g, R, gy, W, true));
  const depth = (g.cout / g.groups) * volume(g.kernel);
  assertClose(memory.read(pGx, inCount), expected, magnitude, depth, describeGeometry(g));
  memory.assertGuardsIntact();
}

test("conv_backward_input matches the naive adjoint of the convolution", () => {
  fc.assert(fc.property(convGeometry, fc.integer({ min: 1, max: 4 }), seed, checkConvBackwardInput), { numRuns: runs(300) });
});

/** Lays out J rows as [weights | bias (if any) | padding] and runs conv_weight_per_sample. */
function convPerSample(
  memory: WasmBuffers,
  g: ConvGeometry,
  N: number,
  K: number,
  withBias: boolean,
  extra: number,
  x: Float32Array,
  gy: Float32Array,
) {
  const R = N * K;
  const L = volume(g.output);
  const wCount = weightCount(g);
  const ldJ = wCount + (withBias ? g.cout : 0) + extra;
  const pGeom = memory.putInts(convGeometryBlock(g));
  const pX = memory.put(x), pGy = memory.put(gy);
  const pJ = memory.alloc(R * ldJ);
  const pWork = memory.alloc(columnRows(g) * L);
  k.conv_weight_per_sample(pGeom, R, K, pX, pGy, pJ, withBias ? pJ + wCount * 4 : 0, ldJ, pWork);
  return { J: memory.read(pJ, R * ldJ), ldJ, wCount, pGeom, pX, pGy, pWork };
}

/** The error scale of the weight gradients: the reference on |x|, |gy|, or Winograd's where it runs. */
function weightMagnitude(g: ConvGeometry, R: number, K: number, x: Float32Array, gy: Float32Array, pGeom: number) {
  const magnitude = convWeightPerSampleReference(g, R, K, absolute(x), absolute(gy));
  const path = k.conv_strategy(pGeom, 2);
  if (path === PATH.winograd || winogradTiles(path)) {
    atLeast(magnitude.weight, winogradWeightScale(g, R, K, x, gy));
  }
  return magnitude;
}

function checkConvWeightPerSample(
  g: ConvGeometry,
  N: number,
  K: number,
  withBias: boolean,
  extra: number,
  s: number,
): void {
  const memory = new WasmBuffers();
  const R = N * K;
  const L = volume(g.output);
  const x = randomFloats(s, N * g.cin * volume(g.input));
  const gy = randomFloats(s + 1, R * g.cout * L);
  const { J, ldJ, wCount, pGeom } = convPerSample(memory, g, N, K, withBias, extra, x, gy);
  const expected = convWeightPerSampleReference(g, R, K, x, gy);
  const magnitude = weightMagnitude(g, R, K, x, gy, pGeom);
  for (let r = 0; r < R; r++) {
    const row = J.subarray(r * ldJ, (r + 1) * ldJ);
    const what = `${describeGeometry(g)} N=${N} K=${K} row ${r}`;
    assertClose(
      row.subarray(0, wCount),
      expected.weight.subarray(r * wCount, (r + 1) * wCount),
      magnitude.weight.subarray(r * wCount, (r + 1) * wCount),
      L,
      `${what} weights`,
    );
    let rest = wCount;
    if (withBias) {
      assertClose(
        row.subarray(wCount, wCount + g.cout),
        expected.bias.subarray(r * g.cout, (r + 1) * g.cout),
        magnitude.bias.subarray(r * g.cout, (r + 1) * g.cout),
        L,
        `${what} bias`,
      );
      rest += g.cout;
    }
    for (let i = rest; i < ldJ; i++) assert.equal(row[i], SENTINEL, `${what}: padding of J written`);
  }
  memory.assertGuardsIntact();
}

test("conv_weight_per_sample matches naive per-sample loops, with K rows per sample and optional bias", () => {
  fc.assert(
    fc.property(
      convGeometry,
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 3 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 3 }),
      seed,
      checkConvWeightPerSample,
    ),
    { numRuns: runs(300) },
  );
});

function checkConvWeightGrad(
  g: ConvGeometry,
  N: number,
  K: number,
  withBias: boolean,
  accumulate: boolean,
  s: number,
): void {
  const memory = new WasmBuffers();
  const R = N * K;
  const L = volume(g.output);
  const x = randomFloats(s, N * g.cin * volume(g.input));
  const gy = randomFloats(s + 1, R * g.cout * L);
  const { J, ldJ, wCount, pGeom, pX, pGy, pWork } = convPerSample(memory, g, N, K, withBias, 0, x, gy);
  const initialW = randomFloats(s + 2, wCount), initialB = randomFloats(s + 3, g.cout);
  const pGW = memory.put(initialW), pGB = withBias ? memory.put(initialB) : 0;
  k.conv_weight_grad(pGeom, R, K, pX, pGy, pGW, pGB, pWork, accumulate ? 1 : 0);
  // Expected: the float64 sum of the per-sample rows; the bound from the same sum over |inputs|.
  const magnitude = weightMagnitude(g, R, K, x, gy, pGeom);
  const expectedW = (accumulate ? Float64Array.from(initialW) : new Float64Array(wCount));
  const boundW = accumulate ? absolute(initialW) : new Float64Array(wCount);
  const expectedB = (accumulate ? Float64Array.from(initialB) : new Float64Array(g.cout));
  const boundB = accumulate ? absolute(initialB) : new Float64Array(g.cout);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < wCount; i++) {
      expectedW[i] += J[r * ldJ + i];
      boundW[i] += magnitude.weight[r * wCount + i];
    }
    for (let c = 0; c < g.cout; c++) {
      expectedB[c] += J[r * ldJ + wCount + c];
      boundB[c] += magnitude.bias[r * g.cout + c];
    }
  }
  // Both sides round: the per-sample rows (L terms each) and the kernel's own sum (R·L terms).
  const what = `${describeGeometry(g)} N=${N} K=${K} accumulate=${accumulate}`;
  assertClose(memory.read(pGW, wCount), expectedW, boundW, 2 * R * L + 2, `${what} weights`);
  if (withBias) assertClose(memory.read(pGB, g.cout), expectedB, boundB, 2 * R * L + 2, `${what} bias`);
  memory.assertGuardsIntact();
}

test("conv_weight_grad equals the sum over rows of conv_weight_per_sample, overwriting or accumulating", () => {
  fc.assert(
    fc.property(
      convGeometry,
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 3 }),
      fc.boolean(),
      fc.boolean(),
      seed,
      checkConvWeightGrad,
    ),
    { numRuns: runs(300) },
  );
});

test("conv kernels match the references on layer sizes that span several GEMM blocks", () => {
  const layer = (
    groups: number,
    cin: number,
    cout: number,
    input: [number, number, number],
    kernel: [number, number, number],
    stride: [number, number, number],
    padding: [number, number, number],
    dilation: [number, number, number],
  ): ConvGeometry => ({
    groups,
    cin,
    cout,
    input,
    kernel,
    stride,
    padding,
    dilation,
    output: [0, 1, 2].map((j) => convOutputSize(input[j], kernel[j], stride[j], padding[j], dilation[j])) as [
      number,
      number,
      number,
    ],
  });
  const layers = [
    layer(1, 3, 70, [1, 20, 21], [1, 3, 3], [1, 1, 1], [0, 1, 1], [1, 1, 1]), // a first conv2d layer
    layer(2, 40, 36, [1, 12, 12], [1, 3, 3], [1, 2, 2], [0, 1, 1], [1, 1, 1]), // grouped, strided
    layer(1, 130, 66, [1, 9, 9], [1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 1, 1]), // pointwise
    layer(4, 8, 12, [6, 7, 5], [3, 2, 3], [1, 2, 1], [1, 0, 2], [2, 1, 1]), // grouped conv3d, dilated
    layer(1, 5, 9, [1, 1, 300], [1, 1, 5], [1, 1, 3], [0, 0, 2], [1, 1, 2]), // conv1d over a long signal
  ];
  for (const [i, g] of layers.entries()) {
    checkConvForward(g, 2, i % 2 === 0, i);
    checkConvBackwardInput(g, 2, i);
    checkConvWeightPerSample(g, 2, 2, i % 2 === 1, 1, i);
    checkConvWeightGrad(g, 2, 2, true, i % 2 === 0, i);
  }
});

// ---------------------------------------------------------------------------------------
// Convolution paths (assembly/conv_direct.ts): each case below is built to reach one path or
// one edge of a tile, and conv_strategy pins that it does, so a change of the caps or rules
// that silently leaves a path untested fails here.

const PATH = { im2col: 0, pointwise: 1, rows: 2, flat: 3, winograd: 4, phases: 5, winograd4x4: 6, winograd1d: 7 } as const;
type PathName = keyof typeof PATH;

function convLayer(
  groups: number,
  cin: number,
  cout: number,
  input: [number, number, number],
  kernel: [number, number, number],
  stride: [number, number, number] = [1, 1, 1],
  padding: [number, number, number] = [0, 0, 0],
  dilation: [number, number, number] = [1, 1, 1],
): ConvGeometry {
  const output = [0, 1, 2].map((j) => convOutputSize(input[j], kernel[j], stride[j], padding[j], dilation[j]));
  return { groups, cin, cout, input, kernel, stride, padding, dilation, output: output as [number, number, number] };
}

/** PyTorch's padding="same" (stride 1): reach // 2 in front, the rest at the far end. */
function sameLayer(groups: number, cin: number, cout: number, input: [number, number, number], kernel: [number, number, number]): ConvGeometry {
  const padding = kernel.map((k) => Math.floor((k - 1) / 2)) as [number, number, number];
  return { groups, cin, cout, input, kernel, stride: [1, 1, 1], padding, dilation: [1, 1, 1], output: [...input] };
}

/** [geometry, paths of conv_forward, conv_backward_input, the weight gradients, what it covers]. */
const pathCases: [ConvGeometry, PathName, PathName, PathName, string][] = [
  [
    convLayer(1, 3, 7, [1, 9, 15], [1, 3, 3], [1, 2, 1], [0, 1, 1], [1, 1, 2]),
    "rows", "im2col", "rows",
    "rows of 13 outputs (the last 4×8 tile overlaps), a 3-channel panel, a padded frame in work, stride 2 in H, dilation 2 in W; 4×2 dot tiles with scalar row tails",
  ],
  [
    convLayer(2, 4, 36, [3, 4, 14], [2, 3, 3], [1, 1, 1], [1, 0, 2]),
    "rows", "rows", "rows",
    "3-d with groups, padding in D and W; the input gradient's gy frame too big for work (static frame); 18 channels a group: 2×16 outer-product tiles with a 2-channel edge",
  ],
  [
    convLayer(1, 2, 32, [1, 11, 66], [1, 3, 3]),
    "rows", "rows", "rows",
    "read in place; the weight gradient in three chunks of gyᵀ (4, 4 and 1 output rows)",
  ],
  [
    convLayer(1, 2, 1, [5, 5, 5], [2, 2, 2]),
    "flat", "flat", "flat",
    "seed3d's second layer: flat walk in place with 1×32 tiles, the input gradient with 2×16 tiles; 1×4 dot tiles",
  ],
  [
    convLayer(1, 1, 2, [6, 6, 6], [2, 2, 2]),
    "flat", "flat", "flat",
    "seed3d's first layer: 2×16 tiles in place, the input gradient with 1×32 tiles; 2×4 dot tiles over the flat walk, read in place",
  ],
  [
    convLayer(1, 1, 6, [4, 5, 7], [3, 2, 2], [1, 1, 1], [1, 1, 0], [1, 1, 2]),
    "flat", "flat", "flat",
    "flat walks over a padded copy: a 4×8 and a 2×16 panel, dilation; 4×2 then 2×4 dot tiles",
  ],
  [
    convLayer(1, 3, 8, [1, 6, 10], [1, 3, 3], [1, 2, 1]),
    "rows", "phases", "rows",
    "rows of 8 outputs (exactly one tile), read in place, strided in H; the weight gradient row by row with whole f32x4 and no tail",
  ],
  [
    convLayer(1, 1, 5, [2, 3, 4], [1, 2, 2]),
    "flat", "flat", "flat",
    "a walk shorter than a tile (copied with slack although unpadded): a 4×8 and a 1×32 panel; 4×2 then 1×4 dot tiles with a lane tail",
  ],
  [
    convLayer(1, 607, 36, [1, 1, 10], [1, 1, 3]),
    "rows", "rows", "rows",
    "weights too big to pack at once: panels packed one at a time, forward and input gradient; 1821 taps of outer-product tiles, 36 channels (16, 16 and a 4-channel edge)",
  ],
  [
    convLayer(1, 2, 3, [1, 6, 12], [1, 2, 2], [1, 1, 1], [0, 2, 1]),
    "rows", "rows", "flat",
    "padding past the kernel's reach: the input gradient crops gy (negative frame offset)",
  ],
  [
    convLayer(1, 3, 6, [1, 9, 33], [1, 3, 3], [1, 2, 2], [0, 1, 1]),
    "rows", "phases", "rows",
    "stride 2 along W: the frame's rows split into even and odd phases",
  ],
  [
    convLayer(1, 2, 17, [1, 6, 73], [1, 2, 3], [1, 1, 3], [0, 0, 2], [1, 1, 2]),
    "rows", "im2col", "rows",
    "stride 3 and dilation 2 along W (taps in different phases); 2×16 outer-product weight tiles on the phases, a 1-channel edge, gyᵀ staged with position and channel tails (bias fused)",
  ],
  [
    convLayer(1, 8, 16, [1, 16, 16], [1, 1, 1], [1, 2, 2]),
    "rows", "im2col", "rows",
    "a 1×1 stride-2 shortcut: the phase frame (4× the work the contract gives) in the static frame",
  ],
  [
    sameLayer(1, 3, 5, [1, 7, 12], [1, 2, 4]),
    "rows", "rows", "flat",
    "padding=\"same\" with even kernels: no padding in front of H, one more at the end (not read in place)",
  ],
  [
    sameLayer(1, 2, 3, [5, 5, 5], [2, 2, 2]),
    "flat", "flat", "flat",
    "padding=\"same\", seed3d-sized: padding only at the far end of every dim",
  ],
  [
    convLayer(1, 1, 16, [1, 1, 203], [1, 1, 9], [1, 1, 4]),
    "rows", "phases", "rows",
    "audio1d's first layer: 16 output channels but 9 rows (1 × 9 taps), so dot-product weight tiles, not the outer products' staged gyᵀ",
  ],
  [
    convLayer(1, 16, 32, [1, 16, 16], [1, 3, 3], [1, 1, 1], [0, 1, 1]),
    "winograd4x4", "winograd4x4", "winograd4x4",
    "cnn's second layer: Winograd F(4×4, 3×3) forward and input gradient (tile rows of one group: bands of two), F(3×3, 4×4) weights",
  ],
  [
    convLayer(1, 7, 6, [1, 12, 12], [1, 3, 3], [1, 1, 1], [0, 1, 1]),
    "winograd", "winograd", "winograd",
    "cnn-like with fewer than 8 channels: Winograd F(2×2, 3×3), tile rows of 8 tiles (one block each)",
  ],
  [
    convLayer(1, 9, 11, [1, 37, 21], [1, 3, 3], [1, 1, 1], [0, 0, 2]),
    "winograd4x4", "winograd4x4", "winograd4x4",
    "F(4×4, 3×3) with ragged tiles: widths of 21 and 23 (two groups, the last partly outside), 35 rows (a last tile row of 3), ragged channel blocks",
  ],
  [
    sameLayer(1, 5, 7, [1, 9, 13], [1, 3, 3]),
    "winograd", "winograd", "winograd",
    "Winograd with odd sizes: tile rows of 7 tiles padded to 8, an odd last tile row and column, 5 and 7 channels (ragged channel blocks)",
  ],
  [
    convLayer(1, 6, 4, [1, 5, 7], [1, 3, 3], [1, 1, 1], [0, 2, 2]),
    "winograd", "winograd", "winograd",
    "Winograd with padding 2 (the input gradient unpadded) and tile rows of one group: bands of two tile rows",
  ],
  [
    convLayer(1, 16, 32, [1, 1, 499], [1, 1, 9], [1, 1, 2]),
    "winograd1d", "winograd1d", "winograd1d",
    "a strided 1-d layer (audio1d's second): 1-d F(4, 5) on 32 frame rows (16 channels × 2 phases, the odd phase's fifth tap zero), 246 outputs (a last block of 8 tiles partly outside)",
  ],
  [
    convLayer(1, 9, 10, [1, 1, 37], [1, 1, 5], [1, 1, 1], [0, 0, 2]),
    "winograd1d", "winograd1d", "winograd1d",
    "1-d F(4, 5) stride 1, padding 2: 9 frame rows and 10 output rows (ragged register tiles), 37 outputs (one full block, one ragged)",
  ],
  [
    convLayer(1, 8, 8, [1, 1, 40], [1, 1, 9], [1, 1, 1], [0, 0, 4]),
    "winograd1d", "winograd1d", "winograd1d",
    "1-d k = 9 stride 1: two 5-tap groups (the second's last tap zero), frame rows shifted by 5",
  ],
  [
    convLayer(1, 3, 8, [1, 1, 50], [1, 1, 12], [1, 1, 3], [0, 0, 5]),
    "winograd1d", "winograd1d", "winograd1d",
    "1-d k = 12 stride 3 padding 5: three phases of 4 taps, input-gradient rows scattered 3 apart with the first positions cropped",
  ],
  [
    convLayer(1, 16, 32, [1, 1, 499], [1, 1, 3], [1, 1, 2]),
    "rows", "im2col", "rows",
    "a strided 1-d layer whose phases have 2 and 1 taps: too few for 1-d Winograd",
  ],
  [
    convLayer(1, 8, 9, [1, 17, 19], [1, 5, 5], [1, 2, 2], [0, 2, 2]),
    "rows", "phases", "rows",
    "a 5×5 stride-2 layer: its phases' sub-problems are 3×3, 3×2, 2×3 and 2×2 stride-1 input gradients, the 3×3 one on a Winograd path",
  ],
  [
    convLayer(2, 4, 6, [2, 9, 11], [2, 4, 3], [2, 2, 3], [1, 1, 1]),
    "im2col", "phases", "rows",
    "stride in every dim with groups and padding: 12 phases, some with fewer taps, the first positions of a phase cropped",
  ],
  [
    convLayer(1, 2048, 2, [1, 4, 4], [1, 3, 3], [1, 1, 1], [0, 1, 1]),
    "im2col", "flat", "im2col",
    "more taps than the offset table holds: im2col + GEMM",
  ],
  [
    convLayer(1, 20, 3, [1, 64, 64], [1, 1, 1], [1, 2, 1], [0, 0, 1]),
    "im2col", "im2col", "im2col",
    "a padded frame larger than work and the static frame: im2col + GEMM",
  ],
  [
    convLayer(1, 6, 16, [1, 14, 14], [1, 5, 5]),
    "rows", "im2col", "rows",
    "LeNet-5's second layer: rows of 10 outputs end in a 4×4 tile overlapping the 4×8 one; the input gradient's correlation would be half padding, so GEMM + col2im; 16 output channels: outer-product weight tiles on rows that are not whole f32x4",
  ],
  [
    convLayer(1, 3, 5, [1, 4, 14], [1, 3, 3]),
    "rows", "rows", "flat",
    "rows of 12 outputs: one 4×8 tile and a 4×4 tail tile, no overlap; too few channels for the input gradient's GEMM",
  ],
];

test("conv_strategy sends each designed geometry down the path it covers", () => {
  const memory = new WasmBuffers();
  for (const [g, forward, backward, weight, what] of pathCases) {
    const pGeom = memory.putInts(convGeometryBlock(g));
    const got = [0, 1, 2].map((pass) => k.conv_strategy(pGeom, pass));
    assert.deepEqual(got, [PATH[forward], PATH[backward], PATH[weight]], what);
  }
  const pointwise = memory.putInts(convGeometryBlock(convLayer(1, 3, 4, [1, 5, 5], [1, 1, 1])));
  assert.deepEqual([0, 1, 2].map((pass) => k.conv_strategy(pointwise, pass)), [1, 1, 1], "pointwise");
});

test("every conv path and tile edge matches the references: rows, flat walks, 1/2/4-row tiles, dot and outer-product weight tiles, chunks, unpacked panels, cropped frames", () => {
  for (const [i, [g, , , , what]] of pathCases.entries()) {
    const big = g.cin * g.cout > 2000;
    const N = big ? 1 : 2;
    try {
      checkConvForward(g, N, i % 2 === 0, 100 + i);
      checkConvBackwardInput(g, big ? 1 : 3, 200 + i);
      checkConvWeightPerSample(g, N, big ? 1 : 2, i % 2 === 1, 1, 300 + i);
      checkConvWeightGrad(g, N, 2, true, i % 2 === 0, 400 + i);
    } catch (error) {
      throw new Error(`${what}: ${(error as Error).message}`);
    }
  }
});

test("Winograd F(2×2, 3×3) forward, input gradient and F(3×3, 2×2) weight gradients match the references on random 3×3 stride-1 layers", () => {
  // Channels from 4 (the smallest Winograd takes), any size a 3×3 window fits with padding
  // 0..2, asymmetric padding, 2-d or 3-d with depth 1; conv_strategy must pick Winograd.
  const layer = fc.record({
    cin: fc.integer({ min: 4, max: 7 }),
    cout: fc.integer({ min: 4, max: 7 }),
    H: fc.integer({ min: 1, max: 21 }),
    W: fc.integer({ min: 1, max: 27 }),
    padH: fc.integer({ min: 0, max: 2 }),
    padW: fc.integer({ min: 0, max: 2 }),
  }).filter((l) => l.H + 2 * l.padH >= 3 && l.W + 2 * l.padW >= 3)
    .map((l) => convLayer(1, l.cin, l.cout, [1, l.H, l.W], [1, 3, 3], [1, 1, 1], [0, l.padH, l.padW]));
  const memory = new WasmBuffers();
  fc.assert(
    fc.property(layer, fc.integer({ min: 1, max: 3 }), fc.boolean(), seed, (g, N, withBias, s) => {
      const pGeom = memory.putInts(convGeometryBlock(g));
      const paths = [0, 1, 2].map((pass) => k.conv_strategy(pGeom, pass));
      assert.deepEqual(paths, [PATH.winograd, PATH.winograd, PATH.winograd], describeGeometry(g));
      checkConvForward(g, N, withBias, s);
      checkConvBackwardInput(g, N + 1, s + 1);
      checkConvWeightPerSample(g, N, 2, withBias, 3, s + 2);
      checkConvWeightGrad(g, N, 2, withBias, !withBias, s + 3);
    }),
    { numRuns: runs(150) },
  );
});

test("Winograd F(4×4, 3×3) forward and input gradient and F(3×3, 4×4) weight gradients match the references on random 3×3 stride-1 layers with 8 or more channels", () => {
  const layer = fc.record({
    cin: fc.integer({ min: 8, max: 13 }),
    cout: fc.integer({ min: 8, max: 13 }),
    H: fc.integer({ min: 10, max: 30 }),
    W: fc.integer({ min: 10, max: 41 }),
    padH: fc.integer({ min: 0, max: 2 }),
    padW: fc.integer({ min: 0, max: 2 }),
  }).map((l) => convLayer(1, l.cin, l.cout, [1, l.H, l.W], [1, 3, 3], [1, 1, 1], [0, l.padH, l.padW]));
  const memory = new WasmBuffers();
  fc.assert(
    fc.property(layer, fc.integer({ min: 1, max: 2 }), fc.boolean(), seed, (g, N, withBias, s) => {
      const pGeom = memory.putInts(convGeometryBlock(g));
      assert.deepEqual([0, 1, 2].map((pass) => k.conv_strategy(pGeom, pass)), [PATH.winograd4x4, PATH.winograd4x4, PATH.winograd4x4], describeGeometry(g));
      checkConvForward(g, N, withBias, s);
      checkConvBackwardInput(g, N, s + 1);
      checkConvWeightPerSample(g, N, 2, withBias, 1, s + 2);
      checkConvWeightGrad(g, N, 1, withBias, !withBias, s + 3);
    }),
    { numRuns: runs(60) },
  );
});

test("1-d Winograd F(4, 5) forward, input gradient and weight gradients match the references on random 1-d layers, strided or not", () => {
  // Kernels of 4..14 taps, strides 1..3, split into 5-tap groups per phase: every layer with
  // at least 2x fewer products than direct, 8 frame rows and 8 outputs takes the path.
  const layer = fc.record({
    cin: fc.integer({ min: 1, max: 12 }),
    cout: fc.integer({ min: 8, max: 13 }),
    k: fc.integer({ min: 4, max: 14 }),
    s: fc.integer({ min: 1, max: 3 }),
    pad: fc.integer({ min: 0, max: 6 }),
    outputs: fc.integer({ min: 8, max: 70 }),
  }).map((l) => {
    const pad = Math.min(l.pad, l.k - 1);
    const length = (l.outputs - 1) * l.s + l.k - 2 * pad;
    return { ...l, pad, length, chunks: Math.ceil(Math.ceil(l.k / l.s) / 5) };
  }).filter((l) => l.length >= 1 && l.k >= 4 * l.s * l.chunks && l.cin * l.s * l.chunks >= 8 && l.cin * l.s >= 8)
    .map((l) => convLayer(1, l.cin, l.cout, [1, 1, l.length], [1, 1, l.k], [1, 1, l.s], [0, 0, l.pad]));
  const memory = new WasmBuffers();
  fc.assert(
    fc.property(layer, fc.integer({ min: 1, max: 2 }), fc.boolean(), seed, (g, N, withBias, s) => {
      const pGeom = memory.putInts(convGeometryBlock(g));
      assert.deepEqual([0, 1, 2].map((pass) => k.conv_strategy(pGeom, pass)), [PATH.winograd1d, PATH.winograd1d, PATH.winograd1d], describeGeometry(g));
      checkConvForward(g, N, withBias, s);
      checkConvBackwardInput(g, N, s + 1);
      checkConvWeightPerSample(g, N, 2, withBias, 1, s + 2);
      checkConvWeightGrad(g, N, 1, withBias, !withBias, s + 3);
    }),
    { numRuns: runs(80) },
  );
});

test("conv_weight_per_sample_pooled equals conv_weight_per_sample of the dense gradient max pooling's backward would give", () => {
  // Any convolution without dilation, then max pooling over its output (overlapping windows,
  // padding, pooling dilation, ceil_mode), argmax from random outputs with some windows clipped
  // to −1 (as a fused ReLU leaves them), K rows per sample, J rows with padding columns.
  const pooling = fc.record({
    kernel: triple(1, 3),
    stride: triple(1, 3),
    dilation: triple(1, 2),
    ceilMode: fc.boolean(),
    padded: fc.boolean(),
  });
  // Kernels wider than one f32x4 (LeNet's 5, an audio front end's 9) as well as the small ones.
  const wide = fc.record({
    cin: fc.integer({ min: 1, max: 3 }),
    cout: fc.integer({ min: 1, max: 5 }),
    H: fc.integer({ min: 1, max: 3 }),
    W: fc.integer({ min: 9, max: 40 }),
    kW: fc.integer({ min: 4, max: 9 }),
    sW: fc.integer({ min: 1, max: 4 }),
    pW: fc.integer({ min: 0, max: 2 }),
  }).map((l) => convLayer(1, l.cin, l.cout, [1, l.H, l.W], [1, 1, l.kW], [1, 1, l.sW], [0, 0, l.pW]));
  fc.assert(
    fc.property(
      fc.oneof(convGeometry.filter((g) => g.dilation.every((d) => d === 1)), wide),
      pooling,
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 2 }),
      fc.boolean(),
      seed,
      (g, pool, N, K, withBias, s) => {
        const kernel = pool.kernel.map((k, j) => Math.min(k, g.output[j]));
        const dilation = pool.dilation.map((d, j) => (kernel[j] === 1 || d * (kernel[j] - 1) + 1 > g.output[j] ? 1 : d));
        const padding = kernel.map((k, j) => (pool.padded ? Math.floor(((k - 1) * dilation[j] + 1) / 2) : 0));
        const stride = pool.stride;
        const output = g.output.map((size, j) => pooledSize(size, kernel[j], padding[j], stride[j], dilation[j], pool.ceilMode));
        const pg: PoolGeometry = {
          channels: g.cout, input: [...g.output], output, kernel, stride, padding, dilation, countIncludePad: true, divisorOverride: 0,
        };
        const R = N * K;
        const L = volume(g.output), poolVol = volume(output);
        const x = randomFloats(s, N * g.cin * volume(g.input));
        const { argmax } = maxPoolReference(pg, N, randomFloats(s + 1, N * g.cout * L));
        const clip = randomFloats(s + 2, argmax.length);
        for (let i = 0; i < argmax.length; i++) if (clip[i] < -0.5) argmax[i] = -1;
        const gp = randomFloats(s + 3, R * g.cout * poolVol);
        const gyDense = maxPoolBackwardReference(pg, R, K, gp, argmax);
        const expected = convWeightPerSampleReference(g, R, K, x, gyDense);
        // Overlapping windows add at one position: the sparse sum rounds each window's term.
        const magnitude = convWeightPerSampleReference(g, R, K, absolute(x), maxPoolBackwardReference(pg, R, K, absolute(gp), argmax));

        const memory = new WasmBuffers();
        const wCount = weightCount(g);
        const ldJ = wCount + (withBias ? g.cout : 0) + 2;
        const pGeom = memory.putInts(convGeometryBlock(g)), pPool = memory.putInts(poolGeomInts(pg));
        const pX = memory.put(x), pGp = memory.put(gp), pArgmax = memory.putInts(argmax);
        const pJ = memory.alloc(R * ldJ);
        const frame = memory.alloc(k.conv_pooled_frame_floats(g.cin, ...g.output, ...g.stride, ...g.kernel));
        const list = memory.alloc(2 * poolVol + L);
        k.conv_weight_per_sample_pooled(pGeom, pPool, R, K, pX, pGp, pArgmax, pJ, withBias ? pJ + wCount * 4 : 0, ldJ, frame, list);
        const J = memory.read(pJ, R * ldJ);
        for (let r = 0; r < R; r++) {
          const what = `${describeGeometry(g)} pool ${JSON.stringify(pg)} N=${N} K=${K} row ${r}`;
          const row = J.subarray(r * ldJ, (r + 1) * ldJ);
          assertClose(row.subarray(0, wCount), expected.weight.subarray(r * wCount, (r + 1) * wCount),
            magnitude.weight.subarray(r * wCount, (r + 1) * wCount), L, `${what} weights`);
          if (withBias) {
            assertClose(row.subarray(wCount, wCount + g.cout), expected.bias.subarray(r * g.cout, (r + 1) * g.cout),
              magnitude.bias.subarray(r * g.cout, (r + 1) * g.cout), L, `${what} bias`);
          }
          for (let i = wCount + (withBias ? g.cout : 0); i < ldJ; i++) assert.equal(row[i], SENTINEL, `${what}: padding of J written`);
        }
        memory.assertGuardsIntact();
      },
    ),
    { numRuns: runs(200) },
  );
});

// ---------------------------------------------------------------------------------------
// Linear

test("linear_forward matches x·Wᵀ + b, with and without bias", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 70 }),
      fc.integer({ min: 1, max: 70 }),
      fc.boolean(),
      seed,
      (rows, inF, outF, withBias, s) => {
        const memory = new WasmBuffers();
        const x = randomFloats(s, rows * inF), W = randomFloats(s + 1, outF * inF);
        const b = withBias ? randomFloats(s + 2, outF) : undefined;
        const pX = memory.put(x), pW = memory.put(W), pB = b ? memory.put(b) : 0;
        const pY = memory.alloc(rows * outF);
        k.linear_forward(rows, inF, outF, pX, pW, pB, pY);
        const expected = linearForwardReference(rows, inF, outF, x, W, b);
        const magnitude = linearForwardReference(rows, inF, outF, absolute(x), absolute(W), b && absolute(b));
        assertClose(memory.read(pY, rows * outF), expected, magnitude, inF + 1, `rows=${rows} in=${inF} out=${outF}`);
        memory.assertGuardsIntact();
      },
    ),
    { numRuns: runs(100) },
  );
});

test("linear_backward_input matches gy·W", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 70 }),
      fc.integer({ min: 1, max: 70 }),
      seed,
      (rows, inF, outF, s) => {
        const memory = new WasmBuffers();
        const gy = randomFloats(s, rows * outF), W = randomFloats(s + 1, outF * inF);
        const pGy = memory.put(gy), pW = memory.put(W);
        const pGx = memory.alloc(rows * inF);
        k.linear_backward_input(rows, inF, outF, pGy, pW, pGx);
        const expected = linearBackwardInputReference(rows, inF, outF, gy, W);
        const magnitude = linearBackwardInputReference(rows, inF, outF, absolute(gy), absolute(W));
        assertClose(memory.read(pGx, rows * inF), expected, magnitude, outF, `rows=${rows} in=${inF} out=${outF}`);
        memory.assertGuardsIntact();
      },
    ),
    { numRuns: runs(100) },
  );
});

const linearCase = fc.record({
  N: fc.integer({ min: 1, max: 4 }),
  K: fc.integer({ min: 1, max: 3 }),
  S: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 6 })),
  inF: fc.integer({ min: 1, max: 40 }),
  outF: fc.integer({ min: 1, max: 20 }),
  withBias: fc.boolean(),
  extra: fc.integer({ min: 0, max: 3 }),
  seed,
});

test("linear_weight_per_sample matches naive per-sample outer products for S = 1 and S > 1, K ≥ 1, optional bias", () => {
  fc.assert(
    fc.property(linearCase, (c) => {
      const { N, K, S, inF, outF, withBias, extra } = c;
      const R = N * K;
      const memory = new WasmBuffers();
      const x = randomFloats(c.seed, N * S * inF), gy = randomFloats(c.seed + 1, R * S * outF);
      const wCount = outF * inF;
      const ldJ = wCount + (withBias ? outF : 0) + extra;
      const pX = memory.put(x), pGy = memory.put(gy);
      const pJ = memory.alloc(R * ldJ);
      k.linear_weight_per_sample(R, K, S, inF, outF, pX, pGy, pJ, withBias ? pJ + wCount * 4 : 0, ldJ);
      const J = memory.read(pJ, R * ldJ);
      const expected = linearWeightPerSampleReference(R, K, S, inF, outF, x, gy);
      const magnitude = linearWeightPerSampleReference(R, K, S, inF, outF, absolute(x), absolute(gy));
      for (let r = 0; r < R; r++) {
        const row = J.subarray(r * ldJ, (r + 1) * ldJ);
        const what = `${JSON.stringify(c)} row ${r}`;
        assertClose(
          row.subarray(0, wCount),
          expected.weight.subarray(r * wCount, (r + 1) * wCount),
          magnitude.weight.subarray(r * wCount, (r + 1) * wCount),
          S,
          `${what} weights`,
        );
        let rest = wCount;
        if (withBias) {
          assertClose(
            row.subarray(wCount, wCount + outF),
            expected.bias.subarray(r * outF, (r + 1) * outF),
            magnitude.bias.subarray(r * outF, (r + 1) * outF),
            S,
            `${what} bias`,
          );
          rest += outF;
        }
        for (let i = rest; i < ldJ; i++) assert.equal(row[i], SENTINEL, `${what}: padding of J written`);
      }
      memory.assertGuardsIntact();
    }),
    { numRuns: runs(150) },
  );
});

test("linear_weight_grad equals the sum over rows of linear_weight_per_sample, overwriting or accumulating", () => {
  fc.assert(
    fc.property(linearCase, fc.boolean(), (c, accumulate) => {
      const { N, K, S, inF, outF, withBias } = c;
      const R = N * K;
      const memory = new WasmBuffers();
      const x = randomFloats(c.seed, N * S * inF), gy = randomFloats(c.seed + 1, R * S * outF);
      const wCount = outF * inF;
      const ldJ = wCount + outF;
      const pX = memory.put(x), pGy = memory.put(gy);
      const pJ = memory.alloc(R * ldJ);
      k.linear_weight_per_sample(R, K, S, inF, outF, pX, pGy, pJ, pJ + wCount * 4, ldJ);
      const J = memory.read(pJ, R * ldJ);
      const initialW = randomFloats(c.seed + 2, wCount), initialB = randomFloats(c.seed + 3, outF);
      const pGW = memory.put(initialW), pGB = withBias ? memory.put(initialB) : 0;
      k.linear_weight_grad(R, K, S, inF, outF, pX, pGy, pGW, pGB, accumulate ? 1 : 0);
      const magnitude = linearWeightPerSampleReference(R, K, S, inF, outF, absolute(x), absolute(gy));
      const expectedW = (accumulate ? Float64Array.from(initialW) : new Float64Array(wCount));
      const boundW = accumulate ? absolute(initialW) : new Float64Array(wCount);
      const expectedB = (accumulate ? Float64Array.from(initialB) : new Float64Array(outF));
      const boundB = accumulate ? absolute(initialB) : new Float64Array(outF);
      for (let r = 0; r < R; r++) {
        for (let i = 0; i < wCount; i++) {
          expectedW[i] += J[r * ldJ + i];
          boundW[i] += magnitude.weight[r * wCount + i];
        }
        for (let o = 0; o < outF; o++) {
          expectedB[o] += J[r * ldJ + wCount + o];
          boundB[o] += magnitude.bias[r * outF + o];
        }
      }
      const what = `${JSON.stringify(c)} accumulate=${accumulate}`;
      assertClose(memory.read(pGW, wCount), expectedW, boundW, 2 * R * S + 2, `${what} weights`);
      if (withBias) assertClose(memory.read(pGB, outF), expectedB, boundB, 2 * R * S + 2, `${what} bias`);
      memory.assertGuardsIntact();
    }),
    { numRuns: runs(150) },
  );
});

test("weight-gradient sums over zero rows zero their outputs, or leave them when accumulating", () => {
  const g: ConvGeometry = {
    groups: 1,
    cin: 2,
    cout: 3,
    input: [1, 1, 4],
    output: [1, 1, 2],
    kernel: [1, 1, 3],
    stride: [1, 1, 1],
    padding: [0, 0, 0],
    dilation: [1, 1, 1],
  };
  for (const accumulate of [0, 1]) {
    const memory = new WasmBuffers();
    const initialW = randomFloats(1, 18), initialB = randomFloats(2, 3);
    const pGeom = memory.putInts(convGeometryBlock(g));
    const pX = memory.alloc(8), pGy = memory.alloc(6), pWork = memory.alloc(12);
    const pConvW = memory.put(initialW), pConvB = memory.put(initialB);
    const pLinW = memory.put(initialW), pLinB = memory.put(initialB);
    k.conv_weight_grad(pGeom, 0, 1, pX, pGy, pConvW, pConvB, pWork, accumulate);
    k.linear_weight_grad(0, 1, 1, 6, 3, pX, pGy, pLinW, pLinB, accumulate);
    const expectW = accumulate ? initialW : new Float32Array(18);
    const expectB = accumulate ? initialB : new Float32Array(3);
    assert.deepEqual(memory.read(pConvW, 18), expectW);
    assert.deepEqual(memory.read(pConvB, 3), expectB);
    assert.deepEqual(memory.read(pLinW, 18), expectW);
    assert.deepEqual(memory.read(pLinB, 3), expectB);
    memory.assertGuardsIntact();
  }
});
