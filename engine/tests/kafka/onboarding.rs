//! Gated onboarding on a real broker, with separate processes: the shipped gatekeeper
//! (`topologies/gatekeeper.toml`) challenges each requester; the right HMAC over the
//! challenge is admitted, a wrong one rejected and audited; an agent that keeps the admitted
//! set (`admissions` over the onboarding topic, a global table) processes requests only from
//! admitted senders and audits the others.

use std::time::{Duration, Instant};

use crate::support::*;
use kafclaw_operators::group::onboard::sign;

const SECRET: &str = "correct horse battery staple";

fn onboard(id: &str, action: &str, extra: serde_json::Value) -> (String, String) {
    let mut payload = serde_json::json!({"action": action, "requester_id": id});
    payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let v = serde_json::json!({"type": "onboard", "correlation_id": id, "sender_id": id,
        "timestamp": "2026-11-24T10:00:00Z", "payload": payload});
    (id.to_owned(), v.to_string())
}

/// Reads the onboarding topic until `want` answers of `action` are there.
fn answers(topic: &str, action: &str, want: usize, log: &std::path::Path) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<serde_json::Value> = consume_all(topic, 1, Duration::from_secs(5))
            .into_iter()
            .map(|g| g.value)
            .filter(|v| v["payload"]["action"] == action)
            .collect();
        if got.len() >= want {
            return got;
        }
        assert!(Instant::now() < deadline, "no {want} `{action}` answers, only {got:?}\n{}", log_tail(log));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_right_hmac_is_admitted_a_wrong_one_rejected_and_strangers_ignored() {
    let dir = TestDir::new();
    let group = unique("ob").replace('.', "-");
    let (gate_app, agent_app) = (unique("gatekeeper"), unique("ob-agent"));
    let (onboarding, requests, out, audit) = (
        format!("group.{group}.control.onboarding"),
        format!("group.{group}.requests"),
        unique("ob-out"),
        format!("group.{group}.observe.audit"),
    );
    create_topic(&onboarding, 1);
    create_topic(&requests, 2);
    let gate = shipped_topology(dir.path(), "gatekeeper.toml", &group, &gate_app, "");
    let agent = write_topology(
        dir.path(),
        &agent_app,
        &format!(
            r#"
[topology]
name = "{agent_app}"
group = "{group}"
partitions = 2

[sources.onboarding]
type = "kafka"
topic = "{onboarding}"
global = true

[operators.admitted]
type = "admissions"
inputs = ["onboarding"]

[sources.requests]
type = "kafka"
topic = "{requests}"

[operators.guard]
type = "guard"
inputs = ["requests"]
agent = "worker"
admitted = "admitted"

[sinks.out]
type = "kafka"
inputs = ["guard"]
topic = "{out}"

[sinks.audit]
type = "kafka"
inputs = ["guard.audit"]
topic = "{audit}"
"#
        ),
    );
    let (gate_log, agent_log) = (dir.path().join("gate.log"), dir.path().join("agent.log"));
    let _g = spawn_instance_env(&gate, "g", &gate_log, &[], &[("KAFCLAW_GROUP_SECRET", SECRET)]);
    let _a = spawn_instance(&agent, "a", &agent_log);

    produce(
        &onboarding,
        [
            onboard("alice", "onboard_request", serde_json::json!({})),
            onboard("mallory", "onboard_request", serde_json::json!({})),
        ],
    );
    let challenges = answers(&onboarding, "onboard_challenge", 2, &gate_log);
    let challenge_of = |id: &str| -> String {
        let c = challenges.iter().find(|c| c["payload"]["requester_id"] == id).unwrap();
        c["payload"]["challenge"].as_str().unwrap().to_owned()
    };
    let (ca, cm) = (challenge_of("alice"), challenge_of("mallory"));
    assert_ne!(ca, cm);
    produce(
        &onboarding,
        [
            onboard(
                "alice",
                "onboard_response",
                serde_json::json!({"challenge": ca, "response": sign(SECRET.as_bytes(), &ca)}),
            ),
            onboard(
                "mallory",
                "onboard_response",
                serde_json::json!({"challenge": cm, "response": sign(b"a guess", &cm)}),
            ),
        ],
    );
    let complete = answers(&onboarding, "onboard_complete", 1, &gate_log);
    assert_eq!(complete.len(), 1);
    assert_eq!(complete[0]["payload"]["requester_id"], "alice");
    let reject = answers(&onboarding, "onboard_reject", 1, &gate_log);
    assert_eq!(reject[0]["payload"]["requester_id"], "mallory");
    assert_eq!(reject[0]["payload"]["reason"], "wrong answer to the challenge");
    let gate_log_text = std::fs::read_to_string(&gate_log).unwrap();
    assert!(!gate_log_text.contains(SECRET), "the secret never appears in logs");

    // The agent's admitted set follows the onboarding topic; give its global reader a moment.
    std::thread::sleep(Duration::from_secs(2));
    let request = |from: &str, i: usize| {
        let v = serde_json::json!({"type": "request", "correlation_id": format!("{from}-{i}"), "sender_id": from,
            "timestamp": "2026-11-24T10:00:05Z", "payload": {"task_id": format!("{from}-{i}"), "description": "hi"}});
        (format!("{from}-{i}"), v.to_string())
    };
    produce(&requests, [request("alice", 1), request("mallory", 1), request("eve", 1), request("alice", 2)]);
    let processed = consume_all(&out, 2, Duration::from_secs(60));
    let mut senders: Vec<&str> = processed.iter().map(|g| g.value["sender_id"].as_str().unwrap()).collect();
    senders.sort();
    assert_eq!(senders, ["alice", "alice"], "only the admitted member's requests are processed");

    let audited = consume_all(&audit, 4, Duration::from_secs(60));
    let mut events: Vec<(String, String)> = audited
        .iter()
        .map(|g| {
            let p = &g.value["payload"];
            let who = p["details"]["requester_id"].as_str().or(p["details"]["sender_id"].as_str()).unwrap();
            (p["event_type"].as_str().unwrap().to_owned(), who.to_owned())
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("not_admitted".to_owned(), "eve".to_owned()),
            ("not_admitted".to_owned(), "mallory".to_owned()),
            ("onboard_admitted".to_owned(), "alice".to_owned()),
            ("onboard_rejected".to_owned(), "mallory".to_owned()),
        ]
    );
}
