// The common poolings, branch-free and four outputs per f32x4: max over 2×2 windows with
// stride 2 (below), max over pairs along W, and average over whole 2×2 windows (further down).
//
// Max pooling, 2×2 windows with stride 2 over a plane (kernel = stride = 2 in H
// and W, 1 in D; no padding, no dilation), four outputs per f32x4 and branch-free: the
// generic loop in nn.ts branches on every comparison, which random data mispredicts. Same
// results as nn.ts: scan order (h, w), ties keep the first maximum, a NaN wins over numbers
// and a later NaN over an earlier one. Windows hanging over the plane's end (ceil_mode) and
// the last outputs of a row that do not fill an f32x4 go through the scalar loop.

/** Whether maxpool_forward/backward may take the 2×2 path for this POOL_GEOM block. */
export function is_maxpool_2x2(geom: usize): bool {
  return load<i32>(geom, 7 << 2) == 1 && load<i32>(geom, 8 << 2) == 2 && load<i32>(geom, 9 << 2) == 2 &&
    load<i32>(geom, 10 << 2) == 1 && load<i32>(geom, 11 << 2) == 2 && load<i32>(geom, 12 << 2) == 2 &&
    load<i32>(geom, 13 << 2) == 0 && load<i32>(geom, 14 << 2) == 0 && load<i32>(geom, 15 << 2) == 0 &&
    load<i32>(geom, 17 << 2) == 1 && load<i32>(geom, 18 << 2) == 1;
}

/** y, argmax of `planes` planes (H × W → oH × oW), D slices each folded into the planes. */
export function maxpool_2x2_forward(geom: usize, N: i32, x: usize, y: usize, argmax: usize, relu: i32): void {
  const C = load<i32>(geom), D = load<i32>(geom, 4);
  const H = load<i32>(geom, 8), W = load<i32>(geom, 12);
  const oH = load<i32>(geom, 20), oW = load<i32>(geom, 24);
  // Whole windows only: rows and columns 2·o, 2·o + 1 inside the plane.
  const fullH = min(oH, H >> 1), fullW = min(oW, W >> 1);
  const vecW = fullW & ~3;
  const planes = N * C * D;
  const inPlane = <usize>(H * W) << 2;
  const outPlane = <usize>(oH * oW) << 2;
  const rowBytes = <usize>W << 2;
  const step = i32x4.splat(8);
  const zero = f32x4.splat(0);
  const none = i32x4.splat(-1);
  for (let p = 0; p < planes; p++) {
    const xp = x + <usize>p * inPlane;
    const yp = y + <usize>p * outPlane;
    const ap = argmax + <usize>p * outPlane;
    // Indices are within the D·H·W plane of the channel (argmax is per channel, not per slice).
    const sliceBase = (p % D) * H * W;
    for (let oh = 0; oh < oH; oh++) {
      const yRow = yp + (<usize>(oh * oW) << 2);
      const aRow = ap + (<usize>(oh * oW) << 2);
      let ow = 0;
      if (oh < fullH) {
        const r0 = xp + <usize>(2 * oh) * rowBytes;
        const r1 = r0 + rowBytes;
        let index = i32x4.add(i32x4.splat(sliceBase + 2 * oh * W), i32x4(0, 2, 4, 6));
        const down = i32x4.splat(W);
        for (; ow < vecW; ow += 4) {
          const at = <usize>ow << 3;
          const a = v128.load(r0 + at), b = v128.load(r0 + at, 16);
          const c = v128.load(r1 + at), d = v128.load(r1 + at, 16);
          let best = i32x4.shuffle(a, b, 0, 2, 4, 6);
          let bestIndex = index;
          const right = i32x4.shuffle(a, b, 1, 3, 5, 7);
          let take = v128.or(f32x4.gt(right, best), f32x4.ne(right, right));
          best = v128.bitselect(right, best, take);
          bestIndex = v128.bitselect(i32x4.add(index, i32x4.splat(1)), bestIndex, take);
          const below = i32x4.shuffle(c, d, 0, 2, 4, 6);
          take = v128.or(f32x4.gt(below, best), f32x4.ne(below, below));
          best = v128.bitselect(below, best, take);
          bestIndex = v128.bitselect(i32x4.add(index, down), bestIndex, take);
          const diagonal = i32x4.shuffle(c, d, 1, 3, 5, 7);
          take = v128.or(f32x4.gt(diagonal, best), f32x4.ne(diagonal, diagonal));
          best = v128.bitselect(diagonal, best, take);
          bestIndex = v128.bitselect(i32x4.add(i32x4.add(index, down), i32x4.splat(1)), bestIndex, take);
          if (relu != 0) {
            const clipped = f32x4.le(best, zero); // false for NaN, which ReLU keeps
            best = v128.bitselect(zero, best, clipped);
            bestIndex = v128.bitselect(none, bestIndex, clipped);
          }
          v128.store(yRow + (<usize>ow << 2), best);
          v128.store(aRow + (<usize>ow << 2), bestIndex);
          index = i32x4.add(index, step);
        }
      }
      // The rest of the row: windows clipped to the plane (ceil_mode) or past the last f32x4.
      for (; ow < oW; ow++) {
        const h1 = min(2 * oh + 2, H), w1 = min(2 * ow + 2, W);
        let best: f32 = -Infinity;
        let bestIndex: i32 = -1;
        for (let h = 2 * oh; h < h1; h++) {
          for (let w = 2 * ow; w < w1; w++) {
            const v = load<f32>(xp + (<usize>(h * W + w) << 2));
            const take = v > best || v != v || bestIndex < 0;
            best = select<f32>(v, best, take);
            bestIndex = select<i32>(sliceBase + h * W + w, bestIndex, take);
          }
        }
        if (relu != 0 && best <= 0) {
          best = 0;
          bestIndex = -1;
        }
        store<f32>(yRow + (<usize>ow << 2), best);
        store<i32>(aRow + (<usize>ow << 2), bestIndex);
      }
    }
  }
}

