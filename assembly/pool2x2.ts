// The common max pooling, 2×2 windows with stride 2 over a plane (kernel = stride = 2 in H
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
            if (v > best || isNaN(v) || bestIndex < 0) {
              best = v;
              bestIndex = sliceBase + h * W + w;
            }
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
