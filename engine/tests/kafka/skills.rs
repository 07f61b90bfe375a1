//! Skill routing with claiming, on a real broker with separate processes: three instances of
//! the shipped skill agent (`topologies/skill-billing.toml`) share its consumer group, so
//! 1,000 skill requests are each answered exactly once, correlated to the original task id;
//! a response written to the request topic is audited, never answered. The guard works on
//! receive: a request of a zone the agent is not in is not processed (audited), one
//! delegated too deep or past its deadline gets a `failed` status (audited).

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;

#[test]
fn three_skill_instances_answer_each_of_1000_requests_exactly_once() {
    const N: usize = 1000;
    let dir = TestDir::new();
    let group = unique("sk").replace('.', "-");
    let app = format!("skill-{group}-billing");
    let topo = shipped_topology(dir.path(), "skill-billing.toml", &group, &app, "\npartitions = 6");
    let (requests, responses, audit) = (
        format!("group.{group}.skill.billing.requests"),
        format!("group.{group}.skill.billing.responses"),
        format!("group.{group}.observe.audit"),
    );
    create_topic(&requests, 6);
    let mut values: Vec<(String, String)> = (0..N)
        .map(|i| {
            let v = serde_json::json!({
                "type": "skill_request", "correlation_id": format!("t-{i}"), "sender_id": "router", "id": format!("sr-{i}"),
                "timestamp": "2026-11-24T10:00:00Z",
                "payload": {"task_id": format!("t-{i}"), "description": format!("invoice {i}"), "requester_id": "alice"}
            });
            (format!("t-{i}"), v.to_string())
        })
        .collect();
    // A response on the request topic must not be answered (no feedback loop).
    values.push((
        "t-x".into(),
        r#"{"type":"skill_response","correlation_id":"t-x","sender_id":"billing","timestamp":"2026-11-24T10:00:00Z","payload":{"task_id":"t-x","content":"stray"}}"#.into(),
    ));
    let refused = [
        ("t-zone", r#""zone":"hr-private","#, r#"{"task_id":"t-zone","description":"salaries"}"#),
        ("t-deep", "", r#"{"task_id":"t-deep","description":"refund","delegation_depth":9}"#),
        ("t-late", "", r#"{"task_id":"t-late","description":"refund","deadline_at":"2020-01-01T00:00:00Z"}"#),
    ];
    for (id, zone, payload) in refused {
        values.push((
            id.into(),
            format!(
                r#"{{"type":"skill_request","correlation_id":"{id}","sender_id":"router",{zone}"timestamp":"2026-11-24T10:00:00Z","payload":{payload}}}"#
            ),
        ));
    }
    let logs: Vec<_> = ["a", "b", "c"].iter().map(|i| dir.path().join(format!("{i}.log"))).collect();
    let _instances: Vec<Instance> =
        ["a", "b", "c"].iter().zip(&logs).map(|(i, log)| spawn_instance(&topo, i, log)).collect();
    produce(&requests, values);
    let all = consume_all(&responses, N + 2, Duration::from_secs(180));
    let tail = || logs.iter().map(|l| log_tail(l)).collect::<Vec<_>>().join("\n---\n");
    assert_eq!(all.len(), N + 2, "{}", tail());
    let (failed, got): (Vec<&Got>, Vec<&Got>) = all.iter().partition(|g| g.value["type"] == "task_status");
    let mut failed: Vec<(String, String)> = failed
        .iter()
        .map(|g| {
            (g.value["correlation_id"].as_str().unwrap().into(), g.value["payload"]["summary"].as_str().unwrap().into())
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            ("t-deep".to_owned(), "delegation depth 9 exceeds the limit of 3".to_owned()),
            ("t-late".to_owned(), "the deadline 2020-01-01T00:00:00Z has passed".to_owned())
        ]
    );
    let mut per_task: HashMap<String, usize> = HashMap::new();
    for g in &got {
        let v = &g.value;
        assert_eq!(v["type"], "skill_response");
        assert_eq!(v["payload"]["task_id"], v["correlation_id"], "correlated by the original task id: {v}");
        assert_eq!(g.key.as_deref(), v["correlation_id"].as_str());
        assert_eq!(v["payload"]["status"], "completed");
        *per_task.entry(v["correlation_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_task.len(), N, "every task answered");
    assert!(per_task.values().all(|n| *n == 1), "each exactly once");
    assert!(!per_task.contains_key("t-x"), "a response is never answered");
    assert!(!per_task.contains_key("t-zone"), "a request of a zone the agent is not in is not processed");
    let audited = consume_all(&audit, 4, Duration::from_secs(30));
    let mut events: Vec<(&str, &str)> = audited
        .iter()
        .map(|g| (g.value["correlation_id"].as_str().unwrap(), g.value["payload"]["event_type"].as_str().unwrap()))
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("t-deep", "delegation_too_deep"),
            ("t-late", "deadline_passed"),
            ("t-x", "ignored_not_a_request"),
            ("t-zone", "zone_violation")
        ]
    );
    // The three instances shared the work (each claimed partitions of the skill topic).
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("partitions assigned"), "{text}");
    }
}
