import { test } from "node:test";
import assert from "node:assert/strict";
import { kernels, arena } from "../src/wasm.ts";

test("the embedded kernels load and expose their memory", () => {
  assert.ok(kernels().memory instanceof WebAssembly.Memory);
  assert.ok(arena.base() >= kernels().heapBase());
});
