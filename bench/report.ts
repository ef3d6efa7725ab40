/**
 * What the rows become: a table for people (`npm run bench`), markdown with ratios only for
 * the README (`--markdown`), and the SVG the README shows (`--plot docs/bench.svg`).
 */
import os from "node:os";
import { spawnSync } from "node:child_process";
import type { RuntimeName } from "./measure.ts";
import type { BigQuantityRow, CaseRow, GemmRow, PeerLoopRow, QuantityRow, Row, ScalingRow, SoakRow, TorchRow } from "./rows.ts";

const CASE_ORDER = ["seed3d", "mlp", "cnn"] as const;

function variantOf(row: Row): string | undefined {
  return "variant" in row ? row.variant : undefined;
}
function cases(rows: Row[]): CaseRow[] {
  return rows.filter((r): r is CaseRow => (r.case === "seed3d" || r.case === "mlp" || r.case === "cnn") &&
    (variantOf(r) === "fresh" || variantOf(r) === "out"));
}
function peerLoops(rows: Row[]): PeerLoopRow[] {
  return rows.filter((r): r is PeerLoopRow => variantOf(r) === "tfjs-loop");
}
function gemms(rows: Row[]): GemmRow[] {
  return rows.filter((r): r is GemmRow => r.case === "gemm");
}
function scalings(rows: Row[]): ScalingRow[] {
  return rows.filter((r): r is ScalingRow => r.case === "seed3d-scaling" || r.case === "mlp-scaling");
}
function quantities(rows: Row[]): QuantityRow[] {
  return rows.filter((r): r is QuantityRow => (r.case === "seed3d" || r.case === "mlp" || r.case === "cnn") &&
    (variantOf(r) === "clipped_sum" || variantOf(r) === "batch_l2"));
}
function bigs(rows: Row[]): BigQuantityRow[] {
  return rows.filter((r): r is BigQuantityRow => r.case === "mlp-big");
}
function soaks(rows: Row[]): SoakRow[] {
  return rows.filter((r): r is SoakRow => r.case === "soak");
}
/** "+3.1%" / "-0.4%". */
function percent(fraction: number): string {
  return `${fraction >= 0 ? "+" : ""}${(fraction * 100).toFixed(1)}%`;
}
function mib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? "n/a" : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}
function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
/** "clipped_sum (C = 1)" / "batch_l2". */
function quantityName(r: QuantityRow | BigQuantityRow): string {
  return r.max_norm === null ? r.variant : `${r.variant} (C = ${r.max_norm})`;
}
function torches(rows: Row[]): TorchRow[] {
  return rows.filter((r): r is TorchRow => variantOf(r) === "torch");
}
/** The runtimes that produced rows, in the order they ran. */
function runtimesOf(rows: Row[]): RuntimeName[] {
  const seen: RuntimeName[] = [];
  for (const r of rows) if (r.runtime !== "python" && !seen.includes(r.runtime)) seen.push(r.runtime);
  return seen;
}

