// Preload for @modelcontextprotocol/conformance on Node 20:
//   node --import ./node20-shim.mjs node_modules/@modelcontextprotocol/conformance/dist/index.js ...
//
// conformance@0.1.16 does `import { globSync } from "fs"` (fs.globSync is Node >= 22),
// so on Node 20 the ES module fails to link before any code runs. Patching
// require("fs") from a --require preload is not enough (the ESM facade of a
// builtin has a fixed export list), so this registers a resolve/load hook that
// serves `fs`/`node:fs` imports from a tiny module re-exporting node:fs plus a
// minimal globSync. On Node >= 22 it does nothing.
// conformance only calls globSync("**/checks.json", { cwd }) in `tier-check`;
// server/client scenarios merely need the export to exist.
import fs from "node:fs";
import { register } from "node:module";

const HOOKS_FLAG = "node20-shim-hooks";
const VIRTUAL_FS = "node20-shim:fs";

const loadedAsHooks = new URL(import.meta.url).searchParams.has(HOOKS_FLAG);
if (!loadedAsHooks && typeof fs.globSync !== "function") {
  register(`${import.meta.url}?${HOOKS_FLAG}`);
}

export async function resolve(specifier, context, nextResolve) {
  if ((specifier === "fs" || specifier === "node:fs") && context.parentURL !== VIRTUAL_FS) {
    return { url: VIRTUAL_FS, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}

export async function load(url, context, nextLoad) {
  if (url !== VIRTUAL_FS) return nextLoad(url, context);
  const source = `
export * from "node:fs";
import fs from "node:fs";
import path from "node:path";
export default fs;
// Minimal globSync: "*", "?", "**/" only; returns paths relative to cwd.
export function globSync(pattern, options = {}) {
  const cwd = options.cwd ? String(options.cwd) : process.cwd();
  const patterns = Array.isArray(pattern) ? pattern : [pattern];
  const toRe = (p) => new RegExp("^" + p.split("/").map((seg) => seg === "**" ? "\\u0000" :
      seg.replace(/[.+^$()|[\\]{}\\\\]/g, "\\\\$&").replace(/\\*/g, "[^/]*").replace(/\\?/g, "[^/]"))
    .join("/").replace(/\\u0000\\//g, "(?:.*/)?").replace(/\\u0000/g, ".*") + "$");
  const res = patterns.map(toRe);
  let entries;
  try { entries = fs.readdirSync(cwd, { recursive: true }); } catch { return []; }
  return entries.map((e) => String(e).split(path.sep).join("/")).filter((e) => res.some((r) => r.test(e)));
}
`;
  return { format: "module", source, shortCircuit: true };
}
