//! Replay and interactive queries on Kafka: `kafclaw replay --from earliest` rebuilds state
//! identical, key by key, to the first run's; an instance restoring from the changelogs after a
//! replay holds the same; `kafclaw state inspect/get` read a running instance's state.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use kafclaw_state::{RocksStore, StateStore};

const PARTITIONS: u32 = 6;

fn topology(dir: &Path, app: &str, input: &str, output: &str) -> std::path::PathBuf {
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = {PARTITIONS}

[sources.in]
type = "kafka"
topic = "{input}"
dedup = true
dedup_within = "1h"

[operators.per-key]
type = "count"
inputs = ["in"]
by = 'correlation_id'

[operators.spend]
type = "aggregate"
inputs = ["per-key"]
by = 'correlation_id'
value = 'payload.n'
functions = ["count", "sum", "max"]

[sinks.out]
type = "kafka"
inputs = ["spend"]
topic = "{output}"
"#
        ),
    )
}

/// Every entry of every table of an instance's store, by (table, partition, key).
type Dump = BTreeMap<(String, u32, Vec<u8>), Vec<u8>>;

fn dump(db: &Path) -> Dump {
    let store = RocksStore::open(db).unwrap();
    let mut out = BTreeMap::new();
    for table in store.tables() {
        for p in 0..PARTITIONS {
            for (k, v) in store.scan_partition(&table, p).unwrap() {
                out.insert((table.clone(), p, k), v);
            }
        }
    }
    out
}

fn kafclaw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(args).env("RUST_LOG", "info").output().unwrap()
}

/// The variable holding the instance's HTTP token, and the token.
const HTTP_TOKEN: (&str, &str) = ("REPLAY_HTTP_TOKEN", "st-token-7c1e");

/// `kafclaw state …` sending the instance's token (`--http-token-env`).
fn state_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["state"])
        .args(args)
        .args(["--http-token-env", HTTP_TOKEN.0])
        .env(HTTP_TOKEN.0, HTTP_TOKEN.1)
        .output()
        .unwrap()
}

