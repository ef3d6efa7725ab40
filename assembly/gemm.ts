// Single-precision GEMM over row-major matrices with leading dimensions, in the GotoBLAS
// shape: the driver cuts C into NC-wide column blocks and K into KC-deep slices, packs the
// slice of B into NR-wide micro-panels and the slice of A into MR-tall micro-panels (both
// zero-padded, so the micro-kernel never sees a ragged edge), then runs the MR×NR
// micro-kernel over every pair. The packing buffers are static module data, so the kernels
// allocate nothing; the TypeScript arena starts above them (at __heap_base).
import { store_transposed, tile_4x8 } from "./simd";

/** Rows of the micro-kernel's tile. */
const MR: i32 = 4;
/** Columns of the micro-kernel's tile (two f32x4). */
const NR: i32 = 8;
// Block sizes, measured at 256² and 512² on node (V8 11), deno (V8 14) and bun (JSC): a
// deeper slice (KC 256) halves the loads and stores of C per flop, and a wide column block
// (NC 512) packs each slice of A once instead of eight times; 128/32/64 was 5-20% slower.
/** Depth of one packed slice: a B micro-panel (KC×NR floats, 8 KiB) stays in L1. */
const KC: i32 = 256;
/** Rows of A packed at once (MC×KC floats, 32 KiB, in L1 with the B micro-panel). */
const MC: i32 = 32;
/** Columns of B packed at once (KC×NC floats, 512 KiB, in L2). */
const NC: i32 = 512;

let PACKED_A: usize = memory.data(MC * KC * 4, 64);
let PACKED_B: usize = memory.data(KC * NC * 4, 64);
/** Where a ragged edge tile is computed before its valid part is copied to C. */
let EDGE_TILE: usize = memory.data(MR * NR * 4, 64);

