//! The chaos tests' harness: the pipeline under test, input load, reading and judging the
//! outputs, the downstream dedup stage.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::*;

pub(crate) const PARTITIONS: i32 = 6;

/// The instances' environment. A killed member holds the group until its session expires: a
/// shorter session (`short_session`) than the other tests' 6 s lets the kill test's restarts
/// rejoin sooner and the storm's group settle between its events. `KAFCLAW_CHAOS_DEBUG=<librdkafka
/// debug contexts>` (e.g. `cgrp,consumer`) adds librdkafka's debug log to the instances' logs,
/// for post-mortems (with `KAFCLAW_TEST_KEEP=1`).
pub(crate) fn instance_env(short_session: bool) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if short_session {
        env.push(("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS".to_owned(), "3000".to_owned()));
        env.push(("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS".to_owned(), "300".to_owned()));
    }
    if let Ok(contexts) = std::env::var("KAFCLAW_CHAOS_DEBUG") {
        env.push(("KAFCLAW_KAFKA_DEBUG".to_owned(), contexts));
        env.push(("RUST_LOG".to_owned(), "info,librdkafka=debug".to_owned()));
    }
    env
}

pub(crate) fn spawn(brokers: &str, topo: &Path, id: &str, log: &Path, extra: &[&str], short_session: bool) -> Instance {
    let env = instance_env(short_session);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    spawn_instance_at(brokers, topo, id, log, extra, &env)
}

/// The pipeline under test: exactly-once, one map, one Kafka sink.
pub(crate) fn pipeline(dir: &Path, app: &str, input: &str, output: &str) -> PathBuf {
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
guarantee = "exactly-once"
partitions = {PARTITIONS}
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

/// The seed of a test's random moments: `KAFCLAW_CHAOS_SEED`, else a fresh one.
pub(crate) fn seed() -> u64 {
    match std::env::var("KAFCLAW_CHAOS_SEED") {
        Ok(s) => s.trim().parse().expect("KAFCLAW_CHAOS_SEED: an unsigned integer"),
        Err(_) => fastrand::u64(..),
    }
}

/// Input load from a thread of its own: chunks of `chunk` inputs (`envelope(i)`, keyed `i`),
/// one every `pause`, until `limit` inputs or [`Load::stop`]; `done` once the last is
/// delivered.
pub(crate) struct Load {
    pub(crate) thread: Option<JoinHandle<usize>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) done: Arc<AtomicBool>,
}

impl Load {
    pub(crate) fn start(brokers: &str, topic: &str, chunk: usize, pause: Duration, limit: usize) -> Self {
        let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (stopping, finished) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while n < limit && !stopping.load(Ordering::SeqCst) {
                let end = (n + chunk).min(limit);
                produce_at(&brokers, &topic, (n..end).map(|i| (format!("{i}"), envelope(i))));
                n = end;
                std::thread::sleep(pause);
            }
            finished.store(true, Ordering::SeqCst);
            n
        });
        Load { thread: Some(thread), stop, done }
    }

    pub(crate) fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the last delivery; how many inputs were produced.
    pub(crate) fn join(&mut self) -> usize {
        self.thread.take().map_or(0, |t| t.join().expect("the load thread panicked"))
    }
}

/// The input topic as written: every coordinate (partition, offset) and each partition's end.
pub(crate) struct Inputs {
    pub(crate) coords: HashSet<(i32, i64)>,
    pub(crate) ends: Vec<i64>,
}

pub(crate) fn read_inputs(brokers: &str, topic: &str, n: usize) -> Inputs {
    let got = consume_all_at(brokers, topic, n, Duration::from_secs(120));
    let mut ends = vec![0; PARTITIONS as usize];
    let mut coords = HashSet::new();
    for g in &got {
        coords.insert((g.partition, g.offset));
        ends[g.partition as usize] = ends[g.partition as usize].max(g.offset + 1);
    }
    let tasks: HashSet<&str> = got.iter().filter_map(|g| g.value["payload"]["task_id"].as_str()).collect();
    assert_eq!((got.len(), tasks.len()), (n, n), "the input topic holds each of the {n} inputs once");
    Inputs { coords, ends }
}

/// What the raw output of the pipeline shows against its inputs.
pub(crate) struct Raw {
    pub(crate) outputs: usize,
    /// Input coordinates with no output, sorted.
    pub(crate) missing: Vec<(i32, i64)>,
    /// Copies beyond the first, over all ids.
    pub(crate) dup: usize,
    /// Distinct output ids.
    pub(crate) ids: HashSet<String>,
    /// (input partition, input offset, copies) of every id seen more than once.
    pub(crate) duplicated: Vec<(i32, i64, usize)>,
}

