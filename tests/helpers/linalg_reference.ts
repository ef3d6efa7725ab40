// Obviously-correct float64 loops that the linear-algebra kernels are checked against.

/** C (+)= op(A)·op(B), every matrix row-major with a leading dimension. */
export function gemmReference(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  A: ArrayLike<number>,
  lda: number,
  B: ArrayLike<number>,
  ldb: number,
  C: ArrayLike<number>,
  ldc: number,
  accumulate: boolean,
): Float64Array {
  const out = Float64Array.from(C);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let sum = accumulate ? C[i * ldc + j] : 0;
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * lda + i] : A[i * lda + k];
        const b = transB ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
      }
      out[i * ldc + j] = sum;
    }
  }
  return out;
}

/** The convolution geometry of docs/kernels.md, always in 3 spatial dims. */
export interface ConvGeometry {
  groups: number;
  cin: number;
  cout: number;
  input: [number, number, number];
  output: [number, number, number];
  kernel: [number, number, number];
  stride: [number, number, number];
  padding: [number, number, number];
  dilation: [number, number, number];
}

/** Output size of one dim, as PyTorch computes it. */
export function convOutputSize(
  size: number,
  kernel: number,
  stride: number,
  padding: number,
  dilation: number,
): number {
  return Math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1;
}

/** The 21-int CONV_GEOM block. */
export function convGeometryBlock(g: ConvGeometry): Int32Array {
  return Int32Array.from([
    g.groups,
    g.cin,
    g.cout,
    ...g.input,
    ...g.output,
    ...g.kernel,
    ...g.stride,
    ...g.padding,
    ...g.dilation,
  ]);
}

export const volume = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/**
 * Calls `tap` for every (output channel, input channel, kernel offset, output position) whose
 * window reads a real input element (not padding), with the flat indices: weight index
 * within W, input index within one sample, output index within one sample.
 */
export function forEachTap(
  g: ConvGeometry,
  tap: (weight: number, input: number, output: number, co: number) => void,
): void {
  const [D, H, W] = g.input;
  const [oD, oH, oW] = g.output;
  const [kD, kH, kW] = g.kernel;
  const cig = g.cin / g.groups;
  const cog = g.cout / g.groups;
  for (let co = 0; co < g.cout; co++) {
    const group = Math.floor(co / cog);
    for (let ci = 0; ci < cig; ci++) {
      const c = group * cig + ci;
      for (let kd = 0; kd < kD; kd++) {
        for (let kh = 0; kh < kH; kh++) {
          for (let kw = 0; kw < kW; kw++) {
            const weight = (((co * cig + ci) * kD + kd) * kH + kh) * kW + kw;
            for (let od = 0; od < oD; od++) {
              const id = od * g.stride[0] - g.padding[0] + kd * g.dilation[0];
              if (id < 0 || id >= D) continue;
              for (let oh = 0; oh < oH; oh++) {
                const ih = oh * g.stride[1] - g.padding[1] + kh * g.dilation[1];
                if (ih < 0 || ih >= H) continue;
                for (let ow = 0; ow < oW; ow++) {
                  const iw = ow * g.stride[2] - g.padding[2] + kw * g.dilation[2];
                  if (iw < 0 || iw >= W) continue;
                  const input = ((c * D + id) * H + ih) * W + iw;
                  const output = ((co * oD + od) * oH + oh) * oW + ow;
                  tap(weight, input, output, co);
                }
              }
            }
          }
        }
      }
    }
  }
}

/** im2col of one sample by the definition: cols[c·kvol + k, o] = x[c, window(o) + k] or 0. */
export function im2colReference(g: ConvGeometry, x: ArrayLike<number>): Float64Array {
  const [D, H, W] = g.input;
  const [oD, oH, oW] = g.output;
  const [kD, kH, kW] = g.kernel;
  const L = oD * oH * oW;
  const cols = new Float64Array(g.cin * kD * kH * kW * L);
  let row = 0;
  for (let c = 0; c < g.cin; c++) {
    for (let kd = 0; kd < kD; kd++) {
      for (let kh = 0; kh < kH; kh++) {
        for (let kw = 0; kw < kW; kw++, row++) {
          for (let od = 0; od < oD; od++) {
            for (let oh = 0; oh < oH; oh++) {
              for (let ow = 0; ow < oW; ow++) {
                const id = od * g.stride[0] - g.padding[0] + kd * g.dilation[0];
                const ih = oh * g.stride[1] - g.padding[1] + kh * g.dilation[1];
                const iw = ow * g.stride[2] - g.padding[2] + kw * g.dilation[2];
                const inside = id >= 0 && id < D && ih >= 0 && ih < H && iw >= 0 && iw < W;
                cols[row * L + (od * oH + oh) * oW + ow] = inside ? x[((c * D + id) * H + ih) * W + iw] : 0;
              }
            }
          }
        }
      }
    }
  }
  return cols;
}

