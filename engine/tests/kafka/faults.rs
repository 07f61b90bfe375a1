//! Failed sends against the real broker and binary: no error path commits an input without
//! its outputs, its changelog records or its dead letter (docs/ARCHITECTURE.md, "a position is
//! committed only with every record it caused").
//!
//! - records over the producer's `message.max.bytes` (an output, a changelog record) become
//!   dead letters naming the input's topic, partition and offset and the sizes; the next record
//!   flows; the committed offset reaches the input's end; the instance keeps running;
//! - a send failure injected at each kind of record (output, changelog, dead letter), as a
//!   retriable failure (the instance aborts and goes on) and as one retrying cannot mend (the
//!   instance stops non-zero, and a restart completes the work), under both guarantees: after
//!   all, every input has its output or its dead letter, the committed offsets equal the input
//!   end, and under exactly-once the counts kept in state are exact (no input counted twice,
//!   none lost).
//!
//! Not here: an unknown topic and authorization failures *from the broker*. The test broker
//! (Tansu) has no ACLs, and it acknowledges records produced to a deleted topic and then has
//! none of them (measured: three records acknowledged at offsets 0–2, the topic re-created
//! with 4 empty partitions on the next metadata request) — a loss no client can see. Both
//! kinds are classified like their injected stand-ins (`auth` = fatal, `fail` = retriable;
//! `kafka/fault.rs` unit tests map each broker error code).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until the group's committed offsets equal `want`; returns the last seen.
fn await_committed(group: &str, topic: &str, want: &[i64], timeout: Duration) -> Vec<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = committed(group, topic, want.len() as i32);
        if got == want || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn request(i: usize, content: &str) -> String {
    format!(
        r#"{{"type":"request","correlation_id":"c-{i}","sender_id":"load","timestamp":"2026-11-23T10:00:00Z","payload":{{"n":{i},"content":"{content}"}},"id":"in-{i}"}}"#
    )
}

fn grow_topology(dir: &Path, app: &str, input: &str, output: &str, guarantee: &str) -> std::path::PathBuf {
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
guarantee = "{guarantee}"
commit_interval_ms = 100

[sources.in]
type = "kafka"
topic = "{input}"

# Triples the payload: a 600 KB request becomes a ~1.8 MB output.
[operators.grow]
type = "map"
inputs = ["in"]
set = {{ "payload.copy1" = 'payload.content', "payload.copy2" = 'payload.content' }}

[sinks.out]
type = "kafka"
inputs = ["grow"]
topic = "{output}"
"#
        ),
    )
}

/// The issue's case: a 600 KB request whose `map` output grew to ~1.8 MB, over the producer's
/// default limit (1,000,000 bytes).
fn oversized_output(guarantee: &str) {
    let dir = TestDir::new();
    let (app, input, output) = (unique("big-app"), unique("big-in"), unique("big-out"));
    create_topic(&input, 1);
    let topo = grow_topology(dir.path(), &app, &input, &output, guarantee);
    let big = "x".repeat(600 * 1024);
    produce(
        &input,
        [("0".into(), request(0, "small")), ("1".into(), request(1, &big)), ("2".into(), request(2, "small"))],
    );
    let log = dir.path().join("a.log");
    let mut child = spawn_instance(&topo, "a", &log);
    let got = consume_all(&output, 2, Duration::from_secs(60));
    let dead = consume_all(&format!("{app}.dlq"), 1, Duration::from_secs(30));
    assert_eq!(got.len(), 2, "{}", log_tail(&log));
    assert_eq!(dead.len(), 1, "{}", log_tail(&log));
    let d = &dead[0].headers;
    assert_eq!(d["kafclaw.location"], input);
    assert_eq!(d["kafclaw.partition"], "0");
    assert_eq!(d["kafclaw.offset"], "1");
    assert_eq!(d["kafclaw.stage"], "sink:out");
    assert_eq!(d["kafclaw.error.code"], "record_too_large");
    assert_eq!(d["kafclaw.record.limit"], "1000000");
    let size: usize = d["kafclaw.record.size"].parse().unwrap();
    assert!(size > 1_800_000, "the output's size: {size}");
    let whole: usize = d["kafclaw.raw.size"].parse().unwrap();
    assert!(whole > 1_800_000 && whole <= size, "the copy's whole size: {whole}");
    assert_eq!(await_committed(&app, &input, &[3], Duration::from_secs(30)), vec![3], "{}", log_tail(&log));
    assert!(child.0.try_wait().unwrap().is_none(), "the instance keeps running: {}", log_tail(&log));
    // The next record flows.
    produce(&input, [("3".into(), request(3, "after"))]);
    let got = consume_all(&output, 3, Duration::from_secs(60));
    assert_eq!(got.len(), 3, "{}", log_tail(&log));
    assert_eq!(await_committed(&app, &input, &[4], Duration::from_secs(30)), vec![4]);
    sigterm(&mut child.0);
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
}

