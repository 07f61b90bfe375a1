//! The `llm` operator on Kafka, exactly-once: answers are journalled in the output
//! transaction, so `kafclaw replay --from earliest` makes no model call at all (the fake
//! server's counter proves it) and produces the very same output envelopes.

mod fake_openai;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_openai::FakeOpenAi;
use support::*;

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
    produce(
        &input,
        (0..N).map(|i| {
            let key = format!("conv-{}", i % 30);
            let v = format!(
                r#"{{"type":"request","correlation_id":"{key}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"q-{i}","payload":{{"task_id":"q-{i}","description":"question {i}"}}}}"#
            );
            (key, v)
        }),
    );
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&app, &input, 6).iter().sum::<i64>() < N as i64 {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    sigterm(&mut a);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0), "{}", std::fs::read_to_string(&log).unwrap());
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
}
