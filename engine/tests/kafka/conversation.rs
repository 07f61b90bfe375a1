//! Conversation memory on Kafka, exactly-once: three conversations of 70 exchanges each keep
//! their histories in a changelogged table that `kafclaw state inspect` and `state get` show,
//! within budget, the oldest turns summarised; the summary calls are journalled, so
//! `kafclaw replay --from earliest` makes no model call at all (the fake server's counter),
//! produces the very same output envelopes and rebuilds the very same histories.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kafclaw_state::{RocksStore, StateStore};
use serde_json::Value;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

const PARTITIONS: u32 = 3;
const CONVERSATIONS: usize = 3;
const EXCHANGES: usize = 70;
const MAX_TOKENS: usize = 400;
const HTTP_TOKEN: (&str, &str) = ("CONVERSATION_HTTP_TOKEN", "conv-token-41f0");

fn request(i: usize) -> (String, String) {
    let conv = format!("c-{}", i % CONVERSATIONS);
    let v = serde_json::json!({
        "type": "request", "correlation_id": conv, "sender_id": "alice", "timestamp": "2026-11-24T10:00:00Z",
        "id": format!("q-{i}"), "payload": {"description": format!("question {i}: is invoice {i} paid?")}
    });
    (conv, v.to_string())
}

fn state_cli(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .arg("state")
        .args(args)
        .args(["--http-token-env", HTTP_TOKEN.0])
        .env(HTTP_TOKEN.0, HTTP_TOKEN.1)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every entry of `table` in an instance's store, by (partition, key).
fn table(db: &Path, table: &str) -> BTreeMap<(u32, Vec<u8>), Vec<u8>> {
    let store = RocksStore::open(db).unwrap();
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        for (k, v) in store.scan_partition(table, p).unwrap() {
            out.insert((p, k), v);
        }
    }
    out
}

