//! The `llm` operator against a real HTTP server speaking the OpenAI protocol (in this test
//! process), run by the real binary in local mode: answers with usage and the correlation id
//! kept; 429s (Retry-After), 500s, timeouts and malformed bodies retried and then
//! dead-lettered while other records flow; per-key order under 1,000 concurrent calls;
//! budgets refusing before the call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

use crate::fake_openai::FakeOpenAi;
use serde_json::Value;

fn topology(dir: &Path, server: &FakeOpenAi, extra_model: &str, extra_op: &str) -> PathBuf {
    let text = format!(
        r#"
[topology]
name = "llm-local"

[models.fake]
base_url = "{}"
model = "fake-1"
timeout = "1s"
max_attempts = 3
backoff = "50ms"
max_backoff = "2s"
{extra_model}

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
system = "You help {{{{ sender_id }}}}."
prompt = "{{{{ payload.description }}}}"
{extra_op}

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[sinks.refused]
type = "file"
inputs = ["answer.refused"]
path = "refused.jsonl"

[sinks.traces]
type = "file"
inputs = ["answer.traces"]
path = "traces.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#,
        server.base_url()
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn request(i: usize, key: &str, sender: &str, description: &str) -> String {
    serde_json::json!({
        "type": "request", "correlation_id": key, "sender_id": sender,
        "timestamp": "2026-11-24T10:00:00Z", "id": format!("in-{i}"),
        "payload": {"task_id": format!("t-{i}"), "description": description, "seq": i}
    })
    .to_string()
}

fn run(dir: &Path, topo: &Path, lines: &[String]) -> (std::process::Output, Vec<Value>) {
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir)
        .output()
        .unwrap();
    let outputs = read_lines(&dir.join("out.jsonl"));
    (out, outputs)
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn answers_carry_usage_and_keep_the_correlation_id() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "", "");
    let lines: Vec<String> =
        (0..5).map(|i| request(i, &format!("conv-{i}"), "alice", &format!("question {i}"))).collect();
    let (out, answers) = run(dir.path(), &topo, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(answers.len(), 5);
    for a in &answers {
        let i = a["payload"]["seq"].as_u64().unwrap();
        assert_eq!(a["correlation_id"], format!("conv-{i}"));
        assert_eq!(a["payload"]["answer"], format!("answer: question {i}"));
        let u = &a["payload"]["usage"];
        assert_eq!(
            (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64(), u["total_tokens"].as_u64()),
            (Some(10), Some(5), Some(15))
        );
        assert_eq!(u["model"], "fake-1");
        assert_eq!(u["attempts"], 1);
        assert!(a["span_id"].is_string() && a["trace_id"].is_string(), "traced: {a}");
    }
    assert_eq!(server.counters.calls(), 5);
}

#[test]
fn faults_are_retried_then_dead_lettered_and_other_records_flow() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "", "");
    let cases = ["429x2 rate", "500x2 flaky", "slow x1 timeout", "garbage x1 body", "always500 broken", "plain"];
    let lines: Vec<String> = cases.iter().enumerate().map(|(i, d)| request(i, &format!("k{i}"), "bob", d)).collect();
    let started = std::time::Instant::now();
    let (out, answers) = run(dir.path(), &topo, &lines);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answered: HashMap<String, Value> =
        answers.iter().map(|a| (a["correlation_id"].as_str().unwrap().to_owned(), a.clone())).collect();
    assert_eq!(answered.len(), 4, "all but the always-failing one and the unreadable one: {answers:?}");
    assert_eq!(answered["k0"]["payload"]["usage"]["attempts"], 3, "two 429s, then the answer");
    assert_eq!(answered["k1"]["payload"]["usage"]["attempts"], 3, "two 500s, then the answer");
    assert_eq!(answered["k2"]["payload"]["usage"]["attempts"], 2, "a timeout, then the answer");
    assert_eq!(answered["k5"]["payload"]["usage"]["attempts"], 1);
    // Retry-After: 1 was honoured twice for k0.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "Retry-After was not honoured");
    let dead = read_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    let error_of = |c: &str| dead.iter().find(|d| d["error"].as_str().unwrap().contains(c)).cloned();
    let broken = error_of("500").expect("the always-failing one");
    assert!(broken["error"].as_str().unwrap().contains("after 3 attempt(s)"), "{broken}");
    assert_eq!(broken["stage"], "operator:answer");
    // An unreadable 200 costs one call: asking again would bill the same body again.
    let garbage = error_of("malformed answer").expect("the unreadable one");
    assert!(garbage["error"].as_str().unwrap().contains("after 1 attempt(s)"), "{garbage}");
    // 3 + 3 + 2 + 1 + 3 + 1 calls.
    assert_eq!(server.counters.calls(), 13);
    assert!(
        stderr.contains(
            "model `fake`: 4 call(s), 13 attempt(s), 2 throttled, 2 failed; 40 prompt + 20 completion tokens"
        ),
        "{stderr}"
    );
}

