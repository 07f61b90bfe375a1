//! Remote mode: `kafclaw gateway` against the real broker. Without a token, or with a wrong
//! one, every route but /healthz answers 401; with the right one a task is submitted (a
//! skill_request on the skill's topic), its result read once the skill answers, its trace
//! read, and /metrics scraped. No token configured: the gateway does not start.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const TOKEN: &str = "gw-token-4b1d";

#[test]
fn every_route_but_health_needs_the_token_and_tasks_round_trip() {
    let dir = TestDir::new();
    let group = unique("gw").replace('.', "-");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("gateway.log");
    let mut gw = Instance(
        Command::new(env!("CARGO_BIN_EXE_kafclaw"))
            .args(["gateway", "--group", &group, "--skill", "echo", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--brokers", &brokers(), "--partitions", "2"])
            .env("KAFCLAW_GATEWAY_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "{}", log_tail(&log));
        std::thread::sleep(Duration::from_millis(200));
    }

    let call = |method: &str, path: &str, token: Option<&str>| -> u16 {
        let url = format!("{base}{path}");
        let mut r = if method == "POST" { http.post(url).body(r#"{"description":"x"}"#) } else { http.get(url) };
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status().as_u16()
    };
    for (method, path) in
        [("POST", "/v1/tasks"), ("GET", "/v1/tasks/t-1"), ("GET", "/v1/traces/t-1"), ("GET", "/metrics")]
    {
        assert_eq!(call(method, path, None), 401, "{method} {path} without a token");
        assert_eq!(call(method, path, Some("gw-token-4b1e")), 401, "{method} {path} with a wrong token");
        assert_eq!(call(method, path, Some(&format!("{TOKEN}x"))), 401, "{method} {path} with a longer token");
    }
    assert_eq!(http.get(format!("{base}/healthz")).send().unwrap().status().as_u16(), 200);

    let submitted: serde_json::Value = http
        .post(format!("{base}/v1/tasks"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"description": "ping", "skill": "echo", "sender_id": "ops"}))
        .send()
        .map(|r| {
            assert_eq!(r.status().as_u16(), 202);
            r.json().unwrap()
        })
        .unwrap();
    let id = submitted["task_id"].as_str().unwrap().to_owned();
    let skill_requests = format!("group.{group}.skill.echo.requests");
    assert_eq!(submitted["topic"], skill_requests);
    let sent = consume_all(&skill_requests, 1, Duration::from_secs(30));
    assert_eq!(sent[0].value["type"], "skill_request");
    assert_eq!(sent[0].value["correlation_id"], id.as_str());
    assert_eq!(sent[0].value["payload"]["description"], "ping");

    let status = |id: &str| -> serde_json::Value {
        let r = http.get(format!("{base}/v1/tasks/{id}")).bearer_auth(TOKEN).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().unwrap()
    };
    assert_eq!(status(&id)["status"], "pending");
    // The skill answers (any agent, any language: here, straight onto the topic).
    let answer = format!(
        r#"{{"type":"skill_response","correlation_id":"{id}","sender_id":"echo-py","timestamp":"2026-11-24T10:00:00Z","payload":{{"task_id":"{id}","status":"completed","content":"pong"}}}}"#
    );
    let span = format!(
        r#"{{"type":"trace","correlation_id":"{id}","sender_id":"echo-py","timestamp":"2026-11-24T10:00:00Z","payload":{{"span_type":"llm","title":"llm fake"}}}}"#
    );
    produce(&format!("group.{group}.skill.echo.responses"), [(id.clone(), answer)]);
    produce(&format!("group.{group}.traces"), [(id.clone(), span)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let s = status(&id);
        if s["status"] != "pending" {
            break s;
        }
        assert!(Instant::now() < deadline, "{}", log_tail(&log));
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((done["status"].as_str(), done["result"].as_str()), (Some("completed"), Some("pong")));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans: serde_json::Value =
            http.get(format!("{base}/v1/traces/{id}")).bearer_auth(TOKEN).send().unwrap().json().unwrap();
        if spans.as_array().is_some_and(|a| a.len() == 1) {
            assert_eq!(spans[0]["payload"]["title"], "llm fake");
            break;
        }
        assert!(Instant::now() < deadline, "{spans}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let bad = http
        .post(format!("{base}/v1/tasks"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"description": "x", "skill": "nope"}))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let metrics = http.get(format!("{base}/metrics")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().unwrap();
    assert!(text.contains("kafclaw_gateway_tasks_submitted_total 1"), "{text}");
    assert!(text.contains(r#"route="/v1/tasks",code="401""#), "{text}");

    sigterm(&mut gw);
    assert_eq!(wait_exit(&mut gw, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
}

#[test]
fn without_a_token_the_gateway_does_not_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["gateway", "--group", "acme", "--listen", "127.0.0.1:1"])
        .env_remove("KAFCLAW_GATEWAY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bearer token: set KAFCLAW_GATEWAY_TOKEN"));
}
