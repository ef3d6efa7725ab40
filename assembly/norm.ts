// Normalisation (BatchNorm eval, LayerNorm, GroupNorm, InstanceNorm), Embedding and adaptive
// pooling kernels (docs/kernels.md, "Normalisation, Embedding, adaptive pooling").
//
// Layout of the normalisations: one sample is `blocks` blocks of C × L floats; element (c, l)
// of a block has the affine parameters γ[c], β[c]. BatchNorm/GroupNorm/InstanceNorm: one
// block, C channels of L positions. LayerNorm: `blocks` = the leading extra dims S, C = the
// normalized_shape's size M, L = 1 (γ is elementwise over the normalised dims).
import { add_f32, fill_f32, hsum, madd } from "./simd";

// ---------------------------------------------------------------------------------------------
// Shared loops

/**
 * dst[b, c, l] = src[b, c, l] · a[c] + (b ? bias[c] : 0) for `blocks` blocks of C × L, then
 * max(·, 0) when `relu` (NaN stays NaN, as torch.relu); dst may equal src. SIMD over l (L ≥ 4)
 * or over c (L = 1).
 */
function scaleShift(blocks: i32, C: i32, L: i32, src: usize, a: usize, bias: usize, dst: usize, relu: bool = false): void {
  const zero = f32x4.splat(0);
  const blockBytes = (<usize>C * <usize>L) << 2;
  for (let blk = 0; blk < blocks; blk++) {
    const s = src + <usize>blk * blockBytes;
    const d = dst + <usize>blk * blockBytes;
    if (L == 1) {
      let c = 0;
      if (bias != 0) {
        for (; c + 4 <= C; c += 4) {
          const at = <usize>c << 2;
          v128.store(d + at, relu4(madd(v128.load(s + at), v128.load(a + at), v128.load(bias + at)), zero, relu));
        }
        for (; c < C; c++) {
          const at = <usize>c << 2;
          store<f32>(d + at, relu1(load<f32>(s + at) * load<f32>(a + at) + load<f32>(bias + at), relu));
        }
      } else {
        for (; c + 4 <= C; c += 4) {
          const at = <usize>c << 2;
          v128.store(d + at, relu4(f32x4.mul(v128.load(s + at), v128.load(a + at)), zero, relu));
        }
        for (; c < C; c++) {
          const at = <usize>c << 2;
          store<f32>(d + at, relu1(load<f32>(s + at) * load<f32>(a + at), relu));
        }
      }
    } else {
      const rowBytes = <usize>L << 2;
      for (let c = 0; c < C; c++) {
        const scale = load<f32>(a + (<usize>c << 2));
        const shift: f32 = bias != 0 ? load<f32>(bias + (<usize>c << 2)) : 0;
        const sr = s + <usize>c * rowBytes;
        const dr = d + <usize>c * rowBytes;
        const vs = f32x4.splat(scale);
        const vb = f32x4.splat(shift);
        let l = 0;
        for (; l + 4 <= L; l += 4) {
          const at = <usize>l << 2;
          v128.store(dr + at, relu4(madd(v128.load(sr + at), vs, vb), zero, relu));
        }
        for (; l < L; l++) {
          const at = <usize>l << 2;
          store<f32>(dr + at, relu1(load<f32>(sr + at) * scale + shift, relu));
        }
      }
    }
  }
}

// @ts-ignore: decorator
@inline function relu4(v: v128, zero: v128, relu: bool): v128 {
  return relu ? f32x4.max(v, zero) : v;
}

// @ts-ignore: decorator
@inline function relu1(v: f32, relu: bool): f32 {
  return relu ? max<f32>(v, 0) : v;
}

/**
 * w[c] += Σ_{b,l} g·x̂ and bias[c] += Σ_{b,l} g (bias = 0: none) over `blocks` blocks of C × L.
 * `coef` = 0: `cache` is x̂; else `cache` is the layer input x and x̂ = x·coef[c] + coef[C + c]
 * is recomputed here as norm_running_forward would have (running statistics keep no x̂).
 * `mask` ≠ 0: a fused ReLU followed, `g` is the gradient after it and `mask` its output (laid
 * out as `cache`), so the gradient at the normalisation's output is g where mask > 0 (or NaN).
 */
