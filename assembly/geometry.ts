// Reading the convolution geometry block (docs/kernels.md, CONV_GEOM) and the index
// arithmetic of sliding windows. Private to the kernels: not re-exported by index.ts.

/** The i-th int of a geometry block. */
// @ts-ignore: decorator
@inline export function geom_at(geom: usize, i: i32): i32 {
  return load<i32>(geom + (<usize>i << 2));
}

/** ceil(a / b) for b > 0 and any sign of a. */
// @ts-ignore: decorator
@inline export function ceil_div(a: i32, b: i32): i32 {
  return a >= 0 ? (a + b - 1) / b : -(-a / b);
}

/** floor(a / b) for b > 0 and any sign of a. */
// @ts-ignore: decorator
@inline export function floor_div(a: i32, b: i32): i32 {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/** First output index o ≥ 0 whose input index o·stride + offset is ≥ 0. */
// @ts-ignore: decorator
@inline export function first_inside(offset: i32, stride: i32, outSize: i32): i32 {
  return min(outSize, max(0, ceil_div(-offset, stride)));
}

/** One past the last output index o < outSize whose input index o·stride + offset is < inSize. */
// @ts-ignore: decorator
@inline export function end_inside(offset: i32, stride: i32, inSize: i32, outSize: i32): i32 {
  return min(outSize, max(0, floor_div(inSize - 1 - offset, stride) + 1));
}

/** Whether the convolution reads its input as the column matrix itself (1×1×1, stride 1, no padding). */
export function conv_is_pointwise(geom: usize): bool {
  return geom_at(geom, 9) == 1 && geom_at(geom, 10) == 1 && geom_at(geom, 11) == 1 &&
    geom_at(geom, 12) == 1 && geom_at(geom, 13) == 1 && geom_at(geom, 14) == 1 &&
    geom_at(geom, 15) == 0 && geom_at(geom, 16) == 0 && geom_at(geom, 17) == 0 &&
    geom_at(geom, 3) == geom_at(geom, 6) && geom_at(geom, 4) == geom_at(geom, 7) &&
    geom_at(geom, 5) == geom_at(geom, 8);
}

