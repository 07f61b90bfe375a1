//! A broken state store is never taken for a bad record: a local run that cannot read a state
//! table stops with exit 1 and says why, writes no dead letter and no output of the failing
//! input (`KAFCLAW_INJECT_STATE_FAILURE`, debug builds).

use std::process::Command;

use super::replay_golden::{copy_dir, fixture};

/// Runs `topology` of the fixture locally with reads of `table` failing `n` times.
fn run_failing(topology: &str, table: &str, n: u32) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("topologies"), &dir.path().join("topologies"));
    copy_dir(&fixture().join("examples"), &dir.path().join("examples"));
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .current_dir(dir.path())
        .args(["run", "--local", &format!("topologies/{topology}.toml")])
        .env("KAFCLAW_INJECT_STATE_FAILURE", format!("{table}:{n}"))
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
fn without_the_failure_the_same_runs_succeed() {
    // The control: a failure planned for a table nobody reads changes nothing.
    let (dir, out) = run_failing("usage-meter", "no-such-table", 1);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&dir.path().join("out/usage-meter/totals.jsonl")), 7);
}
