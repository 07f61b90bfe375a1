//! The `embed` operator against a real HTTP server speaking the OpenAI `/v1/embeddings`
//! protocol (in this test process), run by the real binary in local mode: memory items are
//! embedded where they are written and indexed with their model vectors; a query embedded by
//! the same model finds the item that shares its meaning but no word; a failing call is
//! retried, then dead-lettered, while other records flow; mixing embedders in one index is an
//! error that says so.

use std::path::Path;
use std::process::Command;

use crate::fake_openai::FakeOpenAi;
use serde_json::{Value, json};

fn topology(dir: &Path, server: &FakeOpenAi, index_vector: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[topology]
name = "embed-local"

[models.embedder]
base_url = "{}"
model = "fake-embed-1"
max_attempts = 2
backoff = "20ms"

[sources.inbox]
type = "file"
path = "in.jsonl"

# One order key: a memory is embedded and indexed before the next record is embedded.
[operators.vectors]
type = "embed"
inputs = ["inbox"]
model = "embedder"
text = 'type == "memory" ? payload.content : payload.description'
order_by = '"all"'

[operators.triage]
type = "route"
inputs = ["vectors"]
routes = [
  {{ name = "memories", when = 'type == "memory"' }},
  {{ name = "requests", when = 'type == "request"' }},
]

[operators.remember]
type = "memory-index"
inputs = ["triage.memories"]
{index_vector}

[operators.recall]
type = "memory-search"
inputs = ["triage.requests"]
index = "remember"
vector = 'payload.embedding'
k = 1

[sinks.found]
type = "file"
inputs = ["recall"]
path = "out.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#,
        server.base_url()
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn envelope(kind: &str, id: &str, field: &str, text: &str) -> String {
    json!({
        "type": kind, "correlation_id": id, "sender_id": "carol", "id": id,
        "timestamp": "2026-11-24T10:00:00Z", "payload": {field: text}
    })
    .to_string()
}

fn run(dir: &Path, topo: &Path, lines: &[String]) -> (std::process::Output, Vec<Value>, Vec<Value>) {
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir)
        .output()
        .unwrap();
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    (out, read("out.jsonl"), read("dlq.jsonl"))
}

#[test]
fn model_vectors_find_meaning_the_local_embedder_cannot() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "vector = 'payload.embedding'");
    let lines = [
        envelope("memory", "m-cat", "content", "The kitten sleeps on the sofa"),
        envelope("memory", "m-money", "content", "Customers get their money back within 14 days"),
        envelope("memory", "m-ship", "content", "We release on Tuesdays"),
        envelope("request", "q-refund", "description", "How does a refund work?"),
        envelope("request", "q-feline", "description", "Where is the feline?"),
        envelope("memory", "always500 m-broken", "content", "always500 this one cannot be embedded"),
        envelope("request", "q-deploy", "description", "When do we deploy?"),
    ];
    let (out, found, dlq) = run(dir.path(), &topo, &lines);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let best = |id: &str| -> String {
        let r =
            found.iter().find(|r| r["correlation_id"] == id).unwrap_or_else(|| panic!("no output for {id}: {found:?}"));
        r["payload"]["memories"][0]["id"].as_str().unwrap().to_owned()
    };
    assert_eq!(best("q-refund"), "m-money", "refund ~ money back, by the model's vectors");
    assert_eq!(best("q-feline"), "m-cat");
    assert_eq!(best("q-deploy"), "m-ship");
    let v = found[0]["payload"]["embedding"].as_array().unwrap();
    assert_eq!(v.len(), 8, "the model's vector travels on the envelope");
    // Each record embedded once; the failing one twice (max_attempts) and then dead-lettered.
    assert_eq!(server.counters.embed_calls.load(std::sync::atomic::Ordering::SeqCst), 6 + 2);
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!((dlq[0]["stage"].as_str(), dlq[0]["line"].as_u64()), (Some("operator:vectors"), Some(6)), "{}", dlq[0]);
    assert!(dlq[0]["error"].as_str().unwrap().contains("HTTP 500"), "{}", dlq[0]);
}

#[test]
fn an_index_refuses_vectors_of_another_embedder() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    // Items indexed by the local embedder (384 dimensions), queried with the model's (8).
    let topo = topology(dir.path(), &server, "");
    let lines = [
        envelope("memory", "m-cat", "content", "The kitten sleeps on the sofa"),
        envelope("request", "q-feline", "description", "Where is the feline?"),
    ];
    let (out, found, dlq) = run(dir.path(), &topo, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let error = dlq[0].to_string();
    assert!(error.contains("384 dimensions, this one has 8"), "{error}");
}

#[test]
fn an_undeclared_embedding_model_is_reported_at_its_place() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &server, "vector = 'payload.embedding'");
    let text = std::fs::read_to_string(&topo).unwrap().replace(r#"model = "embedder""#, r#"model = "nope""#);
    std::fs::write(&topo, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("t.toml:19:9: error: model `nope` is not declared"), "{stderr}");
    assert!(stderr.contains("add a [models.nope] table"), "{stderr}");
}
