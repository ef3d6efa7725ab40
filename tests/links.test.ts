/**
 * Every link and image in the README and docs/ resolves in a clone of the repository: each
 * relative target is a file or directory inside the repository that git does not ignore (so
 * neither a sibling folder like ../shared nor a generated file like docs/api/; inline code
 * naming a relative path, `../x` or `./x`, is held to the same), and each
 * `#anchor` names a heading (GitHub's slug) or an HTML id of the Markdown file it points into.
 * http(s) and mailto links are not followed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { root } from "./helpers/cli.ts";

/** A link as written: its target and the line it is on. */
interface Link {
  target: string;
  line: number;
}

/** The text with fenced code blocks and inline code spans blanked (same length, newlines kept). */
function withoutCode(markdown: string): string {
  const blank = (text: string) => text.replace(/[^\n]/g, " ");
  return markdown
    .replace(/^( {0,3})(`{3,}|~{3,})[^\n]*\n[\s\S]*?(?:^ {0,3}\2[`~]*[ \t]*$|(?![\s\S]))/gm, blank)
    .replace(/(`+)(?!`)[\s\S]*?[^`]\1(?!`)/g, blank);
}

/** Inline links and images `[text](target "title")`, reference definitions `[x]: target`, HTML src/href. */
function linksOf(markdown: string): Link[] {
  const text = withoutCode(markdown);
  const lineAt = (index: number) => text.slice(0, index).split("\n").length;
  const links: Link[] = [];
  const patterns = [
    /\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g,
    /^ {0,3}\[[^\]\n]+\]:\s*(<[^>\n]*>|\S+)/gm,
    /<(?:a|img|source)\b[^>]*?\s(?:href|src)\s*=\s*["']([^"']+)["']/gi,
  ];
  for (const pattern of patterns) {
    for (const match of text.matchAll(pattern)) {
      links.push({ target: match[1].replace(/^<|>$/g, ""), line: lineAt(match.index!) });
    }
  }
  return links.sort((a, b) => a.line - b.line);
}

