//! The Kafka runtime end to end against the real broker, with the real binary: scaling by
//! instances, kill -9 crash recovery, dedup, dead letters.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

fn topology(dir: &Path, app: &str, input: &str, output: &str, guarantee: &str) -> std::path::PathBuf {
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
guarantee = "{guarantee}"
partitions = 6
commit_interval_ms = 100

[sources.in]
type = "kafka"
topic = "{input}"

[operators.tag]
type = "map"
inputs = ["in"]
set = {{ "payload.seen_by" = '"kafclaw"' }}

[sinks.out]
type = "kafka"
inputs = ["tag"]
topic = "{output}"
"#
        ),
    )
}

/// Waits until `count()` reaches `n` or `timeout` passes.
fn wait_for(n: usize, timeout: Duration, mut count: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + timeout;
    let mut last = 0;
    while Instant::now() < deadline {
        last = count();
        if last >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    last
}

#[test]
fn dead_letters_and_outputs_carry_coordinates() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("dl-app"), unique("dl-in"), unique("dl-out"));
    create_topic(&input, 2);
    let topo = topology(dir.path(), &app, &input, &output, "exactly-once");
    let mut values: Vec<(String, String)> = (0..20).map(|i| (format!("{i}"), envelope(i))).collect();
    values.push(("bad".into(), "{ not json".into()));
    produce(&input, values);
    let log = dir.path().join("a.log");
    let mut child = spawn_instance(&topo, "a", &log);
    let got = consume_all(&output, 20, Duration::from_secs(60));
    let dead = consume_all(&format!("{app}.dlq"), 1, Duration::from_secs(20));
    sigterm(&mut child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
    assert_eq!(got.len(), 20, "{}", log_tail(&log));
    for g in &got {
        assert_eq!(g.value["payload"]["seen_by"], "kafclaw");
        assert_eq!(g.key.as_deref(), g.value["correlation_id"].as_str(), "keyed by correlation_id");
        assert_eq!(g.headers["kafclaw.input.topic"], input);
        assert!(g.headers["traceparent"].starts_with(&format!("00-{}-", g.value["trace_id"].as_str().unwrap())));
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers["kafclaw.stage"], "decode");
    assert_eq!(dead[0].headers["kafclaw.location"], input);
    assert!(dead[0].headers.contains_key("kafclaw.offset"));
    assert!(dead[0].headers["kafclaw.error"].contains("JSON"));
}

/// One instance works a 6-partition topic; a second joins mid-stream; partitions split; the
/// second leaves. 50,000 inputs: none missing, none doubled.
#[test]
fn scaling_out_and_in_loses_and_doubles_nothing() {
    const N: usize = 50_000;
    let dir = TestDir::new();
    let (app, input, output) = (unique("scale-app"), unique("scale-in"), unique("scale-out"));
    create_topic(&input, 6);
    let topo = topology(dir.path(), &app, &input, &output, "exactly-once");
    let producer = {
        let input = input.clone();
        std::thread::spawn(move || {
            // About 30 s of traffic, so the second instance joins and leaves mid-stream.
            for chunk in (0..N).collect::<Vec<_>>().chunks(2_000) {
                produce(&input, chunk.iter().map(|&i| (format!("{i}"), envelope(i))));
                std::thread::sleep(Duration::from_millis(1_000));
            }
        })
    };
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn_instance(&topo, "a", &log_a);
    std::thread::sleep(Duration::from_secs(5));
    let mut b = spawn_instance(&topo, "b", &log_b);
    std::thread::sleep(Duration::from_secs(15));
    sigterm(&mut b);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(60)), Some(0), "{}", log_tail(&log_b));
    producer.join().unwrap();
    let got = consume_all(&output, N, Duration::from_secs(240));
    sigterm(&mut a);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0), "{}", log_tail(&log_a));

    let b_log = std::fs::read_to_string(&log_b).unwrap();
    let b_consumed: u64 = b_log
        .lines()
        .find_map(|l| {
            l.strip_prefix("kafclaw: consumed ").and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok())
        })
        .unwrap_or(0);
    assert!(b_consumed > 0, "the second instance processed nothing:\n{b_log}");
    eprintln!("the second instance processed {b_consumed} of {N} records");
    let ids: Vec<&str> = got.iter().map(|g| g.value["id"].as_str().unwrap()).collect();
    let unique_ids: HashSet<&str> = ids.iter().copied().collect();
    let inputs: HashSet<&str> = got.iter().map(|g| g.value["payload"]["task_id"].as_str().unwrap()).collect();
    assert_eq!(
        inputs.len(),
        N,
        "missing inputs: {}; committed per partition {:?}\nfirst instance:\n{}\nsecond instance:\n{}",
        N - inputs.len(),
        committed(&app, &input, 6),
        log_tail(&log_a),
        log_tail(&log_b)
    );
    assert_eq!(unique_ids.len(), ids.len(), "duplicate ids in the output");
    let committed: i64 = committed(&app, &input, 6).iter().sum();
    assert_eq!(committed, N as i64, "committed offsets equal processed");
}

