// Drives the kafclaw web console in headless Chromium (Debian's, through playwright-core) for
// engine/tests/kafka/console.rs. Steps, each announced on stdout as one line so the Rust test
// can act between them:
//   ready    logged in (after a wrong token was refused); the Group page is open
//   joined   the agent KAFCLAW_AGENT_ID appeared on the page without a reload
//   expired  it disappeared again (the test killed it; no leave was sent)
//   approved <id>  the pending approval whose summary is KAFCLAW_APPROVAL_SUMMARY was approved
//            from the Approvals page (a second decision: 409; one without the CSRF token: 403)
//   done     logout without the CSRF token was refused, with it the session ended
// Screenshots of each page go to KAFCLAW_SCREENSHOTS. Any failure: a message on stderr, exit 1.
//
// Environment: KAFCLAW_CONSOLE (base URL), KAFCLAW_TOKEN, KAFCLAW_AGENT_ID,
// KAFCLAW_SCREENSHOTS, CHROMIUM (default /usr/bin/chromium), KAFCLAW_STEP_TIMEOUT_MS.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.KAFCLAW_CONSOLE;
const token = process.env.KAFCLAW_TOKEN;
const agent = process.env.KAFCLAW_AGENT_ID;
const shots = process.env.KAFCLAW_SCREENSHOTS;
const timeout = Number(process.env.KAFCLAW_STEP_TIMEOUT_MS || 90000);
mkdirSync(shots, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(what);
}

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
  page.setDefaultTimeout(timeout);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // Without a session the console sends the browser to its login page.
  await page.goto(`${base}/console/`);
  check(new URL(page.url()).pathname === "/console/login", `not sent to the login page: ${page.url()}`);
  await page.screenshot({ path: join(shots, "login.png") });

  // A wrong token is refused on the page.
  await page.fill("#token", `${token}-wrong`);
  await Promise.all([page.waitForLoadState(), page.click("button[type=submit]")]);
  await page.getByRole("alert").filter({ hasText: "not one of this gateway" }).waitFor();
  await page.screenshot({ path: join(shots, "login-refused.png") });

  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/console/`), page.click("button[type=submit]")]);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "kafclaw_console");
  check(session, `no session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
  check(session.httpOnly && session.sameSite === "Strict", `cookie flags: ${JSON.stringify(session)}`);
  check(!session.value.includes(token), "the cookie holds the token");
  check((await page.evaluate(() => document.cookie)) === "", "a script can read the session cookie");
  // A marker that a reload or navigation would wipe.
  await page.evaluate(() => { window.__kafclawNoReload = true; });
  await page.locator("#members-status").filter({ hasText: "live member" }).waitFor();
  console.log("ready");

  const row = page.locator(`#members tr[data-agent-id="${agent}"]`);
  await row.waitFor({ state: "visible" });
  const skills = await row.locator(".skill").allTextContents();
  check(skills.includes("echo"), `the agent's skills: ${JSON.stringify(skills)}`);
  check(/\d+ s ago/.test(await row.locator(".last-seen").textContent()), "no last heartbeat shown");
  check(await page.evaluate(() => window.__kafclawNoReload === true), "the page was reloaded");
  await page.screenshot({ path: join(shots, "group-joined.png"), fullPage: true });
  console.log("joined");

  await row.waitFor({ state: "detached" });
  check(await page.evaluate(() => window.__kafclawNoReload === true), "the page was reloaded");
  await page.screenshot({ path: join(shots, "group-expired.png"), fullPage: true });
  console.log("expired");

  // Approvals: the pending request of KAFCLAW_APPROVAL_SUMMARY is approved from the page.
  await Promise.all([page.waitForURL(`${base}/console/approvals`), page.click('nav a[href="/console/approvals"]')]);
  const ask = page.locator("#approvals tbody tr", { hasText: process.env.KAFCLAW_APPROVAL_SUMMARY });
  await ask.waitFor({ state: "visible" });
  await page.screenshot({ path: join(shots, "approvals.png"), fullPage: true });
  const requestId = await ask.getAttribute("data-request-id");
  await ask.locator("input").fill("checked in the console test");
  await ask.locator("button.approve").click();
  await page.locator("#approvals-notice").filter({ hasText: `${requestId}: approved` }).waitFor();
  await page.locator(`#approvals tr[data-request-id="${requestId}"]`).waitFor({ state: "detached" });
  await page.screenshot({ path: join(shots, "approvals-decided.png"), fullPage: true });
  console.log(`approved ${requestId}`);
  // Deciding it again is refused (the first decision stands), and says so.
  const again = await page.evaluate(async (id) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch(`/console/api/approvals/${id}/reject`, { method: "POST", headers: { "X-CSRF-Token": csrf } });
    return r.status;
  }, requestId);
  check(again === 409, `a second decision answered ${again}`);
  const forged = await page.evaluate(async (id) => (await fetch(`/console/api/approvals/${id}/approve`, { method: "POST" })).status, requestId);
  check(forged === 403, `a decision without the CSRF token answered ${forged}`);

  // A state-changing request without the CSRF token is refused, from the page itself.
  const refused = await page.evaluate(async () => (await fetch("/console/logout", { method: "POST" })).status);
  check(refused === 403, `logout without the CSRF token answered ${refused}`);
  const stillIn = await page.evaluate(async () => (await fetch("/console/api/members")).status);
  check(stillIn === 200, `after the refused logout: ${stillIn}`);
  await Promise.all([page.waitForURL(`${base}/console/login`), page.click("#logout")]);
  const after = await page.evaluate(async () => (await fetch("/console/api/members")).status);
  check(after === 401, `after logout the members answered ${after}`);
  check(errors.length === 0, `script errors: ${errors.join("; ")}`);
  console.log("done");
} catch (e) {
  console.error(`console test: ${e.stack || e}`);
  if (page) {
    console.error(`at ${page.url()}:\n${(await page.content().catch(() => "")).slice(0, 4000)}`);
    await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
