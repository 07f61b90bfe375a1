// What the console's browser scripts share: Debian's headless Chromium through
// playwright-core, the login, the checks, and a failure report (message, page, screenshot).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

/// Throws `what` unless `ok`.
export function check(ok, what) {
  if (!ok) throw new Error(what);
}

/// Runs `steps(page, context, shot)` in a new browser page; `shot(name)` writes
/// `<KAFCLAW_SCREENSHOTS>/<name>.png`. A failure is reported on stderr with the page's URL
/// and content and a `failure-<script>.png` screenshot, and sets the exit code to 1.
export async function run(script, steps) {
  const shots = process.env.KAFCLAW_SCREENSHOTS;
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
  });
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    page = await context.newPage();
    page.setDefaultTimeout(Number(process.env.KAFCLAW_STEP_TIMEOUT_MS || 90000));
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await steps(page, context, (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true }));
    check(errors.length === 0, `script errors: ${errors.join("; ")}`);
  } catch (e) {
    console.error(`${script}: ${e.stack || e}`);
    if (page) {
      console.error(`at ${page.url()}:\n${(await page.content().catch(() => "")).slice(0, 4000)}`);
      await page.screenshot({ path: join(shots, `failure-${script}.png`), fullPage: true }).catch(() => {});
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

/// Logs in at `base` with `token`; leaves the page on the Group page.
export async function logIn(page, base, token) {
  await page.goto(`${base}/console/login`);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/console/`), page.click("button[type=submit]")]);
}
