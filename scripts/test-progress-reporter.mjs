// A node:test reporter for scripts/test-all.mjs: one line per test file as it finishes,
// `##test-file <passed> <failed> <path>`, counting the file's top-level tests (node 20's
// spec reporter names no files, so npm test could not say how far it has got).
export const MARKER = "##test-file";

export default async function* fileProgress(source) {
  const counts = new Map(); // file -> { passed, failed }
  for await (const event of source) {
    const data = event.data ?? {};
    if (data.file === undefined) continue;
    // Each file is itself reported as a test at nesting 0, named by its path.
    const isFile = data.name === data.file;
    if ((event.type === "test:pass" || event.type === "test:fail") && !isFile && data.nesting === 0) {
      const count = counts.get(data.file) ?? { passed: 0, failed: 0 };
      // A skipped or todo test reports test:pass; it is neither passed nor failed here.
      if (event.type === "test:fail") count.failed++;
      else if (!data.skip && !data.todo) count.passed++;
      counts.set(data.file, count);
    } else if (event.type === "test:complete" && isFile) {
      const count = counts.get(data.file) ?? { passed: 0, failed: 0 };
      // A file that fails to load reports no tests, only its own failure.
      const failed = count.failed + (data.passed === false && count.failed === 0 ? 1 : 0);
      yield `${MARKER} ${count.passed} ${failed} ${data.file}\n`;
    }
  }
}
