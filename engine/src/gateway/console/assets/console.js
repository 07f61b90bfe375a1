// The kafclaw console's script: refreshes the live parts of a page from the console's JSON
// routes, and sends state-changing requests with the session's CSRF token. Everything a
// member wrote (names, skills, summaries) goes into the page as text, never as markup.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

/// A POST to the console with the CSRF token.
function post(path, body) {
  return fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/// An element `tag` with `text` (as text) and `attrs`.
function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/// A table row that says `text` across `columns` columns.
function emptyRow(text, columns) {
  const tr = el("tr");
  tr.append(el("td", text, { colspan: String(columns), class: "muted" }));
  return tr;
}

/// "12 s ago", "3 min ago", from milliseconds.
function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

async function getJson(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) {
    window.location.assign("/console/login");
    throw new Error("the session ended");
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

/// The Group page: the members table, refreshed every 2 s.
function groupPage() {
  const body = document.querySelector("#members tbody");
  const status = document.getElementById("members-status");
  if (!body) return;
  async function refresh() {
    try {
      const data = await getJson("/console/api/members");
      const rows = data.members.map((m) => {
        const tr = el("tr", null, { "data-agent-id": m.agent_id });
        const who = el("td");
        who.append(el("strong", m.agent_id));
        if (m.agent_name && m.agent_name !== m.agent_id) who.append(el("div", m.agent_name, { class: "muted" }));
        if (m.summary) who.append(el("div", m.summary, { class: "muted" }));
        const skills = el("td", null, { class: "skills" });
        for (const s of m.skills) skills.append(el("span", s, { class: "skill" }));
        tr.append(
          who,
          skills,
          el("td", m.zone ?? "—"),
          el("td", m.role ?? "—"),
          el("td", m.model ?? "—"),
          el("td", m.joined_at ?? "—"),
          el("td", ago(data.now_ms - m.last_seen_ms), { title: m.last_seen, class: "last-seen" }),
        );
        return tr;
      });
      body.replaceChildren(...rows);
      if (rows.length === 0) body.append(emptyRow("No live member.", 7));
      status.className = "status";
      status.textContent = `${data.members.length} live member(s); a member silent for ${data.ttl_ms / 1000} s has left. Updated ${new Date(data.now_ms).toLocaleTimeString()}.`;
    } catch (e) {
      status.className = "status stale";
      status.textContent = `Not updated: ${e.message}`;
    }
  }
  refresh();
  setInterval(refresh, 2000);
}


/// The Approvals page: the pending requests, refreshed every 3 s; approve or reject (the
/// decision is written with this session's identity as the approver).
function approvalsPage() {
  const body = document.querySelector("#approvals tbody");
  const status = document.getElementById("approvals-status");
  const notice = document.getElementById("approvals-notice");
  if (!body) return;
  let busy = false;
  const reasons = new Map();
  async function decide(id, action, reason) {
    busy = true;
    try {
      const r = await post(`/console/api/approvals/${encodeURIComponent(id)}/${action}`, { reason });
      const answer = await r.json().catch(() => ({}));
      notice.className = r.ok ? "notice" : "notice error";
      notice.textContent = r.ok ? `${id}: ${action === "approve" ? "approved" : "rejected"}.` : `${id}: ${answer.error ?? `HTTP ${r.status}`}`;
    } finally {
      busy = false;
      refresh();
    }
  }
  async function refresh() {
    if (busy) return;
    try {
      const data = await getJson("/console/api/approvals");
      const rows = data.approvals.map((a) => {
        const tr = el("tr", null, { "data-request-id": a.request_id });
        const what = el("td");
        what.append(el("div", a.summary ?? ""));
        if (a.tool) {
          what.append(el("div", `tool ${a.tool}`, { class: "muted" }));
          what.append(el("pre", JSON.stringify(a.arguments, null, 2), { class: "args" }));
        }
        const actions = el("td", null, { class: "actions" });
        const reason = el("input", null, { type: "text", placeholder: "reason (optional)", "aria-label": "reason" });
        reason.value = reasons.get(a.request_id) ?? "";
        reason.addEventListener("input", () => reasons.set(a.request_id, reason.value));
        const approve = el("button", "Approve", { type: "button", class: "primary approve" });
        const reject = el("button", "Reject", { type: "button", class: "reject" });
        approve.addEventListener("click", () => decide(a.request_id, "approve", reason.value));
        reject.addEventListener("click", () => decide(a.request_id, "reject", reason.value));
        actions.append(reason, approve, reject);
        tr.append(
          el("td", a.request_id),
          el("td", a.agent),
          what,
          el("td", `${a.requested_at} (${a.age_s} s ago)`),
          el("td", a.expires_at ?? "—"),
          actions,
        );
        return tr;
      });
      // Keep a row someone is typing a reason in.
      if (body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
      body.replaceChildren(...rows);
      if (rows.length === 0) body.append(emptyRow("Nothing waits for a decision.", 6));
      status.className = "status";
      status.textContent = `${data.approvals.length} pending. Updated ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      status.className = "status stale";
      status.textContent = `Not updated: ${e.message}`;
    }
  }
  refresh();
  setInterval(refresh, 3000);
}

/// The Tasks page: submit a task, search the tasks, refreshed every 3 s.
function tasksPage() {
  const body = document.querySelector("#tasks tbody");
  if (!body) return;
  const status = document.getElementById("tasks-status");
  const query = document.getElementById("task-query");
  query.value = new URLSearchParams(window.location.search).get("q") ?? "";
  async function refresh() {
    try {
      const data = await getJson(`/console/api/tasks?q=${encodeURIComponent(query.value.trim())}`);
      const rows = data.tasks.map((t) => {
        const tr = el("tr", null, { "data-task-id": t.correlation_id });
        const link = el("a", t.correlation_id, { href: `/console/tasks/${encodeURIComponent(t.correlation_id)}`, class: "task" });
        const cell = el("td");
        cell.append(link);
        tr.append(cell, el("td", t.sender_id), el("td", t.timestamp), el("td", t.description), el("td", t.latest ?? "pending"));
        return tr;
      });
      body.replaceChildren(...rows);
      if (rows.length === 0) body.append(emptyRow(query.value.trim() ? "No task matches." : "No task yet.", 5));
      status.className = "status";
      status.textContent = `${data.tasks.length} task(s), newest first. Updated ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      status.className = "status stale";
      status.textContent = `Not updated: ${e.message}`;
    }
  }
  document.getElementById("search-tasks").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = query.value.trim();
    history.replaceState(null, "", q ? `?q=${encodeURIComponent(q)}` : window.location.pathname);
    refresh();
  });
  document.getElementById("submit-task").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const notice = document.getElementById("submit-notice");
    const description = document.getElementById("task-description").value;
    const skill = document.getElementById("task-skill").value;
    const r = await post("/console/api/tasks", skill ? { description, skill } : { description });
    const answer = await r.json().catch(() => ({}));
    if (r.status === 202) {
      window.location.assign(`/console/tasks/${encodeURIComponent(answer.task_id)}`);
    } else {
      notice.className = "notice error";
      notice.textContent = answer.error ?? `HTTP ${r.status}`;
    }
  });
  refresh();
  setInterval(refresh, 3000);
}

