//! The `llm` operator on Kafka, exactly-once: answers are journalled in the output
//! transaction, so `kafclaw replay --from earliest` makes no model call at all (the fake
//! server's counter proves it) and produces the very same output envelopes; `kafclaw journal
//! export` writes the journal out, and a local run recorded from it reproduces the outputs
//! offline (`kafclaw diff`). Faults under exactly-once: 429s, 500s and timeouts are retried in
//! place, an unreadable body is dead-lettered at once, a call that keeps failing is
//! dead-lettered to the topic with its coordinates, and no transaction is ever aborted (the pipeline never restarts).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

#[test]
fn replay_reuses_journalled_answers_and_reproduces_the_outputs() {
    const N: usize = 300;
    let server = FakeOpenAi::start();
    server.counters.delay_ms.store(20, std::sync::atomic::Ordering::SeqCst);
    let dir = TestDir::new();
    let (app, input, output) = (unique("llm-app"), unique("llm-in"), unique("llm-out"));
    create_topic(&input, 6);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 6

[models.fake]
base_url = "{}"
model = "fake-1"
max_concurrency = 64

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"
"#,
            server.base_url()
        ),
    );
    produce(&input, (0..N).map(request));
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    stop_once_committed(&mut a, &app, &input, 6, N as i64, &log, Duration::from_secs(120));
    let first = consume_all(&output, N, Duration::from_secs(60));
    assert_eq!(first.len(), N);
    assert_eq!(server.counters.calls(), N, "one call per request");

    let (code, stderr) = run_replay(&topo, "earliest", "a", &dir.path().join("state"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("replayed {N} record(s)")), "{stderr}");
    assert_eq!(server.counters.calls(), N, "the replay made no model call");

    let all = consume_all(&output, 2 * N, Duration::from_secs(60));
    assert_eq!(all.len(), 2 * N);
    let by_id = |records: &[&Got]| -> BTreeMap<String, serde_json::Value> {
        records.iter().map(|g| (g.value["id"].as_str().unwrap().to_owned(), g.value.clone())).collect()
    };
    let first_ids: std::collections::HashSet<(i32, i64)> = first.iter().map(|g| (g.partition, g.offset)).collect();
    let (old, new): (Vec<&Got>, Vec<&Got>) = all.iter().partition(|g| first_ids.contains(&(g.partition, g.offset)));
    assert_eq!((old.len(), new.len()), (N, N));
    assert_eq!(by_id(&old), by_id(&new), "the replay's outputs equal the first run's, envelope by envelope");

    // Offline: the journal exported, and the same inputs run locally from it make no call and
    // give the same outputs (matched by the input they came from: output ids name where the
    // input was read); an input the export lacks is dead-lettered.
    let export = dir.path().join("journal.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["journal", "export", topo.to_str().unwrap(), "--brokers", &brokers(), "--output"])
        .arg(&export)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("exported {N} journal entries")), "{stderr}");
    let local = write_topology(
        dir.path(),
        "offline",
        r#"
[topology]
name = "offline"

[models.fake]
base_url = "http://127.0.0.1:9/v1"
model = "fake-1"
recorded = "journal.jsonl"

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{ payload.description }}"

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "offline.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#,
    );
    let mut inputs: Vec<String> = (0..N).map(request).map(|(_, v)| v).collect();
    inputs.push(request(N).1);
    std::fs::write(dir.path().join("in.jsonl"), inputs.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", local.to_str().unwrap(), "--local"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("answers come from a recording"), "{stderr}");
    assert_eq!(server.counters.calls(), N, "the offline run made no model call");
    let dlq = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
    assert_eq!(dlq.lines().count(), 1, "{dlq}");
    assert!(
        dlq.contains(&format!("not in the recording: it holds no journal entry of operator `answer` for `q-{N}`")),
        "{dlq}"
    );
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
}

fn request(i: usize) -> (String, String) {
    let key = format!("conv-{}", i % 30);
    let v = format!(
        r#"{{"type":"request","correlation_id":"{key}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"q-{i}","payload":{{"task_id":"q-{i}","description":"question {i}"}}}}"#
    );
    (key, v)
}

#[test]
fn faults_are_retried_in_place_then_dead_lettered_under_exactly_once() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let (app, input, output) = (unique("llmf-app"), unique("llmf-in"), unique("llmf-out"));
    create_topic(&input, 2);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 2

[models.fake]
base_url = "{}"
model = "fake-1"
timeout = "1s"
max_attempts = 3
backoff = "50ms"
max_backoff = "2s"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"
"#,
            server.base_url()
        ),
    );
    let cases = ["429x2 rate", "500x2 flaky", "slow x1 timeout", "garbage x1 body", "always500 broken"];
    let mut values: Vec<(String, String)> = cases
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let v = format!(
                r#"{{"type":"request","correlation_id":"f{i}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"f-{i}","payload":{{"task_id":"f-{i}","description":"{d}"}}}}"#
            );
            (format!("f{i}"), v)
        })
        .collect();
    values.extend((0..20).map(request));
    produce(&input, values);
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    let answers = consume_all(&output, 23, Duration::from_secs(90));
    let dead = consume_all(&format!("{app}.dlq"), 2, Duration::from_secs(30));
    sigterm(&mut a);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0), "{text}");
    assert_eq!(answers.len(), 23, "{text}");
    for (i, case) in cases.iter().enumerate().take(3) {
        let a = answers.iter().find(|g| g.value["correlation_id"] == format!("f{i}")).expect(case);
        assert_eq!(a.value["payload"]["answer"], format!("answer: {case}"));
        assert!(a.value["payload"]["usage"]["attempts"].as_u64().unwrap() >= 2, "{case} was retried");
    }
    // The unreadable 200 is final at once (asking again bills it again); the 500s run out.
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert_eq!(
            (d.headers["kafclaw.stage"].as_str(), d.headers["kafclaw.location"].as_str()),
            ("operator:answer", input.as_str())
        );
    }
    let errors: Vec<&str> = dead.iter().map(|d| d.headers["kafclaw.error"].as_str()).collect();
    assert!(errors.iter().any(|e| e.contains("HTTP 500")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("malformed answer") && e.contains("after 1 attempt(s)")), "{errors:?}");
    assert!(!text.contains("aborting the open transaction"), "no transaction was aborted:\n{text}");
    assert_eq!(text.matches("partitions assigned").count(), 1, "no restart, no rebalance:\n{text}");
}