#[test]
fn an_oversized_output_is_dead_lettered_under_exactly_once() {
    oversized_output("exactly-once");
}

#[test]
fn an_oversized_output_is_dead_lettered_under_at_least_once() {
    oversized_output("at-least-once");
}

/// A state write over the user's own `message.max.bytes` (200,000 in `[kafka]`): the join
/// table's changelog record cannot be written, so the entry is not kept (store and changelog
/// agree: a later lookup finds nothing) and the input is dead-lettered naming the table.
#[test]
fn an_oversized_state_write_is_dead_lettered_and_not_kept() {
    let dir = TestDir::new();
    let (app, table, stream, output) = (unique("cl-app"), unique("cl-table"), unique("cl-stream"), unique("cl-out"));
    create_topic(&table, 1);
    create_topic(&stream, 1);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
guarantee = "exactly-once"
commit_interval_ms = 100

[kafka]
"message.max.bytes" = "200000"

[sources.members]
type = "kafka"
topic = "{table}"

[sources.requests]
type = "kafka"
topic = "{stream}"

[operators.enrich]
type = "join"
inputs = ["requests", "members"]
table = "members"
key = 'correlation_id'
into = "payload.member"

[sinks.out]
type = "kafka"
inputs = ["enrich"]
topic = "{output}"
"#
        ),
    );
    let big = "y".repeat(250 * 1024);
    produce(
        &table,
        [
            ("k-big".into(), request(0, &big).replace("c-0", "k-big")),
            ("k-ok".into(), request(1, "fine").replace("c-1", "k-ok")),
        ],
    );
    let log = dir.path().join("a.log");
    let mut child = spawn_instance(&topo, "a", &log);
    let dead = consume_all(&format!("{app}.dlq"), 1, Duration::from_secs(60));
    assert_eq!(dead.len(), 1, "{}", log_tail(&log));
    let d = &dead[0].headers;
    assert_eq!(d["kafclaw.stage"], "changelog:enrich");
    assert_eq!(d["kafclaw.error.code"], "record_too_large");
    assert_eq!(d["kafclaw.record.limit"], "200000");
    assert_eq!((d["kafclaw.location"].as_str(), d["kafclaw.offset"].as_str()), (table.as_str(), "0"));
    assert!(d["kafclaw.record.size"].parse::<usize>().unwrap() > 250 * 1024);
    assert!(dead[0].headers.contains_key("kafclaw.raw.size"), "the copy was cut to fit under 200,000 bytes");
    produce(
        &stream,
        [
            ("k-big".into(), request(2, "who").replace("c-2", "k-big")),
            ("k-ok".into(), request(3, "who").replace("c-3", "k-ok")),
        ],
    );
    let got = consume_all(&output, 2, Duration::from_secs(60));
    assert_eq!(got.len(), 2, "{}", log_tail(&log));
    let member =
        |c: &str| got.iter().find(|g| g.value["correlation_id"] == c).map(|g| g.value["payload"]["member"].clone());
    assert_eq!(member("k-big"), Some(serde_json::Value::Null), "the entry that could not be logged is not kept");
    assert_eq!(member("k-ok").unwrap()["content"], "fine");
    assert_eq!(await_committed(&app, &table, &[2], Duration::from_secs(30)), vec![2]);
    assert_eq!(await_committed(&app, &stream, &[2], Duration::from_secs(30)), vec![2]);
    assert!(child.0.try_wait().unwrap().is_none(), "the instance keeps running: {}", log_tail(&log));
    sigterm(&mut child.0);
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
}

const INPUTS: usize = 40;
const KEYS: usize = 4;