/** Direct convolution: y[n, co, o] = b[co] + Σ W[co, ci, k]·x[n, group(co)·cig + ci, window(o) + k]. */
export function convForwardReference(
  g: ConvGeometry,
  N: number,
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  b: ArrayLike<number> | undefined,
): Float64Array {
  const inSize = g.cin * volume(g.input);
  const L = volume(g.output);
  const y = new Float64Array(N * g.cout * L);
  for (let n = 0; n < N; n++) {
    if (b) { for (let co = 0; co < g.cout; co++) y.fill(b[co], (n * g.cout + co) * L, (n * g.cout + co + 1) * L); }
    forEachTap(g, (weight, input, output) => {
      y[n * g.cout * L + output] += W[weight] * x[n * inSize + input];
    });
  }
  return y;
}

/** The adjoint of the convolution, scattering each output gradient back through its window. */
export function convBackwardInputReference(
  g: ConvGeometry,
  R: number,
  gy: ArrayLike<number>,
  W: ArrayLike<number>,
): Float64Array {
  const inSize = g.cin * volume(g.input);
  const outSize = g.cout * volume(g.output);
  const gx = new Float64Array(R * inSize);
  for (let r = 0; r < R; r++) {
    forEachTap(g, (weight, input, output) => {
      gx[r * inSize + input] += W[weight] * gy[r * outSize + output];
    });
  }
  return gx;
}

/** Per backward row r: ∂W[co, ci, k] = Σ_o gy[r, co, o]·x[r/K, …], ∂b[co] = Σ_o gy[r, co, o]. */
export function convWeightPerSampleReference(
  g: ConvGeometry,
  R: number,
  K: number,
  x: ArrayLike<number>,
  gy: ArrayLike<number>,
): { weight: Float64Array; bias: Float64Array } {
  const inSize = g.cin * volume(g.input);
  const L = volume(g.output);
  const wSize = g.cout * (g.cin / g.groups) * volume(g.kernel);
  const weight = new Float64Array(R * wSize);
  const bias = new Float64Array(R * g.cout);
  for (let r = 0; r < R; r++) {
    const n = Math.floor(r / K);
    forEachTap(g, (w, input, output) => {
      weight[r * wSize + w] += gy[r * g.cout * L + output] * x[n * inSize + input];
    });
    for (let co = 0; co < g.cout; co++) {
      for (let o = 0; o < L; o++) bias[r * g.cout + co] += gy[(r * g.cout + co) * L + o];
    }
  }
  return { weight, bias };
}

/** y[row, o] = b[o] + Σ_i x[row, i]·W[o, i]. */
export function linearForwardReference(
  rows: number,
  inF: number,
  outF: number,
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  b: ArrayLike<number> | undefined,
): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let sum = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) sum += x[r * inF + i] * W[o * inF + i];
      y[r * outF + o] = sum;
    }
  }
  return y;
}

/** gx[row, i] = Σ_o gy[row, o]·W[o, i]. */
export function linearBackwardInputReference(
  rows: number,
  inF: number,
  outF: number,
  gy: ArrayLike<number>,
  W: ArrayLike<number>,
): Float64Array {
  const gx = new Float64Array(rows * inF);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < inF; i++) {
      let sum = 0;
      for (let o = 0; o < outF; o++) sum += gy[r * outF + o] * W[o * inF + i];
      gx[r * inF + i] = sum;
    }
  }
  return gx;
}