/** "3.21x": how many times faster ours is (peer time / our time, or our rate / peer rate). */
function times(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "n/a";
  return `${ratio >= 100 ? ratio.toFixed(0) : ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}x`;
}
function ms(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "n/a";
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function textTable(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

function markdownTable(header: string[], body: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...body.map(line)].join("\n");
}

/** The human-readable report of `npm run bench`. */
export function humanReport(rows: Row[]): string {
  const parts: string[] = [];
  const caseRows = cases(rows);
  if (caseRows.length > 0) {
    parts.push("Per-sample gradients / Jacobians, public cases (ms: medians; cold: first call, plan included)");
    parts.push(textTable(
      ["runtime", "build", "case", "variant", "N", "D", "median ms", "cold ms", "naive ms", "naive timed on", "speedup"],
      caseRows.map((r) => [
        r.runtime, r.build, r.case, r.variant, String(r.N), String(r.D), ms(r.median_ms), ms(r.cold_ms),
        ms(r.naive_ms), r.naive_scaled ? `${r.naive_timed_n} of ${r.N}` : "all", times(r.speedup),
      ]),
    ));
  }
  const quantityRows = quantities(rows);
  if (quantityRows.length > 0) {
    parts.push("\nWithout forming J: clippedGradientSum and batchL2, interleaved with the J rows above (same run). " +
      "memory: the timed calls reuse WASM memory and return a small new result; J fresh: a new N × D array per call; " +
      "J out: a reused one (like for like)");
    parts.push(textTable(
      ["runtime", "case", "quantity", "N", "D", "median ms", "cold ms", "J fresh ms", "J out ms", "J fresh / this", "J out / this", "memory", "result"],
      quantityRows.map((r) => [
        r.runtime, r.case, quantityName(r), String(r.N), String(r.D), ms(r.median_ms), ms(r.cold_ms), ms(r.fresh_ms),
        ms(r.out_ms), times(r.vs_fresh), times(r.vs_out), r.memory, r.result_bytes >= 2 ** 20 ? mib(r.result_bytes) : `${(r.result_bytes / 1024).toFixed(1)} KiB`,
      ]),
    ));
  }
  const bigRows = bigs(rows);
  if (bigRows.length > 0) {
    const first = bigRows[0];
    parts.push(`\nA batch whose J would not fit: ${first.network}, N = ${first.N}, D = ${first.D}, J = ${gib(first.j_bytes)} (never formed). ` +
      "stream: J's rows produced chunk by chunk and dropped. Peak RSS: this process over each quantity's cold call and 3 warm ones " +
      "(RSS before: what the process held already); timed calls on reused memory, cold: whether it grew WASM memory");
    parts.push(textTable(
      ["runtime", "quantity", "median ms", "cold ms", "cold memory", "peak RSS", "RSS before", "WASM memory", "peak from"],
      bigRows.map((r) => [
        r.runtime, quantityName(r), ms(r.median_ms), ms(r.cold_ms), r.cold_memory, mib(r.peak_rss_bytes), mib(r.rss_before_bytes),
        mib(r.wasm_bytes), r.peak_rss_source,
      ]),
    ));
  }
  const soakRows = soaks(rows);
  if (soakRows.length > 0) {
    parts.push(`\nMemory soak: ${soakRows[0].calls} calls after ${soakRows[0].warm_up_calls} of warm-up, ${soakRows[0].network}; ` +
      "one network, or a new one every 3 calls (the old dropped). RSS read without forcing a collection, except \"after gc\"");
    parts.push(textTable(
      ["runtime", "variant", "ms / call", "RSS after warm-up", "RSS after", "growth", "peak RSS", "RSS after gc", "WASM memory", "plans cached"],
      soakRows.map((r) => [
        r.runtime, r.variant, ms(r.mean_ms), mib(r.rss_after_warm_up_bytes), mib(r.rss_bytes), percent(r.rss_growth), mib(r.peak_rss_bytes),
        mib(r.rss_after_gc_bytes), r.wasm_bytes === r.wasm_bytes_after_warm_up ? mib(r.wasm_bytes) : `${mib(r.wasm_bytes_after_warm_up)} → ${mib(r.wasm_bytes)}`,
        `${r.plans_cached} of ${r.plan_cache_capacity}`,
      ]),
    ));
  }
  const loops = peerLoops(rows);
  if (loops.length > 0) {
    parts.push("\nTF.js per-sample loop (one tf.grads per sample), mlp, interleaved with our one pass");
    parts.push(textTable(
      ["runtime", "peer", "N", "TF.js ms (scaled)", "timed on", "ours ms", "ours faster by", "ours with out"],
      loops.map((r) => [
        r.runtime, r.peer_error ? `error: ${r.peer_error}` : r.peer, String(r.N), ms(r.median_ms),
        String(r.timed_n), ms(r.ours_ms), times(r.ours_speedup), times(r.ours_out_speedup),
      ]),
    ));
  }
  const gemmRows = gemms(rows);
  if (gemmRows.length > 0) {
    parts.push("\nGEMM m = n = k, one thread (GFLOP/s; ours packs A and B on every call)");
    parts.push(textTable(
      ["runtime", "build", "m=n=k", "ours gemm_nn", "TF.js matMul", "TF.js new B", "ours / TF.js"],
      gemmRows.map((r) => [
        r.runtime, r.build, String(r.m), r.gflops.toFixed(1),
        r.peer_gflops === null ? `n/a (${r.peer_error ?? "?"})` : r.peer_gflops.toFixed(1),
        r.peer_gflops_new_b === null ? "n/a" : r.peer_gflops_new_b.toFixed(1), times(r.ratio),
      ]),
    ));
  }
  const scaling = scalings(rows);
  if (scaling.length > 0) {
    parts.push("\nSpeedup of one pass over our naive loop as the batch grows");
    parts.push(scalingTable(scaling, textTable));
  }
  const torchRows = torches(rows);
  if (torchRows.length > 0) {
    parts.push("\nPyTorch (torch_peer.py, run before, between and after the runtimes), ms");
    parts.push(textTable(
      ["after", "before", "case", "N", "D", "functorch ms", "loop ms", "threads", "load"],
      torchRows.map((r) => [
        r.ran_after ?? "-", r.ran_before ?? "-", r.case, String(r.N), String(r.D), ms(r.functorch_ms), ms(r.loop_ms),
        String(r.threads), String(r.load_avg_1m),
      ]),
    ));
    parts.push("\nOurs vs PyTorch (how many times faster ours is)");
    parts.push(comparisonTable(rows, textTable));
  }
  return parts.join("\n");
}

function scalingTable(scaling: ScalingRow[], format: (h: string[], b: string[][]) => string): string {
  const columns: [string, RuntimeName][] = [];
  for (const r of scaling) {
    const key = r.case.replace("-scaling", "");
    if (!columns.some(([c, rt]) => c === key && rt === r.runtime)) columns.push([key, r.runtime]);
  }
  const sizes = [...new Set(scaling.map((r) => r.N))].sort((a, b) => a - b);
  return format(
    ["N", ...columns.map(([c, rt]) => `${c} ${rt}`)],
    sizes.map((N) => [
      String(N),
      ...columns.map(([c, rt]) => times(scaling.find((r) => r.case === `${c}-scaling` && r.runtime === rt && r.N === N)?.speedup)),
    ]),
  );
}

/** Per case and runtime: ours against functorch, PyTorch's loop, our naive loop and TF.js's loop. */
function comparisonTable(rows: Row[], format: (h: string[], b: string[][]) => string): string {
  const caseRows = cases(rows);
  const torchRows = torches(rows);
  const loops = peerLoops(rows);
  const hasOut = caseRows.some((r) => r.variant === "out");
  const body: string[][] = [];
  for (const name of CASE_ORDER) {
    for (const runtime of runtimesOf(rows)) {
      const fresh = caseRows.find((r) => r.case === name && r.runtime === runtime && r.variant === "fresh");
      if (!fresh) continue;
      const out = caseRows.find((r) => r.case === name && r.runtime === runtime && r.variant === "out");
      // PyTorch at its best of the runs just before and just after this runtime's.
      const adjacent = torchRows.filter((r) => r.case === name && (r.ran_before === runtime || r.ran_after === runtime));
      const torch = adjacent.length === 0 ? undefined : {
        functorch_ms: Math.min(...adjacent.map((r) => r.functorch_ms)),
        loop_ms: Math.min(...adjacent.map((r) => r.loop_ms)),
      };
      const loop = loops.find((r) => r.runtime === runtime);
      const both = (peerMs: number | undefined) => {
        if (peerMs === undefined) return "n/a";
        const main = times(peerMs / fresh.median_ms);
        return hasOut && out ? `${main} (out: ${times(peerMs / out.median_ms)})` : main;
      };
      const withOut = (main: number | null, outRatio: number | undefined) =>
        hasOut && outRatio !== undefined ? `${times(main)} (out: ${times(outRatio)})` : times(main);
      body.push([
        `${name} N=${fresh.N}`,
        `${runtime} (${where(fresh)})`,
        both(torch?.functorch_ms),
        both(torch?.loop_ms),
        both(fresh.naive_ms),
        name === "mlp" && loop && !loop.peer_error ? withOut(loop.ours_speedup, loop.ours_out_speedup) : "n/a",
        times(fresh.cold_ms / fresh.median_ms),
      ]);
    }
  }
  return format(
    [
      "case",
      "runtime (SIMD build, threads)",
      "vs functorch vmap(grad)",
      "vs PyTorch loop",
      "vs our naive loop",
      "vs TF.js tf.grads loop",
      "cold / warm",
    ],
    body,
  );
}

/** The machine, the date and the code measured, for the README. */
export function machineLine(measured: Date): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model?.trim() || "unknown CPU";
  let revision = "unknown revision";
  try {
    const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" });
    const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" });
    if (head.status === 0) revision = `${head.stdout.trim()}${dirty.stdout.trim() ? " + uncommitted changes" : ""}`;
  } catch {
    // not a git checkout
  }
  const when = measured.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return `${when}; ${model}, ${os.availableParallelism?.() ?? cpus.length} CPUs (nproc), ${os.platform()} ${os.release()}; jacobian-wasm at ${revision}`;
}

