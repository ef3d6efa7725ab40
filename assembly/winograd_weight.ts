// Per-sample (and summed) weight gradients of 3×3 stride-1 convolutions by Winograd, for both
// tile sizes: F(3×3, 2×2) (transforms in winograd.ts) and F(3×3, 4×4) (winograd43.ts).
//
// The weight gradient of a 3×3 stride-1 layer is the correlation of the padded input with gy,
// whose 3×3 outputs are the taps:
//   dW[co, ci] = Σ_tiles Gᵀ [ (A h Aᵀ) ⊙ (Bᵀ d B) ] G
// for h the t×t block of gy[co] and d the (t+2)×(t+2) block of the padded input [ci] of each
// tile. It is the forward algorithm F(t, 3) with the roles of A and G swapped:
// Σ_i h_i y_i = Σ_ξ (A h)_ξ (G g)_ξ (Bᵀ d)_ξ for y = F(t, 3)(d, g), whose gradient in g is
// Gᵀ((A h) ⊙ (Bᵀ d)). The sum over tiles is, per ξ, P_ξ (C_out × C_in) = Σ_t H_ξ[t] ⊗ V_ξ[t].
//
// The transforms run across channels instead of tiles: the frames of x and gy are copied
// channel-last (pixel by pixel, all channels together), so one f32x4 load takes four channels
// of one pixel, and the transformed blocks come out as H_ξ[t][co] and V_ξ[t][ci]: for every t
// a row of channels, which is exactly the operand layout of the 4 × 8 register tile (4 output
// × 8 input channels, summed over t). No packing, no GEMM driver. Tiles run in bands of tile
// rows, so the transformed blocks stay small; each ξ's block sits one cache line past a
// power-of-two stride (xi_stride).
import { geom_at } from "./geometry";
import { store_transposed, sum_f32, tile_4x8 } from "./simd";
import {
  SCRATCH, SCRATCH_CAP, gy_tiles_2x2, input_tiles_2x2, round_up, weight_output_2x2, winograd_shape, xi_stride,
} from "./winograd";
import { gy_tiles_4x4, input_tiles_4x4, weight_output_4x4, winograd43_fits } from "./winograd43";

const MR: i32 = 4;
const NR: i32 = 8;

// The layout of one pass, set by lay_out (module globals: the stub runtime never frees).
/** Outputs per tile side: 2 or 4. */
let tile: i32 = 0;
/** Transformed values per tile: (tile + 2)². */
let xiCount: i32 = 0;
let tilesH: i32 = 0;
let tilesW: i32 = 0;
let bandRows: i32 = 0;
/** The channel-last input frame, in pixels. */
let frameH: i32 = 0;
let frameW: i32 = 0;
/** Channel counts rounded up to the register tile: C_in to NR, C_out to MR. */
let cinPadded: i32 = 0;
let coutPadded: i32 = 0;
let productFloats: i32 = 0;
let xFrameFloats: i32 = 0;
let gyFrameFloats: i32 = 0;

/**
 * Lays out a pass with t×t tiles: P (ξ × C_out' × C_in'), the channel-last input frame
 * (frameH × frameW × C_in'), the channel-last gy frame (t·tilesH × t·tilesW × C_out'), then a
 * band's V and H; returns the floats it needs in all (the band as deep as `budget` allows, at
 * least one tile row), or 0 when no band fits.
 */
function lay_out(t: i32, Cin: i32, Cout: i32, oH: i32, oW: i32, budget: i32): i32 {
  tile = t;
  xiCount = (t + 2) * (t + 2);
  tilesH = (oH + t - 1) / t;
  tilesW = (oW + t - 1) / t;
  frameH = t * tilesH + 2;
  frameW = t * tilesW + 2;
  cinPadded = round_up(Cin, NR);
  coutPadded = round_up(Cout, MR);
  productFloats = xiCount * coutPadded * cinPadded;
  xFrameFloats = frameH * frameW * cinPadded;
  gyFrameFloats = t * tilesH * t * tilesW * coutPadded;
  const fixed = productFloats + xFrameFloats + gyFrameFloats + 2 * xiCount * xi_stride(0);
  const perRow = xiCount * (cinPadded + coutPadded) * tilesW;
  if (fixed + perRow > budget) return 0;
  bandRows = min(tilesH, (budget - fixed) / perRow);
  return fixed + bandRows * perRow;
}

