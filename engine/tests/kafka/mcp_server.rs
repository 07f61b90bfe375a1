//! `kafclaw mcp-server`: a group's skills as MCP tools, driven by the official MCP Python SDK
//! (`mcp` 2.3.0, `engine/tests/interop/mcp_client.py`, run with `KAFCLAW_INTEROP_PYTHON`)
//! over stdio and Streamable HTTP. The group has a kafclaw skill agent (the shipped
//! `skill-billing.toml`, answering from its recording) and the Python example agent
//! (`examples/python/agent.py`, skill `echo`). Hostile cases: an announce with a skill name no
//! tool or topic can have, a call with no `description`, one with a 1 MiB description, a call
//! to a skill nobody serves (an error at its deadline, not a hang), twenty concurrent calls
//! (each its own answer), HTTP without or with a wrong token (401) and from a foreign browser
//! Origin (403).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The Python with the official `mcp` SDK: `KAFCLAW_INTEROP_PYTHON`, else the venv scripts/test
/// makes, if it is there.
fn interop_python() -> PathBuf {
    if let Some(p) = std::env::var_os("KAFCLAW_INTEROP_PYTHON") {
        return p.into();
    }
    let venv = Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/kafclaw/interop-tools/bin/python");
    assert!(venv.exists(), "KAFCLAW_INTEROP_PYTHON is not set and {} is missing: run scripts/test", venv.display());
    venv
}

