//! Any language: the plain-Python agent of `examples/python/agent.py` (confluent-kafka and the
//! documented envelope, no SDK) joins a group kept by the shipped roster topology, answers the
//! skill requests it claims, correlated by task id, never answers a response, and leaves.
//! The interpreter is `KAFCLAW_PYTHON` (scripts/test makes a venv with the example's
//! requirements), else `python3`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn python() -> String {
    let py = std::env::var("KAFCLAW_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py).args(["-c", "import confluent_kafka"]).status().is_ok_and(|s| s.success());
    assert!(
        ok,
        "{py} cannot import confluent_kafka: run scripts/test, or pip install -r examples/python/requirements.txt"
    );
    py
}

fn members(group: &str) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["group", "members", "--group", group, "--json", "--brokers", &brokers()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_python_agent_joins_answers_its_skill_and_leaves() {
    let py = python();
    let dir = TestDir::new();
    let group = unique("py").replace('.', "-");
    let roster_app = unique("roster");
    let (announce, requests, responses) = (
        format!("group.{group}.announce"),
        format!("group.{group}.skill.echo.requests"),
        format!("group.{group}.skill.echo.responses"),
    );
    create_topic(&announce, 1);
    create_topic(&requests, 3);
    create_topic(&responses, 3);
    let roster = shipped_topology(dir.path(), "roster.toml", &group, &roster_app, "");
    let _r = spawn_instance(&roster, "r", &dir.path().join("roster.log"));

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/agent.py");
    let log = dir.path().join("python.log");
    let mut agent = Instance(
        Command::new(&py)
            .arg(&script)
            .args([
                "--brokers",
                &brokers(),
                "--group",
                &group,
                "--skill",
                "echo",
                "--agent-id",
                "echo-py",
                "--heartbeat",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let me = loop {
        if let Some(m) = members(&group).into_iter().find(|m| m["agent_id"] == "echo-py") {
            break m;
        }
        assert!(Instant::now() < deadline, "the Python agent never showed in the roster: {}", log_tail(&log));
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(me["identity"]["capabilities"], serde_json::json!(["echo"]));

    // KafClaw-format envelopes: no id, v, trace or zone fields.
    let mut values: Vec<(String, String)> = (0..20)
        .map(|i| {
            let v = format!(
                r#"{{"type":"skill_request","correlation_id":"task-{i}","sender_id":"kafclaw","timestamp":"2026-11-24T10:00:00Z","payload":{{"task_id":"task-{i}","description":"ping {i}"}}}}"#
            );
            (format!("task-{i}"), v)
        })
        .collect();
    values.push((
        "stray".into(),
        r#"{"type":"skill_response","correlation_id":"stray","sender_id":"x","timestamp":"2026-11-24T10:00:00Z","payload":{}}"#.into(),
    ));
    produce(&requests, values);
    let got = consume_all(&responses, 20, Duration::from_secs(60));
    assert_eq!(got.len(), 20, "{}", log_tail(&log));
    for g in &got {
        let v = &g.value;
        let id = v["correlation_id"].as_str().unwrap();
        assert_eq!(v["type"], "skill_response");
        assert_eq!(v["payload"]["task_id"], id);
        assert_eq!(v["payload"]["content"], format!("echo from python: ping {}", id.trim_start_matches("task-")));
        assert_eq!(v["sender_id"], "echo-py");
    }

    sigterm(&mut agent);
    assert_eq!(wait_exit(&mut agent, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
    assert!(std::fs::read_to_string(&log).unwrap().contains("answered 20 request(s)"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while members(&group).iter().any(|m| m["agent_id"] == "echo-py") {
        assert!(Instant::now() < deadline, "the Python agent's leave never reached the roster");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A Python agent and a kafclaw skill agent serving the same skill share the skill's one
/// consumer group (`skill-<group>-<skill>`): every request is answered exactly once, and both
/// kinds of member take part.
#[test]
fn python_and_kafclaw_members_of_one_skill_claim_each_request_once() {
    const N: usize = 200;
    let py = python();
    let dir = TestDir::new();
    let group = unique("mix").replace('.', "-");
    let (requests, responses) =
        (format!("group.{group}.skill.billing.requests"), format!("group.{group}.skill.billing.responses"));
    create_topic(&requests, 4);
    create_topic(&responses, 4);
    let app = format!("skill-{group}-billing");
    let topo = shipped_topology(dir.path(), "skill-billing.toml", &group, &app, "");
    let klog = dir.path().join("kafclaw.log");
    let _k = spawn_instance(&topo, "k", &klog);
    let plog = dir.path().join("python.log");
    let _p = Instance(
        Command::new(&py)
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/agent.py"))
            .args(["--brokers", &brokers(), "--group", &group, "--skill", "billing", "--agent-id", "billing-py"])
            // The group's timeouts, as the kafclaw member has them (spawn_instance).
            .env("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .env("KAFCLAW_KAFKA_MAX_POLL_INTERVAL_MS", "15000")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&plog).unwrap())
            .spawn()
            .unwrap(),
    );
    // Both members in the group before the requests come, so the partitions are split.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&klog).unwrap_or_default().contains("partitions assigned")
        || !std::fs::read_to_string(&plog).unwrap_or_default().contains("joined group")
    {
        assert!(Instant::now() < deadline, "{}\n{}", log_tail(&klog), log_tail(&plog));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    produce(
        &requests,
        (0..N).map(|i| {
            let v = format!(
                r#"{{"type":"skill_request","correlation_id":"m-{i}","sender_id":"router","timestamp":"2026-11-24T10:00:00Z","id":"m-{i}","payload":{{"task_id":"m-{i}","description":"invoice {i}"}}}}"#
            );
            (format!("m-{i}"), v)
        }),
    );
    let got = consume_all(&responses, N, Duration::from_secs(120));
    assert_eq!(got.len(), N, "{}\n{}", log_tail(&klog), log_tail(&plog));
    let mut per_task = std::collections::HashMap::new();
    let mut by = std::collections::BTreeMap::new();
    for g in &got {
        *per_task.entry(g.value["correlation_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        *by.entry(g.value["sender_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(per_task.len(), N);
    assert!(per_task.values().all(|n| *n == 1), "each request answered once");
    assert_eq!(by.keys().cloned().collect::<Vec<_>>(), ["billing", "billing-py"], "both members answered: {by:?}");
}