/** Per backward row r: ∂W[o, i] = Σ_s gy[r, s, o]·x[r/K, s, i], ∂b[o] = Σ_s gy[r, s, o]. */
export function linearWeightPerSampleReference(
  R: number,
  K: number,
  S: number,
  inF: number,
  outF: number,
  x: ArrayLike<number>,
  gy: ArrayLike<number>,
): { weight: Float64Array; bias: Float64Array } {
  const weight = new Float64Array(R * outF * inF);
  const bias = new Float64Array(R * outF);
  for (let r = 0; r < R; r++) {
    const n = Math.floor(r / K);
    for (let s = 0; s < S; s++) {
      for (let o = 0; o < outF; o++) {
        const g = gy[(r * S + s) * outF + o];
        bias[r * outF + o] += g;
        for (let i = 0; i < inF; i++) weight[(r * outF + o) * inF + i] += g * x[(n * S + s) * inF + i];
      }
    }
  }
  return { weight, bias };
}

/**
 * An error scale for weight gradients taken by Winograd F(3×3, 2×2), in the units of
 * convWeightPerSampleReference's magnitudes: 8 · max|x[sample, ci]| · Σ|gy[r, co]| for every
 * tap of (co, ci). Its transforms mix the whole 4×4 input and 2×2 gy block of a tile into
 * every product (|Bᵀ d B| ≤ 4 max|d|, |A h Aᵀ| ≤ Σ|h|), so a tap's rounding scales with its
 * neighbours too, not only with the products it sums.
 */
export function winogradWeightScale(g: ConvGeometry, R: number, K: number, x: ArrayLike<number>, gy: ArrayLike<number>): Float64Array {
  const inPlane = volume(g.input);
  const L = volume(g.output);
  const kvol = volume(g.kernel);
  const wSize = g.cout * g.cin * kvol;
  const scale = new Float64Array(R * wSize);
  for (let r = 0; r < R; r++) {
    const n = Math.floor(r / K);
    for (let co = 0; co < g.cout; co++) {
      let gySum = 0;
      for (let o = 0; o < L; o++) gySum += Math.abs(gy[(r * g.cout + co) * L + o]);
      for (let ci = 0; ci < g.cin; ci++) {
        let xMax = 0;
        for (let i = 0; i < inPlane; i++) xMax = Math.max(xMax, Math.abs(x[(n * g.cin + ci) * inPlane + i]));
        scale.fill(8 * xMax * gySum, r * wSize + (co * g.cin + ci) * kvol, r * wSize + (co * g.cin + ci + 1) * kvol);
      }
    }
  }
  return scale;
}

/**
 * An error scale for the forward pass by Winograd F(4×4, 3×3), in the units of the magnitudes
 * checkConvForward compares against: 2·Σ_ci max|x[n, ci]|·Σ_taps |W[co, ci]| for every output
 * of (n, co). Its transforms scale by up to 8 and mix the whole 6×6 input block of a tile into
 * every product, so an output's rounding follows its tile's inputs, not only its own window
 * (next to zero padding the window's own sum can be much smaller). The input gradient takes
 * the same with gy for x and the roles of ci and co swapped (`transposed`).
 */
export function winogradConvScale(g: ConvGeometry, rows: number, src: ArrayLike<number>, W: ArrayLike<number>, transposed: boolean): Float64Array {
  const [inC, outC] = transposed ? [g.cout, g.cin] : [g.cin, g.cout];
  const inPlane = volume(transposed ? g.output : g.input);
  const outPlane = volume(transposed ? g.input : g.output);
  const kvol = volume(g.kernel);
  const scale = new Float64Array(rows * outC * outPlane);
  for (let r = 0; r < rows; r++) {
    const maxima = Array.from({ length: inC }, (_, c) => {
      let m = 0;
      for (let i = 0; i < inPlane; i++) m = Math.max(m, Math.abs(src[(r * inC + c) * inPlane + i]));
      return m;
    });
    for (let o = 0; o < outC; o++) {
      let total = 0;
      for (let c = 0; c < inC; c++) {
        const [co, ci] = transposed ? [c, o] : [o, c];
        let taps = 0;
        for (let t = 0; t < kvol; t++) taps += Math.abs(W[(co * g.cin + ci) * kvol + t]);
        total += maxima[c] * taps;
      }
      scale.fill(2 * total, (r * outC + o) * outPlane, (r * outC + o + 1) * outPlane);
    }
  }
  return scale;
}
