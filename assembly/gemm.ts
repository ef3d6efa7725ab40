// placeholder: filled in by the kernel work
export const gemm_placeholder: i32 = 0;