#[test]
fn a_thousand_concurrent_calls_keep_per_key_order() {
    let server = FakeOpenAi::start();
    server.counters.delay_ms.store(200, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "max_concurrency = 1000", "");
    const KEYS: usize = 200;
    let lines: Vec<String> = (0..1000)
        .map(|i| request(i, &format!("conv-{}", i % KEYS), "load", &format!("key=conv-{} n={i}", i % KEYS)))
        .collect();
    let started = std::time::Instant::now();
    let (out, answers) = run(dir.path(), &topo, &lines);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(answers.len(), 1000);
    let mut last: HashMap<String, u64> = HashMap::new();
    for a in &answers {
        let key = a["correlation_id"].as_str().unwrap().to_owned();
        let seq = a["payload"]["seq"].as_u64().unwrap();
        if let Some(prev) = last.insert(key.clone(), seq) {
            assert!(seq > prev, "key {key}: {seq} came after {prev}");
        }
    }
    assert_eq!(server.counters.max_per_key(), 1, "calls of one key never overlap");
    assert!(server.counters.peak() >= 100, "peak in flight {}", server.counters.peak());
    // Five calls per key one after another at 200 ms: about 1 s, not 200 s.
    assert!(elapsed < std::time::Duration::from_secs(30), "{elapsed:?}");
    eprintln!("1000 calls, 200 ms each: {elapsed:?}, peak in flight {}", server.counters.peak());
}

#[test]
fn over_budget_senders_are_refused_before_any_call() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "", "budget_tokens = 30");
    let lines: Vec<String> = (0..4)
        .map(|i| request(i, "same-conversation", "carol", &format!("q{i}")))
        .chain([request(9, "other", "dave", "q9")])
        .collect();
    let (out, answers) = run(dir.path(), &topo, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // carol: 15 + 15 tokens reach the budget of 30; her third and fourth make no call.
    assert_eq!(answers.len(), 3, "{answers:?}");
    let refused = read_lines(&dir.path().join("refused.jsonl"));
    assert_eq!(refused.len(), 2);
    for r in &refused {
        assert_eq!(r["type"], "task_status");
        assert_eq!(r["payload"]["status"], "budget_exceeded");
        assert_eq!(r["sender_id"], "carol");
    }
    assert_eq!(server.counters.calls(), 3);
}

#[test]
fn the_model_calls_two_tools_gets_their_results_and_answers() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("notes/notes.txt"), "the refund limit is 50").unwrap();
    let tools = r#"
[tools.read-notes]
type = "fs_read"
root = "notes"