/** The README's benchmark tables: ratios only (how many times faster ours is), no absolute times. */
export function markdownReport(rows: Row[], measured: Date): string {
  const loads = rows.map((r) => r.load_avg_1m).filter((l) => Number.isFinite(l));
  const parts = [`Measured ${machineLine(measured)}.`];
  if (loads.length > 0) {
    parts.push("", `1-minute load average during the run: ${Math.min(...loads)} to ${Math.max(...loads)} ` +
      `(${os.availableParallelism?.() ?? os.cpus().length} CPUs; anything above ~1 means other jobs were sharing them).`);
  }
  const tunables = [...new Set(rows.map((r) => ("glibc_tunables" in r ? r.glibc_tunables : null) ?? "none"))];
  if (tunables.length === 1 && tunables[0] !== "none") {
    parts.push("", `Every process (ours and PyTorch's) ran with GLIBC_TUNABLES=${tunables[0]} (see "Large results" below).`);
  } else if (tunables.length > 1) {
    parts.push("", `The rows ran under different GLIBC_TUNABLES: ${tunables.join(", ")}.`);
  }
  parts.push("");
  parts.push("Per-sample gradients: how many times faster our one pass is than each peer (the peer's median time " +
    "over ours; PyTorch at its best of its runs just before and just after the runtime's; TF.js and our naive loop " +
    "interleaved with ours in the same process; \"out\": our result written into a reused buffer; cold / warm: " +
    "our first call, which builds the plan, over our median):", "");
  parts.push(comparisonTable(rows, markdownTable), "");
  const quantityRows = quantities(rows);
  if (quantityRows.length > 0) {
    parts.push("Without forming J: how many times faster `clippedGradientSum` and `batchL2` are than materialising J on the same " +
      "case (interleaved in the same process). Like for like, both on reused memory: J written into a reused `out` buffer; " +
      "against the default call, J in a new N × D array (fresh memory) each time:", "");
    parts.push(markdownTable(
      ["case", "runtime (SIMD build, threads)", "quantity", "vs J into a reused buffer", "vs J as a new array"],
      quantityRows.map((r) => [`${r.case} N=${r.N}`, `${r.runtime} (${where(r)})`, `\`${quantityName(r)}\``, times(r.vs_out), times(r.vs_fresh)]),
    ), "");
  }
  const bigRows = bigs(rows);
  if (bigRows.length > 0) {
    const first = bigRows[0];
    const stream = (runtime: RuntimeName) => bigRows.find((r) => r.runtime === runtime && r.variant === "stream");
    parts.push(`A batch whose J would take ${gib(first.j_bytes)} (${first.network}, N = ${first.N}, D = ${first.D.toLocaleString("en-US")}): ` +
      "never formed. Peak resident memory of the whole process (runtime, earlier cases and all) over each quantity's calls; " +
      "time against streaming J's rows once and dropping them:", "");
    parts.push(markdownTable(
      ["runtime (SIMD build, threads)", "quantity", "peak RSS", "WASM memory", "vs streaming J's rows"],
      bigRows.filter((r) => r.variant !== "stream").map((r) => [
        `${r.runtime} (${where(r)})`, `\`${quantityName(r)}\``, mib(r.peak_rss_bytes), mib(r.wasm_bytes),
        times(stream(r.runtime) ? stream(r.runtime)!.median_ms / r.median_ms : undefined),
      ]),
    ), "");
  }
  const soakRows = soaks(rows);
  if (soakRows.length > 0) {
    parts.push(`Memory soak: resident memory of the process after ${soakRows[0].calls.toLocaleString("en-US")} calls of \`jacobian\` / ` +
      "`perSampleGradients` with batch sizes 1-300 and four input shapes, after a warm-up of " +
      `${soakRows[0].warm_up_calls.toLocaleString("en-US")}, on one network or a new network every 3 calls (no collection forced; ` +
      "\"after gc\": once the results' garbage is collected):", "");
    parts.push(markdownTable(
      ["runtime (SIMD build, threads)", "networks", "RSS after warm-up", "RSS after the calls", "after gc", "WASM memory"],
      soakRows.map((r) => [
        `${r.runtime} (${where(r)})`, r.variant === "one-network" ? "one" : `${r.networks.toLocaleString("en-US")} (dropped)`,
        mib(r.rss_after_warm_up_bytes), `${mib(r.rss_bytes)} (${percent(r.rss_growth)})`, mib(r.rss_after_gc_bytes), mib(r.wasm_bytes),
      ]),
    ), "");
  }
  const gemmRows = gemms(rows);
  if (gemmRows.length > 0) {
    parts.push("GEMM, one thread, ours (`gemm_nn`, packing included) over TF.js's WASM backend (`tf.matMul`, XNNPACK):", "");
    parts.push(markdownTable(
      ["m = n = k", "runtime (SIMD build, threads)", "ours / TF.js matMul", "ours / TF.js matMul with a new B tensor per call"],
      gemmRows.map((r) => [
        String(r.m), `${r.runtime} (${where(r)})`,
        r.peer_gflops === null ? `n/a (${r.peer_error})` : times(r.ratio),
        r.peer_gflops_new_b === null ? "n/a" : times(r.gflops / r.peer_gflops_new_b),
      ]),
    ), "");
  }
  const scaling = scalings(rows);
  if (scaling.length > 0) {
    parts.push("One pass over our naive loop as the batch grows:", "");
    parts.push(scalingTable(scaling, markdownTable), "");
  }
  return parts.join("\n");
}