/** C[M×N] (+)= A[M×K] · B[K×N]. */
export function gemm_nn(
  M: i32, N: i32, K: i32, A: usize, lda: i32, B: usize, ldb: i32, C: usize, ldc: i32, accumulate: i32,
): void {
  gemm(false, false, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/** C[M×N] (+)= A[M×K] · B[N×K]ᵀ. */
export function gemm_nt(
  M: i32, N: i32, K: i32, A: usize, lda: i32, B: usize, ldb: i32, C: usize, ldc: i32, accumulate: i32,
): void {
  gemm(false, true, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/** C[M×N] (+)= A[K×M]ᵀ · B[K×N]. */
export function gemm_tn(
  M: i32, N: i32, K: i32, A: usize, lda: i32, B: usize, ldb: i32, C: usize, ldc: i32, accumulate: i32,
): void {
  gemm(true, false, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// @ts-ignore: decorator
@inline function gemm(
  transA: bool, transB: bool,
  M: i32, N: i32, K: i32, A: usize, lda: i32, B: usize, ldb: i32, C: usize, ldc: i32, accumulate: i32,
): void {
  if (M <= 0 || N <= 0) return;
  const ldcBytes = <usize>ldc << 2;
  if (K <= 0) {
    if (accumulate == 0) {
      for (let i = 0; i < M; i++) memory.fill(C + <usize>i * ldcBytes, 0, <usize>N << 2);
    }
    return;
  }
  for (let j0 = 0; j0 < N; j0 += NC) {
    const nc = min(NC, N - j0);
    for (let k0 = 0; k0 < K; k0 += KC) {
      const kc = min(KC, K - k0);
      const add = accumulate != 0 || k0 > 0;
      for (let jp = 0; jp < nc; jp += NR) {
        const panel = PACKED_B + (<usize>jp * kc << 2);
        const cols = min(NR, nc - jp);
        if (transB) pack_b_t(B, ldb, j0 + jp, cols, k0, kc, panel);
        else pack_b_n(B, ldb, j0 + jp, cols, k0, kc, panel);
      }
      for (let i0 = 0; i0 < M; i0 += MC) {
        const mc = min(MC, M - i0);
        for (let ip = 0; ip < mc; ip += MR) {
          const panel = PACKED_A + (<usize>ip * kc << 2);
          const rows = min(MR, mc - ip);
          if (transA) pack_a_t(A, lda, i0 + ip, rows, k0, kc, panel);
          else pack_a_n(A, lda, i0 + ip, rows, k0, kc, panel);
        }
        for (let jp = 0; jp < nc; jp += NR) {
          const b = PACKED_B + (<usize>jp * kc << 2);
          const cols = min(NR, nc - jp);
          for (let ip = 0; ip < mc; ip += MR) {
            const a = PACKED_A + (<usize>ip * kc << 2);
            const rows = min(MR, mc - ip);
            const c = C + <usize>(i0 + ip) * ldcBytes + (<usize>(j0 + jp) << 2);
            if (rows == MR && cols == NR) gemm_4x8(kc, a, b, c, ldcBytes, add);
            else gemm_4x8_edge(kc, a, b, c, ldcBytes, add, rows, cols);
          }
        }
      }
    }
  }
}

/** The 4×8 micro-kernel over packed panels: kc groups of 4 floats of A, of 8 floats of B. */
// @ts-ignore: decorator
@inline function gemm_4x8(kc: i32, a: usize, b: usize, c: usize, ldc: usize, add: bool): void {
  tile_4x8(kc, a, MR << 2, b, NR << 2, c, ldc, add);
}

/** A ragged tile (rows ≤ 4, cols ≤ 8): the full micro-kernel into a scratch tile, then the valid part. */
function gemm_4x8_edge(kc: i32, a: usize, b: usize, c: usize, ldc: usize, add: bool, rows: i32, cols: i32): void {
  gemm_4x8(kc, a, b, EDGE_TILE, NR << 2, false);
  for (let r = 0; r < rows; r++) {
    const src = EDGE_TILE + (<usize>(r * NR) << 2);
    const dst = c + <usize>r * ldc;
    for (let j = 0; j < cols; j++) {
      const at = <usize>j << 2;
      const v = load<f32>(src + at);
      store<f32>(dst + at, add ? load<f32>(dst + at) + v : v);
    }
  }
}

// Packing. A micro-panel holds, for each k of the slice, MR consecutive floats (one per row
// of A); a B micro-panel holds NR consecutive floats (one per column of B). Rows/columns past
// the matrix edge are zero.

/** A micro-panel from row-major A (M×K): rows i..i+rows, depth k0..k0+kc. */
function pack_a_n(A: usize, lda: i32, i: i32, rows: i32, k0: i32, kc: i32, dst: usize): void {
  const ld = <usize>lda << 2;
  const src = A + <usize>i * ld + (<usize>k0 << 2);
  if (rows == MR) {
    transpose_rows_4(src, ld, kc, dst, MR << 2);
    return;
  }
  for (let k = 0; k < kc; k++) {
    for (let r = 0; r < MR; r++) {
      const v: f32 = r < rows ? load<f32>(src + <usize>r * ld + (<usize>k << 2)) : 0;
      store<f32>(dst + (<usize>(k * MR + r) << 2), v);
    }
  }
}

/** A micro-panel from A stored transposed (K×M): the 4 values of one k are contiguous. */
function pack_a_t(A: usize, lda: i32, i: i32, rows: i32, k0: i32, kc: i32, dst: usize): void {
  const ld = <usize>lda << 2;
  let src = A + <usize>k0 * ld + (<usize>i << 2);
  if (rows == MR) {
    for (let k = 0; k < kc; k++) {
      v128.store(dst + (<usize>k << 4), v128.load(src));
      src += ld;
    }
    return;
  }
  for (let k = 0; k < kc; k++) {
    for (let r = 0; r < MR; r++) {
      const v: f32 = r < rows ? load<f32>(src + (<usize>r << 2)) : 0;
      store<f32>(dst + (<usize>(k * MR + r) << 2), v);
    }
    src += ld;
  }
}

/** A B micro-panel from row-major B (K×N): the 8 values of one k are contiguous. */
function pack_b_n(B: usize, ldb: i32, j: i32, cols: i32, k0: i32, kc: i32, dst: usize): void {
  const ld = <usize>ldb << 2;
  let src = B + <usize>k0 * ld + (<usize>j << 2);
  if (cols == NR) {
    for (let k = 0; k < kc; k++) {
      const at = dst + (<usize>k << 5);
      v128.store(at, v128.load(src));
      v128.store(at, v128.load(src, 16), 16);
      src += ld;
    }
    return;
  }
  for (let k = 0; k < kc; k++) {
    for (let c = 0; c < NR; c++) {
      const v: f32 = c < cols ? load<f32>(src + (<usize>c << 2)) : 0;
      store<f32>(dst + (<usize>(k * NR + c) << 2), v);
    }
    src += ld;
  }
}

/** A B micro-panel from B stored transposed (N×K): columns j..j+cols are rows of the source. */
function pack_b_t(B: usize, ldb: i32, j: i32, cols: i32, k0: i32, kc: i32, dst: usize): void {
  const ld = <usize>ldb << 2;
  const src = B + <usize>j * ld + (<usize>k0 << 2);
  if (cols == NR) {
    transpose_rows_4(src, ld, kc, dst, NR << 2);
    transpose_rows_4(src + 4 * ld, ld, kc, dst + 16, NR << 2);
    return;
  }
  for (let k = 0; k < kc; k++) {
    for (let c = 0; c < NR; c++) {
      const v: f32 = c < cols ? load<f32>(src + <usize>c * ld + (<usize>k << 2)) : 0;
      store<f32>(dst + (<usize>(k * NR + c) << 2), v);
    }
  }
}

/**
 * Four source rows (stride `ld` bytes), kc floats each, written column by column: the 4
 * values of column k go to dst + k·stride (bytes). 4×4 blocks are transposed in registers.
 */
function transpose_rows_4(src: usize, ld: usize, kc: i32, dst: usize, stride: usize): void {
  const s0 = src, s1 = src + ld, s2 = src + 2 * ld, s3 = src + 3 * ld;
  let k = 0;
  for (; k + 4 <= kc; k += 4) {
    const at = <usize>k << 2;
    const r0 = v128.load(s0 + at);
    const r1 = v128.load(s1 + at);
    const r2 = v128.load(s2 + at);
    const r3 = v128.load(s3 + at);
    store_transposed(r0, r1, r2, r3, dst + <usize>k * stride, stride);
  }
  for (; k < kc; k++) {
    const at = <usize>k << 2;
    const d = dst + <usize>k * stride;
    store<f32>(d, load<f32>(s0 + at));
    store<f32>(d, load<f32>(s1 + at), 4);
    store<f32>(d, load<f32>(s2 + at), 8);
    store<f32>(d, load<f32>(s3 + at), 12);
  }
}

/**
 * Moves this file's scratch buffers by `delta` bytes: a worker of the threads build calls it
 * once, so that its kernels use a copy of the static scratch of their own.
 */
export function relocate_gemm_scratch(delta: usize): void {
  PACKED_A += delta;
  PACKED_B += delta;
  EDGE_TILE += delta;
}
