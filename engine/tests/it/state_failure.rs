//! A broken state store is never taken for a bad record: a local run that cannot read a state
//! table stops with exit 1 and says why, writes no dead letter and no output of the failing
//! input (`KAFCLAW_INJECT_STATE_FAILURE`, debug builds).

use std::process::Command;

use super::replay_golden::{copy_dir, fixture};

/// Runs `topology` of the fixture locally with reads of `table` failing `n` times.
fn run_failing(topology: &str, table: &str, n: u32) -> (tempfile::TempDir, std::process::Output) {
    run_injected(topology, &format!("{table}:{n}"))
}

/// Runs `topology` of the fixture locally with `KAFCLAW_INJECT_STATE_FAILURE=plan`.
fn run_injected(topology: &str, plan: &str) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("topologies"), &dir.path().join("topologies"));
    copy_dir(&fixture().join("examples"), &dir.path().join("examples"));
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .current_dir(dir.path())
        .args(["run", "--local", &format!("topologies/{topology}.toml")])
        .env("KAFCLAW_INJECT_STATE_FAILURE", plan)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (dir, out)
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

#[test]
fn a_state_read_failure_fails_the_local_run_and_dead_letters_nothing() {
    // aggregate (`running`), dedupe (`once`), window (`minutes`), the llm's journal, the
    // guard's admissions and the join's table: each a different operator reading state.
    for (topology, table) in [
        ("usage-meter", "running"),
        ("usage-meter", "once"),
        ("usage-meter", "minutes"),
        ("agent", "think.journal"),
        ("agent", "remember.items"),
        ("roster-enrich", "enrich"),
        ("rate-limit", "per-sender"),
    ] {
        let (dir, out) = run_failing(topology, table, 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{topology}/{table}: exit 1\n{stderr}");
        assert!(
            stderr.contains(&format!("state table `{table}`")) && stderr.contains("injected read failure"),
            "{topology}/{table}: says which table failed and why\n{stderr}"
        );
        let dlq = dir.path().join(format!("{topology}.dlq.jsonl"));
        assert_eq!(lines(&dlq), 0, "{topology}/{table}: no dead letter");
    }
}

#[test]
fn whichever_read_of_a_window_fails_the_run_stops_without_a_dead_letter() {
    // `@skip` lets the first reads through, so the failure lands on each read in turn: the
    // adds' gets and the close's scans alike. Past the last read the run succeeds whole.
    let mut failed = 0;
    for skip in 0..40 {
        let (dir, out) = run_injected("usage-meter", &format!("minutes:1@{skip}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let dlq = lines(&dir.path().join("usage-meter.dlq.jsonl"));
        match out.status.code() {
            Some(1) => {
                failed += 1;
                assert!(stderr.contains("state table `minutes`"), "read {skip}: {stderr}");
                assert_eq!(dlq, 0, "read {skip}: no dead letter");
            }
            Some(0) => assert_eq!(lines(&dir.path().join("out/usage-meter/totals.jsonl")), 7, "read {skip}"),
            other => panic!("read {skip}: exit {other:?}\n{stderr}"),
        }
    }
    assert!(failed > 7, "the window reads more than once per input (adds and closes): {failed} reads failed");
}

#[test]
fn a_malformed_injection_plan_is_refused() {
    for bad in ["minutes", "minutes:0", "minutes:x", "minutes:1@y"] {
        let (_dir, out) = run_injected("usage-meter", bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("KAFCLAW_INJECT_STATE_FAILURE"), "{bad}: {stderr}");
    }
}

#[test]
fn without_the_failure_the_same_runs_succeed() {
    // The control: a failure planned for a table nobody reads changes nothing.
    let (dir, out) = run_failing("usage-meter", "no-such-table", 1);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&dir.path().join("out/usage-meter/totals.jsonl")), 7);
}

#[test]
fn a_state_failure_stops_the_run_while_another_input_is_still_open() {
    // Two sub-topologies: a `count` over a file, and stdin echoed to stdout. stdin stays open
    // (a terminal, a pipe nobody closes): the failure must end the run anyway.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("examples"), &dir.path().join("examples"));
    std::fs::create_dir_all(dir.path().join("topologies")).unwrap();
    std::fs::write(
        dir.path().join("topologies/two.toml"),
        r#"[topology]
name = "two"

[sources.usage]
type = "file"
path = "../examples/data/usage.jsonl"

[operators.per-sender]
type = "count"
inputs = ["usage"]
by = 'sender_id'

[sinks.counts]
type = "file"
inputs = ["per-sender"]
path = "../out/two/counts.jsonl"

[sources.typed]
type = "stdin"

[sinks.echo]
type = "stdout"
inputs = ["typed"]
"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .current_dir(dir.path())
        .args(["run", "--local", "topologies/two.toml"])
        .env("KAFCLAW_INJECT_STATE_FAILURE", "per-sender:1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _open_stdin = child.stdin.take();
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if status.is_none() {
        child.kill().unwrap();
        panic!("the run waited for stdin instead of stopping at the state failure");
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("state table `per-sender`"), "{stderr}");
}
