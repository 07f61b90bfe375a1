// Drives the console's Tasks pages in headless Chromium for engine/tests/kafka/console.rs:
// logs in, submits KAFCLAW_TASK from the Tasks page, follows the browser to the task's page,
// waits for the answer and for the causal chain graph to show a lane for each agent of
// KAFCLAW_AGENTS (comma-separated), then finds the task by its id and by its sender on the
// Tasks page. Prints `answered <task id>` then `done`; screenshots go to KAFCLAW_SCREENSHOTS.
//
// Environment: KAFCLAW_CONSOLE (base URL), KAFCLAW_TOKEN, KAFCLAW_TASK, KAFCLAW_AGENTS,
// KAFCLAW_SCREENSHOTS, CHROMIUM, KAFCLAW_STEP_TIMEOUT_MS.
import { check, logIn, run } from "./lib.mjs";

const base = process.env.KAFCLAW_CONSOLE;

await run("tasks", async (page, _context, shot) => {
  await logIn(page, base, process.env.KAFCLAW_TOKEN);
  await Promise.all([page.waitForURL(`${base}/console/tasks`), page.click('nav a[href="/console/tasks"]')]);
  await page.fill("#task-description", process.env.KAFCLAW_TASK);
  await Promise.all([page.waitForURL(/\/console\/tasks\/task-/), page.click("#submit-task button[type=submit]")]);
  const taskId = decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
  check((await page.locator("#task-id").textContent()) === taskId, "the page names another task");

  await page.locator('#task-status[data-status="completed"]').waitFor();
  for (const agent of process.env.KAFCLAW_AGENTS.split(",")) {
    await page.locator(`#chain-graph svg g[data-lane="${agent}"]`).waitFor();
  }
  const answer = await page.locator("#task-answer").textContent();
  check(answer.trim().length > 0 && !answer.includes("No answer yet"), `the answer: ${answer}`);
  // The memory item the answer used, with who wrote it, is part of the chain.
  await page.locator('#chain tbody tr[data-type="memory"]').first().waitFor();
  await shot("task");
  console.log(`answered ${taskId}`);

  await page.goto(`${base}/console/tasks?q=${encodeURIComponent(taskId)}`);
  await page.locator(`#tasks tr[data-task-id="${taskId}"]`).waitFor();
  check((await page.locator("#tasks tbody tr").count()) === 1, "the search by id lists other tasks");
  await shot("tasks");
  await page.fill("#task-query", "nobody-asked-this");
  await page.click("#search-tasks button[type=submit]");
  await page.locator("#tasks tbody td", { hasText: "No task matches." }).waitFor();
  // A task submitted without the CSRF token is refused.
  const refused = await page.evaluate(async () =>
    (await fetch("/console/api/tasks", { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"description":"x"}' })).status);
  check(refused === 403, `a task without the CSRF token answered ${refused}`);
  console.log("done");
});