const SVG = "http://www.w3.org/2000/svg";

/// An SVG element `tag` with `attrs` (and `text` as text).
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/// The causal chain as a graph: a lane per agent (who sent the envelope, or wrote the memory
/// item), a node per entry in time order, an edge from each entry to what it caused
/// (`causation_id`) and from each memory item to the answers that used it.
function chainGraph(chain) {
  const lanes = [];
  for (const e of chain) if (!lanes.includes(e.sender_id)) lanes.push(e.sender_id);
  const laneW = 220, rowH = 44, top = 46;
  const width = Math.max(lanes.length * laneW, 400), height = top + chain.length * rowH + 10;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "causal chain" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#1f5fbf" }));
  defs.append(marker);
  root.append(defs);
  const x = (sender) => lanes.indexOf(sender) * laneW + 24;
  lanes.forEach((name, i) => {
    const g = svg("g", { "data-lane": name });
    g.append(svg("text", { x: i * laneW + 12, y: 20, class: "lane-name" }, name.length > 28 ? `${name.slice(0, 27)}…` : name));
    g.append(svg("line", { x1: i * laneW + 24, y1: 30, x2: i * laneW + 24, y2: height - 4, class: "lane" }));
    root.append(g);
  });
  const at = new Map();
  chain.forEach((e, row) => {
    const key = e.id ?? `row-${row}`;
    at.set(key, { x: x(e.sender_id), y: top + row * rowH + 12 });
    if (e.payload?.item_id) at.set(e.payload.item_id, at.get(key));
  });
  const edge = (from, to) => {
    if (!from || !to) return;
    const bend = (to.x - from.x) / 2;
    root.append(svg("path", { d: `M ${from.x} ${from.y} C ${from.x + bend} ${from.y}, ${to.x - bend} ${to.y}, ${to.x} ${to.y - 8}`, class: "edge", "marker-end": "url(#arrow)" }));
  };
  chain.forEach((e, row) => {
    const here = at.get(e.id ?? `row-${row}`);
    if (e.causation_id) edge(at.get(e.causation_id), here);
    for (const m of e.payload?.memories ?? []) edge(at.get(m.id), here);
  });
  chain.forEach((e, row) => {
    const here = at.get(e.id ?? `row-${row}`);
    const kind = e.kind === "memory" ? "memory" : /response|task_status/.test(e.type) ? "answer" : "ask";
    const g = svg("g", { "data-entry": e.type, "data-sender": e.sender_id });
    g.append(svg("circle", { cx: here.x, cy: here.y, r: 6, class: `node ${kind}` }));
    const text = String(e.text ?? "");
    g.append(svg("text", { x: here.x + 12, y: here.y + 4 }, `${e.type}: ${text.length > 34 ? `${text.slice(0, 33)}…` : text}`));
    g.append(svg("title", {}, e.what));
    root.append(g);
  });
  return root;
}