function accumulateAffine(
  blocks: i32, C: i32, L: i32, cache: usize, g: usize, w: usize, bias: usize, coef: usize, mask: usize,
): void {
  const blockBytes = (<usize>C * <usize>L) << 2;
  const shift = coef + (<usize>C << 2);
  const zero = f32x4.splat(0);
  for (let blk = 0; blk < blocks; blk++) {
    const xb = cache + <usize>blk * blockBytes;
    const gb = g + <usize>blk * blockBytes;
    const mb = mask + <usize>blk * blockBytes;
    if (L == 1) {
      let c = 0;
      for (; c + 4 <= C; c += 4) {
        const at = <usize>c << 2;
        let gv = v128.load(gb + at);
        if (mask != 0) gv = v128.andnot(gv, f32x4.le(v128.load(mb + at), zero));
        let xv = v128.load(xb + at);
        if (coef != 0) xv = madd(xv, v128.load(coef + at), v128.load(shift + at));
        v128.store(w + at, madd(gv, xv, v128.load(w + at)));
        if (bias != 0) v128.store(bias + at, f32x4.add(v128.load(bias + at), gv));
      }
      for (; c < C; c++) {
        const at = <usize>c << 2;
        const gv: f32 = mask != 0 && load<f32>(mb + at) <= 0 ? 0 : load<f32>(gb + at);
        let xv = load<f32>(xb + at);
        if (coef != 0) xv = xv * load<f32>(coef + at) + load<f32>(shift + at);
        store<f32>(w + at, load<f32>(w + at) + gv * xv);
        if (bias != 0) store<f32>(bias + at, load<f32>(bias + at) + gv);
      }
    } else {
      const rowBytes = <usize>L << 2;
      for (let c = 0; c < C; c++) {
        const xr = xb + <usize>c * rowBytes;
        const gr = gb + <usize>c * rowBytes;
        const mr = mb + <usize>c * rowBytes;
        const scale: f32 = coef != 0 ? load<f32>(coef + (<usize>c << 2)) : 1;
        const offset: f32 = coef != 0 ? load<f32>(shift + (<usize>c << 2)) : 0;
        const vs = f32x4.splat(scale);
        const vo = f32x4.splat(offset);
        let dot = f32x4.splat(0);
        let sum = f32x4.splat(0);
        let l = 0;
        for (; l + 4 <= L; l += 4) {
          const at = <usize>l << 2;
          let gv = v128.load(gr + at);
          if (mask != 0) gv = v128.andnot(gv, f32x4.le(v128.load(mr + at), zero));
          let xv = v128.load(xr + at);
          if (coef != 0) xv = madd(xv, vs, vo);
          dot = madd(gv, xv, dot);
          sum = f32x4.add(sum, gv);
        }
        let d = hsum(dot);
        let s = hsum(sum);
        for (; l < L; l++) {
          const at = <usize>l << 2;
          const gv: f32 = mask != 0 && load<f32>(mr + at) <= 0 ? 0 : load<f32>(gr + at);
          let xv = load<f32>(xr + at);
          if (coef != 0) xv = xv * scale + offset;
          d += gv * xv;
          s += gv;
        }
        const at = <usize>c << 2;
        store<f32>(w + at, load<f32>(w + at) + d);
        if (bias != 0) store<f32>(bias + at, load<f32>(bias + at) + s);
      }
    }
  }
}

// Σ a[i] and Σ a[i]·b[i] over n floats, four lanes then the tail.
// @ts-ignore: decorator
@inline function sum(a: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) acc = f32x4.add(acc, v128.load(a + (<usize>i << 2)));
  let s = hsum(acc);
  for (; i < n; i++) s += load<f32>(a + (<usize>i << 2));
  return s;
}