/**
 * gx (R, C, D, H, W) from gy through the argmax of sample r / K: every input element of a
 * 2×2 window gets gy where it is the window's argmax, 0 elsewhere (windows do not overlap, so
 * nothing accumulates); elements in no window get 0.
 */
export function maxpool_2x2_backward(geom: usize, R: i32, K: i32, gy: usize, argmax: usize, gx: usize): void {
  const C = load<i32>(geom), D = load<i32>(geom, 4);
  const H = load<i32>(geom, 8), W = load<i32>(geom, 12);
  const oH = load<i32>(geom, 20), oW = load<i32>(geom, 24);
  const fullH = min(oH, H >> 1), fullW = min(oW, W >> 1);
  const vecW = fullW & ~3;
  const inPlane = <usize>(H * W) << 2;
  const outPlane = <usize>(oH * oW) << 2;
  const rowBytes = <usize>W << 2;
  const planesPerRow = C * D;
  const step = i32x4.splat(8);
  const zero = f32x4.splat(0);
  for (let r = 0; r < R; r++) {
    const sample = r / K;
    for (let q = 0; q < planesPerRow; q++) {
      const gxp = gx + <usize>(r * planesPerRow + q) * inPlane;
      const gyp = gy + <usize>(r * planesPerRow + q) * outPlane;
      const ap = argmax + <usize>(sample * planesPerRow + q) * outPlane;
      const sliceBase = (q % D) * H * W;
      for (let oh = 0; oh < fullH; oh++) {
        const r0 = gxp + <usize>(2 * oh) * rowBytes;
        const r1 = r0 + rowBytes;
        const gRow = gyp + (<usize>(oh * oW) << 2);
        const aRow = ap + (<usize>(oh * oW) << 2);
        let index = i32x4.add(i32x4.splat(sliceBase + 2 * oh * W), i32x4(0, 2, 4, 6));
        const down = i32x4.splat(W);
        let ow = 0;
        for (; ow < vecW; ow += 4) {
          const g = v128.load(gRow + (<usize>ow << 2));
          const a = v128.load(aRow + (<usize>ow << 2));
          const topLeft = v128.and(g, i32x4.eq(a, index));
          const topRight = v128.and(g, i32x4.eq(a, i32x4.add(index, i32x4.splat(1))));
          const below = i32x4.add(index, down);
          const bottomLeft = v128.and(g, i32x4.eq(a, below));
          const bottomRight = v128.and(g, i32x4.eq(a, i32x4.add(below, i32x4.splat(1))));
          const at = <usize>ow << 3;
          v128.store(r0 + at, i32x4.shuffle(topLeft, topRight, 0, 4, 1, 5));
          v128.store(r0 + at, i32x4.shuffle(topLeft, topRight, 2, 6, 3, 7), 16);
          v128.store(r1 + at, i32x4.shuffle(bottomLeft, bottomRight, 0, 4, 1, 5));
          v128.store(r1 + at, i32x4.shuffle(bottomLeft, bottomRight, 2, 6, 3, 7), 16);
          index = i32x4.add(index, step);
        }
        // The rest of the two rows: zero, then the remaining windows scatter their gradient.
        for (let w = ow << 1; w < W; w++) {
          store<f32>(r0 + (<usize>w << 2), 0);
          store<f32>(r1 + (<usize>w << 2), 0);
        }
        for (; ow < oW; ow++) scatter_one(gxp, sliceBase, inPlane, gRow, aRow, ow);
      }
      // Rows below the last whole window: zero, then the clipped windows (ceil_mode).
      let w = <usize>(2 * fullH) * rowBytes;
      for (; w + 16 <= inPlane; w += 16) v128.store(gxp + w, zero);
      for (; w < inPlane; w += 4) store<f32>(gxp + w, 0);
      for (let oh = fullH; oh < oH; oh++) {
        const gRow = gyp + (<usize>(oh * oW) << 2);
        const aRow = ap + (<usize>(oh * oW) << 2);
        for (let ow = 0; ow < oW; ow++) scatter_one(gxp, sliceBase, inPlane, gRow, aRow, ow);
      }
    }
  }
}

