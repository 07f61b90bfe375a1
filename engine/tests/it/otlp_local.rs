//! OpenTelemetry traces of a local run (`kafclaw run --local`, no broker), exported to a real
//! OTLP receiver in the test process: one trace per input line (`process ./in.jsonl`, the
//! model calls, the tool call and the memory search under it), flushed when the run ends
//! (the batch delay is left at its 5 s default, longer than the run); nothing at all with
//! `OTEL_TRACES_EXPORTER=none`; an unsupported protocol refused at start with exit 2; and the
//! outputs byte-identical with tracing on and off.

use std::path::Path;
use std::process::{Command, Output};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

use crate::fake_openai::FakeOpenAi;
use crate::otlp_receiver::start_receiver;

const TOPOLOGY: &str = r#"
[topology]
name = "traced"

[models.fake]
base_url = "BASE"
model = "fake-1"

[tools.memory]
type = "memory"
index = "remember"

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
inputs = ["triage.memories"]

[operators.think]
type = "llm"
inputs = ["triage.requests"]
model = "fake"
tools = ["memory"]

[sinks.answers]
type = "file"
inputs = ["think"]
path = "out.jsonl"
"#;

fn run(dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", "t.toml", "--local"])
        .current_dir(dir)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The run's output lines, each without `payload.usage.latency_ms` (measured, so it differs
/// from run to run); the rest of each line byte for byte.
fn outputs(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let latency = v["payload"]["usage"]["latency_ms"].to_string();
            l.replacen(&format!("\"latency_ms\":{latency}"), "\"latency_ms\":_", 1)
        })
        .collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains("\"latency_ms\":_")), "{text}");
    lines
}

#[test]
fn a_local_run_exports_one_trace_per_line_and_nothing_when_off() {
    let server = FakeOpenAi::start();
    let receiver = start_receiver();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), TOPOLOGY.replace("BASE", &server.base_url())).unwrap();
    let memory = json!({"type": "memory", "correlation_id": "m0", "sender_id": "carol", "id": "m0",
        "timestamp": "2026-11-24T09:00:00Z", "payload": {"item_id": "m0", "content": "The office cat is called Miso"}});
    let request = json!({"type": "request", "correlation_id": "conv-7", "sender_id": "bob", "id": "r1",
        "timestamp": "2026-11-24T10:00:00Z", "payload": {"task_id": "r1", "description": "memory-tool recall: cat"}});
    std::fs::write(dir.path().join("in.jsonl"), format!("{memory}\n{request}\n")).unwrap();

    // Off: no exporter, nothing sent, and the outputs as they are.
    let off = run(dir.path(), &[]);
    assert!(off.status.success(), "{}", String::from_utf8_lossy(&off.stderr));
    let untraced = outputs(dir.path());
    let none = [("OTEL_TRACES_EXPORTER", "none"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")];
    assert!(run(dir.path(), &none).status.success());
    assert_eq!(receiver.requests(), (0, 0), "nothing is exported unless configured");

    // On, over gRPC: everything buffered is flushed when the run ends.
    let endpoint = receiver.endpoint("grpc");
    let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
    let traced = run(dir.path(), &on);
    assert!(traced.status.success(), "{}", String::from_utf8_lossy(&traced.stderr));
    assert_eq!(outputs(dir.path()), untraced, "outputs are the same, byte for byte but the measured latency");
    let spans = receiver.collector.spans();
    let shown = || spans.iter().map(|s| format!("{} {}<-{} {:?}", s.name, s.id, s.parent, s.attrs)).collect::<Vec<_>>();
    assert!(receiver.requests().0 > 0);
    assert!(spans.iter().all(|s| s.service == "kafclaw"), "the default service name: {:?}", shown());

    // Named after the file as the run resolved it (`./in.jsonl`).
    let lines: Vec<_> =
        spans.iter().filter(|s| s.name.starts_with("process ") && s.name.ends_with("in.jsonl")).collect();
    assert_eq!(lines.len(), 2, "one span per line: {:#?}", shown());
    let process = lines.iter().find(|s| s.attrs.get("kafclaw.line").map(String::as_str) == Some("2")).unwrap();
    assert_eq!(process.parent, "", "a line starts a trace");
    assert_eq!(process.kind, SpanKind::Consumer as i32);
    let upsert = spans.iter().find(|s| s.name == "upsert_memory remember").expect("the memory-index span");
    assert_eq!(upsert.parent, lines.iter().find(|s| s.id != process.id).unwrap().id, "indexed in line 1's span");
    let in_trace: Vec<_> = spans.iter().filter(|s| s.trace == process.trace).collect();
    let chats: Vec<_> = in_trace.iter().filter(|s| s.name == "chat fake-1" && s.parent == process.id).collect();
    assert_eq!(chats.len(), 2, "two model rounds: {:#?}", shown());
    for c in &chats {
        assert_eq!(c.attrs["gen_ai.conversation.id"], "conv-7");
        assert_eq!(c.attrs["gen_ai.usage.input_tokens"], "10");
        assert!(!c.attrs.contains_key("gen_ai.input.messages"), "content is off by default");
    }
    let tool = in_trace.iter().find(|s| s.name == "execute_tool memory").expect("the tool span");
    assert_eq!(tool.parent, process.id);
    let search = in_trace.iter().find(|s| s.name == "search_memory remember").expect("the recall span");
    assert_eq!(search.parent, tool.id);
    assert_eq!(search.attrs["kafclaw.memory.hits"], "1");

    // An unsupported protocol is refused before anything runs.
    let json = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")];
    let refused = run(dir.path(), &json);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/json"), "{stderr}");
}