/// Waits until group `app` has committed all `n` records of `input` (a partition no
/// conversation hashed to has no committed offset: it counts as 0).
fn wait_committed(app: &str, input: &str, n: usize, log: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while committed(app, input, PARTITIONS as i32).iter().map(|o| (*o).max(0)).sum::<i64>() < n as i64 {
        assert!(std::time::Instant::now() < deadline, "{}", log_tail(log));
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn histories_stay_within_budget_and_a_replay_reuses_every_summary() {
    const N: usize = CONVERSATIONS * EXCHANGES;
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let (app, input, output) = (unique("conv-app"), unique("conv-in"), unique("conv-out"));
    create_topic(&input, PARTITIONS as i32);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = {PARTITIONS}

[models.fake]
base_url = "{}"
model = "fake-1"
max_concurrency = 32

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
conversation = "history"
system = "The conversation so far:\n{{{{ payload.conversation }}}}"
prompt = "{{{{ payload.description }}}}"

[operators.history]
type = "conversation"
inputs = ["answer"]
model = "fake"
max_tokens = {MAX_TOKENS}
max_turns = 40
max_bytes = 8192

[sinks.answers]
type = "kafka"
inputs = ["history"]
topic = "{output}"
"#,
            server.base_url()
        ),
    );
    produce(&input, (0..N).map(request));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.path().join("run.log");
    let mut a =
        spawn_instance_env(&topo, "a", &log, &["--http", &addr, "--http-token-env", HTTP_TOKEN.0], &[HTTP_TOKEN]);
    wait_committed(&app, &input, N, &log);

    // The histories, as `state inspect` and `state get` show them.
    let tables = state_cli(&["inspect", "--http", &addr, "--json"]);
    let by_name = |name: &str| tables.as_array().unwrap().iter().find(|t| t["table"] == name).cloned().unwrap();
    assert_eq!(by_name("history")["keys"], serde_json::json!(CONVERSATIONS), "{tables}");
    assert_eq!(by_name("answer.journal")["keys"], serde_json::json!(N));
    let summaries = by_name("history.journal")["keys"].as_u64().unwrap() as usize;
    assert!(summaries >= CONVERSATIONS, "every conversation was summarised: {summaries}");
    for c in 0..CONVERSATIONS {
        let got = state_cli(&["get", "history", &format!("c-{c}"), "--http", &addr]);
        let h = &got["values"][0]["value"];
        assert!(h["summary"].as_str().is_some_and(|s| s.starts_with("summary of ")), "{h}");
        let turns = h["turns"].as_array().unwrap();
        assert!(turns.len() <= 40 && h.to_string().len() <= 8192, "{h}");
        assert_eq!(h["summarised"].as_u64().unwrap() + turns.len() as u64, 2 * EXCHANGES as u64, "{h}");
        let last = (EXCHANGES - 1) * CONVERSATIONS + c;
        assert_eq!(turns.last().unwrap()["content"], format!("answer: question {last}: is invoice {last} paid?"));
    }
    sigterm(&mut a);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0), "{}", log_tail(&log));
    let calls = server.counters.calls();
    assert_eq!(calls, N + summaries, "one call per request and one per journalled summary");
    for r in server.counters.requests.lock().unwrap().iter() {
        let system = r["messages"][0]["content"].as_str().unwrap();
        if let Some(history) = system.strip_prefix("The conversation so far:\n") {
            assert!(history.len().div_ceil(4) <= MAX_TOKENS, "{} bytes of history in a prompt", history.len());
        }
    }
    let first = consume_all(&output, N, Duration::from_secs(60));
    assert_eq!(first.len(), N);
    let db = dir.path().join("state").join(&app).join("a");
    let histories = table(&db, "history");
    assert_eq!(histories.len(), CONVERSATIONS);

    // Replay from the start: every answer and every summary from the journals.
    let (code, stderr) = run_replay(&topo, "earliest", "a", &dir.path().join("state"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("replayed {N} record(s)")), "{stderr}");
    assert_eq!(server.counters.calls.load(Ordering::SeqCst), calls, "the replay made no model call");
    let all = consume_all(&output, 2 * N, Duration::from_secs(60));
    assert_eq!(all.len(), 2 * N);
    let first_at: std::collections::HashSet<(i32, i64)> = first.iter().map(|g| (g.partition, g.offset)).collect();
    let (old, new): (Vec<&Got>, Vec<&Got>) = all.iter().partition(|g| first_at.contains(&(g.partition, g.offset)));
    let by_id = |records: &[&Got]| -> BTreeMap<String, Value> {
        records.iter().map(|g| (g.value["id"].as_str().unwrap().to_owned(), g.value.clone())).collect()
    };
    assert_eq!(by_id(&old), by_id(&new), "the replay's outputs equal the first run's, envelope by envelope");
    assert_eq!(table(&db, "history"), histories, "the replay rebuilt the same histories");
    // Offline: the journals exported (answers and summaries), the same inputs run locally from
    // the export make no call and give the same outputs.
    let export = dir.path().join("journal.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["journal", "export", topo.to_str().unwrap(), "--brokers", &brokers(), "--output"])
        .arg(&export)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("exported {} journal entries", N + summaries)), "{stderr}");
    let offline = std::fs::read_to_string(&topo)
        .unwrap()
        .replace(
            &format!("base_url = \"{}\"", server.base_url()),
            "base_url = \"http://127.0.0.1:9/v1\"\nrecorded = \"journal.jsonl\"",
        )
        .replace(&format!("type = \"kafka\"\ntopic = \"{input}\""), "type = \"file\"\npath = \"in.jsonl\"")
        .replace(
            &format!("type = \"kafka\"\ninputs = [\"history\"]\ntopic = \"{output}\""),
            "type = \"file\"\ninputs = [\"history\"]\npath = \"offline.jsonl\"",
        );
    assert!(
        offline.contains("recorded = ") && offline.contains("in.jsonl") && offline.contains("offline.jsonl"),
        "{offline}"
    );
    // Beside it: what summaries failed (none may), and each history after each exchange.
    let offline = offline
        + "\n[sinks.audit]\ntype = \"file\"\ninputs = [\"history.audit\"]\npath = \"audit.jsonl\"\n"
        + "\n[operators.transcript]\ntype = \"conversation-context\"\ninputs = [\"history\"]\nconversation = \"history\"\n"
        + "\n[sinks.transcripts]\ntype = \"file\"\ninputs = [\"transcript\"]\npath = \"transcripts.jsonl\"\n";
    let local = write_topology(dir.path(), "offline", &offline);
    std::fs::write(dir.path().join("in.jsonl"), (0..N).map(|i| request(i).1 + "\n").collect::<String>()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", local.to_str().unwrap(), "--local"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.counters.calls(), calls, "the offline run made no model call");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(audit.is_empty(), "every summary came from the export: {audit}");
    let transcripts = std::fs::read_to_string(dir.path().join("transcripts.jsonl")).unwrap();
    let offline_summaries = transcripts
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|t| {
            t["payload"]["conversation"]
                .as_str()
                .unwrap()
                .starts_with("Summary of the earlier conversation: summary of ")
        })
        .count();
    assert!(offline_summaries > N / 2, "the exported summaries were applied: {offline_summaries}");
    let kafka_run = dir.path().join("kafka.jsonl");
    std::fs::write(&kafka_run, first.iter().map(|g| g.value.to_string() + "\n").collect::<String>()).unwrap();
    let diff = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["diff", "--key", "causation_id", "--ignore", "trace_id", "--ignore", "span_id"])
        .arg(&kafka_run)
        .arg(dir.path().join("offline.jsonl"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&diff.stderr);
    assert_eq!(diff.status.code(), Some(0), "{}{report}", String::from_utf8_lossy(&diff.stdout));
    assert!(report.contains(&format!("{N} envelope(s) compared: 0 differ")), "{report}");
    figure(&format!(
        "conversation: {N} exchanges in {CONVERSATIONS} conversations, {summaries} summary calls journalled; replay: 0 model calls"
    ));
}
