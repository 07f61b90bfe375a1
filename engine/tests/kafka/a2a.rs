//! A2A on the gateway (docs/a2a.md), on the real broker with the real `kafclaw` binary.
//!
//! With the official client (`engine/tests/interop/a2a_client.py`, a2a-sdk 1.3.0 in
//! `KAFCLAW_INTEROP_PYTHON`): a kafclaw skill agent (the fake model, `stream = true`) answers
//! behind `kafclaw gateway`; the SDK resolves the public cards, sends a message and gets the
//! completed task with its answer artifact, streams a second and sees the task, status updates
//! and artifact chunks that make the answer, reads tasks back, cannot cancel a finished one,
//! cancels a pending one (a skill with no member), and gets 401 with a wrong or no token. The
//! test checks the SDK's view against the topics: the request the gateway published (the
//! token's identity, the A2A message), the agent's answer, the cancel.
//!
//! Raw HTTP, the test playing the agent: malformed JSON-RPC, a message without text, one
//! naming its sender, a huge body, an unknown skill, another token's task; v0.3's method
//! names with a stream driven delta by delta; and a client that disconnects mid-stream, whose
//! subscription ends.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

const TOKEN: &str = "a2a-token-5e1f";

/// The Python with the official a2a-sdk: `KAFCLAW_INTEROP_PYTHON`, else the venv scripts/test
/// makes, if it is there.
fn interop_python() -> PathBuf {
    if let Some(p) = std::env::var_os("KAFCLAW_INTEROP_PYTHON") {
        return p.into();
    }
    let venv = Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/kafclaw/interop-tools/bin/python");
    assert!(venv.exists(), "no a2a-sdk: set KAFCLAW_INTEROP_PYTHON, or run scripts/test (it makes {})", venv.display());
    venv
}

