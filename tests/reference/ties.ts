/**
 * The closest call between a max and the runner-up of its window (max pooling, adaptive max
 * pooling) in the reference's evaluations since `reset`, relative to the values' magnitude.
 * Closer than float32 rounding of the layers before it, float32 may pick the other element and
 * route the gradient to it: a different, equally valid subgradient that no finite difference of
 * the float64 reference reproduces.
 */
export const maxTies = {
  closest: Infinity,
  reset(): void {
    this.closest = Infinity;
  },
  record(best: number, second: number): void {
    if (!Number.isFinite(second) || !Number.isFinite(best)) return;
    const gap = (best - second) / Math.max(Math.abs(best), Math.abs(second), 1e-30);
    if (gap < this.closest) this.closest = gap;
  },
};
