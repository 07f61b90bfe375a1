// Drives the kafclaw web console in headless Chromium (Debian's, through playwright-core) for
// engine/tests/kafka/console.rs. Steps, each announced on stdout as one line so the Rust test
// can act between them:
//   ready    logged in (after a wrong token was refused); the Group page is open
//   joined   the agent KAFCLAW_AGENT_ID appeared on the page without a reload
//   expired  it disappeared again (the test killed it; no leave was sent)
//   approved <id>  the pending approval whose summary is KAFCLAW_APPROVAL_SUMMARY was approved
//            from the Approvals page (a second decision: 409; one without the CSRF token: 403)
//   (the Topologies page shows KAFCLAW_TOPOLOGY's graph and its dead letter on the way)
//   resubmitted <partition>-<offset>  the dead letter of the topology was shown with its
//            headers, corrected to KAFCLAW_DLQ_FIX and resubmitted from the Dead letters page
//   done     logout without the CSRF token was refused, with it the session ended
// Screenshots of each page go to KAFCLAW_SCREENSHOTS. Any failure: a message on stderr, exit 1.
//
// Environment: KAFCLAW_CONSOLE (base URL), KAFCLAW_TOKEN, KAFCLAW_AGENT_ID,
// KAFCLAW_APPROVAL_SUMMARY, KAFCLAW_DLQ_FIX, KAFCLAW_TOPOLOGY, KAFCLAW_SCREENSHOTS, CHROMIUM (default /usr/bin/chromium),
// KAFCLAW_STEP_TIMEOUT_MS.
import { check, run } from "./lib.mjs";

const base = process.env.KAFCLAW_CONSOLE;
const token = process.env.KAFCLAW_TOKEN;
const agent = process.env.KAFCLAW_AGENT_ID;

await run("console", async (page, context, shot) => {
  // Without a session the console sends the browser to its login page.
  await page.goto(`${base}/console/`);
  check(new URL(page.url()).pathname === "/console/login", `not sent to the login page: ${page.url()}`);
  await shot("login");

  // A wrong token is refused on the page.
  await page.fill("#token", `${token}-wrong`);
  await Promise.all([page.waitForLoadState(), page.click("button[type=submit]")]);
  await page.getByRole("alert").filter({ hasText: "not one of this gateway" }).waitFor();
  await shot("login-refused");

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
  await shot("group-joined");
  console.log("joined");

  await row.waitFor({ state: "detached" });
  check(await page.evaluate(() => window.__kafclawNoReload === true), "the page was reloaded");
  await shot("group-expired");
  console.log("expired");

  // Approvals: the pending request of KAFCLAW_APPROVAL_SUMMARY is approved from the page.
  await Promise.all([page.waitForURL(`${base}/console/approvals`), page.click('nav a[href="/console/approvals"]')]);
  const ask = page.locator("#approvals tbody tr", { hasText: process.env.KAFCLAW_APPROVAL_SUMMARY });
  await ask.waitFor({ state: "visible" });
  await shot("approvals");
  const requestId = await ask.getAttribute("data-request-id");
  await ask.locator("input").fill("checked in the console test");
  await ask.locator("button.approve").click();
  await page.locator("#approvals-notice").filter({ hasText: `${requestId}: approved` }).waitFor();
  await page.locator(`#approvals tr[data-request-id="${requestId}"]`).waitFor({ state: "detached" });
  await shot("approvals-decided");
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

  // Topologies: the refunds topology runs, its graph drawn with its nodes, its dead letter
  // counted on the source that read it.
  await Promise.all([page.waitForURL(`${base}/console/topologies`), page.click('nav a[href="/console/topologies"]')]);
  const topology = page.locator(`section.topology[data-topology="${process.env.KAFCLAW_TOPOLOGY}"]`);
  await topology.waitFor();
  for (const node of ["refunds", "decisions", "review", "asks", "approved"]) {
    await topology.locator(`svg g[data-node="${node}"]`).waitFor();
  }
  await topology.locator('svg g[data-node="refunds"] text', { hasText: "1 dead" }).waitFor();
  await topology.locator('svg g[data-node="review"] text', { hasText: "in " }).waitFor();
  check((await topology.locator('[data-figure="instances"] strong').textContent()) === "1", "one instance");
  await shot("topologies");

  // Dead letters: the malformed refund is shown with its error headers, corrected in the
  // page and resubmitted.
  await Promise.all([page.waitForURL(`${base}/console/dead-letters`), page.click('nav a[href="/console/dead-letters"]')]);
  const letter = page.locator("#letters tbody tr[data-letter]").first();
  await letter.waitFor();
  const headers = await letter.locator("dl.headers dt").allTextContents();
  for (const h of ["kafclaw.error", "kafclaw.stage", "kafclaw.location", "kafclaw.offset"]) {
    check(headers.includes(h), `the letter's headers: ${JSON.stringify(headers)}`);
  }
  check((await letter.locator("td").nth(1).textContent()) === "decode", "the letter's reason");
  await page.selectOption("#letters-reason", "decode");
  await shot("dead-letters");
  const letterId = await letter.getAttribute("data-letter");
  await letter.locator("textarea").fill(process.env.KAFCLAW_DLQ_FIX);
  await letter.locator("button.resubmit").click();
  await page.locator("#letters-notice").filter({ hasText: `Letter ${letterId} resubmitted (corrected)` }).waitFor();
  await shot("dead-letters-resubmitted");
  console.log(`resubmitted ${letterId}`);
  const unlisted = await page.evaluate(async () => (await fetch("/console/api/dead-letters?topic=__consumer_offsets")).status);
  check(unlisted === 404, `a topic the gateway was not given answered ${unlisted}`);

  // A state-changing request without the CSRF token is refused, from the page itself.
  const refused = await page.evaluate(async () => (await fetch("/console/logout", { method: "POST" })).status);
  check(refused === 403, `logout without the CSRF token answered ${refused}`);
  const stillIn = await page.evaluate(async () => (await fetch("/console/api/members")).status);
  check(stillIn === 200, `after the refused logout: ${stillIn}`);
  await Promise.all([page.waitForURL(`${base}/console/login`), page.click("#logout")]);
  const after = await page.evaluate(async () => (await fetch("/console/api/members")).status);
  check(after === 401, `after logout the members answered ${after}`);
  console.log("done");
});
