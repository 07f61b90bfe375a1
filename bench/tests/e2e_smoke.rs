//! The end-to-end harness, small: every contender (Quix Streams at-least-once and exactly-once
//! included, installed on first use) runs on the test broker, then the broker-free ones (local
//! mode, and the raw loop and kafclaw with one and two stream threads and two instances on
//! librdkafka's mock cluster); the report holds a row of figures for each, the ratios and the
//! idle/binary lines. Keeps the harness working; the figures themselves come from the full run
//! documented in docs/benchmarks.md.

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
    let row = |name: &str| {
        let row =
            text.lines().find(|l| l.starts_with(&format!("| {name} |"))).unwrap_or_else(|| panic!("{name}:\n{text}"));
        row.split('|').map(str::trim).map(str::to_owned).collect::<Vec<String>>()
    };
    let number =
        |cells: &[String], i: usize| -> f64 { cells[i].parse().unwrap_or_else(|_| panic!("cell {i} of {cells:?}")) };
    let broker = [
        "raw rdkafka loop (at-least-once)",
        "kafclaw at-least-once",
        "kafclaw exactly-once",
        "Quix Streams 3.28.1 (at-least-once)",
        "Quix Streams 3.28.1 (exactly-once)",
    ];
    for name in broker {
        let cells = row(name);
        assert!(number(&cells, 2) > 0.0 && number(&cells, 9) > 0.0, "{cells:?}");
    }
    // Local mode: msgs/s, CPU µs/msg and peak RSS.
    let local = row("kafclaw local mode (file → filter → file)");
    assert!(number(&local, 2) > 0.0 && number(&local, 5) > 0.0 && number(&local, 6) > 0.0, "{local:?}");
    // Mock cluster: msgs/s, the contender's CPU µs/msg, peak RSS; the mock cluster's CPU.
    for name in [
        "kafclaw at-least-once, threads = 1",
        "kafclaw at-least-once, threads = 2",
        "kafclaw at-least-once, 2 instances × 1 thread",
    ] {
        let cells = row(name);
        assert!(number(&cells, 2) > 0.0 && number(&cells, 10) > 0.0 && number(&cells, 12) > 0.0, "{cells:?}");
        assert!(number(&cells, 7) >= 0.0, "{cells:?}");
    }
    let mock_raw = text.lines().filter(|l| l.starts_with("| raw rdkafka loop")).count();
    assert_eq!(mock_raw, 2, "the raw loop on the broker and on the mock cluster:\n{text}");
    assert!(text.contains("exactly-once ÷ at-least-once"), "{text}");
    assert!(text.contains("threads = 2 ÷ threads = 1") && text.contains("not faithful for transactions"), "{text}");
    assert!(text.contains("MB RSS") && text.contains("kafclaw binary"), "{text}");
    let chart = std::fs::read_to_string(dir.path().join("benchmarks-e2e.svg")).unwrap();
    assert_eq!(chart.matches("<rect x=").count(), 10, "{chart}");
}