/// A task's page: its status and answer (the gateway's view), its causal chain (the
/// timeline) as a graph and a table, and its trace spans; refreshed every 2 s.
function taskPage() {
  const idEl = document.getElementById("task-id");
  if (!idEl) return;
  const id = encodeURIComponent(idEl.dataset.taskId);
  const status = document.getElementById("task-status");
  const ended = new Set(["completed", "failed", "rejected", "canceled", "no_answer", "budget_exceeded"]);
  let shown = "";
  let lastRefresh = 0;
  let over = false;
  async function refresh() {
    // A task that ended changes little: every 15 s then.
    if (over && Date.now() - lastRefresh < 15000) return;
    lastRefresh = Date.now();
    try {
      const [state, chain, spans] = await Promise.all([
        getJson(`/console/api/tasks/${id}/status`),
        getJson(`/console/api/tasks/${id}/chain`),
        getJson(`/console/api/tasks/${id}/trace`),
      ]);
      status.className = "status";
      status.textContent = `Status: ${state.status}. ${chain.chain.length} event(s) in the chain. Updated ${new Date().toLocaleTimeString()}.`;
      status.dataset.status = state.status;
      over = ended.has(state.status);
      const answer = document.getElementById("task-answer");
      if (state.result) {
        answer.className = "answer";
        answer.textContent = state.result;
      }
      const fingerprint = JSON.stringify(chain.chain.map((e) => [e.id, e.type]));
      if (fingerprint !== shown) {
        shown = fingerprint;
        document.getElementById("chain-graph").replaceChildren(chainGraph(chain.chain));
        document.querySelector("#chain tbody").replaceChildren(
          ...chain.chain.map((e) => {
            const tr = el("tr", null, { "data-type": e.type });
            tr.append(el("td", e.timestamp), el("td", e.sender_id), el("td", e.text), el("td", e.kind === "memory" ? "memory used" : e.type));
            return tr;
          }),
        );
      }
      document.querySelector("#spans tbody").replaceChildren(
        ...spans.map((s) => {
          const p = s.payload ?? {};
          const tr = el("tr");
          const content = typeof p.content === "string" ? p.content : JSON.stringify(p.content ?? "");
          tr.append(el("td", p.started_at ?? s.timestamp), el("td", s.sender_id), el("td", p.title ?? p.span_type ?? ""), el("td", typeof p.duration_ms === "number" ? `${p.duration_ms} ms` : "—"), el("td", content.slice(0, 300)));
          return tr;
        }),
      );
    } catch (e) {
      status.className = "status stale";
      status.textContent = `Not updated: ${e.message}`;
    }
  }
  refresh();
  setInterval(refresh, 2000);
}

