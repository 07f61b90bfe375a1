//! Secrets never leave, on Kafka: a model endpoint echoing the request (with
//! `Authorization: Bearer <key>`) in a 400 body and in a 200 answer; the dead-letter topic
//! (headers and value), the output topic, the journal's changelog and the instance's debug log
//! hold neither the key nor the base URL's password in any form; the dead letter still says
//! `HTTP 400` and marks what was redacted.

use std::time::Duration;

use crate::echo_model::{KEY, URL_PASSWORD, URL_USER, echo_server, forbidden};
use crate::support::*;

#[test]
fn an_echoed_key_reaches_no_topic_and_no_log() {
    let addr = echo_server();
    let dir = TestDir::new();
    let (app, input, output) = (unique("secrets-app"), unique("secrets-in"), unique("secrets-out"));
    create_topic(&input, 1);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 1

[models.echo]
base_url = "http://{URL_USER}:{URL_PASSWORD}@{addr}/v1"
model = "echo-1"
api_key_env = "KAFCLAW_E2E_ECHO_KEY"
max_attempts = 2
backoff = "10ms"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "echo"
prompt = "{{{{ payload.description }}}}"

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"
"#
        ),
    );
    let request = |i: usize, text: &str| {
        let v = serde_json::json!({
            "type": "request", "correlation_id": format!("c{i}"), "sender_id": "alice",
            "timestamp": "2026-11-24T10:00:00Z", "id": format!("in-{i}"),
            "payload": {"task_id": format!("t-{i}"), "description": text}
        });
        (format!("c{i}"), v.to_string())
    };
    produce(&input, [request(0, "echo400 please"), request(1, "echo200 please")]);
    let log = dir.path().join("run.log");
    let mut a = spawn_instance_env(&topo, "a", &log, &[], &[("KAFCLAW_E2E_ECHO_KEY", KEY), ("RUST_LOG", "debug")]);
    stop_once_committed(&mut a, &app, &input, 1, 2, &log, Duration::from_secs(90));

    let dead = consume_all(&format!("{app}.dlq"), 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = &dead[0].headers["kafclaw.error"];
    assert!(error.contains("HTTP 400") && error.contains("[redacted]"), "{error}");
    let answers = consume_all(&output, 1, Duration::from_secs(30));
    assert_eq!(answers.len(), 1, "{answers:?}");
    let content = answers[0].value["payload"]["answer"].as_str().unwrap_or_default();
    assert!(content.contains("Bearer [redacted]"), "{content}");
    let journal = consume_all(&format!("{app}-answer.journal-changelog"), 1, Duration::from_secs(30));
    assert_eq!(journal.len(), 1, "the answer was journalled: {journal:?}");

    let mut everything = vec![("log".to_owned(), std::fs::read_to_string(&log).unwrap())];
    for (topic, records) in [("dlq", &dead), ("output", &answers), ("journal", &journal)] {
        for r in records {
            everything.push((format!("{topic} value"), r.value.to_string()));
            everything.push((format!("{topic} headers"), format!("{:?}", r.headers)));
        }
    }
    for (name, text) in &everything {
        for f in forbidden() {
            assert!(!text.contains(&f), "{name} holds `{f}`:\n{text}");
        }
    }
}