/**
 * Lays out a pass with t×t tiles where it fits: `work` when it holds C_in·kvol·L floats of at
 * least the module's scratch (the deeper band of the two), else the scratch; 0: no room.
 */
function place(geom: usize, t: i32, work: usize): usize {
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2), oH = geom_at(geom, 7), oW = geom_at(geom, 8);
  const workFloats = <i64>Cin * 9 * <i64>(oH * oW);
  if (workFloats >= SCRATCH_CAP && lay_out(t, Cin, Cout, oH, oW, <i32>min(workFloats, 1 << 28)) != 0) {
    return work != 0 ? work : 1;
  }
  return lay_out(t, Cin, Cout, oH, oW, SCRATCH_CAP) != 0 ? SCRATCH : 0;
}

/**
 * The tile the weight gradients of this geometry take: 4 (F(3×3, 4×4)) for the layers
 * winograd43_fits takes forward, 2 (F(3×3, 2×2)) for those of winograd_shape, 0: not Winograd.
 */
export function winograd_weight_tile(geom: usize): i32 {
  if (winograd43_fits(geom, 0) && place(geom, 4, 0) != 0) return 4;
  if (winograd_shape(geom) && place(geom, 2, 0) != 0) return 2;
  return 0;
}

/**
 * Weight (and bias) gradients of backward rows r < R, row r reading sample r / K: to jw +
 * r·ldJ·4 (and jb + r·ldJ·4; jb = 0: no bias), overwriting, or adding from row `addFrom` on
 * (conv_weight_per_sample: ldJ = the J row, addFrom = R; conv_weight_grad: ldJ = 0), for a
 * geometry whose winograd_weight_tile is not 0.
 */
export function winograd_weight(
  geom: usize, R: i32, K: i32, x: usize, gy: usize, jw: usize, jb: usize, ldJ: i32, work: usize, addFrom: i32,
): void {
  const Cin = geom_at(geom, 1), Cout = geom_at(geom, 2);
  const H = geom_at(geom, 4), Wd = geom_at(geom, 5), oH = geom_at(geom, 7), oW = geom_at(geom, 8);
  const P = place(geom, winograd_weight_tile(geom), work);
  const xFrame = P + (<usize>productFloats << 2);
  const gyFrame = xFrame + (<usize>xFrameFloats << 2);
  const V = gyFrame + (<usize>gyFrameFloats << 2);
  const Hb = V + (<usize>(xiCount * xi_stride(cinPadded * bandRows * tilesW)) << 2);
  const xSample = <usize>(Cin * H * Wd) << 2;
  const L = oH * oW;
  const gyRow = <usize>(Cout * L) << 2;
  const ldJBytes = <usize>ldJ << 2;
  const gyH = tile * tilesH, gyW = tile * tilesW;
  let sample = -1;
  for (let r = 0; r < R; r++) {
    const n = r / K;
    if (n != sample) {
      sample = n;
      fill_frame_channels_last(x + <usize>n * xSample, Cin, H, Wd, xFrame, frameH, frameW, cinPadded,
        geom_at(geom, 16), geom_at(geom, 17));
    }
    const gyr = gy + <usize>r * gyRow;
    fill_frame_channels_last(gyr, Cout, oH, oW, gyFrame, gyH, gyW, coutPadded, 0, 0);
    for (let th0 = 0; th0 < tilesH; th0 += bandRows) {
      const rows = min(bandRows, tilesH - th0);
      const T = rows * tilesW;
      const vXi = <usize>xi_stride(cinPadded * T) << 2;
      const hXi = <usize>xi_stride(coutPadded * T) << 2;
      if (tile == 4) {
        input_tiles_4x4(xFrame, frameW, cinPadded, tilesW, th0, rows, V, vXi);
        gy_tiles_4x4(gyFrame, gyW, coutPadded, tilesW, th0, rows, Hb, hXi);
      } else {
        input_tiles_2x2(xFrame, frameW, cinPadded, tilesW, th0, rows, V, vXi);
        gy_tiles_2x2(gyFrame, gyW, coutPadded, tilesW, th0, rows, Hb, hXi);
      }
      for (let xi = 0; xi < xiCount; xi++) {
        const p = P + (<usize>(xi * coutPadded * cinPadded) << 2);
        for (let co = 0; co < coutPadded; co += MR) {
          for (let ci = 0; ci < cinPadded; ci += NR) {
            tile_4x8(T, Hb + <usize>xi * hXi + (<usize>co << 2), <usize>coutPadded << 2,
              V + <usize>xi * vXi + (<usize>ci << 2), <usize>cinPadded << 2,
              p + (<usize>(co * cinPadded + ci) << 2), <usize>cinPadded << 2, th0 > 0);
          }
        }
      }
    }
    const add = r >= addFrom;
    const Jw = jw + <usize>r * ldJBytes;
    if (tile == 4) weight_output_4x4(P, Cout, Cin, coutPadded, cinPadded, Jw, add);
    else weight_output_2x2(P, Cout, Cin, coutPadded, cinPadded, Jw, add);
    if (jb != 0) {
      const Jb = jb + <usize>r * ldJBytes;
      for (let c = 0; c < Cout; c++) {
        const sum = sum_f32(gyr + (<usize>(c * L) << 2), L);
        const at = Jb + (<usize>c << 2);
        store<f32>(at, add ? load<f32>(at) + sum : sum);
      }
    }
  }
}

