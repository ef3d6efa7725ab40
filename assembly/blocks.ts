// Kernels for branching blocks (Residual, Parallel): elementwise sums and strided block
// copies, the glue between branches' buffers.

/** y[0..count) = a[0..count) + b[0..count) (y may equal a or b). */
export function add_arrays(count: i32, a: usize, b: usize, y: usize): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, f32x4.add(v128.load(a + at), v128.load(b + at)));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(y + at, load<f32>(a + at) + load<f32>(b + at));
  }
}

/** y = max(a + b, 0) over count floats (NaN stays NaN, as torch.relu): a residual sum and the ReLU after it. */
export function add_arrays_relu(count: i32, a: usize, b: usize, y: usize): void {
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, f32x4.max(f32x4.add(v128.load(a + at), v128.load(b + at)), zero));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(y + at, max<f32>(load<f32>(a + at) + load<f32>(b + at), 0));
  }
}

/**
 * Copies `blocks` blocks of `width` floats: block i from src + i·srcStride to dst + i·dstStride
 * (strides in floats). Concatenation along a dim and its adjoint, the slicing of a gradient.
 */
export function copy_blocks(blocks: i32, width: i32, src: usize, srcStride: i32, dst: usize, dstStride: i32): void {
  const bytes = <usize>width << 2;
  const srcStep = <usize>srcStride << 2;
  const dstStep = <usize>dstStride << 2;
  for (let i = 0; i < blocks; i++) {
    memory.copy(dst + <usize>i * dstStep, src + <usize>i * srcStep, bytes);
  }
}

/** Index of the first NaN or ±Infinity among `count` floats, or -1 (the input check, at memory speed). */
export function first_nonfinite(ptr: usize, count: i32): i32 {
  // Almost always everything is finite: a plain sum of the values, one add a vector, says so
  // (a NaN or infinity makes it non-finite; so, rarely, can finite values, so a non-finite sum
  // only sends the search to the exact scan below). J's rows are screened as they are made.
  // Eight sums in flight hide the add's latency: two adds a cycle, as many as loads.
  let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
  let j = 0;
  for (; j + 32 <= count; j += 32) {
    const at = ptr + (<usize>j << 2);
    s0 = f32x4.add(s0, v128.load(at));
    s1 = f32x4.add(s1, v128.load(at, 16));
    s2 = f32x4.add(s2, v128.load(at, 32));
    s3 = f32x4.add(s3, v128.load(at, 48));
    s4 = f32x4.add(s4, v128.load(at, 64));
    s5 = f32x4.add(s5, v128.load(at, 80));
    s6 = f32x4.add(s6, v128.load(at, 96));
    s7 = f32x4.add(s7, v128.load(at, 112));
  }
  for (; j < count; j++) s0 = f32x4.add(s0, f32x4.splat(load<f32>(ptr + (<usize>j << 2))));
  const s = f32x4.add(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)), f32x4.add(f32x4.add(s4, s5), f32x4.add(s6, s7)));
  const d = f32x4.sub(s, s);
  if (!v128.any_true(f32x4.ne(d, d))) return -1;
  return first_nonfinite_exact(ptr, count);
}

/** The index of the first NaN or ±Infinity in [ptr, ptr + 4·count), or -1. */
function first_nonfinite_exact(ptr: usize, count: i32): i32 {
  let i = 0;
  // 32 floats a branch: v − v is 0 where finite and NaN where not, and a sum of them is NaN
  // when any is (J's rows are scanned too: 25 → 50 GiB/s on a hot MiB, x86).
  for (; i + 32 <= count; i += 32) {
    const at = ptr + (<usize>i << 2);
    let v = v128.load(at), w = v128.load(at, 16), x = v128.load(at, 32), y = v128.load(at, 48);
    let s = f32x4.add(f32x4.add(f32x4.sub(v, v), f32x4.sub(w, w)), f32x4.add(f32x4.sub(x, x), f32x4.sub(y, y)));
    v = v128.load(at, 64); w = v128.load(at, 80); x = v128.load(at, 96); y = v128.load(at, 112);
    s = f32x4.add(s, f32x4.add(f32x4.add(f32x4.sub(v, v), f32x4.sub(w, w)), f32x4.add(f32x4.sub(x, x), f32x4.sub(y, y))));
    if (v128.any_true(f32x4.ne(s, s))) break;
  }
  for (; i + 4 <= count; i += 4) {
    const v = v128.load(ptr + (<usize>i << 2));
    const d = f32x4.sub(v, v); // 0 where finite, NaN where NaN or infinite
    if (v128.any_true(f32x4.ne(d, d))) break;
  }
  for (; i < count; i++) {
    const v = load<f32>(ptr + (<usize>i << 2));
    if (v - v != 0) return i;
  }
  return -1;
}