[tools.run]
type = "shell"
allow = ["echo"]
root = "notes"
"#;
    let topo = topology(dir.path(), &server, "", "tools = [\"read-notes\", \"run\"]");
    let text =
        std::fs::read_to_string(&topo).unwrap().replace("[sources.requests]", &format!("{tools}\n[sources.requests]"));
    std::fs::write(&topo, text).unwrap();
    let lines = vec![
        serde_json::json!({
            "type": "request", "correlation_id": "conv-7", "sender_id": "erin", "timestamp": "2026-11-24T10:00:00Z",
            "id": "in-7", "span_id": "00f067aa0ba902b7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "payload": {"task_id": "t-7", "description": "use tools please"}
        })
        .to_string(),
    ];
    let (out, answers) = run(dir.path(), &topo, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(answers.len(), 1, "{answers:?}");
    let a = &answers[0];
    assert_eq!(a["correlation_id"], "conv-7");
    assert_eq!(a["payload"]["answer"], "done: the refund limit is 50 | hi");
    assert_eq!(a["payload"]["usage"]["total_tokens"], 30, "two model calls of 15 tokens");
    assert_eq!(server.counters.calls(), 2);
    // A span per step: model, tool, tool, model; all in the input's trace, children of its span.
    let traces = read_lines(&dir.path().join("traces.jsonl"));
    let kinds: Vec<&str> = traces.iter().map(|t| t["payload"]["span_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["llm", "tool", "tool", "llm"], "{traces:?}");
    for t in &traces {
        assert_eq!(t["type"], "trace");
        assert_eq!(t["correlation_id"], "conv-7");
        assert_eq!(t["payload"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t["payload"]["parent_span_id"], "00f067aa0ba902b7");
        assert_eq!(t["payload"]["ok"], true);
    }
    let spans: std::collections::HashSet<&str> =
        traces.iter().map(|t| t["payload"]["span_id"].as_str().unwrap()).collect();
    assert_eq!(spans.len(), 4, "distinct span ids");
    assert!(traces[1]["payload"]["content"].as_str().unwrap().contains("the refund limit is 50"));
}

#[test]
fn external_senders_get_only_low_tier_tools_and_the_policy_is_audited() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("notes/notes.txt"), "the refund limit is 50").unwrap();
    let tools = r#"
[tools.read-notes]
type = "fs_read"
root = "notes"

[tools.run]
type = "shell"
allow = ["echo"]
root = "notes"
"#;
    let op = "tools = [\"read-notes\", \"run\"]\ninternal_senders = [\"ops-*\", \"root\"]\nbudget_tokens = 20";
    let topo = topology(dir.path(), &server, "", op);
    let text = std::fs::read_to_string(&topo)
        .unwrap()
        .replace("[sources.requests]", &format!("{tools}\n[sources.requests]"))
        .replace(
            "[dead_letter]",
            "[sinks.audit]\ntype = \"file\"\ninputs = [\"answer.audit\"]\npath = \"audit.jsonl\"\n\n[dead_letter]",
        );
    std::fs::write(&topo, text).unwrap();
    let lines = vec![
        request(1, "c-ext", "bob", "use tools please"),
        request(2, "c-int", "ops-1", "use tools please"),
        request(3, "c-ext", "bob", "over budget now"),
    ];
    let (out, answers) = run(dir.path(), &topo, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = |c: &str| answers.iter().find(|a| a["correlation_id"] == c).unwrap()["payload"]["answer"].clone();
    assert_eq!(answer("c-int"), "done: the refund limit is 50 | hi", "an internal sender gets every tool");
    assert_eq!(
        answer("c-ext"),
        "done: the refund limit is 50 | error: no tool `run` here",
        "the shell tool (tier 2) is not offered to an external sender"
    );
    let audit = read_lines(&dir.path().join("audit.jsonl"));
    let events: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a["payload"]["event_type"].as_str().unwrap(), a["correlation_id"].as_str().unwrap()))
        .collect();
    assert_eq!(events, [("tools_withheld", "c-ext"), ("budget_exceeded", "c-ext")], "{audit:?}");
    assert_eq!(audit[0]["payload"]["details"]["withheld"], serde_json::json!(["run"]));
    assert_eq!(audit[0]["sender_id"], "answer");
    assert_eq!(audit[1]["payload"]["details"]["used"], 30);
}