// ---------------------------------------------------------------- SVG

const COLORS: Record<RuntimeName, string> = { node: "#3c873a", deno: "#1f4e9c", bun: "#d0457a" };

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Ticks 1, 2, 5 × 10^k covering [low, high]; finer where the range is under two decades. */
function logTicks(low: number, high: number): number[] {
  const ticks: number[] = [];
  const mantissas = high / low < 100 ? [1, 1.5, 2, 3, 5, 7] : [1, 2, 5];
  for (let e = Math.floor(Math.log10(low)); e <= Math.ceil(Math.log10(high)); e++) {
    for (const m of mantissas) {
      const t = m * 10 ** e;
      if (t >= low * 0.999 && t <= high * 1.001) ticks.push(t);
    }
  }
  return ticks;
}

function tickLabel(t: number): string {
  return `${Number(t.toPrecision(2))}x`;
}

/** One coloured box per runtime that produced `rows`, with its SIMD build. */
function runtimeLegend(out: string[], rows: Row[], x: number, y: number): void {
  for (const runtime of runtimesOf(rows)) {
    const row = rows.find((r) => r.runtime === runtime && "build" in r) as { build?: string } | undefined;
    out.push(`<rect x="${x}" y="${y - 10}" width="12" height="10" fill="${COLORS[runtime]}"/>`);
    out.push(`<text x="${x + 16}" y="${y}">${runtime} (${row?.build ?? "?"})</text>`);
    x += 130;
  }
}

