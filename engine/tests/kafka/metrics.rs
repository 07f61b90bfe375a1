//! `/metrics` of a running instance: OpenMetrics text that the reference Prometheus client's
//! strict parser reads, with the Kafka Streams-like families and the OpenTelemetry GenAI ones
//! non-zero after a run, and a consumer lag per partition equal to what the broker holds
//! beyond the group's committed offsets.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

/// The samples of `text`, parsed by `engine/tests/support/openmetrics.py` (the deployment
/// tools' venv, `KAFCLAW_DEPLOY_PYTHON`, set up by `scripts/test`).
fn parse(text: &str) -> Vec<Value> {
    let py = std::env::var("KAFCLAW_DEPLOY_PYTHON")
        .expect("KAFCLAW_DEPLOY_PYTHON is unset: run scripts/test (it installs the OpenMetrics parser)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/openmetrics.py");
    let mut child = Command::new(py)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not OpenMetrics: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn sum(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

/// The lag samples of `topic`, by partition.
fn lags(samples: &[Value], topic: &str) -> BTreeMap<i64, f64> {
    samples
        .iter()
        .filter(|s| s["name"] == "kafclaw_consumer_lag_records" && s["labels"]["topic"] == topic)
        .map(|s| (s["labels"]["partition"].as_str().unwrap().parse().unwrap(), s["value"].as_f64().unwrap()))
        .collect()
}

fn scrape(port: u16) -> Option<Vec<Value>> {
    http_get_body(port, "/metrics").map(|t| parse(&t))
}

/// Scrapes until `done` holds for the samples, or panics after `timeout` with the last ones.
fn scrape_until(port: u16, timeout: Duration, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        if let Some(s) = scrape(port) {
            if done(&s) {
                return s;
            }
            last = s;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("{what}: not seen within {timeout:?}; last scrape: {}", serde_json::to_string(&last).unwrap());
}

/// Produces `values` to `partition` of `topic`.
fn send_to(topic: &str, partition: i32, values: impl IntoIterator<Item = String>) {
    let producer: BaseProducer = config().create().unwrap();
    for v in values {
        producer.send(BaseRecord::<(), _>::to(topic).partition(partition).payload(&v)).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Produces `n` request envelopes to `partition` of `topic`.
fn produce_to(topic: &str, partition: i32, from: usize, n: usize) {
    send_to(
        topic,
        partition,
        (from..from + n).map(|i| {
            format!(
                r#"{{"type":"request","correlation_id":"c-{i}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"m-{i}","payload":{{"description":"question {i}"}}}}"#
            )
        }),
    );
}

#[test]
fn metrics_parse_as_openmetrics_and_show_the_run_and_the_lag_per_partition() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let (app, input, output) = (unique("met-app"), unique("met-in"), unique("met-out"));
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
max_concurrency = 16

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.questions]
type = "filter"
inputs = ["requests"]
where = 'type == "request"'

[operators.answer]
type = "llm"
inputs = ["questions"]
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
    // 6 + 4 requests and one record that is no envelope (a dead letter).
    produce_to(&input, 0, 0, 6);
    produce_to(&input, 1, 6, 4);
    send_to(&input, 1, ["not json".to_owned()]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.path().join("run.log");
    let _a = spawn_instance_with(&topo, "a", &log, &["--http", &addr]);

    // Every record processed and committed: the families show the run, the lag is 0.
    let s = scrape_until(port, Duration::from_secs(90), "11 records consumed and lag 0 on both partitions", |s| {
        sum(s, "kafclaw_records_consumed_total", &[]) == 11.0
            && lags(s, &input).len() == 2
            && lags(s, &input).values().all(|l| *l == 0.0)
    });
    for (name, labels, want) in [
        ("kafclaw_operator_records_in_total", vec![("operator", "questions")], 10.0),
        ("kafclaw_operator_records_out_total", vec![("operator", "questions")], 10.0),
        ("kafclaw_operator_records_in_total", vec![("operator", "answer")], 10.0),
        ("kafclaw_operator_records_out_total", vec![("operator", "answer")], 10.0),
        ("kafclaw_records_produced_total", vec![("topic", output.as_str())], 10.0),
        ("kafclaw_dead_letters_total", vec![("operator", "requests"), ("reason", "decode")], 1.0),
        ("kafclaw_ready", vec![], 1.0),
        ("kafclaw_assigned_partitions", vec![], 2.0),
        ("gen_ai_client_operation_duration_seconds_count", vec![("gen_ai_operation_name", "chat")], 10.0),
        ("gen_ai_client_token_usage_count", vec![("gen_ai_token_type", "input")], 10.0),
        ("gen_ai_client_token_usage_count", vec![("gen_ai_token_type", "output")], 10.0),
    ] {
        assert_eq!(sum(&s, name, &labels), want, "{name}{labels:?}");
    }
    for positive in [
        "kafclaw_process_latency_seconds_count",
        "kafclaw_poll_latency_seconds_count",
        "kafclaw_commit_latency_seconds_count",
        "kafclaw_rebalances_total",
        "gen_ai_client_token_usage_sum",
    ] {
        assert!(sum(&s, positive, &[]) > 0.0, "{positive} is 0");
    }
    assert!(s.iter().all(|x| x["labels"]["topology"] == app.as_str()), "every sample carries the topology label");
    assert_eq!(sum(&s, "kafclaw_committed_offset", &[("topic", &input), ("partition", "0")]), 6.0);

    // The model stalls: 3 + 2 new records stay in flight, uncommitted; the lag says so.
    server.counters.delay_ms.store(20_000, Ordering::SeqCst);
    produce_to(&input, 0, 100, 3);
    produce_to(&input, 1, 200, 2);
    let s = scrape_until(port, Duration::from_secs(60), "lag 3 and 2", |s| {
        lags(s, &input) == BTreeMap::from([(0, 3.0), (1, 2.0)])
    });
    // The truth, from the broker: the group's committed offsets are where the stall began.
    assert_eq!(committed(&app, &input, 2), vec![6, 5], "committed offsets (the group's, from the broker)");
    assert!(sum(&s, "kafclaw_model_calls_in_flight", &[]) >= 1.0, "calls stalled in flight");
}

/// `kafclaw top` on a running instance fed at a steady 200 records per second: the rates it
/// shows are within 10 % of the rate the records were produced at.
#[test]
fn top_shows_rates_within_ten_percent_of_the_truth() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("top-app"), unique("top-in"), unique("top-out"));
    create_topic(&input, 2);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 2
guarantee = "at-least-once"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.questions]
type = "filter"
inputs = ["requests"]
where = 'type == "request"'

[sinks.answers]
type = "kafka"
inputs = ["questions"]
topic = "{output}"
"#
        ),
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _a = spawn_instance_with(&topo, "a", &dir.path().join("run.log"), &["--http", &addr]);
    scrape_until(port, Duration::from_secs(60), "the instance ready", |s| sum(s, "kafclaw_ready", &[]) == 1.0);

    // The truth: 10 records every 50 ms, paced against the clock (200/s), for 12 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (t, stop2) = (input.clone(), stop.clone());
    let feeder = std::thread::spawn(move || {
        let producer: BaseProducer = config().create().unwrap();
        let started = Instant::now();
        let mut sent = 0usize;
        while !stop2.load(Ordering::SeqCst) {
            let due = (started.elapsed().as_millis() as usize / 50 + 1) * 10;
            while sent < due {
                let v = format!(
                    r#"{{"type":"request","correlation_id":"c-{sent}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"t-{sent}","payload":{{}}}}"#
                );
                let key = format!("c-{sent}");
                let _ = producer.send(BaseRecord::to(&t).key(&key).payload(&v));
                sent += 1;
            }
            producer.poll(Duration::from_millis(10));
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        sent as f64 / started.elapsed().as_secs_f64()
    });
    std::thread::sleep(Duration::from_secs(4));
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["top", &addr, "--once", "--json", "--interval", "5s"])
        .output()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let produced_rate = feeder.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["topologies"][0];
    assert_eq!(t["topology"], app.as_str());
    let near = |what: &str, x: f64| {
        assert!((x - produced_rate).abs() <= 0.1 * produced_rate, "{what}: {x}/s shown, {produced_rate:.1}/s produced");
    };
    near("consumed", t["consumed_per_s"].as_f64().unwrap());
    near("produced", t["produced_per_s"].as_f64().unwrap());
    let op = &t["operators"][0];
    assert_eq!(op["operator"], "questions");
    near("questions in", op["in_per_s"].as_f64().unwrap());
    near("questions out", op["out_per_s"].as_f64().unwrap());
    assert_eq!(t["dead_letters_per_s"], 0.0);
    figure(&format!(
        "top: consumed {:.1}/s, produced {:.1}/s shown; {produced_rate:.1}/s fed",
        t["consumed_per_s"].as_f64().unwrap(),
        t["produced_per_s"].as_f64().unwrap()
    ));
}
