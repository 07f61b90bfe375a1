// Renders a Mermaid file to SVG with the mermaid library in headless Chromium (Debian's
// package), prints the SVG, and exits non-zero when Mermaid reports an error.
// Usage: node render.mjs graph.mmd > graph.svg        (CHROMIUM overrides /usr/bin/chromium)
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const text = readFileSync(process.argv[2], "utf8");
const dir = mkdtempSync(join(tmpdir(), "kafclaw-mermaid-"));
try {
  const page = join(dir, "render.html");
  writeFileSync(page, `<!doctype html><html><body>
<script src="file://${join(here, "node_modules/mermaid/dist/mermaid.min.js")}"></script>
<script>
mermaid.initialize({ startOnLoad: false });
mermaid.render("graph", ${JSON.stringify(text)})
  .then(r => { document.body.setAttribute("data-result", "ok"); document.body.insertAdjacentHTML("beforeend", r.svg); })
  .catch(e => { document.body.setAttribute("data-result", "error"); document.body.setAttribute("data-error", String(e && e.message || e)); });
</script></body></html>`);
  const dom = execFileSync(process.env.CHROMIUM || "/usr/bin/chromium", [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--user-data-dir=${join(dir, "profile")}`, "--allow-file-access-from-files",
    "--virtual-time-budget=15000", "--dump-dom", `file://${page}`,
  ], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 120000 });
  const result = /data-result="([^"]*)"/.exec(dom);
  if (!result || result[1] !== "ok") {
    const err = /data-error="([^"]*)"/.exec(dom);
    console.error("mermaid failed to render:", err ? err[1] : "no result (page did not run)");
    process.exit(1);
  }
  const svg = /<svg[\s\S]*<\/svg>/.exec(dom);
  if (!svg) {
    console.error("mermaid reported success but produced no SVG");
    process.exit(1);
  }
  process.stdout.write(svg[0] + "\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
