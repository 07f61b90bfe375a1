// Parses a Mermaid file with the mermaid library and exits non-zero on a syntax error.
// Usage: node check.mjs graph.mmd
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const k of ["Element", "HTMLElement", "Node", "DOMParser", "navigator"]) {
  if (!(k in globalThis)) Object.defineProperty(globalThis, k, { value: dom.window[k], configurable: true });
}
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
const text = readFileSync(process.argv[2], "utf8");
try {
  const result = await mermaid.parse(text);
  if (!result || result.diagramType !== "flowchart-v2") {
    console.error("unexpected diagram type", result && result.diagramType);
    process.exit(1);
  }
  console.log("ok", result.diagramType);
} catch (e) {
  console.error(String(e && e.message ? e.message : e));
  process.exit(1);
}
