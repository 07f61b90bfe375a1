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

document.getElementById("logout")?.addEventListener("click", async () => {
  await post("/console/logout");
  window.location.assign("/console/login");
});

groupPage();
approvalsPage();