#[test]
fn a_flood_of_tool_calls_runs_only_max_tool_calls_and_results_are_cut() {
    // The reported attack: 3,000 tool calls in one answer. Eight run; the others are refused
    // (each call still gets an answer, as the protocol needs); an audit envelope says so;
    // each tool result handed back is cut at max_tool_output_bytes.
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("notes/notes.txt"), "x".repeat(100 * 1024)).unwrap();
    let tools = "[tools.read-notes]\ntype = \"fs_read\"\nroot = \"notes\"\n";
    let topo = topology(dir.path(), &server, "", "tools = [\"read-notes\"]");
    let text = std::fs::read_to_string(&topo)
        .unwrap()
        .replace("[sources.requests]", &format!("{tools}\n[sources.requests]"))
        .replace(
            "[dead_letter]",
            "[sinks.audit]\ntype = \"file\"\ninputs = [\"answer.audit\"]\npath = \"audit.jsonl\"\n\n[dead_letter]",
        );
    std::fs::write(&topo, text).unwrap();
    let (out, answers) = run(dir.path(), &topo, &[request(1, "c-1", "ops", "flood 3000")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = answers[0]["payload"]["answer"].as_str().unwrap().to_owned();
    let longest: usize = answer.split("longest=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(answer.starts_with("results=3000 refused=2992 ") && answer.ends_with("cut=true"), "{answer}");
    assert!(longest <= 64 * 1024 + 200, "a result is cut near 64 KiB: {longest}");
    let audit = read_lines(&dir.path().join("audit.jsonl"));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["payload"]["event_type"], "tool_calls_refused");
    assert_eq!(audit[0]["payload"]["details"]["asked"], 3000);
    assert_eq!(audit[0]["payload"]["details"]["ran"], 8);
}

#[test]
fn a_streamed_answer_sends_its_deltas_in_order_with_the_same_ids_every_run() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "", "stream = true");
    let text = std::fs::read_to_string(&topo).unwrap().replace(
        "[dead_letter]",
        "[sinks.deltas]\ntype = \"file\"\ninputs = [\"answer.deltas\"]\npath = \"deltas.jsonl\"\n\n[dead_letter]",
    );
    std::fs::write(&topo, text).unwrap();
    let lines = [request(1, "c-1", "bob", "stream 1000")];
    let (out, answers) = run(dir.path(), &topo, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: String = (0..1000).map(|i| format!("w{i} ")).collect();
    assert_eq!(answers[0]["payload"]["answer"], expected.as_str());
    assert_eq!(answers[0]["payload"]["usage"]["completion_tokens"], 1000, "usage from the last chunk");
    let deltas = read_lines(&dir.path().join("deltas.jsonl"));
    assert_eq!(deltas.len(), 1000);
    for (i, d) in deltas.iter().enumerate() {
        assert_eq!((d["type"].as_str(), d["payload"]["status"].as_str()), (Some("task_status"), Some("streaming")));
        assert_eq!(d["payload"]["index"], i);
        assert_eq!(d["payload"]["delta"], format!("w{i} "));
        assert_eq!(d["correlation_id"], "c-1");
    }
    // The same input run again: the same deltas, ids included, byte for byte.
    let first = std::fs::read_to_string(dir.path().join("deltas.jsonl")).unwrap();
    let (out, _) = run(dir.path(), &topo, &lines);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(dir.path().join("deltas.jsonl")).unwrap(), first);
    assert_eq!(server.counters.calls(), 2);
}

