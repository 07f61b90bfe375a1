//! `schedule` sources without a broker: `kafclaw validate` names each bad option at its
//! `path:line:col` (a bad pattern, an unknown time zone, a jitter as long as the interval), a
//! good one validates with its `audit` output wired, `kafclaw run --local` refuses a schedule
//! with a clear message unless `--input` feeds its ticks from a file, `[[tests]]` feed ticks,
//! and Kafka mode refuses, before it connects, a schedule sharing its sub-topology or feeding
//! a model call directly.

use std::path::Path;
use std::process::{Command, Output};

fn kafclaw(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafclaw")).current_dir(dir).args(args).output().expect("kafclaw runs")
}

fn topology(schedule: &str) -> String {
    format!(
        r#"[topology]
name = "ticks"

[sources.every]
type = "schedule"
{schedule}

[sinks.out]
type = "stdout"
inputs = ["every"]

[sinks.audit]
type = "stdout"
inputs = ["every.audit"]
"#
    )
}

/// Validates `schedule`'s options; (exit code, stderr, the file's path).
fn validate(dir: &Path, schedule: &str) -> (Option<i32>, String, String) {
    let path = dir.join("t.toml");
    std::fs::write(&path, topology(schedule)).unwrap();
    let o = kafclaw(dir, &["validate", path.to_str().unwrap()]);
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned(), path.display().to_string())
}

#[test]
fn a_good_schedule_validates() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err, _) = validate(
        dir.path(),
        "cron = \"0 */5 * * * *\"\ntimezone = \"Europe/Paris\"\njitter = \"20s\"\ncatch_up = \"last\"\ngrace = \"30s\"\nstart_at = \"2026-01-01T00:00:00Z\"",
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn bad_options_are_named_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    // Line 6 holds the first option, line 7 the second.
    let cases: [(&str, &str, &str); 5] = [
        ("cron = \"*/5 * * * *\"", ":6:8: error: `*/5 * * * *` is not a cron pattern", "seconds first"),
        ("cron = \"0 0 25 * * *\"", ":6:8: error: `0 0 25 * * *` is not a cron pattern", "seconds first"),
        (
            "cron = \"0 * * * * *\"\ntimezone = \"Europe/Pariss\"",
            ":7:12: error: `Europe/Pariss` is not an IANA time zone",
            "did you mean `Europe/Paris`?",
        ),
        (
            "cron = \"*/10 * * * * *\"\njitter = \"10s\"",
            ":7:10: error: jitter (10s) must be shorter than the pattern's shortest interval (10s)",
            "just before the next due time",
        ),
        ("cron = \"0 * * * * *\"\ncatch_up = \"sometimes\"", ":7:", "none"),
    ];
    for (options, expected, hint) in cases {
        let (code, err, path) = validate(dir.path(), options);
        assert_eq!(code, Some(2), "{options}: {err}");
        assert!(err.contains(&format!("{path}{expected}")), "{options}: expected `{path}{expected}` in\n{err}");
        assert!(err.contains(hint), "{options}: hint `{hint}` in\n{err}");
    }
}

#[test]
fn run_local_refuses_a_schedule_unless_its_ticks_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    // Owed from a past `start_at`: on the clock it would catch up at once.
    std::fs::write(&path, topology("cron = \"* * * * * *\"\nstart_at = \"2026-01-01T00:00:00Z\"")).unwrap();
    let o = kafclaw(dir.path(), &["run", "--local", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("schedule `every` runs only in Kafka mode") && err.contains("--input every="),
        "a clear refusal naming the way out:\n{err}"
    );
    // Fed from a file, the schedule's records run through like ticks, and it does not also
    // tick on the clock.
    let ticks = dir.path().join("ticks.jsonl");
    std::fs::write(
        &ticks,
        r#"{"type":"request","correlation_id":"every@manual","sender_id":"me","timestamp":"2026-11-23T10:00:00Z","payload":{"task_id":"every@manual","schedule":"every"}}
"#,
    )
    .unwrap();
    let o = kafclaw(
        dir.path(),
        &["run", "--local", path.to_str().unwrap(), "--input", &format!("every={}", ticks.display())],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "only the file's tick: {out}");
    assert_eq!(lines[0]["payload"]["task_id"], "every@manual");
}

/// `[[tests]]` feed a schedule's ticks as inputs, like any source's records.
#[test]
fn kafclaw_test_feeds_ticks_to_a_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        r#"[topology]
name = "ticks"

[sources.every]
type = "schedule"
cron = "* * * * * *"
start_at = "2026-01-01T00:00:00Z"

[operators.tag]
type = "map"
inputs = ["every"]
set = { "payload.seen" = "payload.due_at" }

[sinks.out]
type = "stdout"
inputs = ["tag"]

[[tests]]
name = "a tick is tagged"
inputs = [{ source = "every", envelope = { type = "request", correlation_id = "every@x", sender_id = "ticks", timestamp = "2026-11-01T12:00:00Z", payload = { task_id = "every@x", due_at = "2026-11-01T12:00:00.000Z" } } }]
outputs = [{ sink = "out", envelope = { type = "request", payload = { seen = "2026-11-01T12:00:00.000Z" } } }]
"#,
    )
    .unwrap();
    let o = kafclaw(dir.path(), &["test", path.to_str().unwrap()]);
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(all.contains("1 passed, 0 failed"), "{all}");
}

/// Kafka mode refuses, before it connects, a schedule that feeds a model call directly: a
/// tick has no input offset to hold back, so a crash during the call would lose it.
#[test]
fn kafka_mode_refuses_a_schedule_feeding_an_asynchronous_operator() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        r#"[topology]
name = "ticks-llm"

[models.fake]
base_url = "http://127.0.0.1:9/v1"
model = "fake-1"

[sources.every]
type = "schedule"
cron = "0 */5 * * * *"

[operators.ask]
type = "llm"
inputs = ["every"]
model = "fake"
prompt = "{{ payload.content }}"

[sinks.out]
type = "kafka"
inputs = ["ask"]
topic = "ticks-llm-out"
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let o = kafclaw(
        dir.path(),
        &[
            "run",
            path.to_str().unwrap(),
            "--instance-id",
            "x",
            "--brokers",
            "127.0.0.1:9",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("schedule `every` feeds the asynchronous operator `ask` (llm)") && err.contains("kafka source"),
        "{err}"
    );
}

/// Kafka mode refuses a schedule that shares its sub-topology with another source: the task of
/// the schedule's partition fires, and another topic's partition of the same number may be
/// given to another instance.
#[test]
fn kafka_mode_refuses_a_schedule_sharing_its_sub_topology() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        r#"[topology]
name = "ticks-mixed"

[sources.every]
type = "schedule"
cron = "0 */5 * * * *"

[sources.requests]
type = "kafka"
topic = "ticks-mixed-in"

[operators.both]
type = "map"
inputs = ["every", "requests"]
set = { "payload.seen" = "true" }

[sinks.out]
type = "kafka"
inputs = ["both"]
topic = "ticks-mixed-out"
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let o = kafclaw(
        dir.path(),
        &[
            "run",
            path.to_str().unwrap(),
            "--instance-id",
            "x",
            "--brokers",
            "127.0.0.1:9",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("schedule `every` must be the only source of its sub-topology"), "{err}");
}