/** The speedup over the naive loop against N (left) and the GEMM comparison (right). */
export function svgReport(rows: Row[], measured: Date): string {
  const width = 960;
  const height = 460;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<defs><pattern id="hatch" width="5" height="5" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="5" height="5" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="5" stroke="#777" stroke-width="2"/></pattern></defs>`);
  out.push(`<text x="20" y="24" font-size="15" font-weight="bold">jacobian-wasm: one forward + one backward pass</text>`);
  out.push(`<text x="20" y="42" fill="#555">${escapeXml(machineLine(measured))}</text>`);

  // Left: speedup over the naive loop against N, log-log.
  const scaling = scalings(rows);
  const L = { x: 70, y: 80, w: 390, h: 270 };
  out.push(`<text x="${L.x}" y="${L.y - 14}" font-weight="bold">One pass over our naive per-sample loop (speedup) vs batch size</text>`);
  if (scaling.length > 0) {
    const speedups = scaling.map((r) => r.speedup).filter((s) => s > 0 && Number.isFinite(s));
    const low = Math.min(1, ...speedups) / 1.3;
    const high = Math.max(1, ...speedups) * 1.3;
    const maxN = Math.max(...scaling.map((r) => r.N));
    const px = (N: number) => L.x + (Math.log2(N) / Math.log2(Math.max(2, maxN))) * L.w;
    const py = (s: number) => L.y + L.h - ((Math.log10(s) - Math.log10(low)) / (Math.log10(high) - Math.log10(low))) * L.h;
    out.push(`<rect x="${L.x}" y="${L.y}" width="${L.w}" height="${L.h}" fill="none" stroke="#999"/>`);
    for (const t of logTicks(low, high)) {
      out.push(`<line x1="${L.x}" x2="${L.x + L.w}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="${t === 1 ? "#444" : "#e4e4e4"}"${t === 1 ? ' stroke-dasharray="4 3"' : ""}/>`);
      out.push(`<text x="${L.x - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${tickLabel(t)}</text>`);
    }
    for (let N = 1; N <= maxN; N *= 4) {
      out.push(`<line x1="${px(N).toFixed(1)}" x2="${px(N).toFixed(1)}" y1="${L.y + L.h}" y2="${L.y + L.h + 4}" stroke="#999"/>`);
      out.push(`<text x="${px(N).toFixed(1)}" y="${L.y + L.h + 17}" text-anchor="middle">${N}</text>`);
    }
    out.push(`<text x="${L.x + L.w / 2}" y="${L.y + L.h + 34}" text-anchor="middle">batch size N</text>`);
    for (const name of ["seed3d", "mlp"] as const) {
      for (const runtime of runtimesOf(rows)) {
        const series = scaling.filter((r) => r.case === `${name}-scaling` && r.runtime === runtime).sort((a, b) => a.N - b.N);
        if (series.length === 0) continue;
        const dash = name === "mlp" ? ' stroke-dasharray="6 4"' : "";
        const points = series.map((r) => `${px(r.N).toFixed(1)},${py(r.speedup).toFixed(1)}`).join(" ");
        out.push(`<polyline points="${points}" fill="none" stroke="${COLORS[runtime]}" stroke-width="2"${dash}/>`);
        for (const r of series) {
          out.push(`<circle cx="${px(r.N).toFixed(1)}" cy="${py(r.speedup).toFixed(1)}" r="2.5" fill="${COLORS[runtime]}"/>`);
        }
      }
    }
    const legendY = L.y + L.h + 52;
    out.push(`<line x1="${L.x}" x2="${L.x + 24}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="#444" stroke-width="2"/>`);
    out.push(`<text x="${L.x + 30}" y="${legendY}">seed3d</text>`);
    out.push(`<line x1="${L.x + 90}" x2="${L.x + 114}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="#444" stroke-width="2" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${L.x + 120}" y="${legendY}">mlp</text>`);
    out.push(`<text x="${L.x + 170}" y="${legendY}" fill="#555">dashed line at 1x: break-even</text>`);
    runtimeLegend(out, rows, L.x, legendY + 18);
  } else {
    out.push(`<text x="${L.x}" y="${L.y + 20}" fill="#777">no scaling rows in this run</text>`);
  }

  // Right: GEMM GFLOP/s, ours solid, TF.js hatched, grouped by size.
  const gemmRows = gemms(rows);
  const R = { x: 560, y: 80, w: 370, h: 270 };
  out.push(`<text x="${R.x}" y="${R.y - 14}" font-weight="bold">GEMM m = n = k, one thread, same process: GFLOP/s</text>`);
  if (gemmRows.length > 0) {
    const maxG = Math.max(...gemmRows.flatMap((r) => [r.gflops, r.peer_gflops ?? 0])) * 1.15;
    const py = (g: number) => R.y + R.h - (g / maxG) * R.h;
    out.push(`<rect x="${R.x}" y="${R.y}" width="${R.w}" height="${R.h}" fill="none" stroke="#999"/>`);
    const step = maxG > 80 ? 20 : 10;
    for (let g = 0; g <= maxG; g += step) {
      out.push(`<line x1="${R.x}" x2="${R.x + R.w}" y1="${py(g).toFixed(1)}" y2="${py(g).toFixed(1)}" stroke="#e4e4e4"/>`);
      out.push(`<text x="${R.x - 6}" y="${(py(g) + 4).toFixed(1)}" text-anchor="end">${g}</text>`);
    }
    const sizes = [...new Set(gemmRows.map((r) => r.m))].sort((a, b) => a - b);
    const runtimes = runtimesOf(gemmRows);
    const groupW = R.w / sizes.length;
    const barW = Math.min(24, (groupW - 30) / (2 * runtimes.length));
    sizes.forEach((m, gi) => {
      const groupX = R.x + gi * groupW + (groupW - barW * 2 * runtimes.length) / 2;
      runtimes.forEach((runtime, ri) => {
        const r = gemmRows.find((row) => row.m === m && row.runtime === runtime);
        if (!r) return;
        const bars: [number | null, string][] = [[r.gflops, COLORS[runtime]], [r.peer_gflops, "url(#hatch)"]];
        bars.forEach(([g, fill], bi) => {
          const x = groupX + (ri * 2 + bi) * barW;
          if (g === null) {
            out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${R.y + R.h - 4}" text-anchor="middle" font-size="9">n/a</text>`);
            return;
          }
          out.push(`<rect x="${x.toFixed(1)}" y="${py(g).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(R.y + R.h - py(g)).toFixed(1)}" fill="${fill}" stroke="${COLORS[runtime]}"/>`);
          out.push(`<text x="${(x + barW / 2 - 1).toFixed(1)}" y="${(py(g) - 3).toFixed(1)}" text-anchor="middle" font-size="9">${g.toFixed(0)}</text>`);
        });
      });
      out.push(`<text x="${(R.x + gi * groupW + groupW / 2).toFixed(1)}" y="${R.y + R.h + 17}" text-anchor="middle">${m}³</text>`);
    });
    const legendY = R.y + R.h + 52;
    out.push(`<rect x="${R.x}" y="${legendY - 10}" width="12" height="10" fill="#444"/>`);
    out.push(`<text x="${R.x + 16}" y="${legendY}">ours (gemm_nn, packing included)</text>`);
    out.push(`<rect x="${R.x + 235}" y="${legendY - 10}" width="12" height="10" fill="url(#hatch)" stroke="#444"/>`);
    out.push(`<text x="${R.x + 251}" y="${legendY}">TF.js WASM matMul</text>`);
    runtimeLegend(out, gemmRows, R.x, legendY + 18);
  } else {
    out.push(`<text x="${R.x}" y="${R.y + 20}" fill="#777">no GEMM rows in this run</text>`);
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** "baseline, 2 threads": the SIMD build and the threads a row ran on (rows from before threads: the build alone). */
function where(row: { build: string; threads?: number }): string {
  return row.threads === undefined ? row.build : `${row.build}, ${row.threads} thread${row.threads === 1 ? "" : "s"}`;
}