/** gx[argmax] += gy for output `ow` of a row, when the argmax lies in this slice of the plane. */
// @ts-ignore: decorator
@inline function scatter_one(gxp: usize, sliceBase: i32, inPlane: usize, gRow: usize, aRow: usize, ow: i32): void {
  const local = load<i32>(aRow + (<usize>ow << 2)) - sliceBase;
  if (<u32>local >= <u32>(inPlane >> 2)) return;
  const at = gxp + (<usize>local << 2);
  store<f32>(at, load<f32>(at) + load<f32>(gRow + (<usize>ow << 2)));
}

// ---------------------------------------------------------------------------------------
// Max pooling of pairs along W (MaxPool1d(2), or kernel (1, 2) / (1, 1, 2)): kernel = stride
// = 2 along W, 1 along D and H, no padding, no dilation. Same rules as above.

/** Whether maxpool_forward/backward may take the 1×2 path for this POOL_GEOM block. */
export function is_maxpool_1x2(geom: usize): bool {
  return load<i32>(geom, 7 << 2) == 1 && load<i32>(geom, 8 << 2) == 1 && load<i32>(geom, 9 << 2) == 2 &&
    load<i32>(geom, 10 << 2) == 1 && load<i32>(geom, 11 << 2) == 1 && load<i32>(geom, 12 << 2) == 2 &&
    load<i32>(geom, 13 << 2) == 0 && load<i32>(geom, 14 << 2) == 0 && load<i32>(geom, 15 << 2) == 0 &&
    load<i32>(geom, 18 << 2) == 1;
}

/** y, argmax over rows of W inputs → oW outputs (every D·H row of every plane). */
export function maxpool_1x2_forward(geom: usize, N: i32, x: usize, y: usize, argmax: usize, relu: i32): void {
  const C = load<i32>(geom), D = load<i32>(geom, 4), H = load<i32>(geom, 8), W = load<i32>(geom, 12);
  const oW = load<i32>(geom, 24);
  const fullW = min(oW, W >> 1);
  const vecW = fullW & ~3;
  const rows = N * C * D * H;
  const zero = f32x4.splat(0);
  const none = i32x4.splat(-1);
  const one = i32x4.splat(1);
  const step = i32x4.splat(8);
  for (let row = 0; row < rows; row++) {
    const xr = x + (<usize>(row * W) << 2);
    const yr = y + (<usize>(row * oW) << 2);
    const ar = argmax + (<usize>(row * oW) << 2);
    const base = (row % (D * H)) * W; // index of the row's first element within its plane
    let index = i32x4.add(i32x4.splat(base), i32x4(0, 2, 4, 6));
    let ow = 0;
    for (; ow < vecW; ow += 4) {
      const a = v128.load(xr + (<usize>ow << 3)), b = v128.load(xr + (<usize>ow << 3), 16);
      let best = i32x4.shuffle(a, b, 0, 2, 4, 6);
      const right = i32x4.shuffle(a, b, 1, 3, 5, 7);
      const take = v128.or(f32x4.gt(right, best), f32x4.ne(right, right));
      best = v128.bitselect(right, best, take);
      let bestIndex = v128.bitselect(i32x4.add(index, one), index, take);
      if (relu != 0) {
        const clipped = f32x4.le(best, zero);
        best = v128.bitselect(zero, best, clipped);
        bestIndex = v128.bitselect(none, bestIndex, clipped);
      }
      v128.store(yr + (<usize>ow << 2), best);
      v128.store(ar + (<usize>ow << 2), bestIndex);
      index = i32x4.add(index, step);
    }
    for (; ow < oW; ow++) {
      const w1 = min(2 * ow + 2, W);
      let best: f32 = -Infinity;
      let bestIndex: i32 = -1;
      for (let w = 2 * ow; w < w1; w++) {
        const v = load<f32>(xr + (<usize>w << 2));
        const take = v > best || v != v || bestIndex < 0;
        best = select<f32>(v, best, take);
        bestIndex = select<i32>(base + w, bestIndex, take);
      }
      if (relu != 0 && best <= 0) {
        best = 0;
        bestIndex = -1;
      }
      store<f32>(yr + (<usize>ow << 2), best);
      store<i32>(ar + (<usize>ow << 2), bestIndex);
    }
  }
}