/// The example agent's Python (`KAFCLAW_PYTHON`, with confluent-kafka), as python_agent.rs.
fn example_python() -> String {
    std::env::var("KAFCLAW_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A group with a kafclaw `billing` agent, a skill topic nobody serves (`orphan`), a hostile
/// announce and one trace envelope; the Python `echo` agent is started by [`Group::echo`].
struct Group {
    name: String,
    dir: TestDir,
    _billing: Instance,
}

/// Starts the Python example agent serving `echo` in `group`.
fn echo_agent(dir: &Path, group: &str) -> Instance {
    echo_agent_as(dir, group, "echo-py")
}

/// Starts the Python example agent serving `echo` in `group` as `agent_id`, heartbeating
/// every second; its log is `dir/echo.log`.
pub(crate) fn echo_agent_as(dir: &Path, group: &str, agent_id: &str) -> Instance {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/agent.py");
    let log = std::fs::File::create(dir.join("echo.log")).unwrap();
    let child = Command::new(example_python())
        .arg(script)
        .args(["--brokers", &brokers(), "--group", group, "--skill", "echo", "--agent-id", agent_id])
        .args(["--heartbeat", "1"])
        .env("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Instance(child)
}

impl Group {
    fn start() -> Self {
        let dir = TestDir::new();
        let name = unique("mcp").replace('.', "-");
        for t in ["skill.billing.requests", "skill.billing.responses", "skill.echo.requests", "skill.echo.responses"] {
            create_topic(&format!("group.{name}.{t}"), 3);
        }
        for t in ["announce", "traces", "skill.orphan.requests"] {
            create_topic(&format!("group.{name}.{t}"), 1);
        }
        let topo = shipped_topology(dir.path(), "skill-billing.toml", &name, &format!("skill-{name}-billing"), "");
        let billing = spawn_instance(&topo, "k", &dir.path().join("billing.log"));
        // A member announcing a skill whose name is neither a tool name nor a topic name.
        let hostile = json!({
            "type": "announce", "correlation_id": "hostile", "sender_id": "hostile",
            "timestamp": kafclaw_operators::api::record::format_time_ms(kafclaw_operators::api::record::now_ms()),
            "payload": {"action": "join", "identity": {"agent_id": "hostile", "capabilities": ["bad skill/../x", ""], "status": "active"}},
        });
        produce(&format!("group.{name}.announce"), [("hostile".to_owned(), hostile.to_string())]);
        let trace = json!({
            "type": "trace", "correlation_id": "trace-task-1", "sender_id": "billing",
            "timestamp": "2026-11-24T10:00:00Z", "payload": {"span_id": "s1", "event": "handled"},
        });
        produce(&format!("group.{name}.traces"), [("trace-task-1".to_owned(), trace.to_string())]);
        Self { name, dir, _billing: billing }
    }

    fn logs(&self) -> String {
        ["billing.log", "echo.log", "server.log", "client.log"]
            .iter()
            .map(|l| format!("--- {l}\n{}", log_tail(&self.dir.path().join(l))))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs the MCP client with `args`; its JSON report. `while_running` is called while it runs.
    fn client(&self, args: &[String], env: &[(&str, &str)], mut while_running: impl FnMut() -> bool) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/mcp_client.py");
        let mut child = Instance(
            Command::new(interop_python())
                .arg(script)
                .args(args)
                .envs(env.iter().copied())
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(self.dir.path().join("client.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            out.read_to_string(&mut s).unwrap();
            s
        });
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut pending = true;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if pending {
                pending = while_running();
            }
            assert!(Instant::now() < deadline, "the MCP client hung\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        };
        let stdout = reader.join().unwrap();
        assert!(status.success(), "the MCP client failed: {status}\n{}", self.logs());
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", self.logs()))
    }
}

fn kafclaw() -> String {
    env!("CARGO_BIN_EXE_kafclaw").to_owned()
}

/// What both transports must show: the tools, both agents' answers, the dead skill's error,
/// the hostile inputs refused, concurrent calls each answered with their own answer.
fn check_report(r: &Value, logs: &str) {
    let tools: Vec<&str> = r["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for t in ["billing", "echo", "orphan", "trace", "group_members"] {
        assert!(tools.contains(&t), "tool {t} missing from {tools:?}\n{logs}");
    }
    assert!(!tools.iter().any(|t| t.contains(' ') || t.contains('/')), "a bad skill name became a tool: {tools:?}");
    assert_eq!(r["read_only"]["trace"], true);
    assert_eq!(r["read_only"]["group_members"], true);
    assert_eq!(r["read_only"]["billing"], false);
    assert_eq!(r["schemas"]["echo"]["required"], json!(["description"]));
    assert!(r["descriptions"]["echo"].as_str().unwrap().contains("echo-py"), "{}", r["descriptions"]);

    let echo = &r["answers"]["echo"];
    assert_eq!(echo["is_error"], false, "{echo}\n{logs}");
    assert_eq!(echo["text"], "echo from python: hello from MCP");
    let billing = &r["answers"]["billing"];
    assert_eq!(billing["is_error"], false, "{billing}\n{logs}");
    assert!(billing["text"].as_str().unwrap().contains("recorded answer"), "{billing}");
    assert_eq!(billing["structured"]["responder_id"], "billing");

    let dead = &r["dead"];
    assert_eq!(dead["is_error"], true, "{dead}");
    assert!(dead["text"].as_str().unwrap().contains("no answer from skill `orphan` within 3 s"), "{dead}");
    assert!(dead["seconds"].as_f64().unwrap() >= 3.0, "{dead}");
    assert!(!dead["progress"].as_array().unwrap().is_empty(), "progress while waiting: {dead}");

    let concurrent = r["concurrent"].as_array().unwrap();
    assert_eq!(concurrent.len(), 20);
    let mut ids = std::collections::BTreeSet::new();
    for c in concurrent {
        assert_eq!(c["is_error"], false, "{c}");
        assert_eq!(c["text"].as_str().unwrap(), format!("echo from python: {}", c["asked"].as_str().unwrap()));
        ids.insert(c["task_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 20, "each call its own task");

    // JSON-RPC invalid params (-32602), naming the argument and the limit.
    assert_eq!(r["missing"]["code"], -32602, "{}", r["missing"]);
    assert!(r["missing"]["message"].as_str().unwrap().contains("`description`"), "{}", r["missing"]);
    assert_eq!(r["huge"]["code"], -32602, "{}", r["huge"]);
    assert!(r["huge"]["message"].as_str().unwrap().contains("1048576 bytes; the limit is 65536"), "{}", r["huge"]);

    assert_eq!(r["trace"][0]["correlation_id"], "trace-task-1", "{}", r["trace"]);
    let members = r["members"].as_array().unwrap();
    let ids: Vec<&str> = members.iter().filter_map(|m| m["agent_id"].as_str()).collect();
    assert!(ids.contains(&"echo-py") && ids.contains(&"billing.k"), "{ids:?}");
}

fn client_args(transport: &[String], ready: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = transport.to_vec();
    for s in [
        "--expect",
        "billing",
        "--expect",
        "echo",
        "--call",
        "echo=hello from MCP",
        "--call",
        "billing=Refund invoice 42?",
    ] {
        a.push(s.into());
    }
    for s in ["--expect-member", "echo-py", "--expect-member", "billing.k"] {
        a.push(s.into());
    }
    for s in ["--dead", "orphan", "--concurrent", "20", "--trace-id", "trace-task-1"] {
        a.push(s.into());
    }
    if let Some(r) = ready {
        a.extend(["--ready-file".into(), r.to_str().unwrap().into()]);
    }
    a
}

/// Over stdio: the SDK starts the server; the echo agent joins after the client's first
/// listing, so the list changes while the client is connected, and the client is told.
#[test]
fn a_groups_skills_are_mcp_tools_over_stdio() {
    let g = Group::start();
    let ready = g.dir.path().join("ready");
    let mut args = client_args(&["stdio".into()], Some(&ready));
    args.extend(["--server".into(), kafclaw(), "mcp-server".into(), "--group".into(), g.name.clone()]);
    args.extend(["--brokers".into(), brokers(), "-v".into()]);
    let mut echo = None;
    let report = g.client(&args, &[], || {
        if !ready.exists() {
            return true;
        }
        echo = Some(echo_agent(g.dir.path(), &g.name));
        false
    });
    assert!(echo.is_some());
    // Before its agent started, `echo` was only a topic: nobody served it.
    let first: Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    assert!(first["echo"].as_str().unwrap().contains("no live member"), "{first}");
    check_report(&report, &g.logs());
    assert!(report["list_changed"].as_u64().unwrap() >= 1, "told that the tools changed: {report}");
}

/// An HTTP request to `/mcp` on `port` (an `initialize`): its status code.
fn post_status(port: u16, headers: &[(&str, &str)]) -> u16 {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

/// Over Streamable HTTP: the gateway's token rule (no token, no server; 401 without or with a
/// wrong token), a foreign Origin refused (403), and the token's identity on the requests.
#[test]
fn a_groups_skills_are_mcp_tools_over_streamable_http_behind_the_token() {
    let g = Group::start();
    let _echo = echo_agent(g.dir.path(), &g.name);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let base = ["mcp-server", "--group", &g.name, "--brokers", &brokers(), "--listen", &listen];

    let out = Command::new(kafclaw()).args(base).env_remove("KAFCLAW_MCP_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "refuses to start without a token");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bearer token: set KAFCLAW_MCP_TOKEN"));

    let token = "mcp-test-token-7f3a";
    let _server = Instance(
        Command::new(kafclaw())
            .args(base)
            .args(["--sender-id", "claude-desktop", "-v"])
            .env("KAFCLAW_MCP_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(g.dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get_body(port, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "the server never listened\n{}", g.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let bearer = format!("Bearer {token}");
    assert_eq!(post_status(port, &[]), 401, "no token");
    assert_eq!(post_status(port, &[("Authorization", "Bearer mcp-test-token-7f3")]), 401, "a wrong token");
    assert_eq!(post_status(port, &[("Authorization", &bearer), ("Origin", "https://evil.example")]), 403);
    assert_eq!(post_status(port, &[("Authorization", &bearer), ("Origin", "http://localhost:6274")]), 200);
    assert_eq!(post_status(port, &[("Authorization", &bearer)]), 200);

    let args = client_args(
        &["http".into(), "--url".into(), format!("http://{listen}/mcp"), "--token-env".into(), "MCP_TEST_TOKEN".into()],
        None,
    );
    let report = g.client(&args, &[("MCP_TEST_TOKEN", token)], || false);
    check_report(&report, &g.logs());

    // The token's identity is the sender of the requests it made (and nothing else is).
    let requests = consume_all(&format!("group.{}.skill.echo.requests", g.name), 21, Duration::from_secs(60));
    assert_eq!(requests.len(), 21, "one request per call that passed the argument checks");
    for r in &requests {
        assert_eq!(r.value["sender_id"], "claude-desktop", "{}", r.value);
        assert_eq!(r.value["payload"]["requester_id"], "claude-desktop");
        assert!(r.value["payload"]["deadline_at"].is_string());
    }
}