/// kill -9 at three points, restarting each time: nothing lost; raw duplicates only among
/// records of aborted transactions; none after dedup; committed offsets equal processed.
#[test]
fn kill_9_three_times_loses_nothing() {
    const N: usize = 30_000;
    let dir = TestDir::new();
    let (app, input, output) = (unique("crash-app"), unique("crash-in"), unique("crash-out"));
    create_topic(&input, 6);
    let topo = topology(dir.path(), &app, &input, &output, "exactly-once");
    // Input arrives over ~30 s so every kill lands mid-stream, with transactions open.
    let producer = {
        let input = input.clone();
        std::thread::spawn(move || {
            for chunk in (0..N).collect::<Vec<_>>().chunks(1_000) {
                produce(&input, chunk.iter().map(|&i| (format!("{i}"), envelope(i))));
                std::thread::sleep(Duration::from_millis(1_000));
            }
        })
    };

    // Committed offsets after each kill: a duplicate must come from a record at or past them
    // (a transaction that never committed).
    let mut committed_after_kill: Vec<Vec<i64>> = Vec::new();
    for round in 0..3 {
        let log = dir.path().join(format!("crash-{round}.log"));
        let mut child = spawn_instance(&topo, "solo", &log);
        let target = (round + 1) * N / 5;
        let seen = count_at_least(&output, target, Duration::from_secs(120));
        assert!(seen >= target, "round {round}: only {seen} outputs\n{}", log_tail(&log));
        child.kill().unwrap(); // SIGKILL: no commit, no leave
        child.wait().unwrap();
        committed_after_kill.push(committed(&app, &input, 6));
    }
    producer.join().unwrap();
    let log = dir.path().join("final.log");
    let mut child = spawn_instance(&topo, "solo", &log);
    let done = wait_for(N, Duration::from_secs(180), || committed(&app, &input, 6).iter().sum::<i64>().max(0) as usize);
    let got = consume_all(&output, N, Duration::from_secs(120));
    sigterm(&mut child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0), "{}", log_tail(&log));
    assert_eq!(done, N, "committed offsets equal processed");

    let mut by_id: HashMap<&str, Vec<&Got>> = HashMap::new();
    for g in &got {
        by_id.entry(g.value["id"].as_str().unwrap()).or_default().push(g);
    }
    let inputs: HashSet<&str> = got.iter().map(|g| g.value["payload"]["task_id"].as_str().unwrap()).collect();
    assert_eq!(inputs.len(), N, "missing inputs");
    assert_eq!(by_id.len(), N, "after dedup by id: exactly one output per input");
    let mut dups = 0;
    for copies in by_id.values().filter(|c| c.len() > 1) {
        dups += copies.len() - 1;
        let p: usize = copies[0].headers["kafclaw.input.partition"].parse().unwrap();
        let o: i64 = copies[0].headers["kafclaw.input.offset"].parse().unwrap();
        assert!(copies.iter().all(|c| c.value == copies[0].value), "duplicates are identical");
        // Reprocessed, so at some kill its offset was not committed yet: it was in a
        // transaction that never committed (aborted when the next incarnation started).
        assert!(
            committed_after_kill.iter().any(|c| c[p] <= o),
            "duplicate of input {p}@{o}, which was committed before every kill"
        );
    }
    eprintln!("raw duplicates (records of aborted transactions the broker leaked): {dups}");

    // A downstream kafclaw stage with `dedup = true` reads the raw output: exactly N records.
    let (app2, fin) = (unique("dedup-app"), unique("dedup-out"));
    let topo2 = write_topology(
        dir.path(),
        &app2,
        &format!(
            r#"
[topology]
name = "{app2}"
[sources.raw]
type = "kafka"
topic = "{output}"
dedup = true
[operators.all]
type = "filter"
inputs = ["raw"]
where = 'true'
[sinks.clean]
type = "kafka"
inputs = ["all"]
topic = "{fin}"
"#
        ),
    );
    let log2 = dir.path().join("dedup.log");
    let mut stage = spawn_instance(&topo2, "d", &log2);
    let clean = consume_all(&fin, N, Duration::from_secs(180));
    sigterm(&mut stage);
    assert_eq!(wait_exit(&mut stage, Duration::from_secs(60)), Some(0), "{}", log_tail(&log2));
    let tasks: HashSet<&str> = clean.iter().map(|g| g.value["payload"]["task_id"].as_str().unwrap()).collect();
    assert_eq!((clean.len(), tasks.len()), (N, N), "the dedup stage passes each input exactly once");
    let summary = std::fs::read_to_string(&log2).unwrap();
    assert!(summary.contains(&format!("deduplicated {dups}")), "{}", log_tail(&log2));
}

