//! A real HTTP server in the test process that speaks the OpenAI chat-completions protocol
//! (axum on 127.0.0.1, a random port), with behaviour scripted by the user message:
//!
//! - `429x<N> …`: answer 429 with `Retry-After: 1` to the first N calls of this message;
//! - `500x<N> …`: answer 500 to the first N calls;
//! - `garbage x<N> …`: answer a malformed body to the first N calls;
//! - `slow x<N> …`: sleep 3 s before the first N answers (past a 1 s client timeout);
//! - `always500 …`: always 500;
//! - `use tools …` (with tools offered): first answer asks for two tool calls, `read-notes`
//!   with `{"path": "notes.txt"}` and `run` with `{"argv": ["echo", "hi"]}`; once the tool
//!   results are in the conversation, answers `done: <result 1> | <result 2>`;
//! - `memory-tool <action>: <text>` (with tools offered): first answer asks for the `memory`
//!   tool with `{"action": <action>, "text": <text>}`; then answers `done: <its result>`;
//! - `delegate <tool>: <task>`: first answer asks for tool `<tool>` with
//!   `{"description": <task>}`; then answers `done: <its result>`;
//! - `script [["<tool>", {args}], …]` (a JSON list; `tool-script` is the same rule): each
//!   answer asks for the next tool call of the list, one per answer (`call_<i>`); once all
//!   results are in, answers `done: <result 1> | <result 2> | …`;
//! - `tool-scripts [script, script, …]` (each a `tool-script` list): as `tool-script`, playing
//!   the script of the current `variant` (modulo their number), with call ids of the variant
//!   (`call_v<variant>_<i>`): a model that answers a rerun differently;
//! - `tool-shuffle [["<tool>", {args}], …]`: one call per answer, each a tool of the list not
//!   yet called in the conversation, picked at random, with a random call id; then `done: …`
//!   as `tool-script` (a model answering every attempt in its own order);
//! - `Summarise this conversation: …` (the `conversation` operator's summary call): answers
//!   `summary of <n> turns, the last: <the last turn's first 40 characters>`;
//! - anything else: `answer: <message>`, with usage 10 + 5 tokens.
//!
//! Every request body is kept, in arrival order, in `requests`.
//!
//! `/v1/embeddings` answers 8-dimension unit vectors by *concept*: words of a concept group
//! ("refund", "money", "reimburse"; "cat", "kitten", "feline"; "deploy", "release", "ship") share
//! a dimension, so "money back" is near "refund" (which no word-hashing embedder finds); an
//! input starting `always500` gets a 500. Embedding calls are counted in `embed_calls`.
//!
//! Every call is counted; the server records the peak of calls in flight overall and per
//! `key=<k>` found in the message (to prove per-key calls never overlap).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
pub struct Counters {
    /// Calls received.
    pub calls: AtomicUsize,
    /// Calls in flight now.
    in_flight: AtomicUsize,
    /// Most calls in flight at once.
    pub peak: AtomicUsize,
    /// Calls per message.
    per_message: Mutex<HashMap<String, usize>>,
    /// Calls in flight per key, and the most ever seen per key.
    per_key: Mutex<HashMap<String, (usize, usize)>>,
    /// Delay before every answer.
    pub delay_ms: AtomicUsize,
    /// Embedding calls received.
    pub embed_calls: AtomicUsize,
    /// Messages in the order calls arrived.
    pub log: Mutex<Vec<String>>,
    /// Request bodies of chat calls, in the order they arrived.
    pub requests: Mutex<Vec<Value>>,
    /// The script `tool-scripts` plays.
    pub variant: AtomicUsize,
}

impl Counters {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The most calls of one key that were ever in flight together.
    pub fn max_per_key(&self) -> usize {
        self.per_key.lock().unwrap().values().map(|(_, m)| *m).max().unwrap_or(0)
    }
}

