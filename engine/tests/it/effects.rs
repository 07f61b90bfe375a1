//! Effect classes without Kafka (docs/effects.md): the `http` tool's reconcile action against
//! a real HTTP service (2xx: done, 404: never happened, anything else: unknown), the
//! `Idempotency-Key` it sends by class, and the local effect log kept across two local runs
//! of the real binary, with a crash between an effect and its result simulated by a log that
//! holds the intent alone.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::effect_service::EffectService;
use crate::fake_openai::FakeOpenAi;
use kafclaw_agent::tools::effect::{Effect, Reconciled};
use kafclaw_agent::tools::http::{HttpOptions, HttpTool};
use kafclaw_agent::tools::{CallContext, Tool};

fn http_tool(service: &EffectService, effect: Effect, reconcile: Option<&str>) -> HttpTool {
    HttpTool::with_options(HttpOptions {
        allow_hosts: vec![format!("127.0.0.1:{}", service.port)],
        allow_addresses: vec!["127.0.0.1".into()],
        method: "POST".into(),
        timeout: std::time::Duration::from_secs(5),
        effect: Some(effect),
        reconcile_url: reconcile.map(|path| service.url(&format!("status/{path}/{{idempotency_key}}"))),
        ..HttpOptions::default()
    })
    .unwrap()
}

