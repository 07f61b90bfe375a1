//! The end-to-end harness, small: every contender (Quix Streams included, installed on first
//! use) runs on the test broker and the report holds a row of figures for each, the ratios and
//! the idle/binary lines. Keeps the harness working; the figures themselves come from the
//! full run documented in docs/benchmarks.md.

use std::path::PathBuf;
use std::process::Command;

fn kafclaw_binary() -> PathBuf {
    // target/<profile>/deps/e2e_smoke-<hash> → target/<profile>/kafclaw (built for the
    // engine's own tests in the same `cargo test --workspace`).
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().join("kafclaw")
}

#[test]
fn every_contender_runs_and_is_reported() {
    let kafclaw = kafclaw_binary();
    assert!(kafclaw.exists(), "no kafclaw binary at {} (cargo build -p kafclaw)", kafclaw.display());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("benchmarks.md");
    std::fs::write(&report, "# Benchmarks\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .arg("--kafclaw")
        .arg(&kafclaw)
        .args(["--messages", "2000", "--latency-messages", "60", "--latency-rate", "60"])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed:\n{stderr}");
    let text = std::fs::read_to_string(&report).unwrap();
    for name in ["raw rdkafka loop", "kafclaw at-least-once", "kafclaw exactly-once", "Quix Streams"] {
        let row =
            text.lines().find(|l| l.starts_with(&format!("| {name}"))).unwrap_or_else(|| panic!("{name}:\n{text}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let rate: f64 = cells[2].parse().unwrap_or_else(|_| panic!("msgs/s of {row}"));
        let peak_rss: f64 = cells[9].parse().unwrap_or_else(|_| panic!("RSS of {row}"));
        assert!(rate > 0.0 && peak_rss > 0.0, "{row}");
    }
    assert!(text.contains("exactly-once ÷ at-least-once"), "{text}");
    assert!(text.contains("MB RSS") && text.contains("kafclaw binary"), "{text}");
    let chart = std::fs::read_to_string(dir.path().join("benchmarks-e2e.svg")).unwrap();
    assert_eq!(chart.matches("<rect x=").count(), 4, "{chart}");
}
