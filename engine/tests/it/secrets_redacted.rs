//! Secrets never leave: a model endpoint that echoes the request (its headers, with
//! `Authorization: Bearer <key>` and the Basic form of the base URL's credentials) in a 400
//! body, a 500 body and even a 200 answer; the real binary runs the topology in local mode with
//! debug logging; no output file, dead letter, trace, stdout or stderr holds the key or the
//! URL's password in any form, and the errors still say what went wrong.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::echo_model::{KEY, URL_PASSWORD, URL_USER, echo_server, forbidden};

fn request(i: usize, description: &str) -> String {
    json!({
        "type": "request", "correlation_id": format!("c{i}"), "sender_id": "alice",
        "timestamp": "2026-11-24T10:00:00Z", "id": format!("in-{i}"),
        "payload": {"task_id": format!("t-{i}"), "description": description}
    })
    .to_string()
}

fn every_file(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(every_file(&path));
        } else {
            files.push((path.display().to_string(), String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into()));
        }
    }
    files
}

fn lines(dir: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_echoed_key_reaches_no_output_dead_letter_trace_or_log() {
    echoed_key_case("", "authorization: Bearer [redacted]");
}

/// The same with Azure's key header: the key in `api-key`, a query, an extra header.
#[test]
fn an_echoed_api_key_header_reaches_no_output_either() {
    echoed_key_case(
        "api_key_header = \"api-key\"\nquery = { \"api-version\" = \"2024-10-21\" }\nheaders = { \"X-Title\" = \"kafclaw\" }",
        "api-key: [redacted]",
    );
}

/// Runs the echo topology with `extra_model` lines in the model's table; the 200 echo's
/// answer must hold `marked`.
fn echoed_key_case(extra_model: &str, marked: &str) {
    let addr = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let topology = format!(
        r#"
[topology]
name = "secrets-echo"

[models.echo]
base_url = "http://{URL_USER}:{URL_PASSWORD}@{addr}/v1"
model = "echo-1"
api_key_env = "KAFCLAW_E2E_ECHO_KEY"
timeout = "5s"
max_attempts = 2
backoff = "10ms"
max_backoff = "50ms"
{extra_model}

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "echo"
prompt = "{{{{ payload.description }}}}"

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[sinks.traces]
type = "file"
inputs = ["answer.traces"]
path = "traces.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#
    );
    std::fs::write(d.join("t.toml"), topology).unwrap();
    let input = [request(0, "echo400 please"), request(1, "echo500 please"), request(2, "echo200 please")];
    std::fs::write(d.join("in.jsonl"), input.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", "t.toml", "--local", "-vv"])
        .env("KAFCLAW_E2E_ECHO_KEY", KEY)
        .env("RUST_LOG", "debug")
        .current_dir(d)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");

    let forbidden = forbidden();
    // Every file but the topology (the user's own config, which names the URL's password).
    let mut everything: Vec<_> = every_file(d).into_iter().filter(|(n, _)| !n.ends_with("t.toml")).collect();
    assert!(
        everything.len() >= 4,
        "in, out, traces, dead letters: {:?}",
        everything.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    everything.push(("<stdout>".into(), stdout));
    everything.push(("<stderr>".into(), stderr.clone()));
    for (name, text) in &everything {
        for f in &forbidden {
            assert!(!text.contains(f), "{name} holds `{f}`:\n{text}");
        }
    }

    // The errors still say what went wrong, with the key marked.
    let dead = lines(d, "dlq.jsonl");
    assert_eq!(dead.len(), 2, "{dead:?}");
    let errors: Vec<&str> = dead.iter().map(|l| l["error"].as_str().unwrap()).collect();
    assert!(errors.iter().any(|e| e.contains("HTTP 400") && e.contains("after 1 attempt(s)")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("HTTP 500") && e.contains("after 2 attempt(s)")), "{errors:?}");
    // The 400's text body echoes the headers: marked. The 500's JSON error is quoted by its
    // own message, which holds no header.
    assert!(
        errors.iter().any(|e| e.contains("HTTP 400") && e.contains("[redacted]")),
        "the echoed header is marked: {errors:?}"
    );
    assert!(stderr.contains("record dead-lettered") && stderr.contains("[redacted]"), "{stderr}");
    assert!(stderr.contains("model call will be retried"), "debug logging was on: {stderr}");

    // The 200 echo: the answer is kept, the key in it is not.
    let answers = lines(d, "out.jsonl");
    assert_eq!(answers.len(), 1, "{answers:?}");
    let content = answers[0]["payload"]["answer"].as_str().unwrap();
    assert!(content.contains(marked), "{content}");
    assert!(content.contains("authorization: Basic [redacted]"), "{content}");
    assert!(!lines(d, "traces.jsonl").is_empty(), "the answered call was traced");
}
