//! OpenTelemetry traces over OTLP, end to end: a real OTLP receiver in the test process (gRPC
//! through tonic's generated `TraceService` server, and OTLP/HTTP on `/v1/traces`, both
//! decoding the protobuf with `opentelemetry-proto`'s types) and two `kafclaw run` instances
//! on the broker. Agent A's model delegates to agent B (the `delegate` tool); B's model recalls
//! from memory (the `memory` tool) and answers. One trace must result:
//!
//! ```text
//! A  process <input>            consumer, root
//!    ├─ chat fake-1             client   (asks for the delegate tool)
//!    ├─ execute_tool ask-b
//!    │  └─ invoke_agent <asks>  client   ── traceparent header ──┐
//!    └─ chat fake-1                                              │
//! B  process <asks>             consumer, child of invoke_agent ◄┘
//!    ├─ search_memory remember  (the memory-search operator)
//!    ├─ chat fake-1
//!    ├─ execute_tool memory
//!    │  └─ search_memory remember
//!    └─ chat fake-1
//! ```
//!
//! with the messaging and GenAI attributes set, and message content only when
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`. The gRPC run has content off, the
//! HTTP/protobuf run has it on.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::fake_openai::FakeOpenAi;
use crate::otlp_receiver::{Got, start_receiver};
use crate::support::*;

#[test]
fn one_trace_across_two_agents_over_grpc_without_content() {
    two_agents_one_trace("grpc", false);
}

#[test]
fn one_trace_across_two_agents_over_http_protobuf_with_content() {
    two_agents_one_trace("http/protobuf", true);
}

fn two_agents_one_trace(protocol: &str, capture: bool) {
    let server = FakeOpenAi::start();
    let receiver = start_receiver();
    let dir = TestDir::new();
    let (a, b) = (unique("otlp-a"), unique("otlp-b"));
    let (input, output, asks, replies, memories) =
        (unique("otlp-in"), unique("otlp-out"), unique("otlp-asks"), unique("otlp-replies"), unique("otlp-mem"));
    for t in [&input, &output, &asks, &replies, &memories] {
        create_topic(t, 1);
    }
    let base = server.base_url();
    let agent_a = write_topology(
        dir.path(),
        &a,
        &format!(
            r#"
[topology]
name = "{a}"
partitions = 1

[models.fake]
base_url = "{base}"
model = "fake-1"

[tools.ask-b]
type = "delegate"
request_topic = "{asks}"
reply_topic = "{replies}"
deadline = "60s"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.think]
type = "llm"
inputs = ["requests"]
model = "fake"
tools = ["ask-b"]

[sinks.answers]
type = "kafka"
inputs = ["think"]
topic = "{output}"
"#
        ),
    );
    let agent_b = write_topology(
        dir.path(),
        &b,
        &format!(
            r#"
[topology]
name = "{b}"
partitions = 1

[models.fake]
base_url = "{base}"
model = "fake-1"

[tools.memory]
type = "memory"
index = "remember"

[sources.shared]
type = "kafka"
topic = "{memories}"
global = true

[operators.remember]
type = "memory-index"
inputs = ["shared"]

[sources.asks]
type = "kafka"
topic = "{asks}"

[operators.recall]
type = "memory-search"
inputs = ["asks"]
index = "remember"
k = 1

[operators.think]
type = "llm"
inputs = ["recall"]
model = "fake"
tools = ["memory"]

[operators.reply]
type = "map"
inputs = ["think"]
set = {{ "type" = '"response"', "payload.status" = '"completed"', "payload.content" = 'payload.answer' }}

[sinks.replies]
type = "kafka"
inputs = ["reply"]
topic = "{replies}"
"#
        ),
    );
    let memory = r#"{"type":"memory","correlation_id":"m0","sender_id":"w","timestamp":"2026-11-24T09:00:00Z","id":"m0","payload":{"content":"Refunds over 50 EUR need approval"}}"#;
    produce(&memories, [("m0".to_owned(), memory.to_owned())]);
    let request = serde_json::json!({
        "type": "request", "correlation_id": "conv-1", "sender_id": "bob", "id": "q1",
        "timestamp": "2026-11-24T10:00:00Z",
        "payload": {"task_id": "q1", "description": "delegate ask-b: memory-tool recall: refunds"}
    });
    produce(&input, [("conv-1".to_owned(), request.to_string())]);

    let endpoint = receiver.endpoint(protocol);
    let capture = if capture { "true" } else { "false" };
    let env = |service: &'static str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", capture.to_owned()),
        ]
    };
    let spawn = |topology: &std::path::Path, id: &str, log: &std::path::Path, service: &'static str| {
        let vars = env(service);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        spawn_instance_env(topology, id, log, &[], &vars)
    };
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut inst_b = spawn(&agent_b, "b", &log_b, "agent-b");
    let mut inst_a = spawn(&agent_a, "a", &log_a, "agent-a");
    let logs = || format!("A:\n{}\nB:\n{}", log_tail(&log_a), log_tail(&log_b));

    let answers = consume_all(&output, 1, Duration::from_secs(120));
    assert_eq!(answers.len(), 1, "{}", logs());
    let answer = &answers[0];
    let text = answer.value["payload"]["answer"].as_str().unwrap_or_default();
    assert!(text.starts_with("done: done: - Refunds over 50 EUR need approval"), "{text}\n{}", logs());
    // Outputs are what they are without tracing: the header carries the envelope's own,
    // deterministic trace context.
    let v = &answer.value;
    let tp = format!("00-{}-{}-01", v["trace_id"].as_str().unwrap(), v["span_id"].as_str().unwrap());
    assert_eq!(answer.headers.get("traceparent"), Some(&tp));

    // Spans leave in batches (every 100 ms here); wait for the last ones, then stop.
    let wanted = [
        ("agent-a", format!("process {input}")),
        ("agent-a", format!("invoke_agent {asks}")),
        ("agent-b", format!("process {asks}")),
        ("agent-b", "execute_tool memory".to_owned()),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let complete = |spans: &[Got]| {
        wanted.iter().all(|(svc, name)| spans.iter().any(|s| s.service == *svc && s.name == *name))
            && spans.iter().filter(|s| s.name == "chat fake-1").count() >= 4
    };
    while !complete(&receiver.collector.spans()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&mut inst_a);
    sigterm(&mut inst_b);
    assert_eq!(wait_exit(&mut inst_a, Duration::from_secs(60)), Some(0), "{}", logs());
    assert_eq!(wait_exit(&mut inst_b, Duration::from_secs(60)), Some(0), "{}", logs());
    let spans = receiver.collector.spans();
    let shown = || {
        spans
            .iter()
            .map(|s| format!("{} {} {}<-{} {:?}", s.service, s.name, s.id, s.parent, s.attrs))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(complete(&spans), "spans missing:\n{}\n{}", shown(), logs());
    let (grpc, http) = receiver.requests();
    match protocol {
        "grpc" => assert!(grpc > 0 && http == 0, "gRPC {grpc}, HTTP {http}"),
        _ => assert!(http > 0 && grpc == 0, "gRPC {grpc}, HTTP {http}"),
    }

    let one = |svc: &str, name: &str| -> Got {
        let found: Vec<&Got> = spans.iter().filter(|s| s.service == svc && s.name == name).collect();
        assert_eq!(found.len(), 1, "one `{name}` of {svc}:\n{}", shown());
        found[0].clone()
    };
    let children = |parent: &Got, name: &str| -> Vec<Got> {
        spans.iter().filter(|s| s.parent == parent.id && s.name == name).cloned().collect()
    };

    // Agent A: the consumer span is the root; its model calls and tool call are its children.
    let a_process = one("agent-a", &format!("process {input}"));
    let trace = a_process.trace.clone();
    assert_eq!(a_process.parent, "", "A's consumer span is the trace's root");
    assert_eq!(a_process.kind, SpanKind::Consumer as i32);
    let attr =
        |s: &Got, k: &str| s.attrs.get(k).cloned().unwrap_or_else(|| panic!("{} has no {k}: {:?}", s.name, s.attrs));
    assert_eq!(attr(&a_process, "messaging.system"), "kafka");
    assert_eq!(attr(&a_process, "messaging.operation.type"), "process");
    assert_eq!(attr(&a_process, "messaging.destination.name"), input);
    assert_eq!(attr(&a_process, "messaging.destination.partition.id"), "0");
    assert_eq!(attr(&a_process, "messaging.kafka.offset"), "0");
    assert_eq!(attr(&a_process, "messaging.consumer.group.name"), a);
    let a_chats = children(&a_process, "chat fake-1");
    assert_eq!(a_chats.len(), 2, "two model rounds in A:\n{}", shown());
    let a_tool = one("agent-a", "execute_tool ask-b");
    assert_eq!(a_tool.parent, a_process.id);
    assert_eq!(attr(&a_tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(attr(&a_tool, "gen_ai.tool.name"), "ask-b");
    assert_eq!(attr(&a_tool, "gen_ai.tool.call.id"), "call_m");
    assert_eq!(attr(&a_tool, "gen_ai.conversation.id"), "conv-1");
    let invoke = one("agent-a", &format!("invoke_agent {asks}"));
    assert_eq!(invoke.parent, a_tool.id, "the delegation is the tool call's child");
    assert_eq!(invoke.kind, SpanKind::Client as i32);
    assert_eq!(attr(&invoke, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(attr(&invoke, "gen_ai.conversation.id"), "conv-1");
    assert_eq!(attr(&invoke, "messaging.destination.name"), asks);

    // The delegation request carries the invoke_agent span's context to B.
    let sent = consume_all(&asks, 1, Duration::from_secs(30));
    assert_eq!(sent.len(), 1);
    let delegated = sent[0].value["correlation_id"].as_str().unwrap().to_owned();
    assert_eq!(sent[0].headers.get("traceparent"), Some(&format!("00-{trace}-{}-01", invoke.id)));

    // Agent B: its consumer span is a child of A's invoke_agent span, in the same trace.
    let b_process = one("agent-b", &format!("process {asks}"));
    assert_eq!(b_process.parent, invoke.id, "B's consumer span continues A's delegation");
    assert_eq!(b_process.kind, SpanKind::Consumer as i32);
    assert_eq!(attr(&b_process, "messaging.destination.name"), asks);
    assert_eq!(attr(&b_process, "messaging.consumer.group.name"), b);
    let b_chats = children(&b_process, "chat fake-1");
    assert_eq!(b_chats.len(), 2, "two model rounds in B:\n{}", shown());
    let b_tool = one("agent-b", "execute_tool memory");
    assert_eq!(b_tool.parent, b_process.id);
    assert_eq!(attr(&b_tool, "gen_ai.conversation.id"), delegated);
    assert_eq!(children(&b_process, "search_memory remember").len(), 1, "the memory-search operator:\n{}", shown());
    assert_eq!(children(&b_tool, "search_memory remember").len(), 1, "the memory tool's recall:\n{}", shown());
    for s in spans.iter().filter(|s| s.name.starts_with("search_memory")) {
        assert_eq!(attr(s, "gen_ai.operation.name"), "search_memory");
        assert_eq!(attr(s, "gen_ai.data_source.id"), "remember");
    }

    // One trace, and every span of this request is in it.
    for s in [&a_process, &a_tool, &invoke, &b_process, &b_tool].into_iter().chain(&a_chats).chain(&b_chats) {
        assert_eq!(s.trace, trace, "{} is in another trace", s.name);
    }
    for (chats, conversation) in [(&a_chats, "conv-1"), (&b_chats, delegated.as_str())] {
        for c in chats {
            assert_eq!(c.kind, SpanKind::Client as i32);
            assert_eq!(attr(c, "gen_ai.operation.name"), "chat");
            assert_eq!(attr(c, "gen_ai.provider.name"), "openai");
            assert_eq!(attr(c, "gen_ai.request.model"), "fake-1");
            assert_eq!(attr(c, "gen_ai.response.model"), "fake-1");
            assert_eq!(attr(c, "gen_ai.usage.input_tokens"), "10");
            assert_eq!(attr(c, "gen_ai.usage.output_tokens"), "5");
            assert_eq!(attr(c, "gen_ai.conversation.id"), conversation);
        }
    }

    // Content: only when capture is on.
    let content_keys =
        ["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"];
    if capture == "false" {
        for s in &spans {
            for k in content_keys {
                assert!(!s.attrs.contains_key(k), "{} carries {k} with capture off", s.name);
            }
            for v in s.attrs.values() {
                assert!(!v.contains("refunds") && !v.contains("Refunds"), "{} carries content: {v}", s.name);
            }
        }
    } else {
        let first = a_chats.iter().find(|c| attr(c, "gen_ai.input.messages").matches("\"role\"").count() == 1);
        let first = first.unwrap_or_else(|| panic!("A's first chat:\n{}", shown()));
        let input: serde_json::Value = serde_json::from_str(&attr(first, "gen_ai.input.messages")).unwrap();
        assert_eq!(input[0]["role"], "user");
        assert_eq!(input[0]["parts"][0]["content"], "delegate ask-b: memory-tool recall: refunds");
        let output: serde_json::Value = serde_json::from_str(&attr(first, "gen_ai.output.messages")).unwrap();
        assert_eq!(output[0]["parts"][0]["type"], "tool_call");
        assert_eq!(output[0]["parts"][0]["name"], "ask-b");
        assert!(attr(&a_tool, "gen_ai.tool.call.arguments").contains("memory-tool recall: refunds"));
        assert!(attr(&a_tool, "gen_ai.tool.call.result").starts_with("done: - Refunds over 50 EUR"));
        assert!(attr(&b_tool, "gen_ai.tool.call.result").contains("Refunds over 50 EUR need approval"));
    }
}
