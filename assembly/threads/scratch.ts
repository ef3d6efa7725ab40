// Every kernel's static scratch (the memory.data buffers) moved at once. Kernels of the threads
// build share one memory; each worker's instance calls relocate_scratch once with the offset of
// its own copy of the static region, so that two threads never pack into the same buffer.
import { relocate_conv_direct_scratch } from "../conv_direct";
import { relocate_conv_phases_scratch } from "../conv_phases";
import { relocate_conv_pooled_scratch } from "../conv_pooled";
import { relocate_gemm_scratch } from "../gemm";
import { relocate_winograd_scratch } from "../winograd";
import { relocate_winograd1d_scratch } from "../winograd1d";
import { relocate_winograd43_scratch } from "../winograd43";

/** Moves every kernel's scratch buffers by `delta` bytes (a worker's, once, before its first kernel). */
export function relocate_scratch(delta: usize): void {
  relocate_conv_direct_scratch(delta);
  relocate_conv_phases_scratch(delta);
  relocate_conv_pooled_scratch(delta);
  relocate_gemm_scratch(delta);
  relocate_winograd_scratch(delta);
  relocate_winograd1d_scratch(delta);
  relocate_winograd43_scratch(delta);
}
