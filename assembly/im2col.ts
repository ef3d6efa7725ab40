// im2col / col2im for the 3-d convolution geometry (1-d and 2-d layers are 3-d with unit
// dims). The column matrix of one sample is (C_in·kvol) × L with row
// c·kvol + (kd·kH + kh)·kW + kw and column (od·oH + oh)·oW + ow, so a group's rows are
// a contiguous block that matches the layout of its weights.
import { geom_at, first_inside, end_inside } from "./geometry";

/** One sample x (C_in, D, H, W) → cols ((C_in·kvol) × L); zero where the window reads padding. */
export function im2col(geom: usize, x: usize, cols: usize): void {
  const C = geom_at(geom, 1);
  const D = geom_at(geom, 3), H = geom_at(geom, 4), W = geom_at(geom, 5);
  const oD = geom_at(geom, 6), oH = geom_at(geom, 7), oW = geom_at(geom, 8);
  const kD = geom_at(geom, 9), kH = geom_at(geom, 10), kW = geom_at(geom, 11);
  const sD = geom_at(geom, 12), sH = geom_at(geom, 13), sW = geom_at(geom, 14);
  const pD = geom_at(geom, 15), pH = geom_at(geom, 16), pW = geom_at(geom, 17);
  const dD = geom_at(geom, 18), dH = geom_at(geom, 19), dW = geom_at(geom, 20);
  const plane = <usize>(D * H * W) << 2;
  const rowBytes = <usize>(oD * oH * oW) << 2;
  let out = cols;
  for (let c = 0; c < C; c++) {
    const xc = x + <usize>c * plane;
    for (let kd = 0; kd < kD; kd++) {
      const offD = kd * dD - pD;
      const odLo = first_inside(offD, sD, oD), odHi = end_inside(offD, sD, D, oD);
      for (let kh = 0; kh < kH; kh++) {
        const offH = kh * dH - pH;
        const ohLo = first_inside(offH, sH, oH), ohHi = end_inside(offH, sH, H, oH);
        for (let kw = 0; kw < kW; kw++) {
          const offW = kw * dW - pW;
          const owLo = first_inside(offW, sW, oW), owHi = end_inside(offW, sW, W, oW);
          for (let od = 0; od < oD; od++) {
            const id = od * sD + offD;
            for (let oh = 0; oh < oH; oh++) {
              const dst = out + (<usize>((od * oH + oh) * oW) << 2);
              if (od < odLo || od >= odHi || oh < ohLo || oh >= ohHi || owLo >= owHi) {
                memory.fill(dst, 0, <usize>oW << 2);
                continue;
              }
              const ih = oh * sH + offH;
              const src = xc + (<usize>((id * H + ih) * W) << 2);
              if (owLo > 0) memory.fill(dst, 0, <usize>owLo << 2);
              if (owHi < oW) memory.fill(dst + (<usize>owHi << 2), 0, <usize>(oW - owHi) << 2);
              if (sW == 1) {
                copy_f32(dst + (<usize>owLo << 2), src + (<usize>(owLo + offW) << 2), owHi - owLo);
              } else {
                for (let ow = owLo; ow < owHi; ow++) {
                  store<f32>(dst + (<usize>ow << 2), load<f32>(src + (<usize>(ow * sW + offW) << 2)));
                }
              }
            }
          }
          out += rowBytes;
        }
      }
    }
  }
}

/** The adjoint of im2col: x = 0, then every column entry is added to the input element it was read from. */
export function col2im(geom: usize, cols: usize, x: usize): void {
  const C = geom_at(geom, 1);
  const D = geom_at(geom, 3), H = geom_at(geom, 4), W = geom_at(geom, 5);
  const oD = geom_at(geom, 6), oH = geom_at(geom, 7), oW = geom_at(geom, 8);
  const kD = geom_at(geom, 9), kH = geom_at(geom, 10), kW = geom_at(geom, 11);
  const sD = geom_at(geom, 12), sH = geom_at(geom, 13), sW = geom_at(geom, 14);
  const pD = geom_at(geom, 15), pH = geom_at(geom, 16), pW = geom_at(geom, 17);
  const dD = geom_at(geom, 18), dH = geom_at(geom, 19), dW = geom_at(geom, 20);
  const plane = <usize>(D * H * W) << 2;
  const rowBytes = <usize>(oD * oH * oW) << 2;
  memory.fill(x, 0, <usize>C * plane);
  let row = cols;
  for (let c = 0; c < C; c++) {
    const xc = x + <usize>c * plane;
    for (let kd = 0; kd < kD; kd++) {
      const offD = kd * dD - pD;
      const odLo = first_inside(offD, sD, oD), odHi = end_inside(offD, sD, D, oD);
      for (let kh = 0; kh < kH; kh++) {
        const offH = kh * dH - pH;
        const ohLo = first_inside(offH, sH, oH), ohHi = end_inside(offH, sH, H, oH);
        for (let kw = 0; kw < kW; kw++) {
          const offW = kw * dW - pW;
          const owLo = first_inside(offW, sW, oW), owHi = end_inside(offW, sW, W, oW);
          if (owLo < owHi) {
            for (let od = odLo; od < odHi; od++) {
              const id = od * sD + offD;
              for (let oh = ohLo; oh < ohHi; oh++) {
                const ih = oh * sH + offH;
                const src = row + (<usize>((od * oH + oh) * oW) << 2);
                const dst = xc + (<usize>((id * H + ih) * W) << 2);
                if (sW == 1) {
                  add_into_f32(dst + (<usize>(owLo + offW) << 2), src + (<usize>owLo << 2), owHi - owLo);
                } else {
                  for (let ow = owLo; ow < owHi; ow++) {
                    const at = dst + (<usize>(ow * sW + offW) << 2);
                    store<f32>(at, load<f32>(at) + load<f32>(src + (<usize>ow << 2)));
                  }
                }
              }
            }
          }
          row += rowBytes;
        }
      }
    }
  }
}

// Short row copies: a SIMD loop beats memory.copy's call overhead at these lengths.
// @ts-ignore: decorator
@inline function copy_f32(dst: usize, src: usize, count: i32): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(dst + at, v128.load(src + at));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(dst + at, load<f32>(src + at));
  }
}

// @ts-ignore: decorator
@inline function add_into_f32(dst: usize, src: usize, count: i32): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(dst + at, f32x4.add(v128.load(dst + at), v128.load(src + at)));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(dst + at, load<f32>(dst + at) + load<f32>(src + at));
  }
}
