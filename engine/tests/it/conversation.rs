//! Conversation memory in local mode, with the real binary and a fake OpenAI server in this
//! process: 200 exchanges of one conversation read from one file (every request queued at
//! once) — each model call sees the exchange before it, verbatim, and a history within its
//! budget; the oldest turns are summarised by model calls; a key that fails dead-letters its
//! record; option errors name the file, line and field.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::fake_openai::FakeOpenAi;

const MAX_TOKENS: usize = 400;

fn topology(dir: &Path, server: &FakeOpenAi) -> std::path::PathBuf {
    let text = format!(
        r#"[topology]
name = "conversation-local"

[models.fake]
base_url = "{}"
model = "fake-1"

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
conversation = "history"
system = "The conversation so far:\n{{{{ payload.conversation }}}}"
prompt = "{{{{ payload.description }}}}"

[operators.history]
type = "conversation"
inputs = ["answer"]
key = 'payload.conversation_id'
model = "fake"
max_tokens = {MAX_TOKENS}
max_turns = 40
max_bytes = 8192

[sinks.answers]
type = "file"
inputs = ["history"]
path = "out.jsonl"

[sinks.audit]
type = "file"
inputs = ["history.audit"]
path = "audit.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#,
        server.base_url()
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn request(i: usize, conversation: Option<&str>) -> String {
    let mut payload = serde_json::json!({"description": format!("question {i}: is invoice {i} paid?")});
    if let Some(c) = conversation {
        payload["conversation_id"] = c.into();
    }
    serde_json::json!({
        "type": "request", "correlation_id": "chat-1", "sender_id": "alice",
        "timestamp": "2026-11-24T10:00:00Z", "id": format!("in-{i}"), "payload": payload
    })
    .to_string()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn two_hundred_exchanges_stay_within_budget_and_every_call_sees_the_one_before() {
    const N: usize = 200;
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server);
    // One request without a conversation id: its key fails, it is dead-lettered, the rest flow.
    let mut input: Vec<String> = (0..N).map(|i| request(i, Some("c-1"))).collect();
    input.insert(N / 2, request(N, None));
    std::fs::write(dir.path().join("in.jsonl"), input.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let answers = lines(&dir.path().join("out.jsonl"));
    assert_eq!(answers.len(), N, "every exchange recorded goes on");
    assert!(answers.iter().all(|a| a["payload"].get("conversation").is_none()), "the history stays out of outputs");
    let dlq = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
    assert_eq!(dlq.lines().count(), 1, "{dlq}");
    assert!(dlq.contains("conversation key") && dlq.contains(&format!("in-{N}")), "{dlq}");
    assert_eq!(lines(&dir.path().join("audit.jsonl")).len(), 0, "nothing dropped: every summary succeeded");

    let requests = server.counters.requests.lock().unwrap().clone();
    let (summaries, calls): (Vec<&Value>, Vec<&Value>) = requests.iter().partition(|r| {
        r["messages"][1]["content"].as_str().is_some_and(|t| t.starts_with("Summarise this conversation:"))
    });
    assert_eq!(calls.len(), N, "one answer per request");
    assert!(summaries.len() >= 5, "the oldest turns were summarised: {} summary calls", summaries.len());
    let mut summarised_seen = false;
    for call in &calls {
        let system = call["messages"][0]["content"].as_str().unwrap();
        let history = system.strip_prefix("The conversation so far:\n").unwrap();
        assert!(history.len().div_ceil(4) <= MAX_TOKENS, "{} bytes of history: {history}", history.len());
        let question = call["messages"][1]["content"].as_str().unwrap();
        let i: usize = question["question ".len()..].split(':').next().unwrap().parse().unwrap();
        if i > 0 {
            let before =
                format!("user: question {}: is invoice {} paid?\nassistant: answer: question {}", i - 1, i - 1, i - 1);
            assert!(history.contains(&before), "call {i} does not see exchange {}:\n{history}", i - 1);
        }
        summarised_seen |= history.starts_with("Summary of the earlier conversation: summary of ");
    }
    assert!(summarised_seen, "later calls see the summary");
    let last = calls.last().unwrap()["messages"][0]["content"].as_str().unwrap();
    assert!(!last.contains("question 0:"), "the oldest turns are no longer verbatim");
}

#[test]
fn bad_options_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[topology]
name = "conversation-bad"

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "conversation-context"
inputs = ["requests"]
conversation = "nowhere"

[operators.history]
type = "conversation"
inputs = ["answer"]
max_tokens = 10
keep_turns = 90
summary_prompt = "{{ broken"

[sinks.out]
type = "file"
inputs = ["history"]
path = "out.jsonl"
"#;
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for (line, what) in [
        (11, "`nowhere` is not a conversation operator"),
        (16, "`max_tokens` is 10"),
        (17, "`keep_turns` is 90"),
        (18, "template line 1"),
    ] {
        assert!(err.contains(&format!("bad.toml:{line}:")) && err.contains(what), "{line} {what}:\n{err}");
    }
}
