// Plain float64 reference implementations of the activation and pooling kernels, written
// from PyTorch's definitions and independently of assembly/nn.ts (different formulas where
// a formula is a choice, per-tap enumeration instead of clipped ranges for pooling).

/** Activation kinds, as numbered in docs/kernels.md. */
export const Act = {
  relu: 0,
  leakyRelu: 1,
  sigmoid: 2,
  tanh: 3,
  elu: 4,
  gelu: 5,
  geluTanh: 6,
  silu: 7,
  softplus: 8,
} as const;

export const ACT_NAMES = ["relu", "leakyRelu", "sigmoid", "tanh", "elu", "gelu", "geluTanh", "silu", "softplus"];

// erf by its everywhere-positive series erf(x) = 2/√π · e^{-x²} · Σ 2ⁿ x^{2n+1} / (2n+1)!!
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
    if (Math.abs(term) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

// erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated bottom-up.
function erfcContinuedFraction(x: number): number {
  let f = x;
  for (let n = 400; n >= 1; n--) f = x + n / 2 / f;
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** Complementary error function in float64 (relative error ~1e-13 or better). */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return 2 - erfc(-x);
  if (x < 2.5) return 1 - erfSeries(x);
  return erfcContinuedFraction(x);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** f(x) for one activation, in float64; p1, p2 as in docs/kernels.md. */
export function activation(kind: number, x: number, p1: number, p2: number): number {
  switch (kind) {
    case Act.relu:
      return Number.isNaN(x) ? NaN : Math.max(x, 0);
    case Act.leakyRelu:
      return x > 0 ? x : x * p1;
    case Act.sigmoid:
      return 1 / (1 + Math.exp(-x));
    case Act.tanh:
      return Math.tanh(x);
    case Act.elu:
      return x > 0 ? x : p1 * Math.expm1(x);
    case Act.gelu:
      return 0.5 * x * erfc(-x / Math.SQRT2);
    case Act.geluTanh:
      return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)));
    case Act.silu:
      return x / (1 + Math.exp(-x));
    case Act.softplus:
      // PyTorch compares x·beta with the threshold in float32
      return Math.fround(x * p1) > p2 ? x : Math.log1p(Math.exp(p1 * x)) / p1;
  }
  throw new RangeError(`unknown activation kind ${kind}`);
}

/** f'(x) with PyTorch's conventions at kinks (ReLU'(0) = 0, LeakyReLU'(0) = slope, ELU'(0) = alpha). */
export function activationDerivative(kind: number, x: number, p1: number, p2: number): number {
  switch (kind) {
    case Act.relu:
      return x > 0 ? 1 : 0;
    case Act.leakyRelu:
      return x > 0 ? 1 : p1;
    case Act.sigmoid: {
      const s = 1 / (1 + Math.exp(-x));
      return s * (1 - s);
    }
    case Act.tanh:
      return 1 - Math.tanh(x) ** 2;
    case Act.elu:
      return x > 0 ? 1 : p1 * Math.exp(x);
    case Act.gelu:
      return 0.5 * erfc(-x / Math.SQRT2) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case Act.geluTanh: {
      const t = Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
    }
    case Act.silu: {
      const s = 1 / (1 + Math.exp(-x));
      return s * (1 + x * (1 - s));
    }
    case Act.softplus: {
      if (Math.fround(x * p1) > p2) return 1;
      return 1 / (1 + Math.exp(-p1 * x));
    }
  }
  throw new RangeError(`unknown activation kind ${kind}`);
}

/** A pooling layer's geometry in 3 spatial dims, as in the POOL_GEOM block. */
export interface PoolGeometry {
  channels: number;
  input: number[]; // D, H, W
  output: number[];
  kernel: number[];
  stride: number[];
  padding: number[];
  dilation: number[];
  countIncludePad: boolean;
  divisorOverride: number; // 0: none
}

/** PyTorch's pooling_output_shape: the output length of one dim. */
export function pooledSize(size: number, kernel: number, padding: number, stride: number, dilation: number, ceilMode: boolean): number {
  const span = size + 2 * padding - dilation * (kernel - 1) - 1 + (ceilMode ? stride - 1 : 0);
  let out = Math.floor(span / stride) + 1;
  // the last window must start inside the input or its front padding
  if (ceilMode && (out - 1) * stride >= size + padding) out--;
  return out;
}

/** The 21 ints of POOL_GEOM. */
export function poolGeomInts(g: PoolGeometry): Int32Array {
  return Int32Array.from([
    g.channels, ...g.input, ...g.output, ...g.kernel, ...g.stride, ...g.padding, ...g.dilation,
    g.countIncludePad ? 1 : 0, g.divisorOverride,
  ]);
}