pub(crate) fn input_of(g: &Got) -> (i32, i64) {
    let p = g.headers.get("kafclaw.input.partition").and_then(|p| p.parse().ok());
    let o = g.headers.get("kafclaw.input.offset").and_then(|o| o.parse().ok());
    (p.expect("kafclaw.input.partition"), o.expect("kafclaw.input.offset"))
}

pub(crate) fn analyse(inputs: &Inputs, got: &[Got]) -> Raw {
    let mut by_id: HashMap<&str, Vec<&Got>> = HashMap::new();
    for g in got {
        by_id.entry(g.value["id"].as_str().expect("an output id")).or_default().push(g);
    }
    let covered: HashSet<(i32, i64)> = got.iter().map(input_of).collect();
    let mut missing: Vec<(i32, i64)> = inputs.coords.difference(&covered).copied().collect();
    missing.sort();
    assert_eq!(
        covered.len(),
        by_id.len(),
        "one deterministic id per input: {} input coordinates, {} ids",
        covered.len(),
        by_id.len()
    );
    let mut duplicated = Vec::new();
    let mut dup = 0;
    for copies in by_id.values().filter(|c| c.len() > 1) {
        assert!(copies.iter().all(|c| c.value == copies[0].value), "copies of an id are identical");
        let (p, o) = input_of(copies[0]);
        dup += copies.len() - 1;
        duplicated.push((p, o, copies.len()));
    }
    duplicated.sort();
    Raw { outputs: got.len(), missing, dup, ids: by_id.keys().map(|s| (*s).to_owned()).collect(), duplicated }
}

/// A downstream kafclaw stage whose source has `dedup = true` reads the raw output; returns
/// (duplicates after it, raw ids it did not pass on), judged by `causation_id` (the raw
/// record's id). Its summary must say it dropped exactly `dup_raw` records.
pub(crate) fn dedup_stage(brokers: &str, dir: &Path, raw_topic: &str, raw: &Raw) -> (usize, usize) {
    let (app, fin) = (unique("chaos-dedup-app"), unique("chaos-dedup-out"));
    let topo = write_topology(
        dir,
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
[sources.raw]
type = "kafka"
topic = "{raw_topic}"
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
    let log = dir.join(format!("{app}.log"));
    let mut stage = spawn_instance_at(brokers, &topo, "d", &log, &[], &[]);
    let clean = consume_all_at(brokers, &fin, raw.ids.len(), Duration::from_secs(180));
    sigterm(&mut stage);
    assert_eq!(wait_exit(&mut stage, Duration::from_secs(60)), Some(0), "dedup stage:\n{}", log_tail(&log));
    let causes: Vec<&str> = clean.iter().map(|g| g.value["causation_id"].as_str().expect("causation_id")).collect();
    let distinct: HashSet<&str> = causes.iter().copied().collect();
    let not_passed = raw.ids.iter().filter(|id| !distinct.contains(id.as_str())).count();
    let summary = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        summary.contains(&format!("deduplicated {},", raw.dup)),
        "the dedup stage drops exactly the {} raw duplicates:\n{}",
        raw.dup,
        log_tail(&log)
    );
    (causes.len() - distinct.len(), not_passed)
}

/// Waits until the group's committed offsets on `topic` sum to `n`, or `timeout`; the last
/// offsets read.
pub(crate) fn wait_committed(brokers: &str, group: &str, topic: &str, n: usize, timeout: Duration) -> Vec<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let c = committed_at(brokers, group, topic, PARTITIONS);
        if c.iter().map(|o| (*o).max(0)).sum::<i64>() == n as i64 || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The instance's `/stats` counter `name`, if its HTTP endpoint answers.
pub(crate) fn stat(port: u16, name: &str) -> Option<u64> {
    let body = http_get_body(port, "/stats")?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?[name].as_u64()
}

/// Inputs below the group's committed offsets that have no output: a commit past what the
/// instance produced. Read while no instance runs.
pub(crate) fn committed_without_output(
    brokers: &str,
    group: &str,
    input: &str,
    output: &str,
) -> (Vec<i64>, Vec<(i32, i64)>) {
    let c = committed_at(brokers, group, input, PARTITIONS);
    let below: usize = c.iter().map(|o| (*o).max(0) as usize).sum();
    let got = consume_all_at(brokers, output, below, Duration::from_secs(60));
    let covered: HashSet<(i32, i64)> = got.iter().map(input_of).collect();
    let mut lost = Vec::new();
    for (p, end) in c.iter().enumerate() {
        lost.extend((0..*end).map(|o| (p as i32, o)).filter(|x| !covered.contains(x)));
    }
    (c, lost)
}

pub(crate) fn first(v: &[(i32, i64)], n: usize) -> String {
    format!("{:?}{}", &v[..v.len().min(n)], if v.len() > n { " …" } else { "" })
}
