//! The timeline and `kafclaw trace` on a real broker, with separate processes: agent A (a
//! kafclaw topology whose model delegates) asks agent B (the billing skill, which searches the
//! group's shared memory) and B answers using a memory item written by C. `kafclaw timeline`
//! follows the group's topics into SQLite; `kafclaw trace <task>` prints the three-agent chain
//! from one query.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

/// Agents A and B of group `group` (created here with skill `billing`), as processes logging
/// to `dir/a.log` and `dir/b.log`: A (a kafclaw topology whose model, `server`, delegates
/// `delegate ask-billing: …` requests of `group.<g>.requests`) asks B (the billing skill, which
/// searches the group's shared memory), and B answers using the memory item `mem-c1` written
/// by C; A answers on `group.<g>.responses` as `agent-a` (its delegations are sent as its
/// topology's name, returned first).
pub(crate) fn delegating_agents(dir: &Path, group: &str, server: &FakeOpenAi) -> (String, Instance, Instance) {
    let (a_app, b_app) = (unique("agent-a"), unique("agent-b"));
    let g = |t: &str| format!("group.{group}.{t}");
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["group", "create", "--group", group, "--skill", "billing", "--partitions", "2", "--brokers", &brokers()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = write_topology(
        dir,
        &a_app,
        &format!(
            r#"
[topology]
name = "{a_app}"
group = "{group}"

[models.fake]
base_url = "{base}"
model = "fake-1"

[tools.ask-billing]
type = "delegate"
request_topic = "{skill_requests}"
reply_topic = "{skill_responses}"
deadline = "60s"

[sources.requests]
type = "kafka"
topic = "{requests}"

[operators.think]
type = "llm"
inputs = ["requests"]
model = "fake"
tools = ["ask-billing"]

[operators.respond]
type = "map"
inputs = ["think"]
set = {{ "type" = '"response"', "sender_id" = '"agent-a"', "payload.status" = '"completed"' }}
render = {{ "payload.content" = "{{{{ payload.answer }}}}" }}

[sinks.responses]
type = "kafka"
inputs = ["respond"]
topic = "{responses}"

[sinks.traces]
type = "kafka"
inputs = ["think.traces"]
topic = "{traces}"
"#,
            base = server.base_url(),
            skill_requests = g("skill.billing.requests"),
            skill_responses = g("skill.billing.responses"),
            requests = g("requests"),
            responses = g("responses"),
            traces = g("traces"),
        ),
    );
    let b = write_topology(
        dir,
        &b_app,
        &format!(
            r#"
[topology]
name = "{b_app}"
group = "{group}"

[models.fake]
base_url = "{base}"
model = "fake-1"

[sources.memory]
type = "kafka"
topic = "{memory}"
global = true

[operators.remember]
type = "memory-index"
inputs = ["memory"]

[sources.asks]
type = "kafka"
topic = "{skill_requests}"

[operators.recall]
type = "memory-search"
inputs = ["asks"]
index = "remember"
k = 1

[operators.answer]
type = "llm"
inputs = ["recall"]
model = "fake"

[operators.respond]
type = "map"
inputs = ["answer"]
set = {{ "type" = '"skill_response"', "sender_id" = '"agent-b"', "payload.status" = '"completed"' }}
render = {{ "payload.content" = "{{{{ payload.answer }}}}" }}

[sinks.replies]
type = "kafka"
inputs = ["respond"]
topic = "{skill_responses}"
"#,
            base = server.base_url(),
            memory = g("memory.shared"),
            skill_requests = g("skill.billing.requests"),
            skill_responses = g("skill.billing.responses"),
        ),
    );
    // C wrote the memory item B will use.
    produce(
        &g("memory.shared"),
        [(
            "mem-c1".to_owned(),
            r#"{"type":"memory","correlation_id":"mem-c1","sender_id":"agent-c","timestamp":"2026-11-24T09:00:00Z","id":"mem-c1","payload":{"item_id":"mem-c1","content":"Refunds over 50 EUR need a manager's approval"}}"#.to_owned(),
        )],
    );
    let b = spawn_instance(&b, "b", &dir.join("b.log"));
    let a = spawn_instance(&a, "a", &dir.join("a.log"));
    (a_app, a, b)
}

#[test]
fn trace_shows_a_three_agent_chain() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let group = unique("tl").replace('.', "-");
    let g = |t: &str| format!("group.{group}.{t}");
    let (a_app, _a, _b) = delegating_agents(dir.path(), &group, &server);
    produce(
        &g("requests"),
        [(
            "task-x".to_owned(),
            r#"{"type":"request","correlation_id":"task-x","sender_id":"user","timestamp":"2026-11-24T10:00:00Z","id":"req-x","payload":{"task_id":"task-x","description":"delegate ask-billing: refunds over 50 EUR"}}"#.to_owned(),
        )],
    );
    let answered = consume_all(&g("responses"), 1, Duration::from_secs(90));
    let logs = || format!("{}\n---\n{}", log_tail(&dir.path().join("a.log")), log_tail(&dir.path().join("b.log")));
    assert_eq!(answered.len(), 1, "{}", logs());
    let content = answered[0].value["payload"]["content"].as_str().unwrap().to_owned();
    assert!(content.starts_with("done: answer: refunds over 50 EUR"), "{content}");

    let db = dir.path().join("timeline.db");
    let follow = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["timeline", "--group", &group, "--skill", "billing", "--once", "--brokers", &brokers(), "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(follow.status.success(), "{}", String::from_utf8_lossy(&follow.stderr));
    let trace =
        Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["trace", "task-x", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8_lossy(&trace.stdout).into_owned();
    assert!(trace.status.success(), "{}{}", text, String::from_utf8_lossy(&trace.stderr));
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in\n{text}"))
    };
    let wrote = at("agent-c [memory] wrote memory mem-c1: Refunds over 50 EUR");
    let asked = at("user [request] asked: delegate ask-billing: refunds over 50 EUR");
    let delegated = at(&format!("{a_app} [request] asked: refunds over 50 EUR"));
    let used = at("agent-b [skill_response] answered: answer: refunds over 50 EUR (using memory mem-c1)");
    let done = at("agent-a [response] answered: done: answer: refunds over 50 EUR");
    assert!(wrote < asked && asked < delegated && delegated < used && used < done, "in causal order:\n{text}");
    // The same chain as JSON, for tools.
    let json = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["trace", "task-x", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let entries: Vec<serde_json::Value> =
        String::from_utf8_lossy(&json.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), lines.len());
    let senders: std::collections::BTreeSet<&str> = entries.iter().filter_map(|e| e["sender_id"].as_str()).collect();
    assert!(
        senders.contains("agent-b") && senders.contains("agent-c") && senders.contains(a_app.as_str()),
        "{senders:?}"
    );
}