#[test]
fn an_answer_without_text_goes_where_the_topology_says() {
    // Default: dead-lettered with the reason. With `no_answer = "refused"`: a task status on
    // the refused output, nothing dead-lettered. One call either way.
    for (option, dead_letters, refused) in [("", 1, 0), ("no_answer = \"refused\"", 0, 1)] {
        let server = FakeOpenAi::start();
        let dir = tempfile::tempdir().unwrap();
        let topo = topology(dir.path(), &server, "", option);
        let (out, answers) = run(dir.path(), &topo, &[request(1, "c-1", "bob", "refuse me please")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(answers.is_empty(), "{answers:?}");
        let dead = read_lines(&dir.path().join("dlq.jsonl"));
        let refusals = read_lines(&dir.path().join("refused.jsonl"));
        assert_eq!((dead.len(), refusals.len()), (dead_letters, refused), "{option}: {dead:?} {refusals:?}");
        let reason = if refused == 1 { refusals[0]["payload"]["summary"].clone() } else { dead[0]["error"].clone() };
        assert!(reason.as_str().unwrap().contains("the model refused: I can't help with that"), "{reason}");
        if refused == 1 {
            assert_eq!(refusals[0]["payload"]["status"], "no_answer");
        }
        assert_eq!(server.counters.calls(), 1);
    }
}

#[test]
fn a_structured_answer_is_checked_asked_again_with_the_error_and_lands_as_json() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let schema = r#"response_format = { json_schema = { type = "object", required = ["priority"], properties = { priority = { enum = ["low", "high"] } } } }"#;
    let topo = topology(dir.path(), &server, "", schema);
    let lines = [request(1, "c-good", "bob", "schema bad-then-good"), request(2, "c-bad", "bob", "schema always-bad")];
    let (out, answers) = run(dir.path(), &topo, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dead = read_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(answers.len(), 1, "{answers:?} {dead:?}");
    assert_eq!(
        answers[0]["payload"]["answer"],
        serde_json::json!({"priority": "high", "summary": "refund"}),
        "a JSON object, not text"
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(
        error.contains("does not match the JSON schema at `/priority`") && error.contains("after 3 answer(s)"),
        "{error}"
    );
    // One violation then the answer (2 calls); three violations (3 calls).
    assert_eq!(server.counters.calls(), 5);
}

#[test]
fn a_model_whose_attempts_run_out_hands_the_call_to_its_fallback() {
    let server = FakeOpenAi::start();
    let (down, hits) = crate::echo_model::always_500();
    let dir = tempfile::tempdir().unwrap();
    // `fake` (the fallback) is the fake server; `primary` is down and falls back to it.
    let topo = topology(dir.path(), &server, "", "");
    let text = std::fs::read_to_string(&topo).unwrap().replace(
        "[sources.requests]",
        &format!(
            "[models.primary]\nbase_url = \"{down}\"\nmodel = \"big-1\"\nmax_attempts = 2\nbackoff = \"10ms\"\nfallbacks = [\"fake\"]\n\n[sources.requests]"
        ),
    );
    let text = text.replace("model = \"fake\"\nsystem", "model = \"primary\"\nsystem");
    std::fs::write(&topo, text).unwrap();
    let (out, answers) = run(dir.path(), &topo, &[request(1, "c-1", "bob", "hello there")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["payload"]["answer"], "answer: hello there");
    assert_eq!(answers[0]["payload"]["usage"]["model"], "fake-1", "the output names the model that answered");
    assert_eq!(answers[0]["payload"]["usage"]["attempts"], 3, "two on the primary, one on the fallback");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "the primary was asked max_attempts times");
    assert_eq!(server.counters.calls(), 1, "the fallback once");
    let traces = read_lines(&dir.path().join("traces.jsonl"));
    let steps: Vec<(String, bool)> = traces
        .iter()
        .map(|t| (t["payload"]["title"].as_str().unwrap().to_owned(), t["payload"]["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(steps, [("llm primary".to_owned(), false), ("llm fake-1".to_owned(), true)], "{traces:?}");
    assert!(traces[0]["payload"]["content"].as_str().unwrap().contains("primary is down"));
}

#[test]
fn validate_warns_about_side_effects_declared_effect_none_under_exactly_once() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "", "tools = [\"run\", \"notes\", \"ls\"]");
    let text = std::fs::read_to_string(&topo).unwrap().replace(
        "[sources.requests]",
        "[tools.run]\ntype = \"shell\"\nallow = [\"echo\"]\nroot = \".\"\neffect = \"none\"\n\n\
         [tools.ls]\ntype = \"shell\"\nallow = [\"ls\"]\nroot = \".\"\n\n\
         [tools.notes]\ntype = \"fs_read\"\nroot = \".\"\n\n[sources.requests]",
    );
    std::fs::write(&topo, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: tool `run` has side effects and `effect = \"none\"`"), "{stderr}");
    assert!(!stderr.contains("tool `ls` has side effects"), "shell is at-most-once by default: {stderr}");
    assert!(!stderr.contains("tool `notes` has side effects"), "fs_read has none: {stderr}");
}

#[test]
fn validate_refuses_reconcile_without_a_reconcile_action_naming_the_place() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "", "tools = [\"pay\"]");
    let text = std::fs::read_to_string(&topo).unwrap().replace(
        "[sources.requests]",
        "[tools.pay]\ntype = \"http\"\nmethod = \"POST\"\nallow_hosts = [\"pay.example\"]\neffect = \"reconcile\"\n\n[sources.requests]",
    );
    std::fs::write(&topo, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = text.lines().position(|l| l == "[tools.pay]").unwrap() + 1;
    assert!(stderr.contains(&format!("{}:{line}", topo.file_name().unwrap().to_str().unwrap())), "{stderr}");
    assert!(
        stderr.contains("`effect = \"reconcile\"` needs a reconcile action") && stderr.contains("`reconcile_url`"),
        "{stderr}"
    );
}

#[test]
fn the_http_tool_calls_allowed_hosts_with_an_idempotency_key() {
    use kafclaw_agent::tools::Tool;
    use kafclaw_agent::tools::http::{HttpOptions, HttpTool};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                    let s = s.clone();
                    async move {
                        let key = headers.get("idempotency-key").map(|v| v.to_str().unwrap().to_owned());
                        s.lock().unwrap().push((key, body));
                        "accepted"
                    }
                }),
            );
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app).await.unwrap();
        });
    });
    // Loopback is a special address: the tool reaches it only where the topology names it.
    let tool = HttpTool::with_options(HttpOptions {
        allow_hosts: vec![format!("127.0.0.1:{port}")],
        allow_addresses: vec!["127.0.0.1".into()],
        method: "POST".into(),
        timeout: std::time::Duration::from_secs(5),
        ..HttpOptions::default()
    })
    .unwrap();
    assert!(tool.side_effects() && tool.idempotent());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/hook");
    let ok = rt.block_on(tool.call(serde_json::json!({"url": url, "body": "hello"}), "in-1/0/call_1".into()));
    assert_eq!(ok.unwrap().text, "accepted");
    assert_eq!(seen.lock().unwrap().clone(), vec![(Some("in-1/0/call_1".to_owned()), "hello".to_owned())]);
    let refused = rt.block_on(tool.call(serde_json::json!({"url": "http://localhost:1/x"}), "k".into()));
    assert!(refused.unwrap_err().contains("not allowed"));
}

#[test]
fn a_bad_model_option_is_reported_at_its_place() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "", "");
    let text = std::fs::read_to_string(&topo).unwrap().replace("max_attempts = 3", "max_attempts = 0");
    let line = text.lines().position(|l| l.starts_with("max_attempts")).unwrap() + 1;
    std::fs::write(&topo, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("t.toml:{line}:16: error: `max_attempts` must be at least 1")), "{stderr}");
}
