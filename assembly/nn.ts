// placeholder: filled in by the kernel work
export const nn_placeholder: i32 = 0;
