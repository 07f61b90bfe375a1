//! The `memory` tool, run by the real binary in local mode against a real HTTP server speaking
//! the OpenAI protocol: the model remembers a fact (a `memory` envelope on the llm operator's
//! `memories` output, indexed by the topology's memory-index) and a later request of the same
//! conversation recalls it through the tool; `validate` warns when remembered items go nowhere.

use std::path::Path;
use std::process::Command;

use crate::fake_openai::FakeOpenAi;
use serde_json::{Value, json};

const TOPOLOGY: &str = r#"
[topology]
name = "memory-tool"

[models.fake]
base_url = "BASE"
model = "fake-1"

[tools.memory]
type = "memory"
index = "remember"
k = 2

[sources.inbox]
type = "file"
path = "in.jsonl"

[operators.triage]
type = "route"
inputs = ["inbox"]
routes = [
  { name = "memories", when = 'type == "memory"' },
  { name = "requests", when = 'type == "request"' },
]

[operators.remember]
type = "memory-index"
inputs = ["triage.memories"MEMORIES_INPUT]

[operators.think]
type = "llm"
inputs = ["triage.requests"]
model = "fake"
tools = ["memory"]

[sinks.answers]
type = "file"
inputs = ["think"]
path = "out.jsonl"

[sinks.remembered]
type = "file"
inputs = ["remember"]
path = "remembered.jsonl"
"#;

fn write(dir: &Path, server: &FakeOpenAi, memories_input: &str) -> std::path::PathBuf {
    let text = TOPOLOGY.replace("BASE", &server.base_url()).replace("MEMORIES_INPUT", memories_input);
    let path = dir.join("t.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn read(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_model_remembers_and_a_later_request_recalls() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = write(dir.path(), &server, r#", "think.memories""#);
    let request = |id: &str, text: &str| {
        json!({"type": "request", "correlation_id": "conv-1", "sender_id": "bob", "id": id,
               "timestamp": "2026-11-24T10:00:00Z", "payload": {"task_id": id, "description": text}})
        .to_string()
    };
    let memory = json!({"type": "memory", "correlation_id": "m0", "sender_id": "carol", "id": "m0",
        "timestamp": "2026-11-24T09:00:00Z", "payload": {"item_id": "m0", "content": "The office cat is called Miso"}});
    let lines = [
        memory.to_string(),
        request("r1", "memory-tool remember: Invoices over 50 EUR need a manager's approval"),
        request("r2", "memory-tool recall: invoices over 50 EUR"),
    ];
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers = read(&dir.path().join("out.jsonl"));
    let answer = |task: &str| -> String {
        let a = answers.iter().find(|a| a["payload"]["task_id"] == task).unwrap_or_else(|| panic!("{answers:?}"));
        a["payload"]["answer"].as_str().unwrap().to_owned()
    };
    assert_eq!(answer("r1"), "done: remembered");
    let recalled = answer("r2");
    assert!(
        recalled.starts_with("done: - Invoices over 50 EUR need a manager's approval (score"),
        "the remembered item comes first: {recalled}"
    );
    let remembered = read(&dir.path().join("remembered.jsonl"));
    assert_eq!(remembered.len(), 2, "{remembered:?}");
    let m = &remembered[1];
    assert_eq!((m["type"].as_str(), m["correlation_id"].as_str()), (Some("memory"), Some("conv-1")));
    assert_eq!(m["payload"]["content"], "Invoices over 50 EUR need a manager's approval");
    assert_eq!(m["payload"]["author_id"], "think");
    assert_eq!(m["payload"]["item_id"].as_str().map(str::len), Some(16), "{m}");
    assert_eq!(server.counters.calls(), 4, "two rounds per request");
}

#[test]
fn validate_warns_when_remembered_items_go_nowhere() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = write(dir.path(), &server, "");
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tool `memory` remembers, but no node reads `think.memories`"), "{stderr}");
    let broken = std::fs::read_to_string(&topo).unwrap().replace(r#"index = "remember""#, r#"index = "nope""#);
    std::fs::write(&topo, broken).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("memory tool: `nope` is not a memory-index operator of this topology"), "{stderr}");
    assert!(stderr.contains("t.toml:9:8"), "points at the tool: {stderr}");
}