/** gx (R, C, D, H, W) from gy through the argmax of sample r / K, pairs along W (no overlap). */
export function maxpool_1x2_backward(geom: usize, R: i32, K: i32, gy: usize, argmax: usize, gx: usize): void {
  const C = load<i32>(geom), D = load<i32>(geom, 4), H = load<i32>(geom, 8), W = load<i32>(geom, 12);
  const oW = load<i32>(geom, 24);
  const fullW = min(oW, W >> 1);
  const vecW = fullW & ~3;
  const rowsPerSample = C * D * H;
  const one = i32x4.splat(1);
  const step = i32x4.splat(8);
  for (let r = 0; r < R; r++) {
    const sample = r / K;
    for (let q = 0; q < rowsPerSample; q++) {
      const gxr = gx + (<usize>((r * rowsPerSample + q) * W) << 2);
      const gyr = gy + (<usize>((r * rowsPerSample + q) * oW) << 2);
      const ar = argmax + (<usize>((sample * rowsPerSample + q) * oW) << 2);
      const base = (q % (D * H)) * W;
      let index = i32x4.add(i32x4.splat(base), i32x4(0, 2, 4, 6));
      let ow = 0;
      for (; ow < vecW; ow += 4) {
        const g = v128.load(gyr + (<usize>ow << 2));
        const a = v128.load(ar + (<usize>ow << 2));
        const left = v128.and(g, i32x4.eq(a, index));
        const right = v128.and(g, i32x4.eq(a, i32x4.add(index, one)));
        v128.store(gxr + (<usize>ow << 3), i32x4.shuffle(left, right, 0, 4, 1, 5));
        v128.store(gxr + (<usize>ow << 3), i32x4.shuffle(left, right, 2, 6, 3, 7), 16);
        index = i32x4.add(index, step);
      }
      for (let w = ow << 1; w < W; w++) store<f32>(gxr + (<usize>w << 2), 0);
      for (; ow < oW; ow++) {
        const local = load<i32>(ar + (<usize>ow << 2)) - base;
        if (<u32>local >= <u32>W) continue;
        const at = gxr + (<usize>local << 2);
        store<f32>(at, load<f32>(at) + load<f32>(gyr + (<usize>ow << 2)));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Average pooling over 2×2 windows with stride 2 (and 1 along D), no padding, every window
// whole (no ceil_mode overhang): four outputs per pass, summed and divided in float64 as the
// generic loop (and ATen) do, so the results are the same.

/** Whether avgpool_forward/backward may take the 2×2 path for this POOL_GEOM block. */
export function is_avgpool_2x2(geom: usize): bool {
  return load<i32>(geom, 7 << 2) == 1 && load<i32>(geom, 8 << 2) == 2 && load<i32>(geom, 9 << 2) == 2 &&
    load<i32>(geom, 10 << 2) == 1 && load<i32>(geom, 11 << 2) == 2 && load<i32>(geom, 12 << 2) == 2 &&
    load<i32>(geom, 13 << 2) == 0 && load<i32>(geom, 14 << 2) == 0 && load<i32>(geom, 15 << 2) == 0 &&
    2 * load<i32>(geom, 20) <= load<i32>(geom, 8) && 2 * load<i32>(geom, 24) <= load<i32>(geom, 12);
}

/** The divisor of a whole 2×2 window: divisor_override, else 4. */
// @ts-ignore: decorator
@inline function avg_2x2_divisor(geom: usize): i32 {
  const given = load<i32>(geom, 20 << 2);
  return given != 0 ? given : 4;
}

export function avgpool_2x2_forward(geom: usize, N: i32, x: usize, y: usize): void {
  const C = load<i32>(geom), D = load<i32>(geom, 4), H = load<i32>(geom, 8), W = load<i32>(geom, 12);
  const oH = load<i32>(geom, 20), oW = load<i32>(geom, 24);
  const vecW = oW & ~3;
  const divisor = <f64>avg_2x2_divisor(geom);
  const divisors = f64x2.splat(divisor);
  const planes = N * C * D;
  const rowBytes = <usize>W << 2;
  for (let p = 0; p < planes; p++) {
    const xp = x + (<usize>(p * H * W) << 2);
    const yp = y + (<usize>(p * oH * oW) << 2);
    for (let oh = 0; oh < oH; oh++) {
      const r0 = xp + <usize>(2 * oh) * rowBytes;
      const r1 = r0 + rowBytes;
      const yr = yp + (<usize>(oh * oW) << 2);
      let ow = 0;
      for (; ow < vecW; ow += 4) {
        const at = <usize>ow << 3;
        const a = v128.load(r0 + at), b = v128.load(r0 + at, 16);
        const c = v128.load(r1 + at), d = v128.load(r1 + at, 16);
        // The window's four inputs (scan order), summed in float64 as ATen does.
        const left = i32x4.shuffle(a, b, 0, 2, 4, 6);
        const right = i32x4.shuffle(a, b, 1, 3, 5, 7);
        const below = i32x4.shuffle(c, d, 0, 2, 4, 6);
        const diagonal = i32x4.shuffle(c, d, 1, 3, 5, 7);
        const lo = f64x2.div(sum4_f64(left, right, below, diagonal, false), divisors);
        const hi = f64x2.div(sum4_f64(left, right, below, diagonal, true), divisors);
        v128.store(yr + (<usize>ow << 2), i32x4.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
      }
      for (; ow < oW; ow++) {
        const at = <usize>ow << 3;
        const sum = <f64>load<f32>(r0 + at) + <f64>load<f32>(r0 + at, 4) + <f64>load<f32>(r1 + at) + <f64>load<f32>(r1 + at, 4);
        store<f32>(yr + (<usize>ow << 2), <f32>(sum / divisor));
      }
    }
  }
}

/** Σ of the four f32x4 in float64, lanes 0–1 (or 2–3 when `high`), in the generic loop's order. */
// @ts-ignore: decorator
@inline function sum4_f64(a: v128, b: v128, c: v128, d: v128, high: bool): v128 {
  if (high) {
    a = i32x4.shuffle(a, a, 2, 3, 0, 1);
    b = i32x4.shuffle(b, b, 2, 3, 0, 1);
    c = i32x4.shuffle(c, c, 2, 3, 0, 1);
    d = i32x4.shuffle(d, d, 2, 3, 0, 1);
  }
  return f64x2.add(
    f64x2.add(f64x2.add(f64x2.promote_low_f32x4(a), f64x2.promote_low_f32x4(b)), f64x2.promote_low_f32x4(c)),
    f64x2.promote_low_f32x4(d),
  );
}

/** gx (R, C, D, H, W): each input of a window gets gy / divisor (float32, as the generic loop); rows and columns in no window get 0. */
export function avgpool_2x2_backward(geom: usize, R: i32, gy: usize, gx: usize): void {
  const C = load<i32>(geom), D = load<i32>(geom, 4), H = load<i32>(geom, 8), W = load<i32>(geom, 12);
  const oH = load<i32>(geom, 20), oW = load<i32>(geom, 24);
  const vecW = oW & ~3;
  const divisor = <f32>avg_2x2_divisor(geom);
  const planes = R * C * D;
  const rowBytes = <usize>W << 2;
  if (2 * oH < H || 2 * oW < W) memory.fill(gx, 0, <usize>(planes * H * W) << 2);
  for (let p = 0; p < planes; p++) {
    const gxp = gx + (<usize>(p * H * W) << 2);
    const gyp = gy + (<usize>(p * oH * oW) << 2);
    for (let oh = 0; oh < oH; oh++) {
      const r0 = gxp + <usize>(2 * oh) * rowBytes;
      const r1 = r0 + rowBytes;
      const gr = gyp + (<usize>(oh * oW) << 2);
      let ow = 0;
      for (; ow < vecW; ow += 4) {
        const share = f32x4.div(v128.load(gr + (<usize>ow << 2)), f32x4.splat(divisor));
        const lo = i32x4.shuffle(share, share, 0, 0, 1, 1);
        const hi = i32x4.shuffle(share, share, 2, 2, 3, 3);
        const at = <usize>ow << 3;
        v128.store(r0 + at, lo);
        v128.store(r0 + at, hi, 16);
        v128.store(r1 + at, lo);
        v128.store(r1 + at, hi, 16);
      }
      for (; ow < oW; ow++) {
        const share = load<f32>(gr + (<usize>ow << 2)) / divisor;
        const at = <usize>ow << 3;
        store<f32>(r0 + at, share);
        store<f32>(r0 + at, share, 4);
        store<f32>(r1 + at, share);
        store<f32>(r1 + at, share, 4);
      }
    }
  }
}