/// Input `i`: a request with correlation id (and Kafka key, so one key is one partition's)
/// `k-(i % KEYS)`, except every 8th, which is not JSON (a dead letter).
fn counted_inputs() -> Vec<(String, String)> {
    (0..INPUTS)
        .map(|i| {
            let key = format!("k-{}", i % KEYS);
            match i % 8 {
                7 => (key, format!("{{ not json {i}")),
                _ => (key.clone(), request(i, "c").replace(&format!("\"c-{i}\""), &format!("\"{key}\""))),
            }
        })
        .collect()
}

fn count_topology(dir: &Path, app: &str, input: &str, output: &str, guarantee: &str) -> std::path::PathBuf {
    write_topology(
        dir,
        app,
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

[operators.per-key]
type = "count"
inputs = ["in"]
by = 'correlation_id'

[sinks.out]
type = "kafka"
inputs = ["per-key"]
topic = "{output}"
"#
        ),
    )
}

/// Injects a send failure at the `nth` record of `kind`; with `fatal`, one retrying cannot
/// mend (the instance must stop non-zero, commit nothing past what it sent, and a restart
/// completes the work).
fn injected(kind: &str, nth: usize, fatal: bool, guarantee: &str) {
    let dir = TestDir::new();
    let tag = format!("{}-{kind}", if fatal { "auth" } else { "fail" });
    let (app, input, output) = (unique(&format!("inj-{tag}")), unique("inj-in"), unique("inj-out"));
    create_topic(&input, 2);
    let topo = count_topology(dir.path(), &app, &input, &output, guarantee);
    // Half the inputs first, committed before the rest come: the failure (planned in the
    // second half) then stops an instance with commits behind it.
    let mut inputs = counted_inputs();
    let second = inputs.split_off(INPUTS / 2);
    let plan = format!("{kind}:{nth}:{}", if fatal { "auth" } else { "fail" });
    let log = dir.path().join("a.log");
    let mut child = spawn_instance_env(&topo, "a", &log, &[], &[("KAFCLAW_INJECT_SEND_FAILURE", &plan)]);
    let ctx = |log: &Path| format!("[{guarantee} {plan}] {}", log_tail(log));
    produce(&input, inputs);
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&app, &input, 2).iter().map(|o| o.max(&0)).sum::<i64>() < (INPUTS / 2) as i64 {
        assert!(Instant::now() < deadline, "the first half is never committed {}", ctx(&log));
        std::thread::sleep(Duration::from_millis(300));
    }
    produce(&input, second);
    if fatal {
        let code = wait_exit(&mut child.0, Duration::from_secs(60));
        assert!(matches!(code, Some(c) if c != 0), "stops non-zero: {code:?} {}", ctx(&log));
        assert!(std::fs::read_to_string(&log).unwrap().contains("injected send failure"), "{}", ctx(&log));
        // Whatever was committed before the stop has all its records: nothing past them.
        let at_stop = committed(&app, &input, 2);
        let done: i64 = at_stop.iter().map(|o| o.max(&0)).sum();
        assert!(
            (INPUTS / 2) as i64 <= done && done < INPUTS as i64,
            "committed at the stop: {at_stop:?} {}",
            ctx(&log)
        );
        let outputs = consume_all(&output, 0, Duration::from_secs(5));
        let dead = consume_all(&format!("{app}.dlq"), 0, Duration::from_secs(3));
        for (p, &end) in at_stop.iter().enumerate() {
            for offset in 0..end.max(0) {
                let has = |g: &Got| {
                    g.headers.get("kafclaw.input.partition").or(g.headers.get("kafclaw.partition"))
                        == Some(&p.to_string())
                        && g.headers.get("kafclaw.input.offset").or(g.headers.get("kafclaw.offset"))
                            == Some(&offset.to_string())
                };
                assert!(
                    outputs.iter().chain(&dead).any(has),
                    "partition {p} offset {offset} committed (at {at_stop:?}) without its output or dead letter {}",
                    ctx(&log)
                );
            }
        }
        figure(&format!("faults {guarantee} {plan}: stopped non-zero with committed {at_stop:?}; restarting"));
        let log2 = dir.path().join("b.log");
        child = spawn_instance(&topo, "a", &log2);
        check_complete(&app, &input, &output, guarantee, &log2, &plan);
    } else {
        check_complete(&app, &input, &output, guarantee, &log, &plan);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("injected send failure") && text.contains("aborting"), "{}", ctx(&log));
    }
    sigterm(&mut child.0);
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), Some(0));
}