/** Inline code that names a relative path (`../shared/DESIGN.md`, `./cli.ts`): a reader follows those too. */
function codePathsOf(markdown: string): Link[] {
  const text = markdown.replace(/^( {0,3})(`{3,}|~{3,})[^\n]*\n[\s\S]*?(?:^ {0,3}\2[`~]*[ \t]*$|(?![\s\S]))/gm, (block) => block.replace(/[^\n]/g, " "));
  const lineAt = (index: number) => text.slice(0, index).split("\n").length;
  return [...text.matchAll(/(?<!`)`(\.\.?\/[^\s`]*)`(?!`)/g)].map((m) => ({ target: m[1], line: lineAt(m.index!) }));
}

/** GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces to hyphens. */
function githubSlug(heading: string): string {
  const rendered = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link or image shows its text
    .replace(/<[^>]+>/g, ""); // HTML tags show nothing
  return rendered.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
}

/** The anchors a Markdown file defines: its headings' slugs (repeats numbered -1, -2, ...) and HTML ids. */
function anchorsOf(markdown: string): Set<string> {
  const text = withoutCode(markdown);
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const add = (heading: string) => {
    const slug = githubSlug(heading);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  };
  // Headings are read from the original text at the lines the blanked text still has (code
  // spans in headings keep their words, as GitHub renders them).
  const original = markdown.split("\n");
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (/^ {0,3}#{1,6}(\s|$)/.test(lines[i])) {
      add(original[i].replace(/^ {0,3}#{1,6}\s*/, "").replace(/\s+#+\s*$/, "").replace(/`/g, ""));
    } else if (i > 0 && /^ {0,3}(=+|-+)\s*$/.test(lines[i]) && lines[i - 1].trim() !== "" && !/^ {0,3}([-*_]\s*){3,}$/.test(lines[i - 1])) {
      add(original[i - 1].replace(/`/g, "")); // a setext heading, underlined
    }
  }
  for (const match of text.matchAll(/<[a-z][^>]*?\s(?:id|name)\s*=\s*["']([^"']+)["']/gi)) anchors.add(match[1]);
  return anchors;
}

/** Where a link's target is, or undefined for links that leave the repository's files (http, mailto). */
function localTarget(from: string, target: string): { path: string; anchor?: string } | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) return undefined;
  const hash = target.indexOf("#");
  const pathPart = (hash < 0 ? target : target.slice(0, hash)).replace(/\?.*$/, "");
  const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
  const decoded = decodeURIComponent(pathPart);
  // GitHub resolves "/x" from the repository's root, "x" from the linking file's folder.
  const path = decoded === "" ? from : decoded.startsWith("/") ? join(root, decoded) : resolve(dirname(from), decoded);
  return { path, anchor };
}

/** Files git would leave out of a clone (ignored and untracked), of `paths`; none where git is not at hand. */
function ignoredByGit(paths: string[]): Set<string> {
  if (paths.length === 0) return new Set();
  const run = spawnSync("git", ["check-ignore", "--stdin"], { cwd: root, input: paths.join("\n") + "\n", encoding: "utf8" });
  // exit 0: some are ignored, 1: none are; anything else (no git, not a work tree) is reported by the test below.
  if (run.status !== 0 && run.status !== 1) throw new Error(`git check-ignore failed (${run.status}): ${run.stderr || run.error}`);
  return new Set(run.stdout.split("\n").filter((l) => l !== "").map((l) => resolve(root, l)));
}

/** What is wrong with each link of `file` (its text given), as "file:line: target: problem". */
function brokenLinks(file: string, markdown: string, options: { checkIgnored?: boolean } = {}): string[] {
  const problems: string[] = [];
  const where = (link: Link) => `${relative(root, file)}:${link.line}: ${link.target}`;
  const resolved: { link: Link; path: string; anchor?: string }[] = [];
  for (const link of [...linksOf(markdown), ...codePathsOf(markdown)]) {
    const local = localTarget(file, link.target);
    if (local === undefined) continue;
    const inside = relative(root, local.path);
    if (inside.startsWith("..") || isAbsolute(inside)) {
      problems.push(`${where(link)}: points outside the repository (to ${local.path})`);
    } else if (!existsSync(local.path)) {
      problems.push(`${where(link)}: no such file or directory in the repository`);
    } else {
      resolved.push({ link, ...local });
    }
  }
  const ignored = options.checkIgnored ? ignoredByGit(resolved.map((r) => relative(root, r.path))) : new Set<string>();
  for (const { link, path, anchor } of resolved) {
    if (ignored.has(path)) {
      problems.push(`${where(link)}: is ignored by git (generated, so not in a clone)`);
      continue;
    }
    if (anchor === undefined || anchor === "") continue;
    if (statSync(path).isDirectory() || !path.endsWith(".md")) {
      // GitHub's line anchors (#L10) are the only ones other files have.
      if (!/^L\d+(-L\d+)?$/.test(anchor)) problems.push(`${where(link)}: #${anchor} is not a line anchor, and ${relative(root, path)} is not Markdown`);
      continue;
    }
    const text = path === file ? markdown : readFileSync(path, "utf8");
    if (!anchorsOf(text).has(anchor)) problems.push(`${where(link)}: no heading in ${relative(root, path)} has the anchor #${anchor}`);
  }
  return problems;
}

function markdownFiles(): string[] {
  const docs = readdirSync(join(root, "docs"), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".md") && !f.startsWith("api"))
    .map((f) => join(root, "docs", f));
  return [join(root, "README.md"), join(root, "examples", "README.md"), ...docs].sort();
}

const inGitWorkTree = spawnSync("git", ["rev-parse", "--is-inside-work-tree"], { cwd: root, encoding: "utf8" }).stdout?.trim() === "true";

test("every relative link and image in README.md, examples/README.md and docs/*.md resolves inside the repository", () => {
  const files = markdownFiles();
  assert.ok(files.some((f) => f.endsWith(join("docs", "design.md"))), "docs/design.md is among the files checked");
  let local = 0;
  const problems: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    local += linksOf(text).filter((l) => localTarget(file, l.target) !== undefined).length;
    problems.push(...brokenLinks(file, text));
  }
  assert.ok(local >= 10, `only ${local} relative links found: the parser is missing them`);
  assert.deepEqual(problems, []);
});

test("no link in README.md or docs/ points at a file git ignores (a generated file is not in a clone)", { skip: !inGitWorkTree && "not a git work tree" }, () => {
  const problems = markdownFiles()
    .flatMap((file) => brokenLinks(file, readFileSync(file, "utf8"), { checkIgnored: true }))
    .filter((p) => p.endsWith("is ignored by git (generated, so not in a clone)")); // the test above reports the rest
  assert.deepEqual(problems, []);
});

test("the link checker reports missing files, targets outside the repository (links and paths in code), unknown anchors and ignored files", () => {
  const file = join(root, "README.md");
  const markdown = [
    "# Title",
    "## A `code` heading: with punctuation!",
    "## Title",
    "[ok](docs/design.md#2-per-layer-rules-quasi-linear-layers) [ok](#a-code-heading-with-punctuation) [ok](#title-1)",
    "[missing](docs/no_such_file.md) ![missing image](docs/nope.png \"title\")",
    "[outside](../shared/DESIGN.md) and in code: `../shared/peers/torch_peer.py`, `./cli.ts` (which exists)",
    "[bad anchor](docs/design.md#no-such-heading) [bad local anchor](#nowhere)",
    "[web](https://example.com/x.md) [mail](mailto:a@b.c)",
    "`[in code](not/checked.md)`",
    "```",
    "[in a fence](not/checked/either.md)",
    "```",
    "[ref]: docs/missing_reference.md",
    "[generated](dist/mod.js)",
  ].join("\n");
  const problems = brokenLinks(file, markdown, { checkIgnored: inGitWorkTree });
  const expected = [
    /README\.md:5: docs\/no_such_file\.md: no such file/,
    /README\.md:5: docs\/nope\.png: no such file/,
    /README\.md:6: \.\.\/shared\/DESIGN\.md: points outside the repository/,
    /README\.md:6: \.\.\/shared\/peers\/torch_peer\.py: points outside the repository/,
    /README\.md:7: docs\/design\.md#no-such-heading: no heading in docs\/design\.md has the anchor #no-such-heading/,
    /README\.md:7: #nowhere: no heading in README\.md has the anchor #nowhere/,
    /README\.md:13: docs\/missing_reference\.md: no such file/,
  ];
  // dist/ exists once built (npm install builds it) and is ignored by git: left out of a clone.
  if (inGitWorkTree && existsSync(join(root, "dist", "mod.js"))) expected.push(/README\.md:14: dist\/mod\.js: is ignored by git/);
  assert.equal(problems.length, expected.length, problems.join("\n"));
  for (const pattern of expected) assert.ok(problems.some((p) => pattern.test(p)), `${pattern} among:\n${problems.join("\n")}`);
});

test("GitHub's heading slugs: lower case, punctuation and code marks dropped, spaces to hyphens, repeats numbered", () => {
  assert.equal(githubSlug("DP-SGD's clipped sum against PyTorch functorch"), "dp-sgds-clipped-sum-against-pytorch-functorch");
  assert.equal(githubSlug("2. Per-layer rules (\"quasi-linear\" layers)"), "2-per-layer-rules-quasi-linear-layers");
  assert.equal(githubSlug("Residual and branching blocks"), "residual-and-branching-blocks");
  assert.equal(githubSlug("snake_case stays, ünïcode too"), "snake_case-stays-ünïcode-too");
  assert.equal(githubSlug("[a link](x.md) in a heading"), "a-link-in-a-heading");
  assert.deepEqual([...anchorsOf("# A\n## A\ntext\n```\n# not a heading\n```\nB\n---\n<a id=\"custom\"></a>")], ["a", "a-1", "b", "custom"]);
});
