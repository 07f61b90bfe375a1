//! Remote mode: `kafclaw gateway` against the real broker. Without a token, or with a wrong
//! one, every route but /healthz answers 401; with the right one a task is submitted (a
//! skill_request on the skill's topic), its result read once the skill answers, its trace
//! read, and /metrics scraped. No token configured: the gateway does not start. The sender
//! and zone of a task are the token's identity: a body naming them is refused, and two tokens
//! of a tokens file stamp their own identities.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const TOKEN: &str = "gw-token-4b1d";

/// Starts `kafclaw gateway --group group` with `args` and `env`, and waits for /healthz.
pub(crate) fn start_gateway(group: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> (Instance, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafclaw"));
    cmd.args(["gateway", "--group", group, "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .args(["--brokers", &brokers(), "--partitions", "2"])
        .env_remove("KAFCLAW_GATEWAY_TOKEN")
        .env_remove("KAFCLAW_GATEWAY_TOKENS_FILE")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let gw = Instance(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "{}", log_tail(log));
        std::thread::sleep(Duration::from_millis(200));
    }
    (gw, base)
}

#[test]
fn every_route_but_health_needs_the_token_and_tasks_round_trip() {
    let dir = TestDir::new();
    let group = unique("gw").replace('.', "-");
    let log = dir.path().join("gateway.log");
    let (mut gw, base) = start_gateway(&group, &["--skill", "echo"], &[("KAFCLAW_GATEWAY_TOKEN", TOKEN)], &log);
    let http = reqwest::blocking::Client::new();

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
        .json(&serde_json::json!({"description": "ping", "skill": "echo"}))
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
    // The env token's default identity: sender `gateway`, no zone.
    assert_eq!(sent[0].value["sender_id"], "gateway");
    assert_eq!(sent[0].value["payload"]["requester_id"], "gateway");
    assert!(sent[0].value.get("zone").is_none(), "{}", sent[0].value);

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

/// Posts `body` with `token`; the status and the JSON answer.
fn post(base: &str, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new().post(format!("{base}/v1/tasks")).bearer_auth(token).json(&body).send();
    let r = r.unwrap();
    (r.status().as_u16(), r.json().unwrap_or_default())
}

#[test]
fn the_sender_and_zone_are_the_tokens_not_the_body() {
    let dir = TestDir::new();
    let group = unique("gw-id").replace('.', "-");
    let requests = format!("group.{group}.requests");
    create_topic(&requests, 1);
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# name    sender_id       zone      token\n\
         ops        ops-console     -         tok-ops-9f2c\n\
         partner    partner-acme    external  tok-partner-71aa\n",
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    // The env token is set too: with a tokens file it is not read.
    let (mut gw, base) =
        start_gateway(&group, &["--tokens-file", tokens.to_str().unwrap()], &[("KAFCLAW_GATEWAY_TOKEN", TOKEN)], &log);

    // A token holder cannot pose as an internal agent, nor move its task to another zone.
    for (body, field) in [
        (serde_json::json!({"description": "rm -rf", "sender_id": "internal-agent"}), "sender_id"),
        (serde_json::json!({"description": "rm -rf", "zone": "internal"}), "zone"),
        (serde_json::json!({"description": "rm -rf", "sender_id": "ops-console", "zone": "internal"}), "sender_id"),
    ] {
        let (code, answer) = post(&base, "tok-partner-71aa", body);
        assert_eq!(code, 400, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(&format!("`{field}` is not the caller's to choose")), "{error}");
    }
    assert_eq!(post(&base, TOKEN, serde_json::json!({"description": "x"})).0, 401, "the env token is not read");

    let (code, a) = post(&base, "tok-partner-71aa", serde_json::json!({"description": "from the partner"}));
    assert_eq!(code, 202, "{a}");
    let (code, b) = post(&base, "tok-ops-9f2c", serde_json::json!({"description": "from ops"}));
    assert_eq!(code, 202, "{b}");

    let sent = consume_all(&requests, 2, Duration::from_secs(30));
    assert_eq!(sent.len(), 2, "only the accepted tasks reach the topic");
    let by_id = |id: &serde_json::Value| sent.iter().find(|g| g.value["correlation_id"] == *id).unwrap().value.clone();
    let partner = by_id(&a["task_id"]);
    assert_eq!(partner["type"], "request");
    assert_eq!(partner["payload"]["description"], "from the partner");
    assert_eq!(partner["sender_id"], "partner-acme");
    assert_eq!(partner["zone"], "external");
    assert_eq!(partner["payload"]["requester_id"], "partner-acme");
    let ops = by_id(&b["task_id"]);
    assert_eq!(ops["sender_id"], "ops-console");
    assert_eq!(ops["payload"]["requester_id"], "ops-console");
    assert!(ops.get("zone").is_none(), "`-` is no zone: {ops}");

    sigterm(&mut gw);
    assert_eq!(wait_exit(&mut gw, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("tok-ops-9f2c") && !log.contains("tok-partner-71aa"), "no secrets in the log:\n{log}");
}

#[test]
fn a_bad_tokens_file_stops_the_gateway_naming_the_line() {
    let dir = TestDir::new();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ops ops-console - tok-1\npartner partner-acme tok-2\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["gateway", "--group", "acme", "--listen", "127.0.0.1:1", "--tokens-file", tokens.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2: expected `name sender_id zone token`"), "{err}");
    assert!(!err.contains("tok-1"), "{err}");
}
