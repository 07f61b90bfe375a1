//! The conformance corpus of OpenAI-compatible chat-completion answers
//! (`engine/tests/model_corpus/*.json`, one case per file, described in `docs/models.md`): each
//! case's answers are served, in order, by a real HTTP server on loopback, and the real binary
//! (`kafclaw run --local`) asks it one request. The answer, its `finish_reason`, the tool run,
//! the dead letter and the number of HTTP calls (retries or none) are checked against the
//! case's `expect`. Every case runs; the failures are reported together at the end.
//!
//! `cargo test -p kafclaw --test it model_corpus::`; one case: `KAFCLAW_CORPUS=<file stem>`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the tool reads: the text a tool result must carry back to the model.
const NOTES: &str = "the refund limit is 50";

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// The server (family) the answers are shaped after.
    server: String,
    /// The quirk, in a few words.
    quirk: String,
    /// Where the shape comes from, caveats (for the reader of the file).
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
    /// Answers, one per HTTP request, in order; the last is repeated for any further request.
    exchanges: Vec<Exchange>,
    /// Tools offered (`read-notes`, an `fs_read` over a folder holding `notes.txt`).
    #[serde(default)]
    tools: Vec<String>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    /// HTTP status (default 200).
    #[serde(default = "ok")]
    status: u16,
    /// Response headers (default `content-type: application/json`).
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// A JSON body, sent as written...
    #[serde(default)]
    body: Option<Value>,
    /// ... or a body of raw text (not JSON, cut JSON, HTML).
    #[serde(default)]
    raw: Option<String>,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `payload.answer` of the one output; `null`: no output.
    answer: Option<String>,
    /// `payload.usage.finish_reason` of the output (checked when there is an answer).
    #[serde(default)]
    finish_reason: Option<String>,
    /// Fields `payload.usage` must hold (e.g. token counts).
    #[serde(default)]
    usage: Option<serde_json::Map<String, Value>>,
    /// A tool call was run and its result sent back to the model.
    #[serde(default)]
    tool_ran: bool,
    /// The arguments the tool was called with, as the echoed assistant message carries them.
    #[serde(default)]
    tool_args: Option<Value>,
    /// Text the tool result sent back must contain.
    #[serde(default)]
    tool_result_contains: Option<String>,
    /// Substrings the one dead letter's `error` must contain; `null`: no dead letter.
    dead_letter_contains: Option<Vec<String>>,
    /// Substrings the dead letter's `error` must not contain (e.g. past a quoted body's cut).
    #[serde(default)]
    dead_letter_excludes: Vec<String>,
    /// HTTP requests the server must receive, exactly.
    calls: usize,
}

/// The scripted server: the exchanges, and the requests received (path, body).
struct Script {
    exchanges: Vec<Exchange>,
    seen: Mutex<Vec<(String, Value)>>,
}