/**
 * dst (FH × FW pixels × `stride` channels) = src (C planes of H × W) shifted by (pH, pW),
 * channel-last; zero elsewhere (padding, channels past C). Shared with winograd1d.ts.
 */
export function fill_frame_channels_last(
  src: usize, C: i32, H: i32, W: i32, dst: usize, FH: i32, FW: i32, stride: i32, pH: i32, pW: i32,
): void {
  memory.fill(dst, 0, <usize>(FH * FW * stride) << 2);
  const rows = min(H, FH - pH);
  const cols = min(W, FW - pW);
  const planeBytes = <usize>(H * W) << 2;
  const step = <usize>stride << 2;
  let c = 0;
  // Four channels × four pixels at a time, transposed in registers.
  for (; c + 4 <= C; c += 4) {
    for (let h = 0; h < rows; h++) {
      const from = src + <usize>c * planeBytes + (<usize>(h * W) << 2);
      let to = dst + (<usize>(((h + pH) * FW + pW) * stride + c) << 2);
      let w = 0;
      for (; w + 4 <= cols; w += 4) {
        const at = <usize>w << 2;
        const r0 = v128.load(from + at), r1 = v128.load(from + planeBytes + at);
        const r2 = v128.load(from + 2 * planeBytes + at), r3 = v128.load(from + 3 * planeBytes + at);
        store_transposed(r0, r1, r2, r3, to, step);
        to += 4 * step;
      }
      for (; w < cols; w++) {
        const at = from + (<usize>w << 2);
        store<f32>(to, load<f32>(at));
        store<f32>(to, load<f32>(at + planeBytes), 4);
        store<f32>(to, load<f32>(at + 2 * planeBytes), 8);
        store<f32>(to, load<f32>(at + 3 * planeBytes), 12);
        to += step;
      }
    }
  }
  for (; c < C; c++) {
    const plane = src + <usize>c * planeBytes;
    for (let h = 0; h < rows; h++) {
      const from = plane + (<usize>(h * W) << 2);
      let to = dst + (<usize>(((h + pH) * FW + pW) * stride + c) << 2);
      for (let w = 0; w < cols; w++) {
        store<f32>(to, load<f32>(from + (<usize>w << 2)));
        to += step;
      }
    }
  }
}