/// Every input has its output or its dead letter, the offsets are committed to the end, and
/// (exactly-once) the per-key counts are exact.
fn check_complete(app: &str, input: &str, output: &str, guarantee: &str, log: &Path, plan: &str) {
    let inputs = counted_inputs();
    let bad = inputs.iter().filter(|(_, v)| v.starts_with("{ not")).count();
    let good = INPUTS - bad;
    let outputs = consume_all(output, good, Duration::from_secs(90));
    let dead = consume_all(&format!("{app}.dlq"), bad, Duration::from_secs(30));
    let ctx = || format!("[{guarantee} {plan}] {}", log_tail(log));
    let mut answered: HashMap<String, usize> = HashMap::new();
    for o in &outputs {
        *answered.entry(o.value["causation_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    let missing: Vec<usize> =
        (0..INPUTS).filter(|i| i % 8 != 7 && !answered.contains_key(&format!("in-{i}"))).collect();
    assert!(missing.is_empty(), "inputs without an output: {missing:?} {}", ctx());
    assert!(dead.len() >= bad, "dead letters: {} of {bad} {}", dead.len(), ctx());
    // The counts: the largest count per key is exactly the number of good inputs with it.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for i in (0..INPUTS).filter(|i| i % 8 != 7) {
        *want.entry(format!("k-{}", i % KEYS)).or_default() += 1;
    }
    let mut max: BTreeMap<String, u64> = BTreeMap::new();
    for o in &outputs {
        let k = o.value["correlation_id"].as_str().unwrap().to_owned();
        let n = o.value["payload"]["count"].as_u64().unwrap();
        let m = max.entry(k).or_default();
        *m = (*m).max(n);
    }
    if guarantee == "exactly-once" {
        assert_eq!(max, want, "counts kept in state {}", ctx());
    }
    // Where each input went (by partition), to know each partition's end.
    let mut ends = [0i64; 2];
    for o in outputs.iter().map(|o| &o.headers).chain(dead.iter().map(|d| &d.headers)) {
        let p: usize = o.get("kafclaw.input.partition").or(o.get("kafclaw.partition")).unwrap().parse().unwrap();
        let off: i64 = o.get("kafclaw.input.offset").or(o.get("kafclaw.offset")).unwrap().parse().unwrap();
        ends[p] = ends[p].max(off + 1);
    }
    assert_eq!(ends.iter().sum::<i64>(), INPUTS as i64, "every input has a record {}", ctx());
    assert_eq!(await_committed(app, input, &ends, Duration::from_secs(30)), ends.to_vec(), "{}", ctx());
    figure(&format!(
        "faults {guarantee} {plan}: inputs={INPUTS} outputs_raw={} dead_letters={} missing=0 committed={ends:?}",
        outputs.len(),
        dead.len()
    ));
}

/// Where failures are injected: in the second half of the inputs (35 outputs and changelog
/// records, 5 dead letters in all; the first half makes 17 or 18 and 2).
const PLANS: [(&str, usize); 3] = [("output", 27), ("changelog", 30), ("dead_letter", 4)];

#[test]
fn injected_send_failures_under_exactly_once() {
    let runs: Vec<_> = PLANS
        .into_iter()
        .flat_map(|(k, n)| [(k, n, false), (k, n, true)])
        .map(|(k, n, fatal)| std::thread::spawn(move || injected(k, n, fatal, "exactly-once")))
        .collect();
    for r in runs {
        r.join().unwrap();
    }
}

#[test]
fn injected_send_failures_under_at_least_once() {
    let runs: Vec<_> = PLANS
        .into_iter()
        .flat_map(|(k, n)| [(k, n, false), (k, n, true)])
        .map(|(k, n, fatal)| std::thread::spawn(move || injected(k, n, fatal, "at-least-once")))
        .collect();
    for r in runs {
        r.join().unwrap();
    }
}

/// The producer refuses a send as too large although the record looked small enough (its own
/// count includes framing): the record's fault, so that input's output becomes a dead letter
/// and everything else flows; nothing is aborted.
#[test]
fn a_send_refused_as_too_large_becomes_a_dead_letter() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("inj-large"), unique("inj-in"), unique("inj-out"));
    create_topic(&input, 2);
    let topo = count_topology(dir.path(), &app, &input, &output, "exactly-once");
    produce(&input, counted_inputs());
    let log = dir.path().join("a.log");
    let mut child = spawn_instance_env(&topo, "a", &log, &[], &[("KAFCLAW_INJECT_SEND_FAILURE", "output:3:too_large")]);
    let bad = INPUTS / 8;
    let dead = consume_all(&format!("{app}.dlq"), bad + 1, Duration::from_secs(60));
    let outputs = consume_all(&output, INPUTS - bad - 1, Duration::from_secs(30));
    assert_eq!((outputs.len(), dead.len()), (INPUTS - bad - 1, bad + 1), "{}", log_tail(&log));
    let refused: Vec<_> = dead
        .iter()
        .filter(|d| d.headers.get("kafclaw.error.code").map(String::as_str) == Some("record_too_large"))
        .collect();
    assert_eq!(refused.len(), 1, "{}", log_tail(&log));
    assert_eq!(refused[0].headers["kafclaw.stage"], "sink:out");
    assert_eq!(refused[0].headers["kafclaw.record.limit"], "1000000");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("aborting"), "{}", log_tail(&log));
    let ends = {
        let mut e = [0i64; 2];
        for h in outputs.iter().map(|o| &o.headers).chain(dead.iter().map(|d| &d.headers)) {
            let p: usize = h.get("kafclaw.input.partition").or(h.get("kafclaw.partition")).unwrap().parse().unwrap();
            let o: i64 = h.get("kafclaw.input.offset").or(h.get("kafclaw.offset")).unwrap().parse().unwrap();
            e[p] = e[p].max(o + 1);
        }
        e
    };
    assert_eq!(ends.iter().sum::<i64>(), INPUTS as i64);
    assert_eq!(await_committed(&app, &input, &ends, Duration::from_secs(30)), ends.to_vec());
    sigterm(&mut child.0);
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), Some(0));
}