async fn answer(State(script): State<Arc<Script>>, uri: Uri, body: Bytes) -> Response {
    let request =
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    let n = {
        let mut seen = script.seen.lock().unwrap();
        seen.push((uri.path().to_owned(), request));
        seen.len()
    };
    let ex = &script.exchanges[(n - 1).min(script.exchanges.len() - 1)];
    let body = match (&ex.body, &ex.raw) {
        (_, Some(raw)) => raw.clone(),
        (Some(v), None) => v.to_string(),
        (None, None) => String::new(),
    };
    let mut response = (StatusCode::from_u16(ex.status).unwrap(), body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in &ex.headers {
        headers.insert(HeaderName::try_from(k.as_str()).unwrap(), HeaderValue::try_from(v.as_str()).unwrap());
    }
    response
}

/// A server on 127.0.0.1 serving one case; stopped when dropped.
struct Server {
    addr: SocketAddr,
    script: Arc<Script>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(exchanges: Vec<Exchange>) -> Self {
        let script = Arc::new(Script { exchanges, seen: Mutex::new(Vec::new()) });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = script.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().fallback(answer).with_state(s);
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self { addr, script, stop: Some(stop), thread: Some(thread) }
    }

    fn seen(&self) -> Vec<(String, Value)> {
        self.script.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn topology(dir: &Path, addr: SocketAddr, tools: &[String]) -> PathBuf {
    let (tool_defs, tool_list) = if tools.is_empty() {
        (String::new(), String::new())
    } else {
        let list: Vec<String> = tools.iter().map(|t| format!("{t:?}")).collect();
        (
            "[tools.read-notes]\ntype = \"fs_read\"\nroot = \"notes\"\n".to_owned(),
            format!("tools = [{}]", list.join(", ")),
        )
    };
    let text = format!(
        r#"
[topology]
name = "model-corpus"

[models.corpus]
base_url = "http://{addr}/v1"
model = "corpus-1"
timeout = "5s"
max_attempts = 2
backoff = "10ms"
max_backoff = "20ms"

{tool_defs}
[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "corpus"
prompt = "{{{{ payload.description }}}}"
{tool_list}

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// Runs the binary over the one request; kills it after 60 s.
fn run(dir: &Path, topo: &Path) -> Result<String, String> {
    let request = json!({
        "type": "request", "correlation_id": "conv-1", "sender_id": "alice",
        "timestamp": "2026-11-24T10:00:00Z", "id": "in-1",
        "payload": {"task_id": "t-1", "description": "what is the refund limit? read notes.txt"}
    });
    std::fs::write(dir.join("in.jsonl"), format!("{request}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return if status.success() { Ok(stderr) } else { Err(format!("kafclaw exited {status}: {stderr}")) };
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("kafclaw still running after 60 s: killed".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The tool call echoed in the request after the first answer, and the tool result sent with
/// it. The echo must be in the request shape strict servers accept: a non-empty `id`, `type`
/// `function`, `arguments` a JSON string; the result answers that id.
fn check_tool_round(seen: &[(String, Value)], expect: &Expect, problems: &mut Vec<String>) {
    let Some((_, second)) = seen.get(1) else {
        problems.push("tool_ran: no request after the first answer".into());
        return;
    };
    let messages = second["messages"].as_array().cloned().unwrap_or_default();
    let Some(call) = messages.iter().find_map(|m| m["tool_calls"].as_array().and_then(|c| c.first()).cloned()) else {
        problems.push(format!("tool_ran: no assistant tool call echoed in the second request: {second}"));
        return;
    };
    let id = call["id"].as_str().unwrap_or_default();
    if id.is_empty() {
        problems.push(format!("echoed tool call has no id: {call}"));
    }
    if call["type"] != "function" {
        problems.push(format!("echoed tool call's type is not \"function\": {call}"));
    }
    if call["function"]["name"] != "read-notes" {
        problems.push(format!("echoed tool call names another tool: {call}"));
    }
    match &call["function"]["arguments"] {
        Value::String(text) => {
            if let Some(want) = &expect.tool_args {
                match serde_json::from_str::<Value>(text) {
                    Ok(got) if &got == want => {}
                    Ok(got) => problems.push(format!("tool arguments {got}, expected {want}")),
                    Err(e) => problems.push(format!("echoed arguments are not JSON ({e}): {text:?}")),
                }
            }
        }
        other => problems.push(format!("echoed arguments are not a JSON string: {other}")),
    }
    let results: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    match results.as_slice() {
        [result] => {
            if result["tool_call_id"].as_str() != Some(id) {
                problems.push(format!("tool result answers {}, the call is {id:?}", result["tool_call_id"]));
            }
            let content = result["content"].as_str().unwrap_or_default();
            if let Some(want) = &expect.tool_result_contains
                && !content.contains(want.as_str())
            {
                problems.push(format!("tool result {content:?} lacks {want:?}"));
            }
        }
        other => problems.push(format!("expected one tool result message, got {}: {second}", other.len())),
    }
}

/// Runs one case; the problems found (empty: it passed).
fn check(file: &Path) -> Vec<String> {
    let case: Case = match serde_json::from_str(&std::fs::read_to_string(file).unwrap()) {
        Ok(c) => c,
        Err(e) => return vec![format!("case file does not parse: {e}")],
    };
    assert!(!case.server.is_empty() && !case.quirk.is_empty() && !case.exchanges.is_empty(), "{}", file.display());
    for ex in &case.exchanges {
        assert!(ex.body.is_some() != ex.raw.is_some(), "{}: an exchange has `body` or `raw`", file.display());
    }
    let label = format!("({}: {})", case.server, case.quirk);
    let expect = &case.expect;
    let server = Server::start(case.exchanges);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("notes/notes.txt"), NOTES).unwrap();
    let topo = topology(dir.path(), server.addr, &case.tools);
    let mut problems = Vec::new();
    let stderr = match run(dir.path(), &topo) {
        Ok(s) => s,
        Err(e) => return vec![label, e],
    };
    let seen = server.seen();
    drop(server);
    if seen.len() != expect.calls {
        problems.push(format!("{} HTTP call(s), expected {}", seen.len(), expect.calls));
    }
    if let Some((path, _)) = seen.iter().find(|(p, _)| p != "/v1/chat/completions") {
        problems.push(format!("request to {path}"));
    }
    if !case.tools.is_empty() && seen.first().is_some_and(|(_, r)| r["tools"].as_array().is_none_or(Vec::is_empty)) {
        problems.push("the first request offers no tools".into());
    }
    let outputs = read_lines(&dir.path().join("out.jsonl"));
    let dead = read_lines(&dir.path().join("dlq.jsonl"));
    match (&expect.answer, outputs.as_slice()) {
        (None, []) => {}
        (None, [o, ..]) => problems.push(format!("expected no answer, got {}", o["payload"])),
        (Some(want), [o]) => {
            let payload = &o["payload"];
            if payload["answer"].as_str() != Some(want.as_str()) {
                problems.push(format!("answer {}, expected {want:?}", payload["answer"]));
            }
            let finish = &payload["usage"]["finish_reason"];
            if finish != &json!(expect.finish_reason) {
                problems.push(format!("finish_reason {finish}, expected {}", json!(expect.finish_reason)));
            }
            for (k, v) in expect.usage.iter().flatten() {
                if &payload["usage"][k] != v {
                    problems.push(format!("usage.{k} = {}, expected {v}", payload["usage"][k]));
                }
            }
        }
        (Some(_), other) => problems.push(format!("expected one answer, got {}", other.len())),
    }
    match (&expect.dead_letter_contains, dead.as_slice()) {
        (None, []) => {}
        (None, [d, ..]) => problems.push(format!("unexpected dead letter: {}", d["error"])),
        (Some(want), [d]) => {
            let error = d["error"].as_str().unwrap_or_default();
            for w in want.iter().filter(|w| !error.contains(w.as_str())) {
                problems.push(format!("dead letter lacks {w:?}: {error:?}"));
            }
            for w in expect.dead_letter_excludes.iter().filter(|w| error.contains(w.as_str())) {
                problems.push(format!("dead letter contains {w:?}: {error:?}"));
            }
        }
        (Some(_), other) => problems.push(format!("expected one dead letter, got {}", other.len())),
    }
    let ran = seen
        .iter()
        .skip(1)
        .any(|(_, r)| r["messages"].as_array().is_some_and(|m| m.iter().any(|m| m["role"] == "tool")));
    if expect.tool_ran {
        check_tool_round(&seen, expect, &mut problems);
    } else if ran {
        problems.push("a tool ran, none expected".into());
    }
    if !problems.is_empty() {
        let tail: String =
            stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n      ");
        problems.push(format!("stderr (tail):\n      {tail}"));
        problems.insert(0, label);
    }
    problems
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model_corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// The corpus's breadth, as the issue asks: at least 25 cases from at least 12 server families.
#[test]
fn the_corpus_covers_enough_servers() {
    let files = corpus();
    let mut families = std::collections::BTreeSet::new();
    for f in &files {
        let case: Case = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        families.insert(case.server);
    }
    assert!(files.len() >= 25, "{} cases", files.len());
    assert!(families.len() >= 12, "{} families: {families:?}", families.len());
}

#[test]
fn every_answer_in_the_corpus_is_read_as_expected() {
    let only = std::env::var("KAFCLAW_CORPUS").ok();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in corpus() {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        if only.as_ref().is_some_and(|o| !stem.contains(o.as_str())) {
            continue;
        }
        ran += 1;
        let problems = check(&file);
        if !problems.is_empty() {
            failures.push(format!("  {stem}:\n    {}", problems.join("\n    ")));
        }
    }
    eprintln!("model corpus: {ran} case(s), {} failed, {:?}", failures.len(), started.elapsed());
    assert!(failures.is_empty(), "{} of {ran} corpus case(s) failed:\n{}", failures.len(), failures.join("\n"));
}
