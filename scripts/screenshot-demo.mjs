#!/usr/bin/env node
// The README's screenshot of the browser demo: serves the repository (scripts/serve.mjs),
// opens examples/browser/ in headless Chromium (Debian's `chromium`, through playwright-core)
// and writes a PNG of the page's content.
//
//   node scripts/screenshot-demo.mjs [out.png]      (default docs/browser-demo.png; needs dist/: npm run build)
import { chromium } from "playwright-core";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./serve.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(process.argv[2] ?? join(root, "docs", "browser-demo.png"));
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`${executablePath} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  process.exit(1);
}

const server = await serve();
let browser;
try {
  browser = await chromium.launch({
    executablePath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1024, height: 720 }, deviceScaleFactor: 1 });
  const problems = [];
  page.on("pageerror", (error) => problems.push(error.message));
  page.on("console", (message) => message.type() === "error" && problems.push(message.text()));
  await page.goto(`${server.url}examples/browser/`);
  await page.waitForFunction(() => window.results !== undefined, null, { timeout: 20_000 });
  const results = await page.evaluate(() => window.results);
  if (results.error || problems.length > 0) throw new Error(`the page failed: ${results.error ?? problems.join("\n")}`);
  const bottom = await page.evaluate(() => Math.ceil(document.getElementById("chart").getBoundingClientRect().bottom));
  await page.screenshot({ path: out, clip: { x: 0, y: 0, width: 1024, height: bottom + 16 } });
  console.log(`wrote ${out} (build ${results.build})`);
} finally {
  await browser?.close();
  await server.close();
}
