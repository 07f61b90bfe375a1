//! Records of one input at an `llm`, and inputs sharing a sender-chosen `id` (the real binary,
//! local mode, a fake model and a counting HTTP service):
//! - a `route` (`mode = "all"`) fanning one input out and joining it back at one `llm`, a
//!   `map` on one branch: each record reaches the model with its own question, and each
//!   `at-most-once` POST is made once, under a key of its own (the record's rank);
//! - two inputs with the same envelope `id`: each is answered by the model, neither is handed
//!   the other's journalled answer.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::effect_service::EffectService;
use crate::fake_openai::FakeOpenAi;

fn run_local(dir: &Path, topo: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local", "--state-dir", "state"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The user messages of the model's first calls (not the tool rounds' follow-ups).
fn questions(model: &FakeOpenAi) -> Vec<String> {
    model
        .counters
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r["messages"].as_array().is_some_and(|m| m.len() == 1))
        .map(|r| r["messages"][0]["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn records_of_one_input_fanned_out_and_joined_at_an_llm_keep_their_own_answers_and_effects() {
    let model = FakeOpenAi::start();
    let service = EffectService::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[topology]
name = "ranks"

[models.fake]
base_url = "{}"
model = "fake-1"

[tools.pay]
type = "http"
method = "POST"
effect = "at-most-once"
allow_hosts = ["127.0.0.1:{port}"]
allow_addresses = ["127.0.0.1"]

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.fan]
type = "route"
inputs = ["requests"]
mode = "all"
routes = [
  {{ name = "first", when = 'true' }},
  {{ name = "second", when = 'true' }},
]

[operators.other]
type = "map"
inputs = ["fan.second"]
set = {{ "payload.ask" = 'payload.other' }}

[operators.answer]
type = "llm"
inputs = ["fan.first", "other"]
model = "fake"
prompt = "{{{{ payload.ask }}}}"
tools = ["pay"]

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"
"#,
            model.base_url(),
            port = service.port
        ),
    )
    .unwrap();
    let script = |body: &str| format!("tool-script {}", json!([["pay", {"url": service.url("pay"), "body": body}]]));
    let input = |i: usize| {
        json!({"type": "request", "correlation_id": format!("c{i}"), "sender_id": "alice",
               "timestamp": "2026-12-01T10:00:00Z", "id": format!("r{i}"),
               "payload": {"task_id": format!("r{i}"), "ask": script(&format!("{i} A")), "other": script(&format!("{i} B"))}})
        .to_string()
    };
    std::fs::write(dir.path().join("in.jsonl"), format!("{}\n{}\n", input(0), input(1))).unwrap();
    run_local(dir.path(), &topo);

    let mut asked = questions(&model);
    asked.sort();
    let mut want: Vec<String> = ["0 A", "0 B", "1 A", "1 B"].iter().map(|b| script(b)).collect();
    want.sort();
    assert_eq!(asked, want, "every record reached the model with its own question");
    let posts = service.posts();
    assert_eq!(service.total("pay"), 4, "one POST per record: {posts:?}");
    assert!(posts.values().all(|n| *n == 1), "no key was POSTed twice: {posts:?}");
    assert_eq!(posts.len(), 4, "each POST under a key of its own: {posts:?}");
    let keys: Vec<&String> = posts.keys().map(|(_, k)| k).collect();
    assert_eq!(keys.iter().filter(|k| k.contains("#1/")).count(), 2, "the second record of each input: {keys:?}");
    let answers = lines(&dir.path().join("out.jsonl"));
    assert_eq!(answers.len(), 4, "{answers:?}");
    let mut texts: Vec<&str> = answers.iter().map(|a| a["payload"]["answer"].as_str().unwrap()).collect();
    texts.sort();
    assert_eq!(texts, ["done: pay done (post 1 of this key)"; 4]);
    let ids: std::collections::BTreeSet<&str> = answers.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "distinct output ids: {answers:?}");

    // A rerun (local state is not kept, the effect log is): each record follows its own
    // recorded round, no POST is made again, and the answers are the same.
    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();
    run_local(dir.path(), &topo);
    assert_eq!(service.total("pay"), 4, "no POST was made again: {:?}", service.posts());
    // (In completion order: compared as sets of (id, question, answer).)
    let shape = |a: &Value| (a["id"].to_string(), a["payload"]["ask"].to_string(), a["payload"]["answer"].to_string());
    let again: std::collections::BTreeSet<_> = lines(&dir.path().join("out.jsonl")).iter().map(shape).collect();
    let first: std::collections::BTreeSet<_> = answers.iter().map(shape).collect();
    assert_eq!(again, first, "the rerun wrote the same answers, with the same ids");
}

#[test]
fn two_inputs_with_one_id_are_each_answered_by_the_model() {
    let model = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[topology]
name = "same-id"

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
prompt = "{{{{ payload.ask }}}}"

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"
"#,
            model.base_url()
        ),
    )
    .unwrap();
    // The second sender reuses the first input's id (same file, same partition) and its
    // correlation id, so the llm starts it once the first is answered and journalled.
    let input = |sender: &str, ask: &str| {
        json!({"type": "request", "correlation_id": "c-1", "sender_id": sender,
               "timestamp": "2026-12-01T10:00:00Z", "id": "victim-1",
               "payload": {"task_id": sender, "ask": ask}})
        .to_string()
    };
    let file = format!("{}\n{}\n", input("victim", "my secret plan"), input("mallory", "what did they ask?"));
    std::fs::write(dir.path().join("in.jsonl"), file).unwrap();
    run_local(dir.path(), &topo);
    assert_eq!(model.counters.calls(), 2, "each input was a model call");
    let answers = lines(&dir.path().join("out.jsonl"));
    let answer = |who: &str| {
        answers.iter().find(|a| a["sender_id"] == who).unwrap()["payload"]["answer"].as_str().unwrap().to_owned()
    };
    assert_eq!(answer("victim"), "answer: my secret plan");
    assert_eq!(answer("mallory"), "answer: what did they ask?", "not the victim's journalled answer");
}