/// Starts `kafclaw gateway --group group` with `args` and `env`; waits for /healthz.
fn start_gateway(group: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> (Instance, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafclaw"));
    cmd.args(["gateway", "--group", group, "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .args(["--brokers", &brokers(), "--partitions", "1"])
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

/// A skill agent for `echo`: acknowledges with `in_progress`, answers through the fake model
/// with `stream = true` (its deltas on tasks.status), the answer on the skill's responses.
fn echo_agent(dir: &Path, group: &str, app: &str, model: &str) -> PathBuf {
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
group = "{group}"
partitions = 1

[agent]
name = "echo"
summary = "Says it back in words"
skills = ["echo"]

[models.fake]
base_url = "{model}"
model = "fake-1"

[sources.requests]
type = "kafka"
topic = "group.{group}.skill.echo.requests"

[operators.working]
type = "map"
inputs = ["requests"]
set = {{ "type" = '"task_status"', "sender_id" = '"echo"', "payload.responder_id" = '"echo"', "payload.status" = '"in_progress"' }}
remove = ["payload.description", "payload.a2a", "payload.requester_id"]

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
stream = true

[operators.respond]
type = "map"
inputs = ["answer"]
set = {{ "type" = '"skill_response"', "sender_id" = '"echo"', "payload.responder_id" = '"echo"', "payload.status" = '"completed"' }}
render = {{ "payload.content" = "{{{{ payload.answer }}}}" }}
remove = ["payload.answer", "payload.description", "payload.a2a"]

[sinks.responses]
type = "kafka"
inputs = ["respond"]
topic = "group.{group}.skill.echo.responses"

[sinks.status]
type = "kafka"
inputs = ["working", "answer.deltas"]
topic = "group.{group}.tasks.status"
"#
        ),
    )
}

#[test]
fn the_official_a2a_client_talks_to_a_skill_agent_through_the_gateway() {
    let py = interop_python();
    let dir = TestDir::new();
    let group = unique("a2a").replace('.', "-");
    let fake = FakeOpenAi::start();
    let app = unique("a2a-echo");
    for t in ["skill.echo.requests", "skill.echo.responses", "tasks.status", "announce"] {
        create_topic(&format!("group.{group}.{t}"), 1);
    }
    let topo = echo_agent(dir.path(), &group, &app, &fake.base_url());
    let agent_log = dir.path().join("agent.log");
    let _agent = spawn_instance(&topo, "a", &agent_log);
    let log = dir.path().join("gateway.log");
    let (mut gw, base) = start_gateway(
        &group,
        &["--skill", "echo", "--skill", "idle", "--sender-id", "a2a-partner", "--zone", "partners"],
        &[("KAFCLAW_GATEWAY_TOKEN", TOKEN)],
        &log,
    );

    // The group's card follows the roster: the agent's announce shows it live.
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let card = loop {
        let card: Value = http.get(format!("{base}/.well-known/agent-card.json")).send().unwrap().json().unwrap();
        if card["description"].as_str().unwrap().contains("echo.a") {
            break card;
        }
        assert!(Instant::now() < deadline, "{card}\n{}", log_tail(&agent_log));
        std::thread::sleep(Duration::from_millis(300));
    };
    let echo = card["skills"].as_array().unwrap().iter().find(|s| s["id"] == "echo").unwrap();
    assert!(echo["description"].as_str().unwrap().contains("echo: Says it back in words"), "{card}");

    let out = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/a2a_client.py"))
        .args(["--base", &base, "--token", TOKEN, "--skill", "echo", "--idle-skill", "idle"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}\n--- gateway\n{}\n--- agent\n{}", log_tail(&log), log_tail(&agent_log));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("the streamed events: {}", seen["streamed"]);

    // What the SDK read is what the agent answered.
    let responses = consume_all(&format!("group.{group}.skill.echo.responses"), 2, Duration::from_secs(30));
    let answer = |id: &Value| {
        let r = responses.iter().find(|g| g.value["correlation_id"] == *id).unwrap_or_else(|| panic!("{id}"));
        r.value["payload"]["content"].as_str().unwrap().to_owned()
    };
    assert_eq!(seen["sent"]["answer"], answer(&seen["sent"]["id"]).as_str());
    assert_eq!(seen["streamed"]["answer"], answer(&seen["streamed"]["id"]).as_str());
    assert!(seen["sent"]["answer"].as_str().unwrap().starts_with("w0 w1 w2"), "{seen}");
    let states = seen["streamed"]["states"].as_array().unwrap();
    assert_eq!(states.first().unwrap(), "TASK_STATE_SUBMITTED");
    assert_eq!(states.last().unwrap(), "TASK_STATE_COMPLETED");

    // The requests the gateway published: the token's identity, the A2A message.
    let requests = consume_all(&format!("group.{group}.skill.echo.requests"), 2, Duration::from_secs(30));
    let sent = requests.iter().find(|g| g.value["correlation_id"] == seen["sent"]["id"]).unwrap();
    let v = &sent.value;
    assert_eq!(
        (v["type"].as_str(), v["sender_id"].as_str(), v["zone"].as_str()),
        (Some("skill_request"), Some("a2a-partner"), Some("partners"))
    );
    assert_eq!(v["payload"]["requester_id"], "a2a-partner");
    assert_eq!(v["payload"]["description"], "stream 3");
    assert_eq!(v["payload"]["context_id"], seen["sent"]["context_id"]);
    assert_eq!(v["payload"]["a2a"]["message"]["parts"][0]["text"], "stream 3");
    // The envelope id binds the messageId to the token and the task (docs/a2a-kafka.md §5).
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("a2a-") && id.len() == 36, "{id}");
    assert_ne!(v["id"], v["payload"]["a2a"]["message"]["messageId"], "another caller's messageId cannot collide");
    assert_eq!(sent.key.as_deref(), seen["sent"]["id"].as_str(), "keyed by the task id");
    assert_eq!(sent.headers.get("a2a-version").map(String::as_str), Some("1.0"), "{:?}", sent.headers);

    // The cancel of the pending task is a `canceled` task status of the caller.
    let id = seen["canceled"]["id"].as_str().unwrap();
    let statuses = consume_all(&format!("group.{group}.tasks.status"), 1, Duration::from_secs(30));
    let cancel = statuses.iter().find(|g| g.value["correlation_id"] == id).expect("the cancel");
    assert_eq!(cancel.value["payload"]["status"], "canceled");
    assert_eq!(cancel.value["payload"]["responder_id"], "a2a-partner");
    assert_eq!(fake.counters.calls(), 2, "one model call per message");

    sigterm(&mut gw);
    assert_eq!(wait_exit(&mut gw, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
}

/// POSTs `body` to `path` with `token` and `headers`; the status and the JSON answer.
fn post(base: &str, path: &str, token: Option<&str>, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("{base}{path}"))
        .body(body)
        .header("content-type", "application/json");
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn rpc(base: &str, path: &str, token: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params});
    let (code, v) = post(base, path, Some(token), body.to_string());
    assert_eq!(code, 200, "{v}");
    v
}

fn text_message(text: &str, v03: bool) -> Value {
    let id = unique("m");
    if v03 {
        json!({"messageId": id, "role": "user", "parts": [{"kind": "text", "text": text}]})
    } else {
        json!({"messageId": id, "role": "ROLE_USER", "parts": [{"text": text}]})
    }
}

/// An open SSE response: its events' data, parsed, one at a time.
struct Sse(BufReader<reqwest::blocking::Response>);

impl Sse {
    fn open(base: &str, path: &str, token: &str, body: Value) -> Sse {
        let r = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse(BufReader::new(r))
    }

    /// The next event's data, or none at the end of the stream.
    fn next(&mut self) -> Option<Value> {
        let mut data = String::new();
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let line = line.trim_end();
            if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                return Some(serde_json::from_str(&data).unwrap());
            }
        }
    }
}