/// Inputs that produce nothing (a filter drops them) still get their offsets committed, also
/// when a commit holds nothing else: under exactly-once such a commit is the group consumer's
/// offset commit (an offsets-only transaction after one with records is lost on Tansu, which
/// left a replay's trailing duplicates uncommitted). Without it the group's lag never reaches 0
/// and a restart reads them again.
#[test]
fn inputs_that_produce_nothing_are_committed() {
    for guarantee in ["exactly-once", "at-least-once"] {
        let dir = TestDir::new();
        let (app, input, output) = (unique("quiet-app"), unique("quiet-in"), unique("quiet-out"));
        create_topic(&input, 2);
        let topo = write_topology(
            dir.path(),
            &app,
            &format!(
                r#"
[topology]
name = "{app}"
guarantee = "{guarantee}"
partitions = 2
commit_interval_ms = 100

[sources.in]
type = "kafka"
topic = "{input}"

[operators.keep]
type = "filter"
inputs = ["in"]
where = 'payload.n < 10'

[sinks.out]
type = "kafka"
inputs = ["keep"]
topic = "{output}"
"#
            ),
        );
        let log = dir.path().join("a.log");
        let mut a = spawn_instance(&topo, "a", &log);
        // First inputs that pass (a transaction with records and offsets) …
        produce(&input, (0..10).map(|i| (format!("{i}"), envelope(i))));
        let passed = wait_for(10, Duration::from_secs(120), || committed(&app, &input, 2).iter().sum::<i64>() as usize);
        assert!(passed >= 10, "{guarantee}: {passed} committed\n{}", log_tail(&log));
        // … then only inputs the filter drops: their commits hold offsets alone.
        produce(&input, (10..30).map(|i| (format!("{i}"), envelope(i))));
        stop_once_committed(&mut a, &app, &input, 2, 30, &log, Duration::from_secs(120));
        assert_eq!(consume_all(&output, 10, Duration::from_secs(20)).len(), 10, "{guarantee}: the passing inputs");
        assert_eq!(committed(&app, &input, 2).iter().sum::<i64>(), 30, "{guarantee}");
    }
}
