//! MCP client tools against real third-party servers (`@modelcontextprotocol/server-everything`
//! and `server-filesystem` from npm, in `engine/tests/interop/node_modules`, installed by
//! scripts/test), run by the real binary in local mode with the fake OpenAI server scripted to
//! call them (`tool-script`): stdio (server-filesystem in the kernel sandbox) and Streamable
//! HTTP answer; a second input reusing the first one's envelope id makes calls of its own
//! (journals are keyed by where an input was read; counted by a `tee` in front of the stdio
//! server; a replay answered from the journal, making none, is `kafka::mcp`); a server killed mid-call gives a dead letter or a retry
//! after its restart, and the records behind it are answered; a slow server hits `timeout`;
//! and the hostile cases: a server that never answers `initialize`, garbage on stdout, `allow`
//! naming a tool the server lacks, the model calling a tool outside `allow`, a huge result.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_openai::FakeOpenAi;

fn interop() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node_modules/@modelcontextprotocol")
}

fn everything_js() -> PathBuf {
    let p = interop().join("server-everything/dist/index.js");
    assert!(p.exists(), "{} is missing: run scripts/test (it runs npm ci in engine/tests/interop)", p.display());
    p
}

fn node() -> String {
    let out = Command::new("sh").args(["-c", "command -v node"]).output().unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty(), "node is not installed");
    path
}

/// A stdio `[tools.<name>]` table running server-everything behind a `tee` that logs what
/// kafclaw sends it to `<dir>/<name>.log` (sandbox none: the wrapper is a shell), in its own
/// process group whose id is written to `<dir>/<name>.pid`.
fn counted_everything(dir: &Path, name: &str, extra: &str) -> String {
    let script = format!(
        "echo $$ > {d}/{name}.pid; echo 'not json: a banner on stdout'; /usr/bin/tee -a {d}/{name}.log | {node} {js} stdio",
        d = dir.display(),
        node = node(),
        js = everything_js().display()
    );
    format!(
        "[tools.{name}]\ntype = \"mcp\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\nsandbox = \"none\"\n{extra}\n"
    )
}