// @ts-ignore: decorator
@inline function dot(a: usize, b: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = <usize>i << 2;
    acc = madd(v128.load(a + at), v128.load(b + at), acc);
  }
  let s = hsum(acc);
  for (; i < n; i++) {
    const at = <usize>i << 2;
    s += load<f32>(a + at) * load<f32>(b + at);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Running statistics: BatchNorm in eval mode, InstanceNorm in eval mode with track_running_stats

/**
 * With running statistics, over (N, C, L): `coef` (4C floats) receives 1/√(var + eps) and
 * −mean/√(var + eps) (x̂ = x·coef[c] + coef[C + c]), then γ/√(var + eps) (the input gradient's
 * scale) and β − mean·γ/√(var + eps). gamma = 0: x̂ is written to `xhat` and is the output;
 * else y = x·(γ/√(var + eps)) + (β − mean·γ/√(var + eps)) in one pass, as PyTorch computes it,
 * and no x̂ is kept (the affine gradients recompute it from x). beta = 0: no β. relu ≠ 0: the
 * output is max(·, 0) (BatchNorm followed by ReLU, one pass).
 */
export function norm_running_forward(
  N: i32, C: i32, L: i32, x: usize, runningMean: usize, runningVar: usize, eps: f32,
  gamma: usize, beta: usize, coef: usize, xhat: usize, y: usize, relu: i32,
): void {
  const shift = coef + (<usize>C << 2);
  const scale = coef + (<usize>C << 3);
  const offset = coef + <usize>C * 12;
  for (let c = 0; c < C; c++) {
    const at = <usize>c << 2;
    const rstd = <f32>(1.0 / Math.sqrt(<f64>load<f32>(runningVar + at) + <f64>eps));
    const mean = load<f32>(runningMean + at);
    store<f32>(coef + at, rstd);
    store<f32>(shift + at, -mean * rstd);
    const a = gamma != 0 ? load<f32>(gamma + at) * rstd : rstd;
    store<f32>(scale + at, a);
    store<f32>(offset + at, (beta != 0 ? load<f32>(beta + at) : 0) - mean * a);
  }
  if (gamma == 0) scaleShift(N, C, L, x, coef, shift, xhat, relu != 0);
  else scaleShift(N, C, L, x, scale, offset, y, relu != 0);
}

/**
 * gx[r, c, l] = gy[r, c, l] · γ[c]/√(var[c] + eps), from the `coef` of norm_running_forward.
 * y ≠ 0: the layer was followed by a ReLU whose output (N samples of C × L) is y and whose
 * output gradient is gy (K rows a sample): gy passes where y > 0 (or NaN), as threshold_backward.
 * sums ≠ 0: the same pass also leaves the affine gradients of every row, read from the layer
 * input x (N samples): sums[r, c] = Σ_l g·x̂ and sums[r, C + c] = Σ_l g, g the gradient at the
 * normalisation's output and x̂ = x·coef[c] + coef[C + c] (2C floats a row; what
 * norm_affine_per_sample would compute from gy and x in a second pass over both).
 */
export function norm_running_backward(
  R: i32, K: i32, C: i32, L: i32, gy: usize, coef: usize, gx: usize, y: usize, x: usize, sums: usize,
): void {
  const scale = coef + (<usize>C << 3);
  if (y == 0 && sums == 0) {
    scaleShift(R, C, L, gy, scale, 0, gx);
    return;
  }
  const zero = f32x4.splat(0);
  const rowBytes = <usize>(C * L) << 2;
  const planeBytes = <usize>L << 2;
  const shift = coef + (<usize>C << 2);
  for (let r = 0; r < R; r++) {
    const g = gy + <usize>r * rowBytes;
    const o = gx + <usize>r * rowBytes;
    const sample = <usize>(r / K) * rowBytes;
    const sumRow = sums + (<usize>(r * 2 * C) << 2);
    for (let c = 0; c < C; c++) {
      const a = load<f32>(scale + (<usize>c << 2));
      const va = f32x4.splat(a);
      const gr = g + <usize>c * planeBytes, orow = o + <usize>c * planeBytes;
      const mr = y + sample + <usize>c * planeBytes, xr = x + sample + <usize>c * planeBytes;
      const rs = load<f32>(coef + (<usize>c << 2)), sh = load<f32>(shift + (<usize>c << 2));
      const vrs = f32x4.splat(rs), vsh = f32x4.splat(sh);
      let dot = f32x4.splat(0), sum = f32x4.splat(0);
      let l = 0;
      for (; l + 4 <= L; l += 4) {
        const at = <usize>l << 2;
        let gv = v128.load(gr + at);
        if (y != 0) gv = v128.andnot(gv, f32x4.le(v128.load(mr + at), zero));
        v128.store(orow + at, f32x4.mul(gv, va));
        if (sums != 0) {
          dot = madd(gv, madd(v128.load(xr + at), vrs, vsh), dot);
          sum = f32x4.add(sum, gv);
        }
      }
      let d = hsum(dot), t = hsum(sum);
      for (; l < L; l++) {
        const at = <usize>l << 2;
        const gv: f32 = y != 0 && load<f32>(mr + at) <= 0 ? 0 : load<f32>(gr + at);
        store<f32>(orow + at, gv * a);
        if (sums != 0) {
          d += gv * (load<f32>(xr + at) * rs + sh);
          t += gv;
        }
      }
      if (sums != 0) {
        store<f32>(sumRow + (<usize>c << 2), d);
        store<f32>(sumRow + (<usize>(C + c) << 2), t);
      }
    }
  }
}

/**
 * J rows r < R from norm_running_backward's sums (2C floats a row): ∂/∂γ = sums[r, 0..C) to
 * jw + r·ldJ·4, ∂/∂β = sums[r, C..2C) to jb + r·ldJ·4 (jb = 0: none).
 */
export function norm_sums_per_sample(R: i32, C: i32, sums: usize, jw: usize, jb: usize, ldJ: i32): void {
  const ldJBytes = <usize>ldJ << 2;
  const paramBytes = <usize>C << 2;
  for (let r = 0; r < R; r++) {
    const row = sums + <usize>(r * 2) * paramBytes;
    memory.copy(jw + <usize>r * ldJBytes, row, paramBytes);
    if (jb != 0) memory.copy(jb + <usize>r * ldJBytes, row + paramBytes, paramBytes);
  }
}

/** The summed gradient from norm_running_backward's sums: gw[c] += Σ_r sums[r, c], gb[c] += Σ_r sums[r, C + c]. */
export function norm_sums_grad(R: i32, C: i32, sums: usize, gw: usize, gb: usize): void {
  for (let r = 0; r < R; r++) {
    const row = sums + (<usize>(r * 2 * C) << 2);
    add_f32(gw, row, C);
    if (gb != 0) add_f32(gb, row + (<usize>C << 2), C);
  }
}

// ---------------------------------------------------------------------------------------------
// Per-sample statistics: LayerNorm, GroupNorm, InstanceNorm

/**
 * A sample (width = groups·groupSize floats = blocks·C·L) is normalised in `groups` contiguous
 * groups: x̂ = (x − mean) / √(var + eps) with the biased variance of the group; `rstd` (N·groups
 * floats) keeps 1/√(var + eps). Then y = x̂·γ[c] + β[c] (gamma = 0: y is not written).
 */
export function norm_sample_forward(
  N: i32, groups: i32, groupSize: i32, C: i32, L: i32, x: usize, eps: f32,
  gamma: usize, beta: usize, xhat: usize, rstd: usize, y: usize,
): void {
  const m = <f64>groupSize;
  const groupBytes = <usize>groupSize << 2;
  const count = N * groups;
  for (let i = 0; i < count; i++) {
    const xs = x + <usize>i * groupBytes;
    const hs = xhat + <usize>i * groupBytes;
    const mean = <f32>(<f64>sum(xs, groupSize) / m);
    // two passes: the variance of x − mean keeps its precision when |mean| ≫ std
    const vm = f32x4.splat(mean);
    let acc = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= groupSize; j += 4) {
      const at = <usize>j << 2;
      const d = f32x4.sub(v128.load(xs + at), vm);
      v128.store(hs + at, d);
      acc = madd(d, d, acc);
    }
    let squares = hsum(acc);
    for (; j < groupSize; j++) {
      const at = <usize>j << 2;
      const d = load<f32>(xs + at) - mean;
      store<f32>(hs + at, d);
      squares += d * d;
    }
    if (!isFinite(squares)) {
      // float32 overflowed: a sum past 3.4e38, or |x − mean| past 1.8e19 (its square). The
      // group again in float64, where neither can: x̂ is at most √groupSize whatever x is.
      store<f32>(rstd + (<usize>i << 2), normalise_f64(xs, hs, groupSize, eps));
      continue;
    }
    const r = <f32>(1.0 / Math.sqrt(<f64>squares / m + <f64>eps));
    store<f32>(rstd + (<usize>i << 2), r);
    const vr = f32x4.splat(r);
    j = 0;
    for (; j + 4 <= groupSize; j += 4) {
      const at = <usize>j << 2;
      v128.store(hs + at, f32x4.mul(v128.load(hs + at), vr));
    }
    for (; j < groupSize; j++) {
      const at = <usize>j << 2;
      store<f32>(hs + at, load<f32>(hs + at) * r);
    }
  }
  if (gamma != 0) {
    const width = groups * groupSize;
    scaleShift(N * (width / (C * L)), C, L, xhat, gamma, beta, y);
  }
}