fn delta(id: &str, index: u64, text: &str) -> (String, String) {
    let v = json!({"type": "task_status", "correlation_id": id, "sender_id": "echo", "timestamp": "2026-11-24T10:00:00Z",
                   "payload": {"task_id": id, "status": "streaming", "index": index, "delta": text}});
    (id.to_owned(), v.to_string())
}

fn streams_open(base: &str) -> Option<i64> {
    let text =
        reqwest::blocking::Client::new().get(format!("{base}/metrics")).bearer_auth(TOKEN).send().ok()?.text().ok()?;
    text.lines().find_map(|l| l.strip_prefix("kafclaw_gateway_a2a_streams_open ")).and_then(|n| n.trim().parse().ok())
}

#[test]
fn hostile_calls_get_json_rpc_errors_and_streams_end_with_their_client() {
    let dir = TestDir::new();
    let group = unique("a2a-h").replace('.', "-");
    let status_topic = format!("group.{group}.tasks.status");
    let responses = format!("group.{group}.skill.echo.responses");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice alice - {TOKEN}\nbob bob - tok-bob-77\n")).unwrap();
    let log = dir.path().join("gateway.log");
    let (mut gw, base) = start_gateway(
        &group,
        &["--skill", "echo", "--tokens-file", tokens.to_str().unwrap(), "--a2a-wait", "1s"],
        &[],
        &log,
    );
    let http = reqwest::blocking::Client::new();

    // Cards are public; an unknown skill is 404 with a JSON error, for cards and calls.
    assert_eq!(http.get(format!("{base}/a2a/echo/.well-known/agent-card.json")).send().unwrap().status().as_u16(), 200);
    let r = http.get(format!("{base}/a2a/nope/.well-known/agent-card.json")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("`nope` is not served"));
    let (code, v) = post(&base, "/a2a/nope", Some(TOKEN), "{}");
    assert_eq!(code, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("`nope`"), "{v}");
    assert_eq!(post(&base, "/a2a/nope", None, "{}").0, 401, "the token first");
    assert_eq!(post(&base, "/a2a", Some("tok-bob-7"), "{}").0, 401);

    // Malformed JSON-RPC.
    let msg = text_message("hi", false);
    for (body, code) in [
        ("{".to_owned(), -32700),
        (json!([{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}]).to_string(), -32600),
        (json!({"jsonrpc": "2.0", "method": "GetTask", "params": {"id": "x"}}).to_string(), -32600),
        (json!({"jsonrpc": "1.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}).to_string(), -32600),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": ["x"]}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}).to_string(), -32601),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "task-nope"}}).to_string(), -32001),
        // A message with no text part, one naming its sender or zone.
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"url": "https://x/y.pdf"}]}}}).to_string(), -32005),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": msg, "sender_id": "root"}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}], "metadata": {"zone": "internal"}}}}).to_string(), -32602),
    ] {
        let (status, v) = post(&base, "/a2a/echo", Some(TOKEN), body.clone());
        assert_eq!((status, v["error"]["code"].as_i64()), (200, Some(code)), "{body} → {v}");
        assert_eq!(v["jsonrpc"], "2.0");
    }
    let r = http
        .post(format!("{base}/a2a/echo"))
        .bearer_auth(TOKEN)
        .header("A2A-Version", "2.0")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], -32009);
    // A huge message: 413, nothing published.
    let huge = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                      "params": {"message": text_message(&"x".repeat(2 << 20), false)}});
    let (status, v) = post(&base, "/a2a/echo", Some(TOKEN), huge.to_string());
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], -32600);

    // v0.3 names: a non-blocking message/send is the submitted task; it is alice's.
    let sent = rpc(&base, "/a2a/echo", TOKEN, "message/send", json!({"message": text_message("ping", true)}));
    let task = &sent["result"];
    assert_eq!((task["kind"].as_str(), task["status"]["state"].as_str()), (Some("task"), Some("submitted")), "{sent}");
    let id = task["id"].as_str().unwrap().to_owned();
    // Bob cannot read, cancel, subscribe to, or continue it: to him it does not exist.
    for (method, params) in [
        ("tasks/get", json!({"id": id})),
        ("CancelTask", json!({"id": id})),
        ("tasks/resubscribe", json!({"id": id})),
        (
            "message/send",
            json!({"message": {"messageId": "m-b", "role": "user", "taskId": id, "parts": [{"kind": "text", "text": "mine now"}]}}),
        ),
    ] {
        let v = rpc(&base, "/a2a/echo", "tok-bob-77", method, params);
        assert_eq!(v["error"]["code"], -32001, "{method}: {v}");
    }
    // A blocking v1.0 send with no agent answers when --a2a-wait is over, as it stands.
    let v = rpc(&base, "/a2a/echo", TOKEN, "SendMessage", json!({"message": text_message("wait", false)}));
    assert_eq!(v["result"]["task"]["status"]["state"], "TASK_STATE_SUBMITTED", "{v}");

    // A v0.3 stream driven by the test as the agent: deltas, then the answer.
    let mut sse = Sse::open(
        &base,
        "/a2a/echo",
        TOKEN,
        json!({"jsonrpc": "2.0", "id": 9, "method": "message/stream", "params": {"message": text_message("ping", true)}}),
    );
    let first = sse.next().unwrap();
    assert_eq!((first["id"].as_i64(), first["result"]["kind"].as_str()), (Some(9), Some("task")), "{first}");
    let sid = first["result"]["id"].as_str().unwrap().to_owned();
    produce(&status_topic, [delta(&sid, 0, "po")]);
    let working = sse.next().unwrap();
    assert_eq!(
        (working["result"]["kind"].as_str(), working["result"]["status"]["state"].as_str()),
        (Some("status-update"), Some("working")),
        "{working}"
    );
    assert_eq!(working["result"]["final"], false);
    let chunk = sse.next().unwrap()["result"].clone();
    assert_eq!(
        (chunk["kind"].as_str(), chunk["artifact"]["parts"][0]["text"].as_str(), chunk["append"].as_bool()),
        (Some("artifact-update"), Some("po"), Some(false)),
        "{chunk}"
    );
    produce(&status_topic, [delta(&sid, 1, "n")]);
    let chunk = sse.next().unwrap()["result"].clone();
    assert_eq!(
        (chunk["artifact"]["parts"][0]["text"].as_str(), chunk["append"].as_bool()),
        (Some("n"), Some(true)),
        "{chunk}"
    );
    let answer = json!({"type": "skill_response", "correlation_id": sid, "sender_id": "echo", "timestamp": "2026-11-24T10:00:01Z",
                        "payload": {"task_id": sid, "status": "completed", "content": "pong"}});
    produce(&responses, [(sid.clone(), answer.to_string())]);
    let last = sse.next().unwrap()["result"].clone();
    assert_eq!(
        (last["artifact"]["parts"][0]["text"].as_str(), last["lastChunk"].as_bool()),
        (Some("g"), Some(true)),
        "the rest: {last}"
    );
    let done = sse.next().unwrap()["result"].clone();
    assert_eq!((done["status"]["state"].as_str(), done["final"].as_bool()), (Some("completed"), Some(true)), "{done}");
    assert_eq!(done["status"]["message"]["parts"][0]["text"], "pong");
    assert!(sse.next().is_none(), "the stream ends after the final status");
    let got = rpc(&base, "/a2a/echo", TOKEN, "GetTask", json!({"id": sid, "historyLength": 5}));
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_COMPLETED", "{got}");
    assert_eq!(got["result"]["artifacts"][0]["parts"][0]["text"], "pong");
    // Finished: not cancelable, not subscribable; continuing it is refused.
    assert_eq!(rpc(&base, "/a2a/echo", TOKEN, "tasks/cancel", json!({"id": sid}))["error"]["code"], -32002);
    assert_eq!(rpc(&base, "/a2a/echo", TOKEN, "SubscribeToTask", json!({"id": sid}))["error"]["code"], -32004);
    let more =
        json!({"message": {"messageId": "m-2", "role": "ROLE_USER", "taskId": sid, "parts": [{"text": "again"}]}});
    assert_eq!(rpc(&base, "/a2a/echo", TOKEN, "SendMessage", more)["error"]["code"], -32602);

    // A client that goes away mid-stream: its subscription ends (the open-streams gauge falls
    // back to 0 once the gateway writes to the dead connection).
    assert_eq!(streams_open(&base), Some(0));
    let mut sse = Sse::open(
        &base,
        "/a2a/echo",
        TOKEN,
        json!({"jsonrpc": "2.0", "id": "s", "method": "SendStreamingMessage", "params": {"message": text_message("bye", false)}}),
    );
    let first = sse.next().unwrap();
    assert_eq!(first["result"]["task"]["status"]["state"], "TASK_STATE_SUBMITTED", "{first}");
    let gone = first["result"]["task"]["id"].as_str().unwrap().to_owned();
    assert_eq!(streams_open(&base), Some(1));
    drop(sse);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut index = 0;
    while streams_open(&base) != Some(0) {
        assert!(Instant::now() < deadline, "the stream outlived its client\n{}", log_tail(&log));
        produce(&status_topic, [delta(&gone, index, ".")]);
        index += 1;
        std::thread::sleep(Duration::from_millis(300));
    }

    sigterm(&mut gw);
    assert_eq!(wait_exit(&mut gw, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("tok-bob-77") && !log.contains(TOKEN), "no secrets in the log");
}