/// The Dead letters page: a topic's newest letters, filtered by reason, each with its error
/// headers and the failed record, which can be resubmitted as it is or corrected.
function deadLettersPage() {
  const body = document.querySelector("#letters tbody");
  if (!body) return;
  const topic = document.getElementById("letters-topic");
  const reasonSel = document.getElementById("letters-reason");
  const status = document.getElementById("letters-status");
  const notice = document.getElementById("letters-notice");
  let letters = [];
  let loadedTopic = "";
  let loads = 0;
  function render() {
    const want = reasonSel.value;
    const rows = letters.filter((l) => !want || l.reason === want).map((l) => {
      const id = `${l.partition}-${l.offset}`;
      const tr = el("tr", null, { "data-letter": id });
      const where = el("td");
      where.append(el("div", `partition ${l.partition} offset ${l.offset}`));
      if (l.timestamp_ms) where.append(el("div", new Date(l.timestamp_ms).toISOString(), { class: "muted" }));
      const error = el("td");
      error.append(el("div", l.error ?? "", { class: "error" }));
      const dl = el("dl", null, { class: "headers" });
      for (const [k, v] of Object.entries(l.headers)) dl.append(el("dt", k), el("dd", v));
      error.append(dl);
      const record = el("td");
      const area = el("textarea", null, { class: "record", "aria-label": "record", spellcheck: "false" });
      area.value = l.value;
      // Only a typed change is a correction (a textarea rewrites line ends); a record shown in
      // part, or not text, goes back only as it is.
      let edited = false;
      area.readOnly = Boolean(l.preview || l.binary);
      area.addEventListener("input", () => { edited = true; });
      const send = el("button", l.cut ? "Resubmit corrected" : "Resubmit", { type: "button", class: "primary resubmit" });
      const from = loadedTopic;
      send.addEventListener("click", async () => {
        send.disabled = true;
        try {
          const ask = { topic: from, partition: l.partition, offset: l.offset };
          if (edited) ask.value = area.value;
          const r = await post("/console/api/dead-letters/resubmit", ask);
          const answer = await r.json().catch(() => ({}));
          notice.className = r.ok ? "notice" : "notice error";
          notice.textContent = r.ok
            ? `Letter ${id} resubmitted${edited ? " (corrected)" : ""} to ${answer.resubmitted.topic} partition ${answer.resubmitted.partition} offset ${answer.resubmitted.offset}.`
            : `Letter ${id}: ${answer.error ?? `HTTP ${r.status}`}`;
        } finally {
          send.disabled = false;
        }
      });
      record.append(area);
      if (l.cut) record.append(el("div", "Only a cut copy was kept: correct it before resubmitting.", { class: "muted" }));
      if (l.preview) record.append(el("div", "Shown in part (16 KB): it can be resubmitted as it is.", { class: "muted" }));
      record.append(send);
      tr.append(where, el("td", l.reason), error, record);
      return tr;
    });
    body.replaceChildren(...rows);
    if (rows.length === 0) body.append(emptyRow("No dead letter.", 4));
  }
  async function load() {
    const mine = ++loads;
    body.replaceChildren();
    try {
      const data = await getJson(`/console/api/dead-letters?topic=${encodeURIComponent(topic.value)}`);
      // A slower answer to an earlier choice of topic is dropped.
      if (mine !== loads) return;
      letters = data.letters;
      loadedTopic = data.topic;
      const reasons = [...new Set(letters.map((l) => l.reason))].sort();
      const keep = reasonSel.value;
      reasonSel.replaceChildren(el("option", "any", { value: "" }), ...reasons.map((r) => el("option", r, { value: r })));
      reasonSel.value = reasons.includes(keep) ? keep : "";
      render();
      status.className = "status";
      status.textContent = `${letters.length} letter(s) of ${data.topic}, newest first. Loaded ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      status.className = "status stale";
      status.textContent = `Not loaded: ${e.message}`;
    }
  }
  topic.addEventListener("change", load);
  reasonSel.addEventListener("change", render);
  document.getElementById("letters-reload").addEventListener("click", load);
  load();
}

/// "1.2/s", "340/s", from a rate.
function perSecond(x) {
  return `${x >= 10 ? Math.round(x) : Math.round(x * 10) / 10}/s`;
}

/// A topology's graph (the nodes and edges of `kafclaw graph`), laid out left to right by
/// depth, each operator with its records in and out per second and dead letters, each Kafka
/// source with its lag.
function planGraph(t) {
  const { nodes, edges } = t.graph ?? { nodes: [], edges: [] };
  const depth = nodes.map(() => 0);
  for (let round = 0; round < nodes.length; round++) {
    for (const e of edges) depth[e.to] = Math.max(depth[e.to], depth[e.from] + 1);
  }
  const rows = new Map();
  const at = nodes.map((_, i) => {
    const row = rows.get(depth[i]) ?? 0;
    rows.set(depth[i], row + 1);
    return { x: 16 + depth[i] * 220, y: 16 + row * 78 };
  });
  const w = 180, h = 56;
  const width = Math.max(...at.map((p) => p.x), 0) + w + 20, height = Math.max(...at.map((p) => p.y), 0) + h + 20;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `graph of ${t.topology}` });
  for (const e of edges) {
    const a = at[e.from], b = at[e.to];
    const x1 = a.x + w, y1 = a.y + h / 2, x2 = b.x, y2 = b.y + h / 2;
    root.append(svg("path", { d: `M ${x1} ${y1} C ${x1 + 30} ${y1}, ${x2 - 30} ${y2}, ${x2} ${y2}`, class: "edge" }));
  }
  const lagOf = (topic) => t.partitions.filter((p) => p.topic === topic).reduce((s, p) => s + p.lag, 0);
  nodes.forEach((n, i) => {
    const p = at[i];
    const op = t.operators[n.name];
    const dead = t.dead_letters[n.name] ?? 0;
    const g = svg("g", { "data-node": n.name });
    g.append(svg("rect", { x: p.x, y: p.y, width: w, height: h, rx: 6, class: `box ${n.role}${dead ? " dead" : ""}` }));
    g.append(svg("text", { x: p.x + 8, y: p.y + 17 }, n.name.length > 24 ? `${n.name.slice(0, 23)}…` : n.name));
    g.append(svg("text", { x: p.x + 8, y: p.y + 31, class: "rate" }, `${n.role} ${n.kind}`));
    const figures = [];
    if (op) figures.push(`in ${perSecond(op.in_per_s)} · out ${perSecond(op.out_per_s)}`);
    if (n.role === "source" && n.topic) figures.push(`lag ${lagOf(n.topic)}`);
    if (dead) figures.push(`${dead} dead`);
    g.append(svg("text", { x: p.x + 8, y: p.y + 46, class: "rate" }, figures.join(" · ")));
    if (n.topic) g.append(svg("title", {}, n.topic));
    root.append(g);
  });
  return root;
}

/// The Topologies page: every running topology's graph and figures, refreshed every 2 s.
function topologiesPage() {
  const list = document.getElementById("topologies");
  if (!list) return;
  const status = document.getElementById("topologies-status");
  async function refresh() {
    try {
      const data = await getJson("/console/api/topologies");
      list.replaceChildren(
        ...data.topologies.map((t) => {
          const card = el("section", null, { class: "topology", "data-topology": t.topology });
          card.append(el("h2", t.topology));
          const figures = el("div", null, { class: "figures" });
          const figure = (name, value) => {
            const f = el("span", `${name} `, { "data-figure": name });
            f.append(el("strong", value));
            figures.append(f);
          };
          figure("instances", String(t.instances.length));
          figure("consumed", perSecond(t.consumed_per_s));
          figure("produced", perSecond(t.produced_per_s));
          figure("lag", String(t.lag));
          figure("dead letters", perSecond(t.dead_letters_per_s));
          figure("commits", perSecond(t.commits_per_s));
          figure("model calls in flight", String(t.model_calls_in_flight));
          const plan = el("div", null, { class: "plan" });
          plan.append(planGraph(t));
          card.append(figures, plan);
          return card;
        }),
      );
      if (data.topologies.length === 0) list.append(el("p", "No topology of this group runs now.", { class: "muted" }));
      status.className = "status";
      status.textContent = `${data.topologies.length} running topolog${data.topologies.length === 1 ? "y" : "ies"}. Updated ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      status.className = "status stale";
      status.textContent = `Not updated: ${e.message}`;
    }
  }
  refresh();
  setInterval(refresh, 2000);
}

document.getElementById("logout")?.addEventListener("click", async () => {
  await post("/console/logout");
  window.location.assign("/console/login");
});

groupPage();
approvalsPage();
tasksPage();
taskPage();
deadLettersPage();
topologiesPage();