/// A state table that cannot be read is the store's fault, not the record's: the transaction
/// aborts and the tasks rewind (the read is tried again), nothing is dead-lettered for it, and
/// under exactly-once the counts come out exact. `KAFCLAW_INJECT_STATE_FAILURE` fails the
/// first three reads of the count's table.
#[test]
fn a_state_read_failure_aborts_and_rewinds_and_dead_letters_nothing() {
    for guarantee in ["exactly-once", "at-least-once"] {
        let dir = TestDir::new();
        let (app, input, output) = (unique("inj-state"), unique("inj-in"), unique("inj-out"));
        create_topic(&input, 2);
        let topo = count_topology(dir.path(), &app, &input, &output, guarantee);
        produce(&input, counted_inputs());
        let log = dir.path().join("a.log");
        let plan = "per-key:3";
        let mut child = spawn_instance_env(&topo, "a", &log, &[], &[("KAFCLAW_INJECT_STATE_FAILURE", plan)]);
        check_complete(&app, &input, &output, guarantee, &log, plan);
        // Only the malformed inputs are dead letters, all at decode: none for the store.
        let dead = consume_all(&format!("{app}.dlq"), INPUTS / 8, Duration::from_secs(5));
        assert_eq!(dead.len(), INPUTS / 8, "{}", log_tail(&log));
        assert!(dead.iter().all(|d| d.headers.get("kafclaw.stage").map(String::as_str) == Some("decode")));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("state store failed") && text.contains("injected read failure"),
            "the abort says why: {}",
            log_tail(&log)
        );
        sigterm(&mut child.0);
        assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
    }
}

/// A store that stays broken does not abort forever: at the tenth abort in a row the
/// instance stops with exit 1 and says why (its orchestrator restarts it from the last
/// commit), still without dead-lettering anything for the store.
#[test]
fn ten_aborts_in_a_row_stop_the_instance() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("inj-stop"), unique("inj-stop-in"), unique("inj-stop-out"));
    create_topic(&input, 1);
    let topo = count_topology(dir.path(), &app, &input, &output, "exactly-once");
    produce(&input, counted_inputs());
    let log = dir.path().join("a.log");
    let mut child = spawn_instance_env(&topo, "a", &log, &[], &[("KAFCLAW_INJECT_STATE_FAILURE", "per-key:1000000")]);
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(120)), Some(1), "{}", log_tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("10 aborts in a row"), "{}", log_tail(&log));
    let dead = consume_all(&format!("{app}.dlq"), INPUTS / 8, Duration::from_secs(5));
    assert!(dead.iter().all(|d| d.headers.get("kafclaw.stage").map(String::as_str) == Some("decode")));
}
