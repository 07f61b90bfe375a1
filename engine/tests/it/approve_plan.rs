//! Kafka mode refuses, before it connects, an `approve` operator whose released records feed
//! an asynchronous operator in the same sub-topology: a released record leaves while another
//! input (a decision, a punctuation) is processed, so a crash during its model call would lose
//! it. The same topology with the released records passed through a topic starts its checks.

use std::process::{Command, Output};

const HEAD: &str = r#"[topology]
name = "gate"

[models.fake]
base_url = "http://127.0.0.1:9/v1"
model = "fake-1"

[sources.refunds]
type = "kafka"
topic = "gate-refunds"

[sources.decisions]
type = "kafka"
topic = "group.ops.approvals.decisions"

[operators.review]
type = "approve"
inputs = ["refunds", "decisions"]
decisions = "decisions"
timeout = "30m"

[sinks.ask]
type = "kafka"
inputs = ["review.requests"]
topic = "group.ops.approvals.requests"
"#;

fn run(dir: &std::path::Path, body: &str) -> Output {
    let path = dir.join("t.toml");
    std::fs::write(&path, format!("{HEAD}{body}")).unwrap();
    let state = dir.join("state");
    Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", path.to_str().unwrap(), "--instance-id", "x", "--brokers", "127.0.0.1:9"])
        .args(["--state-dir", state.to_str().unwrap()])
        .output()
        .expect("kafclaw runs")
}

#[test]
fn kafka_mode_refuses_approve_feeding_a_model_call_in_its_task() {
    let dir = tempfile::tempdir().unwrap();
    // Through a map first: the check follows every path downstream, not just the next node.
    let o = run(
        dir.path(),
        r#"
[operators.tag]
type = "map"
inputs = ["review"]
set = { "payload.approved" = "true" }

[operators.act]
type = "llm"
inputs = ["tag"]
model = "fake"
prompt = "{{ payload.content }}"

[sinks.out]
type = "kafka"
inputs = ["act"]
topic = "gate-out"
"#,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("approve `review` feeds the asynchronous operator `act` (llm)"), "{err}");
    assert!(err.contains("kafka source"), "the error says what to do instead: {err}");
}

#[test]
fn approve_whose_released_records_go_to_a_topic_passes_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        r#"
[sinks.approved]
type = "kafka"
inputs = ["review"]
topic = "gate-approved"

[sources.approved_in]
type = "kafka"
topic = "gate-approved"

[operators.act]
type = "llm"
inputs = ["approved_in"]
model = "fake"
prompt = "{{ payload.content }}"

[sinks.out]
type = "kafka"
inputs = ["act"]
topic = "gate-out"
"#,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    // It gets past the plan checks and fails only where it needs the (absent) broker.
    assert!(!err.contains("feeds the asynchronous operator"), "{err}");
    assert_ne!(o.status.code(), Some(0), "{err}");
}