// Calls visit(outputIndex, taps) for every output of one plane; taps lists, in scan order
// (d, then h, then w), the in-plane index of every kernel tap inside the input, and padded
// counts the taps inside the padded input [-padding, size + padding).
function forEachWindow(g: PoolGeometry, visit: (o: number, taps: number[], padded: number) => void): void {
  const [D, H, W] = g.input;
  const [oD, oH, oW] = g.output;
  let o = 0;
  for (let od = 0; od < oD; od++) {
    for (let oh = 0; oh < oH; oh++) {
      for (let ow = 0; ow < oW; ow++) {
        const taps: number[] = [];
        let padded = 0;
        for (let kd = 0; kd < g.kernel[0]; kd++) {
          for (let kh = 0; kh < g.kernel[1]; kh++) {
            for (let kw = 0; kw < g.kernel[2]; kw++) {
              const d = od * g.stride[0] - g.padding[0] + kd * g.dilation[0];
              const h = oh * g.stride[1] - g.padding[1] + kh * g.dilation[1];
              const w = ow * g.stride[2] - g.padding[2] + kw * g.dilation[2];
              const inPadded = d < D + g.padding[0] && h < H + g.padding[1] && w < W + g.padding[2];
              if (inPadded) padded++;
              if (d >= 0 && d < D && h >= 0 && h < H && w >= 0 && w < W) taps.push((d * H + h) * W + w);
            }
          }
        }
        visit(o++, taps, padded);
      }
    }
  }
}

function planeSizes(g: PoolGeometry): { inPlane: number; outPlane: number } {
  return { inPlane: g.input[0] * g.input[1] * g.input[2], outPlane: g.output[0] * g.output[1] * g.output[2] };
}

/** Max pooling of N samples: values and argmax (ATen's rule: strict >, a NaN always wins; -1 for an empty window). */
export function maxPoolReference(g: PoolGeometry, N: number, x: ArrayLike<number>): { y: Float64Array; argmax: Int32Array } {
  const { inPlane, outPlane } = planeSizes(g);
  const y = new Float64Array(N * g.channels * outPlane);
  const argmax = new Int32Array(y.length);
  for (let p = 0; p < N * g.channels; p++) {
    forEachWindow(g, (o, taps) => {
      let best = -Infinity;
      let index = -1;
      for (const t of taps) {
        const v = x[p * inPlane + t];
        if (index < 0 || v > best || Number.isNaN(v)) {
          best = v;
          index = t;
        }
      }
      y[p * outPlane + o] = best;
      argmax[p * outPlane + o] = index;
    });
  }
  return { y, argmax };
}

/** gx (R, C, in) = scatter of gy (R, C, out) through the argmax of sample r / K. */
export function maxPoolBackwardReference(g: PoolGeometry, R: number, K: number, gy: ArrayLike<number>, argmax: ArrayLike<number>): Float64Array {
  const { inPlane, outPlane } = planeSizes(g);
  const C = g.channels;
  const gx = new Float64Array(R * C * inPlane);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      for (let o = 0; o < outPlane; o++) {
        const index = argmax[(Math.floor(r / K) * C + c) * outPlane + o];
        if (index >= 0) gx[(r * C + c) * inPlane + index] += gy[(r * C + c) * outPlane + o];
      }
    }
  }
  return gx;
}

function avgDivisor(g: PoolGeometry, taps: number[], padded: number): number {
  if (taps.length === 0) return 0;
  if (g.divisorOverride !== 0) return g.divisorOverride;
  return g.countIncludePad ? padded : taps.length;
}

/** Average pooling of N samples. */
export function avgPoolReference(g: PoolGeometry, N: number, x: ArrayLike<number>): Float64Array {
  const { inPlane, outPlane } = planeSizes(g);
  const y = new Float64Array(N * g.channels * outPlane);
  for (let p = 0; p < N * g.channels; p++) {
    forEachWindow(g, (o, taps, padded) => {
      const divisor = avgDivisor(g, taps, padded);
      let sum = 0;
      for (const t of taps) sum += x[p * inPlane + t];
      y[p * outPlane + o] = divisor === 0 ? 0 : sum / divisor;
    });
  }
  return y;
}

/** The adjoint of avgPoolReference over R rows. */
export function avgPoolBackwardReference(g: PoolGeometry, R: number, gy: ArrayLike<number>): Float64Array {
  const { inPlane, outPlane } = planeSizes(g);
  const gx = new Float64Array(R * g.channels * inPlane);
  for (let p = 0; p < R * g.channels; p++) {
    forEachWindow(g, (o, taps, padded) => {
      const divisor = avgDivisor(g, taps, padded);
      if (divisor === 0) return;
      for (const t of taps) gx[p * inPlane + t] += gy[p * outPlane + o] / divisor;
    });
  }
  return gx;
}