/// Under exactly-once: a primary that keeps answering 500 hands each call to its fallback;
/// the outputs name the fallback's model; `kafclaw replay` then asks neither model (the
/// journal kept the fallback's answers).
#[test]
fn a_fallback_answers_when_the_primary_is_down_and_a_replay_asks_neither() {
    const N: usize = 10;
    let server = FakeOpenAi::start();
    let (down, hits) = crate::echo_model::always_500();
    let dir = TestDir::new();
    let (app, input, output) = (unique("llm-fb"), unique("llm-fb-in"), unique("llm-fb-out"));
    create_topic(&input, 2);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 2

[models.primary]
base_url = "{down}"
model = "big-1"
max_attempts = 2
backoff = "10ms"
fallbacks = ["fake"]

[models.fake]
base_url = "{}"
model = "fake-1"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "primary"
prompt = "{{{{ payload.description }}}}"

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"
"#,
            server.base_url()
        ),
    );
    produce(&input, (0..N).map(request));
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    let answers = consume_all(&output, N, Duration::from_secs(90));
    stop_once_committed(&mut a, &app, &input, 2, N as i64, &log, Duration::from_secs(60));
    assert_eq!(answers.len(), N);
    assert!(answers.iter().all(|g| g.value["payload"]["usage"]["model"] == "fake-1"), "the fallback answered");
    let (primary_calls, fallback_calls) = (hits.load(std::sync::atomic::Ordering::SeqCst), server.counters.calls());
    assert_eq!(primary_calls, 2 * N, "the primary was asked max_attempts times per request");
    assert_eq!(fallback_calls, N);

    let (code, stderr) = run_replay(&topo, "earliest", "a", &dir.path().join("state"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), primary_calls, "the replay asked the primary nothing");
    assert_eq!(server.counters.calls(), fallback_calls, "nor the fallback");
    let all = consume_all(&output, 2 * N, Duration::from_secs(60));
    assert_eq!(all.len(), 2 * N);
    assert!(all.iter().all(|g| g.value["payload"]["usage"]["model"] == "fake-1"));
}

/// Streaming under exactly-once: each answer's deltas reach the `deltas` topic in order, and
/// `kafclaw replay` re-emits the very same deltas (same ids, same bytes) from the journal
/// without calling the model.
#[test]
fn streamed_deltas_are_replayed_identically_without_a_call() {
    const N: usize = 2;
    const DELTAS: usize = 1000;
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let (app, input, output, deltas) =
        (unique("llm-st"), unique("llm-st-in"), unique("llm-st-out"), unique("llm-st-d"));
    create_topic(&input, 1);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 1

[models.fake]
base_url = "{}"
model = "fake-1"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
stream = true

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"

[sinks.deltas]
type = "kafka"
inputs = ["answer.deltas"]
topic = "{deltas}"
"#,
            server.base_url()
        ),
    );
    produce(
        &input,
        (0..N).map(|i| {
            let v = format!(
                r#"{{"type":"request","correlation_id":"s-{i}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"s-{i}","payload":{{"task_id":"s-{i}","description":"stream {DELTAS} #{i}"}}}}"#
            );
            (format!("s-{i}"), v)
        }),
    );
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    let first = consume_all(&deltas, N * DELTAS, Duration::from_secs(90));
    stop_once_committed(&mut a, &app, &input, 1, N as i64, &log, Duration::from_secs(60));
    assert_eq!(first.len(), N * DELTAS);
    for i in 0..N {
        let of: Vec<&Got> = first.iter().filter(|g| g.value["correlation_id"] == format!("s-{i}")).collect();
        let indexes: Vec<u64> = of.iter().map(|g| g.value["payload"]["index"].as_u64().unwrap()).collect();
        assert_eq!(indexes, (0..DELTAS as u64).collect::<Vec<_>>(), "in order");
    }
    assert_eq!(server.counters.calls(), N);

    let (code, stderr) = run_replay(&topo, "earliest", "a", &dir.path().join("state"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(server.counters.calls(), N, "the replay made no model call");
    let all = consume_all(&deltas, 2 * N * DELTAS, Duration::from_secs(60));
    assert_eq!(all.len(), 2 * N * DELTAS);
    let by_id = |records: &[&Got]| -> BTreeMap<String, serde_json::Value> {
        records.iter().map(|g| (g.value["id"].as_str().unwrap().to_owned(), g.value.clone())).collect()
    };
    let seen: std::collections::HashSet<(i32, i64)> = first.iter().map(|g| (g.partition, g.offset)).collect();
    let (old, new): (Vec<&Got>, Vec<&Got>) = all.iter().partition(|g| seen.contains(&(g.partition, g.offset)));
    assert_eq!(by_id(&old), by_id(&new), "the replay's deltas equal the first run's, envelope by envelope");
}