/** x̂ = (x − mean)/√(var + eps) of one group in float64 (the rare path of huge values); returns 1/√(var + eps). */
function normalise_f64(xs: usize, hs: usize, groupSize: i32, eps: f32): f32 {
  const m = <f64>groupSize;
  let total: f64 = 0;
  for (let j = 0; j < groupSize; j++) total += <f64>load<f32>(xs + (<usize>j << 2));
  const mean = total / m;
  let squares: f64 = 0;
  for (let j = 0; j < groupSize; j++) {
    const d = <f64>load<f32>(xs + (<usize>j << 2)) - mean;
    squares += d * d;
  }
  const r = 1.0 / Math.sqrt(squares / m + <f64>eps);
  for (let j = 0; j < groupSize; j++) {
    const at = <usize>j << 2;
    store<f32>(hs + at, <f32>((<f64>load<f32>(xs + at) - mean) * r));
  }
  return <f32>r;
}

/**
 * The input gradient of norm_sample_forward, for R = N·K backward rows (row r reads the caches
 * of sample r / K): with d = gy·γ (gy when gamma = 0), per group
 * gx = rstd · (d − mean(d) − x̂ · mean(d·x̂)). gy is not modified.
 */
export function norm_sample_backward(
  R: i32, K: i32, groups: i32, groupSize: i32, C: i32, L: i32,
  gy: usize, gamma: usize, xhat: usize, rstd: usize, gx: usize,
): void {
  const width = groups * groupSize;
  const rowBytes = <usize>width << 2;
  const groupBytes = <usize>groupSize << 2;
  const blocks = width / (C * L);
  const m = <f64>groupSize;
  for (let r = 0; r < R; r++) {
    const sample = r / K;
    const gyr = gy + <usize>r * rowBytes;
    const gxr = gx + <usize>r * rowBytes;
    const xs = xhat + <usize>sample * rowBytes;
    if (gamma != 0) scaleShift(blocks, C, L, gyr, gamma, 0, gxr);
    else if (gxr != gyr) memory.copy(gxr, gyr, rowBytes);
    for (let g = 0; g < groups; g++) {
      const d = gxr + <usize>g * groupBytes;
      const h = xs + <usize>g * groupBytes;
      const meanD = <f32>(<f64>sum(d, groupSize) / m);
      const meanDX = <f32>(<f64>dot(d, h, groupSize) / m);
      const rs = load<f32>(rstd + (<usize>(sample * groups + g) << 2));
      const vd = f32x4.splat(meanD);
      const vdx = f32x4.splat(meanDX);
      const vr = f32x4.splat(rs);
      let j = 0;
      for (; j + 4 <= groupSize; j += 4) {
        const at = <usize>j << 2;
        const centred = f32x4.sub(f32x4.sub(v128.load(d + at), vd), f32x4.mul(v128.load(h + at), vdx));
        v128.store(d + at, f32x4.mul(centred, vr));
      }
      for (; j < groupSize; j++) {
        const at = <usize>j << 2;
        store<f32>(d + at, (load<f32>(d + at) - meanD - load<f32>(h + at) * meanDX) * rs);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The affine part's parameter gradients (every normalisation)

/**
 * For every backward row r, J row r gets ∂/∂γ[c] = Σ_{b,l} gy[r]·x̂[r / K] (C floats at
 * `jw + r·ldJ·4`) and ∂/∂β[c] = Σ_{b,l} gy[r] (at `jb + r·ldJ·4`; jb = 0: no β). A sample is
 * `blocks` blocks of C × L.
 */
export function norm_affine_per_sample(
  R: i32, K: i32, blocks: i32, C: i32, L: i32, xhat: usize, gy: usize, jw: usize, jb: usize, ldJ: i32, coef: usize, mask: usize,
): void {
  const rowBytes = (<usize>blocks * <usize>C * <usize>L) << 2;
  const ldJBytes = <usize>ldJ << 2;
  const paramBytes = <usize>C << 2;
  for (let r = 0; r < R; r++) {
    const w = jw + <usize>r * ldJBytes;
    const b = jb != 0 ? jb + <usize>r * ldJBytes : 0;
    memory.fill(w, 0, paramBytes);
    if (b != 0) memory.fill(b, 0, paramBytes);
    const sample = <usize>(r / K) * rowBytes;
    accumulateAffine(blocks, C, L, xhat + sample, gy + <usize>r * rowBytes, w, b, coef, mask != 0 ? mask + sample : 0);
  }
}

/** The summed gradient: Σ_r of norm_affine_per_sample's rows, into gw (C) and gb (C; 0 = none). */
export function norm_affine_grad(
  R: i32, K: i32, blocks: i32, C: i32, L: i32, xhat: usize, gy: usize, gw: usize, gb: usize, accumulate: i32, coef: usize, mask: usize,
): void {
  const rowBytes = (<usize>blocks * <usize>C * <usize>L) << 2;
  if (accumulate == 0) {
    memory.fill(gw, 0, <usize>C << 2);
    if (gb != 0) memory.fill(gb, 0, <usize>C << 2);
  }
  for (let r = 0; r < R; r++) {
    const sample = <usize>(r / K) * rowBytes;
    accumulateAffine(blocks, C, L, xhat + sample, gy + <usize>r * rowBytes, gw, gb, coef, mask != 0 ? mask + sample : 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding

/**
 * y[n, t, :] = W[idx[n, t], :] for N samples of T indices (float-coded integers), W (V × E).
 * Returns -1, or the flat position n·T + t of the first index that is not an integer in [0, V)
 * (the output is then incomplete).
 */
export function embedding_forward(N: i32, T: i32, V: i32, E: i32, idx: usize, W: usize, y: usize): i32 {
  const rowBytes = <usize>E << 2;
  const count = N * T;
  for (let i = 0; i < count; i++) {
    const v = load<f32>(idx + (<usize>i << 2));
    if (!(v >= 0 && v < <f32>V) || Mathf.floor(v) != v) return i;
    memory.copy(y + <usize>i * rowBytes, W + <usize><i32>v * rowBytes, rowBytes);
  }
  return -1;
}

/**
 * For every backward row r (of sample r / K), J row r gets ∂/∂W (V·E floats at `jw + r·ldJ·4`):
 * zero, then gy[r, t, :] added to row idx[r / K, t] for every t whose index is not paddingIdx
 * (-1: none). Indices were checked by embedding_forward.
 */
export function embedding_per_sample(
  R: i32, K: i32, T: i32, V: i32, E: i32, idx: usize, paddingIdx: i32, gy: usize, jw: usize, ldJ: i32,
): void {
  const ldJBytes = <usize>ldJ << 2;
  const weightBytes = (<usize>V * <usize>E) << 2;
  for (let r = 0; r < R; r++) {
    const w = jw + <usize>r * ldJBytes;
    memory.fill(w, 0, weightBytes);
    scatterRows(T, E, idx + (<usize>((r / K) * T) << 2), paddingIdx, gy + ((<usize>r * <usize>T * <usize>E) << 2), w);
  }
}

/** The summed gradient: Σ_r of embedding_per_sample's rows, into gW (V × E). */
export function embedding_grad(
  R: i32, K: i32, T: i32, V: i32, E: i32, idx: usize, paddingIdx: i32, gy: usize, gW: usize, accumulate: i32,
): void {
  if (accumulate == 0) memory.fill(gW, 0, (<usize>V * <usize>E) << 2);
  for (let r = 0; r < R; r++) {
    scatterRows(T, E, idx + (<usize>((r / K) * T) << 2), paddingIdx, gy + ((<usize>r * <usize>T * <usize>E) << 2), gW);
  }
}

/** Indices carry no gradient: gx = 0 over `count` floats. */
export function embedding_backward_input(count: i32, gx: usize): void {
  memory.fill(gx, 0, <usize>count << 2);
}

function scatterRows(T: i32, E: i32, idx: usize, paddingIdx: i32, g: usize, w: usize): void {
  const rowBytes = <usize>E << 2;
  for (let t = 0; t < T; t++) {
    const v = <i32>load<f32>(idx + (<usize>t << 2));
    if (v == paddingIdx) continue;
    add_f32(w + <usize>v * rowBytes, g + <usize>t * rowBytes, E);
  }
}

// ---------------------------------------------------------------------------------------------
// Adaptive pooling over the POOL_GEOM block (docs/kernels.md); only indices 0-6 are read
// (channels, input D, H, W, output D, H, W). Window i of an output of size `out` over an input
// of size `size` is [⌊i·size/out⌋, ⌈(i+1)·size/out⌉), as in ATen.

// @ts-ignore: decorator
@inline function gi(geom: usize, i: i32): i32 {
  return load<i32>(geom + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline function windowStart(i: i32, size: i32, out: i32): i32 {
  return <i32>((<i64>i * size) / out);
}

// @ts-ignore: decorator
@inline function windowEnd(i: i32, size: i32, out: i32): i32 {
  return <i32>((<i64>(i + 1) * size + out - 1) / out);
}

/** Σ src[0..count) in float64 (two f64x2 partial sums, then the tail); of max(src, 0) when `relu` (NaN stays NaN). */
function sum_f64(src: usize, count: i32, relu: bool): f64 {
  let a = f64x2.splat(0), b = f64x2.splat(0);
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    let v = v128.load(src + (<usize>i << 2));
    if (relu) v = f32x4.max(v, zero);
    a = f64x2.add(a, f64x2.promote_low_f32x4(v));
    b = f64x2.add(b, f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)));
  }
  const both = f64x2.add(a, b);
  let total = f64x2.extract_lane(both, 0) + f64x2.extract_lane(both, 1);
  for (; i < count; i++) {
    const v = load<f32>(src + (<usize>i << 2));
    total += <f64>(relu ? max<f32>(v, 0) : v);
  }
  return total;
}

/**
 * y (N, C, oD, oH, oW) = the mean of each adaptive window; of max(x, 0) when relu ≠ 0 (a ReLU
 * before the pooling, fused: its output is never written).
 */
export function adaptive_avgpool_forward(geom: usize, N: i32, x: usize, y: usize, relu: i32): void {
  const C = gi(geom, 0);
  const D = gi(geom, 1), H = gi(geom, 2), W = gi(geom, 3);
  const oD = gi(geom, 4), oH = gi(geom, 5), oW = gi(geom, 6);
  const inPlane = <usize>D * H * W;
  const planes = N * C;
  let out = y;
  for (let p = 0; p < planes; p++) {
    const xp = x + ((<usize>p * inPlane) << 2);
    for (let od = 0; od < oD; od++) {
      const d0 = windowStart(od, D, oD), d1 = windowEnd(od, D, oD);
      for (let oh = 0; oh < oH; oh++) {
        const h0 = windowStart(oh, H, oH), h1 = windowEnd(oh, H, oH);
        for (let ow = 0; ow < oW; ow++) {
          const w0 = windowStart(ow, W, oW), w1 = windowEnd(ow, W, oW);
          let total: f64 = 0;
          for (let d = d0; d < d1; d++) {
            for (let h = h0; h < h1; h++) {
              total += sum_f64(xp + (<usize>((d * H + h) * W + w0) << 2), w1 - w0, relu != 0);
            }
          }
          store<f32>(out, <f32>(total / <f64>((d1 - d0) * (h1 - h0) * (w1 - w0))));
          out += 4;
        }
      }
    }
  }
}

/**
 * gx (R, C, D, H, W) = the adjoint of adaptive_avgpool_forward applied to gy (R, C, oD, oH, oW).
 * x ≠ 0: through a fused ReLU whose input is x (N samples, K rows each): gx is 0 where
 * x[r / K] ≤ 0 (it passes at NaN, as threshold_backward).
 */
export function adaptive_avgpool_backward(geom: usize, R: i32, K: i32, gy: usize, gx: usize, x: usize): void {
  const C = gi(geom, 0);
  const D = gi(geom, 1), H = gi(geom, 2), W = gi(geom, 3);
  const oD = gi(geom, 4), oH = gi(geom, 5), oW = gi(geom, 6);
  const inPlane = <usize>D * H * W;
  const planes = R * C;
  // Windows that tile the plane exactly (sizes divisible: global pooling, for one) do not
  // overlap: each input gets one share, written once by row segments, with no zeroing pass.
  const tiled = D % oD == 0 && H % oH == 0 && W % oW == 0;
  if (!tiled) memory.fill(gx, 0, (<usize>planes * inPlane) << 2);
  let gyo = gy;
  const zero = f32x4.splat(0);
  for (let p = 0; p < planes; p++) {
    const gxp = gx + ((<usize>p * inPlane) << 2);
    // Plane p is channel p % C of row p / C, which reads sample (p / C) / K.
    const xp = x != 0 ? x + ((<usize>((p / C) / K * C + p % C) * inPlane) << 2) : 0;
    for (let od = 0; od < oD; od++) {
      const d0 = windowStart(od, D, oD), d1 = windowEnd(od, D, oD);
      for (let oh = 0; oh < oH; oh++) {
        const h0 = windowStart(oh, H, oH), h1 = windowEnd(oh, H, oH);
        for (let ow = 0; ow < oW; ow++) {
          const w0 = windowStart(ow, W, oW), w1 = windowEnd(ow, W, oW);
          const share = load<f32>(gyo) / <f32>((d1 - d0) * (h1 - h0) * (w1 - w0));
          for (let d = d0; d < d1; d++) {
            for (let h = h0; h < h1; h++) {
              const offset = <usize>((d * H + h) * W) << 2;
              const row = gxp + offset;
              if (xp != 0) {
                masked_shares(row, xp + offset, w0, w1, share, tiled, zero);
                continue;
              }
              if (tiled) {
                fill_f32(row + (<usize>w0 << 2), w1 - w0, share);
                continue;
              }
              for (let w = w0; w < w1; w++) {
                const at = row + (<usize>w << 2);
                store<f32>(at, load<f32>(at) + share);
              }
            }
          }
          gyo += 4;
        }
      }
    }
  }
}

/** row[w0..w1) (+)= share where xrow > 0 or NaN, else (+)= 0: written when `tiled`, else added. */
// @ts-ignore: decorator
@inline function masked_shares(row: usize, xrow: usize, w0: i32, w1: i32, share: f32, tiled: bool, zero: v128): void {
  const splat = f32x4.splat(share);
  let w = w0;
  for (; w + 4 <= w1; w += 4) {
    const at = <usize>w << 2;
    const v = v128.andnot(splat, f32x4.le(v128.load(xrow + at), zero));
    v128.store(row + at, tiled ? v : f32x4.add(v128.load(row + at), v));
  }
  for (; w < w1; w++) {
    const at = <usize>w << 2;
    const v: f32 = load<f32>(xrow + at) <= 0 ? 0 : share;
    store<f32>(row + at, tiled ? v : load<f32>(row + at) + v);
  }
}

/**
 * y (N, C, oD, oH, oW) = the maximum of each adaptive window; `argmax` (i32 per output) its flat
 * in-plane index d·H·W + h·W + w. Ties keep the first in scan order; a NaN wins (as in ATen).
 * The input gradient is maxpool_backward (nn.ts) over the same geometry block.
 */
export function adaptive_maxpool_forward(geom: usize, N: i32, x: usize, y: usize, argmax: usize): void {
  const C = gi(geom, 0);
  const D = gi(geom, 1), H = gi(geom, 2), W = gi(geom, 3);
  const oD = gi(geom, 4), oH = gi(geom, 5), oW = gi(geom, 6);
  const inPlane = <usize>D * H * W;
  const planes = N * C;
  let out: usize = 0;
  for (let p = 0; p < planes; p++) {
    const xp = x + ((<usize>p * inPlane) << 2);
    for (let od = 0; od < oD; od++) {
      const d0 = windowStart(od, D, oD), d1 = windowEnd(od, D, oD);
      for (let oh = 0; oh < oH; oh++) {
        const h0 = windowStart(oh, H, oH), h1 = windowEnd(oh, H, oH);
        for (let ow = 0; ow < oW; ow++) {
          const w0 = windowStart(ow, W, oW), w1 = windowEnd(ow, W, oW);
          let best: f32 = -Infinity;
          let bestIndex: i32 = (d0 * H + h0) * W + w0;
          for (let d = d0; d < d1; d++) {
            for (let h = h0; h < h1; h++) {
              const rowIndex = (d * H + h) * W;
              for (let w = w0; w < w1; w++) {
                const v = load<f32>(xp + (<usize>(rowIndex + w) << 2));
                if (v > best || isNaN(v)) {
                  best = v;
                  bestIndex = rowIndex + w;
                }
              }
            }
          }
          store<f32>(y + out, best);
          store<i32>(argmax + out, bestIndex);
          out += 4;
        }
      }
    }
  }
}