/// Waits until `n` offsets of `topic` are committed by `group`: a liveness bound, not a speed
/// figure (those are benchmarks'). On two cores shared with the rest of the suite's broker tests
/// (the chaos tests, kill -9 loops) a debug build has processed this topology at ~100 records/s.
/// A failure shows the committed offsets per partition and `log` (of whoever was to commit them).
fn wait_committed(group: &str, topic: &str, n: i64, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        let now = committed(group, topic, PARTITIONS as i32);
        if now.iter().sum::<i64>() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "not all {n} committed: {now:?} per partition; the log:\n{}", log());
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn replay_from_earliest_rebuilds_identical_state_and_queries_read_it() {
    // 200 keys over 6 partitions, 25 inputs per key, then 300 repeats (ids `in-0`, `in-13`, …,
    // all below N) that the source's dedup must drop, in this run and in the replay.
    const N: usize = 5_000;
    const KEYS: usize = 200;
    const REPEATS: usize = 300;
    const _: () = assert!((REPEATS - 1) * 13 < N, "every repeat repeats an earlier input");
    let dir = TestDir::new();
    let (app, input, output) = (unique("replay-app"), unique("replay-in"), unique("replay-out"));
    create_topic(&input, PARTITIONS as i32);
    let topo = topology(dir.path(), &app, &input, &output);
    let state_dir = dir.path().join("state");
    let db = state_dir.join(&app).join("a");
    let record = |i: usize| {
        let k = format!("key-{}", i % KEYS);
        let v = format!(
            r#"{{"type":"request","correlation_id":"{k}","sender_id":"load","timestamp":"2026-11-23T10:00:00Z","payload":{{"n":{}}},"id":"in-{i}"}}"#,
            i % 7
        );
        (k, v)
    };
    // Every input once, then some again (same id: the source's dedup drops them).
    produce(&input, (0..N).map(record));
    produce(&input, (0..REPEATS).map(|i| record(i * 13)));
    let total = (N + REPEATS) as i64;

    // First run, with the HTTP endpoint, behind a token.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.path().join("run.log");
    let mut a =
        spawn_instance_env(&topo, "a", &log, &["--http", &addr, "--http-token-env", HTTP_TOKEN.0], &[HTTP_TOKEN]);
    wait_committed(&app, &input, total, || std::fs::read_to_string(&log).unwrap_or_default());

    // Without the token the state is not served (401), with it it is.
    let refused = kafclaw(&["state", "get", "per-key", "key-7", "--http", &addr, "--http-token-env", "NO_SUCH_VAR"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("401") && err.contains("set NO_SUCH_VAR (--http-token-env)"), "{err}");
    assert!(refused.stdout.is_empty());

    // Interactive queries against the running instance.
    let got = state_cli(&["get", "per-key", "key-7", "--http", &addr]);
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    let v: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(v["values"][0]["value"], serde_json::json!(N / KEYS), "{v}");
    let got = state_cli(&["inspect", "--http", &addr, "--json"]);
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    let tables: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let by_name = |name: &str| tables.as_array().unwrap().iter().find(|t| t["table"] == name).cloned().unwrap();
    assert_eq!(by_name("per-key")["keys"], serde_json::json!(KEYS));
    assert_eq!(by_name("in.dedup")["keys"], serde_json::json!(N), "one id per distinct input");
    assert_eq!(by_name("in.dedup")["ttl_ms"], serde_json::json!(3_600_000));
    assert!(!by_name("spend")["sample_keys"].as_array().unwrap().is_empty());
    let text = state_cli(&["inspect", "--http", &addr]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("per-key"));
    let missing = state_cli(&["get", "per-key", "no-such-key", "--http", &addr]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no key `no-such-key`"));

    sigterm(&mut a);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0));
    let first = dump(&db);
    let counts: Vec<&Vec<u8>> = first.iter().filter(|((t, _, _), _)| t == "per-key").map(|(_, v)| v).collect();
    assert_eq!(counts.len(), KEYS);
    assert!(counts.iter().all(|v| v.as_slice() == (N / KEYS).to_string().as_bytes()), "dedup made counts exact");

    // Replay from the start: offsets reset, state wiped, rebuilt.
    let (code, stderr) = run_replay(&topo, "earliest", "a", &state_dir);
    assert_eq!(
        code,
        Some(0),
        "replay failed:
{stderr}"
    );
    assert!(stderr.contains(&format!("replayed {total} record(s)")), "{stderr}");
    let replayed = dump(&db);
    assert_eq!(replayed.len(), first.len(), "same number of entries");
    for (k, v) in &first {
        assert_eq!(replayed.get(k), Some(v), "entry {k:?} differs after the replay");
    }
    // The replay's last commit covered every offset (the broker may show a transactional
    // offset commit a moment after the transaction ends).
    wait_committed(&app, &input, total, || stderr.clone());

    // An instance on a fresh disk restores through the reset markers to the same state.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let topo_b = fresh.join("t.toml");
    std::fs::copy(&topo, &topo_b).unwrap();
    let log_b = fresh.join("b.log");
    let mut b = spawn_instance(&topo_b, "a", &log_b);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log_b).unwrap().contains("restore finished") {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log_b).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    sigterm(&mut b);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(60)), Some(0));
    let log = std::fs::read_to_string(&log_b).unwrap();
    assert!(log.contains("resets=1"), "the restore went through the reset marker:\n{log}");
    let restored = dump(&fresh.join("state").join(&app).join("a"));
    assert_eq!(restored, first, "state restored after a replay equals the first run's");
}

#[test]
fn replay_refuses_while_an_instance_runs() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("replay-busy"), unique("replay-busy-in"), unique("replay-busy-out"));
    create_topic(&input, PARTITIONS as i32);
    let topo = topology(dir.path(), &app, &input, &output);
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).unwrap().contains("partitions assigned") {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, stderr) = run_replay(&topo, "earliest", "b", &dir.path().join("state"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("live member"), "{stderr}");
    sigterm(&mut a);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0));
}

#[test]
fn replay_from_a_time_reprocesses_only_what_came_after_it() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("replay-time"), unique("replay-time-in"), unique("replay-time-out"));
    create_topic(&input, PARTITIONS as i32);
    let topo = topology(dir.path(), &app, &input, &output);
    let state_dir = dir.path().join("state");
    let record = |i: usize| {
        let k = format!("key-{}", i % 10);
        let v = format!(
            r#"{{"type":"request","correlation_id":"{k}","sender_id":"load","timestamp":"2026-11-23T10:00:00Z","payload":{{"n":1}},"id":"t-{i}"}}"#
        );
        (k, v)
    };
    produce(&input, (0..300).map(record));
    std::thread::sleep(Duration::from_millis(1500));
    let from = chrono_now();
    std::thread::sleep(Duration::from_millis(1500));
    produce(&input, (300..500).map(record));
    let (code, stderr) = run_replay(&topo, &from, "a", &state_dir);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("replayed 200 record(s)"), "only the records after {from}:\n{stderr}");
    // The state holds only what was reprocessed: 200 records over 10 keys.
    let state = dump(&state_dir.join(&app).join("a"));
    let counts: Vec<String> = state
        .iter()
        .filter(|((t, _, _), _)| t == "per-key")
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .collect();
    assert_eq!(counts, vec!["20"; 10]);
}

/// Now, as RFC 3339 (the replay starts at the first record at or after it).
fn chrono_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    kafclaw_operators::api::record::format_time_ms(now.as_millis() as i64)
}