pub struct FakeOpenAi {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl FakeOpenAi {
    /// Starts the server on its own thread.
    pub fn start() -> Self {
        let counters = Arc::new(Counters::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let c = counters.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = Router::new()
                    .route("/v1/chat/completions", post(chat))
                    .route("/v1/embeddings", post(embeddings))
                    .with_state(c);
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        Self { addr, counters }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// The fake model's vector of `text`: one dimension per concept group, the rest by word.
pub fn concept_vector(text: &str) -> Vec<f32> {
    const GROUPS: [&[&str]; 3] =
        [&["refund", "money", "reimburse"], &["cat", "kitten", "feline"], &["deploy", "release", "ship"]];
    let mut v = [0f32; 8];
    for w in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        match GROUPS.iter().position(|g| g.contains(&w)) {
            Some(i) => v[i] += 1.0,
            None => v[3 + w.bytes().map(usize::from).sum::<usize>() % 5] += 0.2,
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / norm).collect()
}

async fn embeddings(State(c): State<Arc<Counters>>, body: axum::body::Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad json: {e}")).into_response(),
    };
    c.embed_calls.fetch_add(1, Ordering::SeqCst);
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => return (StatusCode::BAD_REQUEST, "no input").into_response(),
    };
    if inputs.iter().any(|i| i.starts_with("always500")) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": concept_vector(t)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    axum::Json(json!({
        "object": "list", "model": "fake-embed-1", "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

fn times(message: &str, tag: &str) -> Option<usize> {
    let rest = message.split(tag).nth(1)?;
    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
    n.parse().ok()
}

async fn chat(State(c): State<Arc<Counters>>, body: axum::body::Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad json: {e}")).into_response(),
    };
    let message = request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let key = message.split("key=").nth(1).map(|k| k.split_whitespace().next().unwrap_or("").to_owned());
    c.calls.fetch_add(1, Ordering::SeqCst);
    c.log.lock().unwrap().push(message.clone());
    c.requests.lock().unwrap().push(request.clone());
    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    c.peak.fetch_max(now, Ordering::SeqCst);
    if let Some(k) = &key {
        let mut per = c.per_key.lock().unwrap();
        let e = per.entry(k.clone()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
    }
    let nth = {
        let mut per = c.per_message.lock().unwrap();
        let n = per.entry(message.clone()).or_default();
        *n += 1;
        *n
    };
    let delay = c.delay_ms.load(Ordering::SeqCst) as u64;
    let slow = times(&message, "slow x").is_some_and(|n| nth <= n);
    tokio::time::sleep(Duration::from_millis(if slow { 3000 } else { delay })).await;
    let response = if times(&message, "429x").is_some_and(|n| nth <= n) {
        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response()
    } else if times(&message, "500x").is_some_and(|n| nth <= n) || message.starts_with("always500") {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    } else if times(&message, "garbage x").is_some_and(|n| nth <= n) {
        (StatusCode::OK, "{\"choices\": [tru").into_response()
    } else if let Some((tool, arguments)) = message
        .strip_prefix("memory-tool ")
        .map(|rest| {
            let (action, text) = rest.split_once(": ").unwrap_or((rest, ""));
            ("memory", json!({"action": action, "text": text}))
        })
        .or_else(|| {
            let (tool, task) = message.strip_prefix("delegate ")?.split_once(": ")?;
            Some((tool, json!({"description": task})))
        })
    {
        let result = request["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").cloned();
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        let message = match result {
            None => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_m", "type": "function", "function": {"name": tool, "arguments": arguments.to_string()}}
            ]}),
            Some(r) => {
                json!({"role": "assistant", "content": format!("done: {}", r["content"].as_str().unwrap_or(""))})
            }
        };
        axum::Json(json!({"model": "fake-1", "choices": [{"index": 0, "message": message}], "usage": usage}))
            .into_response()
    } else if let Some((calls, ids)) = message
        .strip_prefix("tool-scripts ")
        .and_then(|s| serde_json::from_str::<Vec<Vec<(String, Value)>>>(s).ok())
        .filter(|scripts| !scripts.is_empty())
        .map(|scripts| {
            let v = c.variant.load(Ordering::SeqCst);
            (scripts[v % scripts.len()].clone(), format!("call_v{v}"))
        })
        .or_else(|| {
            let script = serde_json::from_str::<Vec<(String, Value)>>(message.strip_prefix("tool-shuffle ")?).ok()?;
            let called = called_tools(&request);
            let mut left: Vec<_> = script.into_iter().filter(|(t, _)| !called.contains(&t.as_str())).collect();
            fastrand::shuffle(&mut left);
            Some((left.into_iter().take(1).collect(), format!("call_{:08x}", fastrand::u32(..))))
        })
    {
        // `tool-scripts` / `tool-shuffle`: the next call of the variant's script, or a random
        // one not called yet; then `done: <every tool result, joined by " | ">`.
        let results: Vec<&str> = tool_results(&request);
        let shuffled = message.starts_with("tool-shuffle ");
        let next = if shuffled { calls.first() } else { calls.get(results.len()) };
        let message = match next {
            Some((tool, args)) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": format!("{ids}_{}", results.len()), "type": "function", "function": {"name": tool, "arguments": args.to_string()}}
            ]}),
            None => json!({"role": "assistant", "content": format!("done: {}", results.join(" | "))}),
        };
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        axum::Json(json!({"model": "fake-1", "choices": [{"index": 0, "message": message}], "usage": usage}))
            .into_response()
    } else if let Some(calls) = message
        .strip_prefix("tool-script ")
        .or_else(|| message.strip_prefix("script "))
        .and_then(|s| serde_json::from_str::<Vec<(String, Value)>>(s).ok())
    {
        // `script` / `tool-script [["tool", {args}], …]`: one call per answer, in order; then
        // `done: <every tool result, joined by " | ">`.
        let results: Vec<&str> = tool_results(&request);
        let message = match calls.get(results.len()) {
            Some((tool, args)) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": format!("call_{}", results.len()), "type": "function", "function": {"name": tool, "arguments": args.to_string()}}
            ]}),
            None => json!({"role": "assistant", "content": format!("done: {}", results.join(" | "))}),
        };
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        axum::Json(json!({"model": "fake-1", "choices": [{"index": 0, "message": message}], "usage": usage}))
            .into_response()
    } else if let Some(transcript) = message.strip_prefix("Summarise this conversation:") {
        // The `conversation` operator's summary call: a short summary naming how many turns
        // it covers and the last of them.
        let turns: Vec<&str> =
            transcript.lines().filter(|l| l.starts_with("user: ") || l.starts_with("assistant: ")).collect();
        let last: String = turns.last().map_or("", |l| l).chars().take(40).collect();
        let content = format!("summary of {} turns, the last: {last}", turns.len());
        axum::Json(json!({
            "model": "fake-1",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response()
    } else if message.starts_with("refuse me") {
        axum::Json(json!({
            "model": "fake-1",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": null, "refusal": "I can't help with that"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response()
    } else if request["stream"] == true
        && let Some(n) = times(&message, "stream ")
    {
        // Server-sent events: `n` content deltas, then the finish, the usage and [DONE].
        let mut body = String::new();
        for i in 0..n {
            let chunk = json!({"model": "fake-1", "choices": [{"index": 0, "delta": {"content": format!("w{i} ")}}]});
            body.push_str(&format!("data: {chunk}\n\n"));
        }
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ));
        let usage =
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}});
        body.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
        ([(axum::http::header::CONTENT_TYPE, "text/event-stream")], body).into_response()
    } else if let Some(first) = request["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .filter(|t| t.starts_with("schema "))
    {
        // Structured output: `schema bad-then-good` violates the schema until told so;
        // `schema always-bad` never stops violating it.
        let told = request["messages"].as_array().unwrap().iter().any(|m| {
            m["role"] == "user"
                && m["content"].as_str().is_some_and(|t| t.contains("does not match the required JSON schema"))
        });
        let sent_schema = request["response_format"]["type"] == "json_schema";
        let content = if told && first.contains("bad-then-good") && sent_schema {
            r#"{"priority": "high", "summary": "refund"}"#
        } else {
            r#"{"priority": "urgent"}"#
        };
        axum::Json(json!({
            "model": "fake-1",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response()
    } else if let Some(n) = times(&message, "flood ") {
        // A hostile answer: `n` tool calls at once; then a report of what came back.
        let results: Vec<&str> = tool_results(&request);
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        let message = if results.is_empty() {
            let calls: Vec<Value> = (0..n)
                .map(|i| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": "read-notes", "arguments": "{\"path\": \"notes.txt\"}"}}))
                .collect();
            json!({"role": "assistant", "content": null, "tool_calls": calls})
        } else {
            let refused = results.iter().filter(|r| r.contains("refused: this answer asked for")).count();
            let longest = results.iter().map(|r| r.len()).max().unwrap_or(0);
            let cut = results.iter().any(|r| r.contains("max_tool_output_bytes"));
            json!({"role": "assistant", "content": format!("results={} refused={refused} longest={longest} cut={cut}", results.len())})
        };
        axum::Json(json!({"model": "fake-1", "choices": [{"index": 0, "message": message}], "usage": usage}))
            .into_response()
    } else if message.starts_with("use tools") {
        let results: Vec<&str> = tool_results(&request);
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        if results.is_empty() {
            axum::Json(json!({
                "model": "fake-1",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read-notes", "arguments": "{\"path\": \"notes.txt\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "run", "arguments": "{\"argv\": [\"echo\", \"hi\"]}"}}
                ]}}],
                "usage": usage
            }))
            .into_response()
        } else {
            let content = format!("done: {}", results.join(" | ").trim());
            axum::Json(json!({
                "model": "fake-1",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                "usage": usage
            }))
            .into_response()
        }
    } else {
        axum::Json(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "fake-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("answer: {message}")}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response()
    };
    c.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(k) = &key {
        c.per_key.lock().unwrap().get_mut(k).unwrap().0 -= 1;
    }
    response
}

/// The tools the assistant messages of a chat request called, in order.
fn called_tools(request: &Value) -> Vec<&str> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["tool_calls"].as_array())
        .flatten()
        .filter_map(|c| c["function"]["name"].as_str())
        .collect()
}

/// The tool results (`role: tool` messages' content) of a chat request, in order.
fn tool_results(request: &Value) -> Vec<&str> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str())
        .collect()
}
