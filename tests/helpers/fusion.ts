/**
 * Fused steps (a ReLU compiled into the step before or after it) against the same layers kept
 * apart (a nested Sequential stops the fusion): forward, Jacobians, per-sample and batch
 * gradients must agree.
 */
import assert from "node:assert/strict";
import { batchGradient, jacobian, perSampleGradients } from "../../mod.ts";
import type { Module, Tensor } from "../../mod.ts";

export function assertFusedMatchesApart(fused: Module, apart: Module, x: Tensor, y: Tensor, tolerance = 1e-6): void {
  assert.deepEqual(fused.forward(x).data, apart.forward(x).data, "forward");
  const options = { loss: "cross_entropy" } as const;
  const pairs: [string, Tensor, Tensor][] = [
    ["jacobian", jacobian(fused, x), jacobian(apart, x)],
    ["perSampleGradients", perSampleGradients(fused, x, y, options), perSampleGradients(apart, x, y, options)],
    ["batchGradient", batchGradient(fused, x, y, options), batchGradient(apart, x, y, options)],
  ];
  for (const [what, a, b] of pairs) {
    assert.deepEqual(a.shape, b.shape, what);
    const scale = Math.max(1, ...Array.from(b.data, Math.abs));
    a.data.forEach((v, i) => assert.ok(Math.abs(v - b.data[i]) <= tolerance * scale, `${what}[${i}]: ${v} fused, ${b.data[i]} apart`));
  }
}
