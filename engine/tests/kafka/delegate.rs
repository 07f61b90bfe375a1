//! The `delegate` tool on a real broker: an agent's model hands tasks to a peer (a second
//! kafclaw instance running another topology) through request and reply topics; each answer
//! carries the peer's reply; a peer that never answers fails the call at its deadline while
//! the other calls complete; the published requests are KafClaw envelopes with a derived id.

use std::time::Duration;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

#[test]
fn the_model_delegates_to_a_peer_and_gets_its_reply_or_a_deadline() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let (app, peer) = (unique("dlg-agent"), unique("dlg-billing"));
    let (input, output, asks, replies, nobody) =
        (unique("dlg-in"), unique("dlg-out"), unique("dlg-asks"), unique("dlg-replies"), unique("dlg-nobody"));
    for t in [&input, &asks, &replies, &nobody] {
        create_topic(t, 2);
    }
    let agent = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 2

[models.fake]
base_url = "{}"
model = "fake-1"

[tools.ask-billing]
type = "delegate"
request_topic = "{asks}"
reply_topic = "{replies}"
deadline = "40s"

[tools.ask-nobody]
type = "delegate"
request_topic = "{nobody}"
reply_topic = "{replies}"
deadline = "2s"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.think]
type = "llm"
inputs = ["requests"]
model = "fake"
tools = ["ask-billing", "ask-nobody"]

[sinks.answers]
type = "kafka"
inputs = ["think"]
topic = "{output}"
"#,
            server.base_url()
        ),
    );
    let billing = write_topology(
        dir.path(),
        &peer,
        &format!(
            r#"
[topology]
name = "{peer}"
partitions = 2

[sources.asks]
type = "kafka"
topic = "{asks}"
dedup = true
dedup_within = "1h"

[operators.answer]
type = "map"
inputs = ["asks"]
set = {{ "type" = '"response"', "sender_id" = '"billing"', "payload.status" = '"completed"', "payload.content" = '"billing says: " + payload.description' }}

[sinks.replies]
type = "kafka"
inputs = ["answer"]
topic = "{replies}"
"#
        ),
    );
    let tasks =
        ["ask-billing: invoice 42", "ask-billing: invoice 43", "ask-nobody: anyone there?", "ask-billing: invoice 44"];
    produce(
        &input,
        tasks.iter().enumerate().map(|(i, t)| {
            let v = serde_json::json!({
                "type": "request", "correlation_id": format!("c{i}"), "sender_id": "bob", "id": format!("q{i}"),
                "timestamp": "2026-11-24T10:00:00Z", "payload": {"task_id": format!("q{i}"), "description": format!("delegate {t}")}
            });
            (format!("c{i}"), v.to_string())
        }),
    );
    let (log_a, log_p) = (dir.path().join("agent.log"), dir.path().join("peer.log"));
    let _p = spawn_instance(&billing, "p", &log_p);
    let _a = spawn_instance(&agent, "a", &log_a);
    let answers = consume_all(&output, tasks.len(), Duration::from_secs(120));
    let logs = || format!("{}\n{}", std::fs::read_to_string(&log_a).unwrap(), std::fs::read_to_string(&log_p).unwrap());
    assert_eq!(answers.len(), tasks.len(), "{}", logs());
    let answer = |c: &str| -> String {
        let a = answers.iter().find(|g| g.value["correlation_id"] == c).unwrap_or_else(|| panic!("no {c}"));
        a.value["payload"]["answer"].as_str().unwrap().to_owned()
    };
    assert_eq!(answer("c0"), "done: billing says: invoice 42");
    assert_eq!(answer("c1"), "done: billing says: invoice 43");
    assert_eq!(answer("c3"), "done: billing says: invoice 44");
    let late = answer("c2");
    assert!(late.starts_with(&format!("done: error: no response on `{replies}` within 2s")), "{late}");

    let sent = consume_all(&asks, 3, Duration::from_secs(30));
    assert_eq!(sent.len(), 3);
    for r in &sent {
        let v = &r.value;
        assert_eq!(v["type"], "request");
        assert_eq!(v["id"], v["correlation_id"]);
        assert_eq!(v["payload"]["task_id"], v["correlation_id"]);
        assert!(v["id"].as_str().unwrap().starts_with("dlg-"), "{v}");
        assert_eq!(v["sender_id"], app.as_str());
        assert_eq!(v["payload"]["requester_id"], app.as_str());
        assert!(v["payload"]["deadline_at"].is_string());
        let cause = v["causation_id"].as_str().unwrap();
        assert!(["q0", "q1", "q3"].contains(&cause), "caused by the input the model answered: {v}");
        assert_eq!(v["payload"]["parent_task_id"], cause, "the parent task is the input's: {v}");
        assert_eq!(v["payload"]["delegation_depth"], 1, "one level deeper than the input: {v}");
    }
    assert_eq!(server.counters.calls(), 2 * tasks.len(), "two model rounds per request");
}
