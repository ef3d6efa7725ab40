// The browser demo: per-sample gradient norms of a small, untrained classifier on one batch,
// drawn as an SVG bar chart. A plain ES module, no build step: `npm run demo:browser` serves
// the repository root and this page imports the built library from /dist/mod.js.
//
// The results are also left on `window.results` for tests/browser.test.ts, which repeats the
// computation below (the same seeds and sizes, `CONFIG`) in its own process and compares.
// `?initialize=0` skips `await initialize()`, so that the first computation compiles the
// kernels synchronously on the main thread (the test checks that this works too).
import {
  initialize,
  Linear,
  manualSeed,
  perSampleGradients,
  perSampleNorms,
  randn,
  ReLU,
  Sequential,
  simdBuild,
} from "/dist/mod.js";

/** Everything the batch and the network depend on; the test builds the same from it. */
export const CONFIG = { weightSeed: 0, dataSeed: 1, samples: 24, inputs: 8, hidden: 16, classes: 4 };

const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];
const SVG = "http://www.w3.org/2000/svg";

const status = document.getElementById("status");
const chart = document.getElementById("chart");

function ms(t) {
  return t < 1 ? t.toFixed(2) : t.toFixed(1);
}

async function run() {
  const { weightSeed, dataSeed, samples: N, inputs, hidden, classes } = CONFIG;
  const skipInitialize = new URLSearchParams(location.search).get("initialize") === "0";

  const t0 = performance.now();
  if (!skipInitialize) await initialize(); // compiles the kernels asynchronously
  const t1 = performance.now();

  manualSeed(weightSeed);
  const net = new Sequential(new Linear(inputs, hidden), new ReLU(), new Linear(hidden, classes));
  const x = randn([N, inputs], dataSeed);
  const labels = { shape: [N], data: Int32Array.from({ length: N }, (_, n) => n % classes) };
  const options = { loss: "cross_entropy", reduction: "sum" };

  const t2 = performance.now();
  const G = perSampleGradients(net, x, labels, options); // [N, D]; compiles the kernels here without initialize()
  const t3 = performance.now();
  const norms = perSampleNorms(net, x, labels, options); // [N], without materializing G
  const t4 = performance.now();

  const D = G.shape[1];
  const build = simdBuild();
  const timings = { initialize: t1 - t0, perSampleGradients: t3 - t2, perSampleNorms: t4 - t3 };
  draw([...norms.data], [...labels.data], classes);
  status.textContent =
    `build: ${build} · N = ${N}, D = ${D} · ` +
    (skipInitialize ? "no initialize() (compiled on first use) · " : `initialize() ${ms(timings.initialize)} ms · `) +
    `perSampleGradients ${ms(timings.perSampleGradients)} ms · perSampleNorms ${ms(timings.perSampleNorms)} ms`;

  window.results = {
    config: CONFIG,
    initialized: !skipInitialize,
    build,
    shape: G.shape,
    labels: [...labels.data],
    norms: [...norms.data],
    grads: Array.from({ length: N }, (_, n) => [...G.data.subarray(n * D, (n + 1) * D)]),
    timings,
  };
}

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Round tick steps (1, 2, 5 × 10^k) for an axis from 0 to `max`. */
function ticks(max, count = 5) {
  const rough = max / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? rough;
  const out = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return { values: out, step };
}

function draw(norms, labels, classes) {
  const width = 960;
  const height = 380;
  const margin = { top: 40, right: 16, bottom: 48, left: 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const { values, step } = ticks(Math.max(...norms));
  const top = values[values.length - 1] < Math.max(...norms) ? values[values.length - 1] + step : values[values.length - 1];
  const y = (v) => margin.top + plotH * (1 - v / top);
  const slot = plotW / norms.length;
  const digits = Math.max(0, 2 - Math.floor(Math.log10(top)));

  chart.replaceChildren();
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.setAttribute("width", width);
  chart.setAttribute("height", height);

  for (const v of values) {
    chart.append(element("line", { class: "grid", x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v) }));
    chart.append(element("text", { x: margin.left - 8, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(Math.max(0, -Math.floor(Math.log10(step))))));
  }
  norms.forEach((norm, n) => {
    const x = margin.left + slot * n + slot * 0.15;
    const w = slot * 0.7;
    const bar = element("rect", { x, y: y(norm), width: w, height: y(0) - y(norm), fill: COLORS[labels[n] % COLORS.length], rx: 2 });
    bar.append(element("title", {}, `sample ${n} (label ${labels[n]}): ‖∇ℓ‖₂ = ${norm}`));
    chart.append(bar);
    chart.append(element("text", { class: "value", x: x + w / 2, y: y(norm) - 4, "text-anchor": "middle" }, norm.toFixed(digits)));
    chart.append(element("text", { x: x + w / 2, y: y(0) + 15, "text-anchor": "middle" }, n));
  });
  chart.append(element("line", { class: "axis", x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0) }));
  chart.append(element("line", { class: "axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: y(0) }));
  chart.append(element("text", { x: margin.left + plotW / 2, y: height - 10, "text-anchor": "middle" }, "sample"));
  chart.append(
    element("text", { x: 16, y: margin.top + plotH / 2, "text-anchor": "middle", transform: `rotate(-90 16 ${margin.top + plotH / 2})` }, "‖∇θ ℓ(xₙ, yₙ)‖₂"),
  );
  // Legend: one swatch per label.
  let lx = width - margin.right;
  for (let c = classes - 1; c >= 0; c--) {
    const label = element("text", { x: lx, y: 20, "text-anchor": "end" }, `label ${c}`);
    chart.append(label);
    lx -= 52;
    chart.append(element("rect", { x: lx, y: 10, width: 12, height: 12, fill: COLORS[c % COLORS.length], rx: 2 }));
    lx -= 14;
  }
  chart.append(element("text", { class: "title", x: margin.left, y: 20 }, "per-sample gradient norm of the cross-entropy loss"));
}

run().catch((error) => {
  status.classList.add("error");
  status.textContent = `error: ${error?.stack ?? error}`;
  window.results = { error: String(error?.stack ?? error) };
  throw error; // also reported as an uncaught error (the test collects those)
});
