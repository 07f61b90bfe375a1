//! Round records in the tool loop (docs/effects.md): a model that answers a rerun
//! differently (other tools, another order, other arguments, fresh call ids) is not asked
//! again for a recorded round, and no logged effect runs twice. The model is a scripted
//! OpenAI-compatible HTTP server in the test; the log is the in-memory one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::llm::journal::JournalEntry;
use crate::llm::tool_loop::{ToolLimits, call_with_tools};
use crate::model::{ModelClient, SharedModel};
use crate::tools::effect::{Effect, EffectLog, EffectRecord, EffectSlot, Effected, LogFuture, MemoryEffectLog};
use crate::tools::{CallContext, Tool, ToolFuture, ToolOutput};

const STEP: &str = "app/answer/in/0/7";

/// The fake model: which attempt it plays (each answers the same conversation otherwise),
/// and every request it got.
#[derive(Default)]
struct Model {
    attempt: AtomicUsize,
    requests: std::sync::Mutex<Vec<Value>>,
}

impl Model {
    /// Attempt 0: `pay {amount: 3}` and `note`, then `ship {to: x}`, then done. Attempt 1
    /// (a rerun, the model answering otherwise): `ship {to: y}` and `pay {amount: 5}`, then
    /// `pay {amount: 7}`, then `done: <every tool result>`. Call ids are the attempt's own.
    fn answer(&self, request: &Value) -> Value {
        let attempt = self.attempt.load(Ordering::SeqCst);
        let messages = request["messages"].as_array().cloned().unwrap_or_default();
        let results: Vec<&str> =
            messages.iter().filter(|m| m["role"] == "tool").filter_map(|m| m["content"].as_str()).collect();
        let call = |i: usize, name: &str, args: Value| {
            json!({"id": format!("a{attempt}_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}})
        };
        let calls = match (attempt, results.len()) {
            (0, 0) => vec![call(0, "pay", json!({"amount": 3})), call(1, "note", json!({"q": "a"}))],
            (0, 2) => vec![call(2, "ship", json!({"to": "x"}))],
            (_, 0) => vec![call(0, "ship", json!({"to": "y"})), call(1, "pay", json!({"amount": 5}))],
            (_, 2) => vec![call(2, "pay", json!({"amount": 7}))],
            _ => Vec::new(),
        };
        let message = if calls.is_empty() {
            json!({"role": "assistant", "content": format!("done: {}", results.join(" | "))})
        } else {
            json!({"role": "assistant", "content": null, "tool_calls": calls})
        };
        json!({"model": "fake-1", "choices": [{"index": 0, "message": message}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    }

    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Serves `model` over HTTP/1.1 on 127.0.0.1; its base URL.
async fn serve(model: Arc<Model>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let model = model.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then a body of `content-length` bytes.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request: Value = serde_json::from_slice(&buf[end..end + length]).unwrap();
                    buf.drain(..end + length);
                    let body = model.answer(&request).to_string();
                    model.requests.lock().unwrap().push(request);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

/// A tool counting its calls; `crash` makes its next call never answer, after it counted
/// (the effect happened; the run dies before its result), and wakes the test.
#[derive(Debug, Default)]
struct Effectful {
    calls: AtomicUsize,
    crash: std::sync::atomic::AtomicBool,
    crashed: Arc<Notify>,
}

impl Tool for Effectful {
    fn description(&self) -> String {
        "an effect".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn side_effects(&self) -> bool {
        true
    }
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash.swap(false, Ordering::SeqCst) {
            self.crashed.notify_one();
            return Box::pin(std::future::pending());
        }
        Box::pin(std::future::ready(Ok(ToolOutput::from(format!("call {n} with {args} at {}", cx.idempotency_key)))))
    }
}

/// The memory log, counting lookups that catch up and lookups that do not.
#[derive(Debug, Default)]
struct Log {
    inner: MemoryEffectLog,
    barriers: AtomicUsize,
    synced: AtomicUsize,
}

impl EffectLog for Log {
    fn lookup(&self, key: &str) -> LogFuture<Option<EffectRecord>> {
        self.barriers.fetch_add(1, Ordering::SeqCst);
        self.inner.lookup(key)
    }
    fn lookup_synced(&self, key: &str) -> LogFuture<Option<EffectRecord>> {
        self.synced.fetch_add(1, Ordering::SeqCst);
        self.inner.lookup(key)
    }
    fn append(&self, record: EffectRecord) -> LogFuture<()> {
        self.inner.append(record)
    }
}

struct Setup {
    model: Arc<Model>,
    client: Arc<ModelClient>,
    log: Arc<Log>,
    pay: Arc<Effectful>,
    ship: Arc<Effectful>,
    note: Arc<Effectful>,
    tools: Vec<(String, Arc<dyn Tool>)>,
}

async fn setup() -> Setup {
    let model = Arc::new(Model::default());
    let config =
        toml::from_str(&format!("base_url = \"{}\"\nmodel = \"fake-1\"\n", serve(model.clone()).await)).unwrap();
    let client = SharedModel::new("fake", config).client().unwrap();
    let log = Arc::new(Log::default());
    let slot = Arc::new(EffectSlot::default());
    slot.set(log.clone());
    let (pay, ship, note) =
        (Arc::new(Effectful::default()), Arc::new(Effectful::default()), Arc::new(Effectful::default()));
    let wrap = |t: &Arc<Effectful>, name: &str, effect| {
        (name.to_owned(), Arc::new(Effected::new(t.clone(), name, effect, None, slot.clone())) as Arc<dyn Tool>)
    };
    let tools = vec![
        wrap(&pay, "pay", Effect::AtMostOnce),
        wrap(&ship, "ship", Effect::AtMostOnce),
        wrap(&note, "note", Effect::None),
    ];
    Setup { model, client, log, pay, ship, note, tools }
}

async fn run(s: &Setup) -> Result<JournalEntry, crate::model::CallError> {
    let limits = ToolLimits { max_steps: 4, max_calls: 4, max_output_bytes: 10_000 };
    let messages = vec![crate::model::protocol::Message::text("user", "go".into())];
    let log = s.log.clone() as Arc<dyn EffectLog>;
    call_with_tools(std::slice::from_ref(&s.client), messages, &s.tools, limits, None, false, &STEP.into(), Some(log))
        .await
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

#[tokio::test]
async fn effect_rounds_a_rerun_replays_recorded_rounds_and_runs_no_effect_twice() {
    let s = setup().await;
    // Attempt 0 dies inside `ship` (round 1): its effect happened, its result was not logged.
    s.ship.crash.store(true, Ordering::SeqCst);
    let crashed = s.ship.crashed.clone();
    tokio::select! {
        r = run(&s) => panic!("the attempt was to die in `ship`: {r:?}"),
        () = crashed.notified() => {}
    }
    assert_eq!((count(&s.pay.calls), count(&s.ship.calls), count(&s.note.calls)), (1, 1, 1));
    assert_eq!(s.model.calls(), 2);
    assert_eq!((count(&s.log.barriers), count(&s.log.synced)), (1, 3), "one catch-up in the attempt");
    let round0 = s.log.inner.lookup(&format!("{STEP}/0")).await.unwrap().unwrap();
    assert_eq!(round0.tool, "llm");
    assert_eq!(round0.arguments["tool_calls"][0]["function"]["name"], "pay");

    // The rerun: the model would now answer ship, pay(5), then pay(7), with other ids.
    s.model.attempt.store(1, Ordering::SeqCst);
    let entry = run(&s).await.unwrap();
    assert_eq!(s.model.calls(), 3, "only the last round, never recorded, asks the model");
    assert_eq!((count(&s.pay.calls), count(&s.ship.calls)), (1, 1), "no effect made twice");
    assert_eq!(count(&s.note.calls), 2, "a call of class `none` runs again, with the recorded arguments");
    assert_eq!((count(&s.log.barriers), count(&s.log.synced)), (2, 3 + 4), "one catch-up in the rerun");
    // The first attempt's path: pay's recorded result, note again, ship's unknown outcome.
    let parts: Vec<&str> = entry.content.strip_prefix("done: ").unwrap().split(" | ").collect();
    assert_eq!(parts[0], format!("call 1 with {{\"amount\":3}} at {STEP}/0/0"));
    assert_eq!(parts[1], format!("call 2 with {{\"q\":\"a\"}} at {STEP}/0/1"));
    assert!(parts[2].starts_with("outcome unknown: tool `ship` (at-most-once)"), "{}", parts[2]);
    let last = s.model.requests.lock().unwrap().last().cloned().unwrap();
    let ids: Vec<&str> =
        last["messages"].as_array().unwrap().iter().filter_map(|m| m["tool_call_id"].as_str()).collect();
    assert_eq!(ids, ["a0_0", "a0_1", "a0_2"], "the recorded calls, by their recorded ids");
    let replays: Vec<_> = entry.steps.iter().filter(|s| s.detail.starts_with("replayed from the effect log")).collect();
    assert_eq!(replays.len(), 2, "{:?}", entry.steps);
    assert_eq!(entry.usage.total_tokens, 15, "a replayed round costs no tokens");
    assert_eq!(
        entry.audits.iter().map(|a| a["event_type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["tool_outcome_unknown"]
    );

    // A third run of the step after a completed one: every round replayed, nothing made.
    let again = run(&s).await.unwrap();
    assert_eq!(s.model.calls(), 4);
    assert_eq!((count(&s.pay.calls), count(&s.ship.calls)), (1, 1));
    assert_eq!(again.content, entry.content.replace("call 2 with", "call 3 with"));
}

#[tokio::test]
async fn effect_rounds_only_rounds_with_keyed_calls_are_recorded_and_only_with_a_logged_tool() {
    // Offered no logged tool: no lookup, no record.
    let s2 = setup().await;
    let plain: Vec<_> = s2.tools.iter().filter(|(n, _)| n == "note").cloned().collect();
    let s2 = Setup { tools: plain, ..s2 };
    s2.model.attempt.store(1, Ordering::SeqCst);
    let _ = run(&s2).await.unwrap();
    assert_eq!((count(&s2.log.barriers), count(&s2.log.synced)), (0, 0));
    assert!(s2.log.inner.lookup(&format!("{STEP}/0")).await.unwrap().is_none());

    // With one, each round of calls with keys is recorded before its calls; the last is not.
    let s = setup().await;
    let entry = run(&s).await.unwrap();
    assert!(entry.content.starts_with("done: "), "{}", entry.content);
    for round in 0..2 {
        assert!(s.log.inner.lookup(&format!("{STEP}/{round}")).await.unwrap().is_some(), "round {round}");
    }
    assert!(s.log.inner.lookup(&format!("{STEP}/2")).await.unwrap().is_none(), "the final answer calls nothing");
    assert_eq!((count(&s.log.barriers), count(&s.log.synced)), (1, 4));
}