fn topology(dir: &Path, server: &FakeOpenAi, tools: &str, listed: &str, extra_op: &str) -> PathBuf {
    let text = format!(
        r#"[topology]
name = "mcp-tools"

[models.fake]
base_url = "{}"
model = "fake-1"
timeout = "5s"

{tools}
[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
tools = [{listed}]
{extra_op}

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#,
        server.base_url()
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A request whose prompt scripts the fake model's tool calls.
fn request(id: &str, conv: &str, calls: Value) -> String {
    let description = format!("tool-script {calls}");
    json!({"type": "request", "correlation_id": conv, "sender_id": "alice", "timestamp": "2026-11-24T10:00:00Z",
           "id": id, "payload": {"task_id": id, "description": description}})
    .to_string()
}

fn start(dir: &Path, topo: &Path, lines: &[String]) -> std::process::Child {
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn answer_of(answers: &[Value], id: &str) -> String {
    let a =
        answers.iter().find(|a| a["payload"]["task_id"] == id).unwrap_or_else(|| panic!("no answer {id}: {answers:?}"));
    a["payload"]["answer"].as_str().unwrap().to_owned()
}

/// `tools/call` requests kafclaw sent to a counted server.
fn calls_in(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter(|l| l.contains("\"tools/call\"")).count()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// server-everything over Streamable HTTP on a free port (`PORT`), killed when dropped.
struct HttpEverything(std::process::Child, u16);

impl HttpEverything {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(node())
            .arg(everything_js())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "server-everything did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child, port)
    }
}

impl Drop for HttpEverything {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stdio_and_http_servers_answer_and_a_reused_id_gets_no_other_inputs_answer() {
    let server = FakeOpenAi::start();
    let http = HttpEverything::start();
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("notes.txt"), "hello from the file").unwrap();
    let filesystem = format!(
        "[tools.filesystem]\ntype = \"mcp\"\ncommand = {node:?}\nargs = [{js:?}, {files:?}]\nread = [{pkgs:?}, {files:?}]\nallow = [\"read_text_file\", \"list_directory\"]\n",
        node = node(),
        js = interop().join("server-filesystem/dist/index.js").display().to_string(),
        files = files.display().to_string(),
        pkgs = interop().parent().unwrap().display().to_string(),
    );
    let web = format!("[tools.web]\ntype = \"mcp\"\nurl = \"http://127.0.0.1:{}/mcp\"\n", http.1);
    let tools = counted_everything(dir.path(), "everything", "") + &filesystem + &web;
    let topo = topology(dir.path(), &server, &tools, r#""everything", "filesystem", "web""#, "");
    let calls = json!([
        ["everything__get-sum", {"a": 2, "b": 3}],
        ["filesystem__read_text_file", {"path": files.join("notes.txt")}],
        ["web__get-sum", {"a": 40, "b": 2}],
    ]);
    // Two inputs with one envelope id, at two positions: each is its own input, answered by its
    // own calls — never by the other's journalled answer.
    let lines = [request("r1", "c1", calls.clone()), request("r1", "c1", calls)];
    let out = start(dir.path(), &topo, &lines).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answers = read_lines(&dir.path().join("out.jsonl"));
    assert_eq!(answers.len(), 2, "{answers:?}");
    let answer = answer_of(&answers, "r1");
    assert_eq!(answer, "done: The sum of 2 and 3 is 5. | hello from the file | The sum of 40 and 2 is 42.");
    assert_eq!(answers[1]["payload"]["answer"], answers[0]["payload"]["answer"]);
    assert_eq!(calls_in(&dir.path().join("everything.log")), 2, "each input made its own tools/call");
    assert_eq!(server.counters.calls(), 8, "three tool rounds and the answer, per input");
    // The step's idempotency key went along in the request's `_meta` (docs/effects.md).
    let sent = std::fs::read_to_string(dir.path().join("everything.log")).unwrap();
    let call: Value = sent
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &Value| v["method"] == "tools/call")
        .unwrap();
    let key = call["params"]["_meta"]["io.kafclaw/idempotency-key"].as_str().unwrap_or_else(|| panic!("{call}"));
    assert!(
        key.starts_with("mcp-tools/answer/f-") && key.ends_with("/0/0/0/0"),
        "input line 0, round 0, call 0: {key}"
    );
}

#[test]
fn a_server_killed_mid_call_dead_letters_or_is_retried_after_its_restart() {
    // A call the server may have received is made again only when its class allows repeats:
    // the default, at-most-once, is not (docs/effects.md).
    let cases = [("retries = 0", true), ("retries = 1\neffect = \"idempotent\"", false), ("retries = 1", true)];
    for (policy, expect_dead) in cases {
        let server = FakeOpenAi::start();
        let dir = tempfile::tempdir().unwrap();
        let tools = counted_everything(dir.path(), "everything", policy);
        let topo = topology(dir.path(), &server, &tools, r#""everything""#, "");
        let slow = json!([["everything__trigger-long-running-operation", {"duration": 4, "steps": 4}]]);
        let sum = json!([["everything__get-sum", {"a": 1, "b": 1}]]);
        // One conversation: r2 waits for r1, then needs the restarted server.
        let child = start(dir.path(), &topo, &[request("r1", "c1", slow), request("r2", "c1", sum)]);
        let log = dir.path().join("everything.log");
        let t0 = Instant::now();
        while calls_in(&log) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(30), "no tools/call reached the server");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pgid: i32 = std::fs::read_to_string(dir.path().join("everything.pid")).unwrap().trim().parse().unwrap();
        // The server's own process group (the wrapper shell, tee and node), by its id.
        let killed = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status().unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let answers = read_lines(&dir.path().join("out.jsonl"));
        let dead = read_lines(&dir.path().join("dlq.jsonl"));
        assert_eq!(answer_of(&answers, "r2"), "done: The sum of 1 and 1 is 2.", "{policy}: the partition went on");
        if expect_dead {
            assert_eq!(dead.len(), 1, "{dead:?}");
            let error = dead[0]["error"].as_str().unwrap();
            assert!(
                error.contains("tool `everything.trigger-long-running-operation`: MCP server `everything`: tools/call"),
                "{error}"
            );
            assert_eq!(calls_in(&log), 2, "r1 once, r2 once");
        } else {
            assert!(dead.is_empty(), "{dead:?}");
            assert_eq!(
                answer_of(&answers, "r1"),
                "done: Long running operation completed. Duration: 4 seconds, Steps: 4."
            );
            assert_eq!(calls_in(&log), 3, "r1 twice (retried after the restart), r2 once");
        }
        assert!(stderr.contains("connection lost"), "the restart is logged: {stderr}");
    }
}

#[test]
fn a_slow_server_hits_the_timeout_and_a_tool_outside_allow_or_a_huge_result_stays_with_the_model() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = "timeout = \"1s\"\nretries = 0\non_error = \"model\"\nallow = [\"trigger-long-running-operation\", \"get-sum\", \"echo\"]";
    let tools = counted_everything(dir.path(), "everything", extra);
    let topo = topology(dir.path(), &server, &tools, r#""everything""#, "max_tool_output_bytes = 1000");
    let calls = json!([
        ["everything__trigger-long-running-operation", {"duration": 5, "steps": 5}],
        ["everything__get-env", {}],
        ["everything__echo", {"message": "x".repeat(200_000)}],
        ["everything__get-sum", {"a": 2, "b": 2}],
    ]);
    let out = start(dir.path(), &topo, &[request("r1", "c1", calls)]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = answer_of(&read_lines(&dir.path().join("out.jsonl")), "r1");
    let parts: Vec<&str> = answer.trim_start_matches("done: ").split(" | ").collect();
    assert_eq!(parts.len(), 4, "{answer}");
    assert!(parts[0].contains("no answer within 1s (timeout)"), "{}", parts[0]);
    assert_eq!(parts[1], "error: no tool `everything__get-env` here");
    assert!(
        parts[2].starts_with("Echo: xxx") && parts[2].contains("cut at 1000 of"),
        "{}",
        &parts[2][parts[2].len() - 120..]
    );
    assert_eq!(parts[3], "The sum of 2 and 2 is 4.", "the slow call did not break the connection");
}

#[test]
fn start_failures_name_the_tool_and_its_line() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let mute = "[tools.mute]\ntype = \"mcp\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"echo garbage; exec /bin/sleep 60\"]\nsandbox = \"none\"\nstart_timeout = \"1s\"\n";
    let topo = topology(dir.path(), &server, mute, r#""mute""#, "");
    let out = start(dir.path(), &topo, &[request("r1", "c1", json!([]))]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tool `mute` (") && stderr.contains("t.toml:9)"), "{stderr}");
    assert!(stderr.contains("did not complete `initialize` and `tools/list` within 1s"), "{stderr}");
    let tools = counted_everything(dir.path(), "everything", "allow = [\"get-sum\", \"add\"]");
    let topo = topology(dir.path(), &server, &tools, r#""everything""#, "");
    let out = start(dir.path(), &topo, &[request("r1", "c1", json!([]))]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("`allow` names `add`, which the server does not list (it lists: echo, "), "{stderr}");
    // A table with errors is a diagnostic at the tool's name, before anything starts.
    let bad = "[tools.both]\ntype = \"mcp\"\ncommand = \"/bin/sh\"\nurl = \"http://127.0.0.1:1/mcp\"\n";
    let topo = topology(dir.path(), &server, bad, r#""both""#, "");
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("t.toml:9:8: error: mcp tool: `command` (stdio) and `url` (Streamable HTTP) are exclusive"),
        "{stderr}"
    );
}

/// Whether process `pid` is alive (a zombie is not: it only waits to be reaped).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

#[test]
fn a_process_the_server_started_does_not_outlive_the_instance() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    // The server starts a background process of its own before it serves.
    let script = format!(
        "/bin/sleep 600 & echo $! > {d}/orphan.pid; exec {node} {js} stdio",
        d = dir.path().display(),
        node = node(),
        js = everything_js().display()
    );
    let tools = format!(
        "[tools.everything]\ntype = \"mcp\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\nsandbox = \"none\"\n"
    );
    let topo = topology(dir.path(), &server, &tools, r#""everything""#, "");
    let sum = json!([["everything__get-sum", {"a": 2, "b": 2}]]);
    let out = start(dir.path(), &topo, &[request("r1", "c1", sum)]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(answer_of(&read_lines(&dir.path().join("out.jsonl")), "r1"), "done: The sum of 2 and 2 is 4.");
    let pid: i32 = std::fs::read_to_string(dir.path().join("orphan.pid")).unwrap().trim().parse().unwrap();
    let t0 = Instant::now();
    while alive(pid) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the server's own child {pid} outlived the instance");
}

#[test]
fn what_the_server_is_given_or_sent_with_stays_secret() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    // A variable passed to a stdio server, which its `get-env` tool prints back; and an HTTP
    // server's URL with credentials where nothing listens (the start error names the URL).
    let tools = format!(
        "[tools.everything]\ntype = \"mcp\"\ncommand = {node:?}\nargs = [{js:?}, \"stdio\"]\nsandbox = \"none\"\nenv = [\"KAFCLAW_TEST_MCP_TOKEN\"]\n",
        node = node(),
        js = everything_js().display().to_string()
    );
    let topo = topology(dir.path(), &server, &tools, r#""everything""#, "");
    std::fs::write(dir.path().join("in.jsonl"), request("r1", "c1", json!([["everything__get-env", {}]])) + "\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir.path())
        .env("KAFCLAW_TEST_MCP_TOKEN", "ghp_mcpsecrettoken0123456789")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answer = answer_of(&read_lines(&dir.path().join("out.jsonl")), "r1");
    assert!(answer.contains("KAFCLAW_TEST_MCP_TOKEN") && answer.contains("[redacted]"), "{answer}");
    assert!(!answer.contains("ghp_mcpsecret") && !stderr.contains("ghp_mcpsecret"), "{answer}\n{stderr}");

    let port = free_port();
    let tools = format!(
        "[tools.web]\ntype = \"mcp\"\nurl = \"http://mcpuser:pw-secret-abcdef123@127.0.0.1:{port}/mcp?token=qtok-secret-987654\"\nstart_timeout = \"2s\"\n"
    );
    let topo = topology(dir.path(), &server, &tools, r#""web""#, "");
    let out = start(dir.path(), &topo, &[request("r2", "c2", json!([]))]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("tool `web`"), "{stderr}");
    assert!(!stderr.contains("pw-secret") && !stderr.contains("qtok-secret"), "{stderr}");
}
