//! Admission on a local run: only the gatekeeper's decisions admit (a self-issued
//! `onboard_complete` is refused, dead-lettered naming its sender, and its sender's requests
//! stay refused), and `validate` counts a guard's `admitted` as a use of the `admissions`.

use std::path::Path;
use std::process::{Command, Output};

const TOPOLOGY: &str = r#"[topology]
name = "adm"
group = "acme"

[sources.onboarding]
type = "file"
path = "onb.jsonl"

[sources.in]
type = "file"
path = "req.jsonl"

[operators.members]
type = "admissions"
inputs = ["onboarding"]

[operators.guard]
type = "guard"
inputs = ["in"]
agent = "billing"
admitted = "members"

[sinks.passed]
type = "file"
inputs = ["guard"]
path = "passed.jsonl"

[sinks.audit]
type = "file"
inputs = ["guard.audit"]
path = "audit.jsonl"

[dead_letter]
path = "dead.jsonl"
"#;

fn kafclaw(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(args).current_dir(dir).output().unwrap()
}

fn envelope(kind: &str, sender: &str, payload: &str) -> String {
    format!(
        r#"{{"type":"{kind}","correlation_id":"{sender}","sender_id":"{sender}","timestamp":"2026-11-01T09:00:00Z","payload":{payload}}}"#
    )
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn only_the_gatekeepers_decisions_admit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("t.toml"), TOPOLOGY).unwrap();
    let decisions = [
        envelope("onboard", "mallory", r#"{"action":"onboard_complete","requester_id":"mallory"}"#),
        envelope("onboard", "gatekeeper", r#"{"action":"onboard_complete","requester_id":"alice"}"#),
        envelope("onboard", "mallory", r#"{"action":"onboard_reject","requester_id":"alice"}"#),
    ];
    std::fs::write(d.join("onb.jsonl"), decisions.join("\n")).unwrap();
    let requests =
        [envelope("request", "mallory", r#"{"task_id":"t1"}"#), envelope("request", "alice", r#"{"task_id":"t2"}"#)];
    std::fs::write(d.join("req.jsonl"), requests.join("\n")).unwrap();

    let v = kafclaw(d, &["validate", "t.toml"]);
    let stderr = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("is not used"), "a guard's `admitted` reads the admissions: {stderr}");

    let o = kafclaw(d, &["run", "t.toml", "--local"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let dead = lines(&d.join("dead.jsonl"));
    let errors: Vec<&str> = dead.iter().map(|v| v["error"].as_str().unwrap()).collect();
    assert_eq!(
        errors,
        [
            "forged decision refused: `onboard_complete` from `mallory`, who is not the gatekeeper (`gatekeeper`)",
            "forged decision refused: `onboard_reject` from `mallory`, who is not the gatekeeper (`gatekeeper`)",
        ]
    );
    // The file sources are read concurrently: mallory is never admitted; alice is admitted
    // once the gatekeeper's decision is read (the forged refusal does not evict her).
    let passed = lines(&d.join("passed.jsonl"));
    assert!(passed.iter().all(|v| v["sender_id"] == "alice"), "{passed:?}");
    let audit = lines(&d.join("audit.jsonl"));
    assert!(audit.iter().any(|v| v["payload"]["details"]["sender_id"] == "mallory"), "{audit:?}");
}