#[test]
fn http_reconcile_reads_2xx_as_done_404_as_absent_and_the_rest_as_unknown() {
    let service = EffectService::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = "app/answer/orders/3/41/0/0";
    let pay = http_tool(&service, Effect::Reconcile, Some("pay"));
    let reconcile =
        |tool: &HttpTool, key: &str| rt.block_on(tool.reconcile(json!({}), CallContext::from(key)).unwrap());
    assert_eq!(reconcile(&pay, key), Reconciled::Absent, "no POST with the key yet");
    let posted = rt.block_on(pay.call(json!({"url": service.url("pay"), "body": "3 EUR"}), key.into())).unwrap();
    assert_eq!(posted.text, "pay done (post 1 of this key)");
    assert_eq!(reconcile(&pay, key), Reconciled::Done("pay done (post 1 of this key)".into()));
    let broken = http_tool(&service, Effect::Reconcile, Some("broken"));
    match reconcile(&broken, key) {
        Reconciled::Unknown(why) => assert!(why.contains("HTTP 500") && why.contains("status store down"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The key, slashes and all, reached the service whole (percent-encoded in the path).
    assert_eq!(service.gets(), vec![key.to_owned(), key.to_owned(), key.to_owned()]);
    // Every class but `none` sends the key.
    let plain = http_tool(&service, Effect::None, None);
    rt.block_on(plain.call(json!({"url": service.url("plain")}), "k-none".into())).unwrap();
    let once = http_tool(&service, Effect::AtMostOnce, None);
    rt.block_on(once.call(json!({"url": service.url("once")}), "k-once".into())).unwrap();
    let posts = service.posts();
    assert_eq!(posts.get(&("plain".into(), String::new())), Some(&1), "{posts:?}");
    assert_eq!(posts.get(&("once".into(), "k-once".into())), Some(&1), "{posts:?}");
    assert!(
        pay.reconcile(json!({}), CallContext::from("k")).is_some() && once.reconcile(json!({}), "k".into()).is_none()
    );
}

fn run_local(dir: &Path, topo: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local", "--state-dir", "state"])
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_local_effect_log_survives_runs_and_an_intent_alone_is_an_unknown_outcome() {
    let model = FakeOpenAi::start();
    let service = EffectService::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[topology]
name = "effects-local"

[models.fake]
base_url = "{}"
model = "fake-1"

[tools.pay]
type = "http"
method = "POST"
effect = "at-most-once"
allow_hosts = ["127.0.0.1:{port}"]
allow_addresses = ["127.0.0.1"]

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
tools = ["pay"]

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[sinks.audits]
type = "file"
inputs = ["answer.audit"]
path = "audit.jsonl"
"#,
            model.base_url(),
            port = service.port
        ),
    )
    .unwrap();
    let script = json!([["pay", {"url": service.url("pay"), "body": "3 EUR"}]]);
    let input = |i: usize| {
        json!({"type": "request", "correlation_id": format!("c{i}"), "sender_id": "alice", "timestamp": "2026-12-01T10:00:00Z",
               "id": format!("r{i}"), "payload": {"task_id": format!("r{i}"), "description": format!("tool-script {script}")}})
        .to_string()
    };
    std::fs::write(dir.path().join("in.jsonl"), format!("{}\n{}\n", input(0), input(1))).unwrap();
    run_local(dir.path(), &topo);
    assert_eq!(service.total("pay"), 2, "one POST per input: {:?}", service.posts());
    let log = dir.path().join("state/effects-local/effects.local.jsonl");
    let records = lines(&log);
    assert_eq!(records.len(), 6, "a round record, an intent and a result per input: {records:?}");
    assert_eq!(records.iter().filter(|r| r["tool"] == "llm").count(), 2, "{records:?}");

    // A crash between input 1's effect and its result: the log holds its intent alone.
    let kept: Vec<String> = records
        .iter()
        .filter(|r| !(r["key"].as_str().unwrap().ends_with("/0/1/0/0") && r.get("outcome").is_some()))
        .map(Value::to_string)
        .collect();
    assert_eq!(kept.len(), 5);
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();

    // The same inputs again: input 0 gets its recorded result, input 1 an unknown outcome.
    run_local(dir.path(), &topo);
    assert_eq!(service.total("pay"), 2, "no POST was made again: {:?}", service.posts());
    let answers = lines(&dir.path().join("out.jsonl"));
    let answer = |id: &str| {
        answers.iter().find(|a| a["payload"]["task_id"] == id).unwrap()["payload"]["answer"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(answer("r0"), "done: pay done (post 1 of this key)");
    let unknown = answer("r1");
    assert!(unknown.starts_with("done: outcome unknown: tool `pay` (at-most-once)"), "{unknown}");
    assert!(unknown.contains("effects-local/answer/f-") && unknown.contains("/0/1/0/0`"), "{unknown}");
    let audits = lines(&dir.path().join("audit.jsonl"));
    let events: Vec<&str> = audits.iter().filter_map(|a| a["payload"]["event_type"].as_str()).collect();
    assert_eq!(events, ["tool_outcome_unknown"], "{audits:?}");
    assert_eq!(audits[0]["payload"]["details"]["tool"], "pay");
    assert!(audits[0]["payload"]["details"]["input"].as_str().unwrap().ends_with("/0/1"), "{audits:?}");
}

/// A topology of two `at-most-once` POST tools, `pay` and `ship`, answering inputs of `in.jsonl`.
fn two_tools(dir: &Path, model: &FakeOpenAi, service: &EffectService) -> std::path::PathBuf {
    let topo = dir.join("t.toml");
    let tool = |name: &str| {
        format!(
            "[tools.{name}]\ntype = \"http\"\nmethod = \"POST\"\neffect = \"at-most-once\"\nallow_hosts = [\"127.0.0.1:{}\"]\nallow_addresses = [\"127.0.0.1\"]\n",
            service.port
        )
    };
    let text = format!(
        r#"[topology]
name = "rounds-local"

[models.fake]
base_url = "{}"
model = "fake-1"

{}
{}
[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
tools = ["pay", "ship"]

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[sinks.audits]
type = "file"
inputs = ["answer.audit"]
path = "audit.jsonl"
"#,
        model.base_url(),
        tool("pay"),
        tool("ship"),
    );
    std::fs::write(&topo, text).unwrap();
    topo
}

#[test]
fn a_rerun_follows_the_recorded_rounds_whatever_the_model_answers_now() {
    let model = FakeOpenAi::start();
    let service = EffectService::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = two_tools(dir.path(), &model, &service);
    // Variant 0 pays, then ships; variant 1 (the model answering a rerun otherwise) ships
    // elsewhere first, then pays another amount elsewhere, with other call ids.
    let scripts = json!([
        [["pay", {"url": service.url("pay"), "body": "3 EUR"}], ["ship", {"url": service.url("ship"), "body": "to x"}]],
        [["ship", {"url": service.url("ship-v1"), "body": "to y"}], ["pay", {"url": service.url("pay-v1"), "body": "5 EUR"}]]
    ]);
    let input = |i: usize| {
        json!({"type": "request", "correlation_id": format!("c{i}"), "sender_id": "alice", "timestamp": "2026-12-01T10:00:00Z",
               "id": format!("r{i}"), "payload": {"task_id": format!("r{i}"), "description": format!("tool-scripts {scripts}")}})
        .to_string()
    };
    std::fs::write(dir.path().join("in.jsonl"), format!("{}\n{}\n", input(0), input(1))).unwrap();
    run_local(dir.path(), &topo);
    assert_eq!(model.counters.calls(), 6, "three rounds per input");
    assert_eq!((service.total("pay"), service.total("ship")), (2, 2), "{:?}", service.posts());
    let log = dir.path().join("state/rounds-local/effects.local.jsonl");
    let records = lines(&log);
    let key = |r: &Value| r["key"].as_str().unwrap().to_owned();
    let rounds: Vec<&Value> = records.iter().filter(|r| r["tool"] == "llm").collect();
    assert_eq!(rounds.len(), 4, "a round record per round with calls: {records:?}");
    for r in &rounds {
        let calls = &r["arguments"]["tool_calls"];
        let expected = if key(r).ends_with("/0") { "pay" } else { "ship" };
        assert_eq!(calls[0]["function"]["name"], expected, "{r}");
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call_v0_"), "{r}");
    }
    // Each round record comes before the intents of its round.
    let at = |k: &str| records.iter().position(|r| key(r) == k).unwrap();
    for r in &rounds {
        assert!(at(&key(r)) < at(&format!("{}/0", key(r))), "{records:?}");
    }

    // A crash in input 0 between ship's effect and its result (its intent alone), and one in
    // input 1 between round 1's record and ship's intent.
    let ship_of = |line: usize| format!("/0/{line}/1/0");
    let kept: Vec<String> = records
        .iter()
        .filter(|r| !(key(r).ends_with(&ship_of(0)) && r.get("outcome").is_some()))
        .filter(|r| !key(r).ends_with(&ship_of(1)))
        .map(Value::to_string)
        .collect();
    assert_eq!(kept.len(), records.len() - 3);
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();
    std::fs::remove_file(dir.path().join("audit.jsonl")).ok();

    // The rerun, with the model answering otherwise: rounds 0 and 1 are replayed (no model
    // call), only round 2 asks it.
    model.counters.variant.store(1, std::sync::atomic::Ordering::SeqCst);
    let before = model.counters.calls();
    run_local(dir.path(), &topo);
    assert_eq!(model.counters.calls() - before, 2, "one model call per input: its last round");
    let posts = service.posts();
    assert_eq!((service.total("pay-v1"), service.total("ship-v1")), (0, 0), "the new answers never ran: {posts:?}");
    assert_eq!(service.total("pay"), 2, "no payment twice: {posts:?}");
    // Input 1's ship never started by the log: made now, as round 1 recorded it (its path and
    // key), never as the model would answer now.
    let ship_keys: Vec<_> = posts.iter().filter(|((p, _), _)| p == "ship").map(|((_, k), n)| (k.clone(), *n)).collect();
    assert!(ship_keys.iter().any(|(k, n)| k.ends_with(&ship_of(0)) && *n == 1), "{ship_keys:?}");
    assert!(ship_keys.iter().any(|(k, n)| k.ends_with(&ship_of(1)) && *n == 2), "{ship_keys:?}");
    let answers = lines(&dir.path().join("out.jsonl"));
    let answer = |id: &str| {
        answers.iter().find(|a| a["payload"]["task_id"] == id).unwrap()["payload"]["answer"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a0 = answer("r0");
    assert!(a0.starts_with("done: pay done (post 1 of this key) | outcome unknown: tool `ship`"), "{a0}");
    assert_eq!(answer("r1"), "done: pay done (post 1 of this key) | ship done (post 2 of this key)");
    // The model was handed the recorded calls, by their recorded ids.
    let requests = model.counters.requests.lock().unwrap();
    for request in &requests[before..] {
        let ids: Vec<&str> =
            request["messages"].as_array().unwrap().iter().filter_map(|m| m["tool_call_id"].as_str()).collect();
        assert_eq!(ids, ["call_v0_0", "call_v0_1"], "{request}");
    }
    let audits = lines(&dir.path().join("audit.jsonl"));
    let events: Vec<&str> = audits.iter().filter_map(|a| a["payload"]["event_type"].as_str()).collect();
    assert_eq!(events, ["tool_outcome_unknown"], "{audits:?}");
}

#[test]
fn a_second_local_run_over_the_same_state_dir_is_refused_while_the_first_runs() {
    let model = FakeOpenAi::start();
    let service = EffectService::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = two_tools(dir.path(), &model, &service);
    let script = json!([["pay", {"url": service.url("pay"), "body": "3 EUR"}]]);
    let input = json!({"type": "request", "correlation_id": "c0", "sender_id": "alice", "timestamp": "2026-12-01T10:00:00Z",
                       "id": "r0", "payload": {"task_id": "r0", "description": format!("tool-script {script}")}});
    std::fs::write(dir.path().join("in.jsonl"), format!("{input}\n")).unwrap();
    // The first run waits in its model call, its effect log open.
    model.counters.delay_ms.store(60_000, std::sync::atomic::Ordering::SeqCst);
    let mut first = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local", "--state-dir", "state"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while model.counters.calls() == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the first run never called the model");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local", "--state-dir", "state"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("state/rounds-local/effects.local.jsonl") && stderr.contains("another run holds it"),
        "{stderr}"
    );
    assert_eq!(model.counters.calls(), 1, "the second run called nothing");
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock goes with the process that held it: the next run makes the call, once.
    model.counters.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    run_local(dir.path(), &topo);
    assert_eq!(service.total("pay"), 1, "{:?}", service.posts());
}
