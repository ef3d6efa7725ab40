// placeholder: filled in by the kernel work
export const jacobian_placeholder: i32 = 0;
