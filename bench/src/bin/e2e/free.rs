//! The broker-free ceiling: the same filter job with no test broker in the way, run by
//!   1. kafclaw in local mode (`kafclaw run --local`: file → CEL filter → file), and
//!   2. contenders on librdkafka's in-process mock cluster, each run a process of its own
//!      (`e2e mock-run <contender>`, see `mockrun`): the raw loop, kafclaw at-least-once with
//!      one and two stream threads, and two kafclaw instances of one thread each.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::contenders::Tools;
use crate::envelopes::Envelopes;
use crate::procstat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Free {
    Local,
    MockRaw,
    MockThreads1,
    MockThreads2,
    MockTwoInstances,
}

impl Free {
    pub const ALL: [Free; 5] =
        [Self::Local, Self::MockRaw, Self::MockThreads1, Self::MockThreads2, Self::MockTwoInstances];

    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "kafclaw local mode (file → filter → file)",
            Self::MockRaw => "raw rdkafka loop (at-least-once)",
            Self::MockThreads1 => "kafclaw at-least-once, threads = 1",
            Self::MockThreads2 => "kafclaw at-least-once, threads = 2",
            Self::MockTwoInstances => "kafclaw at-least-once, 2 instances × 1 thread",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::MockRaw => "mock-raw",
            Self::MockThreads1 => "mock-t1",
            Self::MockThreads2 => "mock-t2",
            Self::MockTwoInstances => "mock-2x1",
        }
    }

    pub fn from_short(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.short() == s)
    }
}

/// What one broker-free run achieved. CPU seconds are over the run (start until every input
/// offset is committed, or local mode's exit).
#[derive(Debug, Clone)]
pub struct FreeRow {
    pub who: Free,
    pub secs: f64,
    /// msgs/s of the slowest and fastest round.
    pub spread: (f64, f64),
    /// Seconds until the first record was consumed (group join included); mock runs only.
    pub first_secs: Option<f64>,
    /// msgs/s from 10 % to 90 % of the input consumed (no start-up, no rebalance at the
    /// start); mock runs only.
    pub steady_rate: Option<f64>,
    /// The whole process (mock runs: mock cluster and feeder included).
    pub process_cpu: f64,
    /// The mock cluster's thread.
    pub mock_cpu: Option<f64>,
    /// The harness's feeder (writing the input) and its producer.
    pub harness_cpu: Option<f64>,
    /// The contender's own threads (its librdkafka clients included).
    pub contender_cpu: f64,
    pub peak_rss_mb: f64,
}

/// The median round by throughput, with the spread of all rounds.
pub fn median(mut rounds: Vec<FreeRow>) -> Option<FreeRow> {
    rounds.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    let spread = (rounds.first()?.secs, rounds.last()?.secs);
    let mut row = rounds.swap_remove(rounds.len() / 2);
    row.spread = spread;
    Some(row)
}

pub fn run(who: Free, tools: &Tools, messages: usize, partitions: i32, lag: usize) -> Result<FreeRow> {
    match who {
        Free::Local => local(tools, messages),
        _ => mock(who, messages, partitions, lag),
    }
}

/// The mock-cluster run: this binary again, `mock-run`, in a process of its own.
fn mock(who: Free, messages: usize, partitions: i32, lag: usize) -> Result<FreeRow> {
    eprintln!("mock cluster, {}: {messages} envelopes…", who.name());
    let out = Command::new(std::env::current_exe()?)
        .args(["mock-run", who.short()])
        .args(["--messages", &messages.to_string(), "--partitions", &partitions.to_string()])
        .args(["--mock-lag", &lag.to_string()])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting mock-run {}", who.short()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("mock-run {} failed ({}):\n{stdout}", who.short(), out.status);
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("mock-result: ")).context("mock-run printed no result")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let f = |k: &str| v[k].as_f64().with_context(|| format!("mock-run result has no {k}: {line}"));
    let row = FreeRow {
        who,
        secs: f("secs")?,
        spread: (0.0, 0.0),
        first_secs: v["first_secs"].as_f64(),
        steady_rate: v["steady_secs"].as_f64().map(|d| 0.8 * messages as f64 / d),
        process_cpu: f("process_cpu")?,
        mock_cpu: Some(f("mock_cpu")?),
        harness_cpu: Some(f("harness_cpu")?),
        contender_cpu: f("contender_cpu")?,
        peak_rss_mb: f("peak_rss_mb")?,
    };
    eprintln!(
        "{}: {:.1} s, {:.0} msgs/s; CPU s: process {:.1}, mock cluster {:.1}, feeder {:.1}, contender {:.1}",
        who.name(),
        row.secs,
        messages as f64 / row.secs,
        row.process_cpu,
        row.mock_cpu.unwrap_or_default(),
        row.harness_cpu.unwrap_or_default(),
        row.contender_cpu
    );
    Ok(FreeRow { spread: (row.secs, row.secs), ..row })
}

/// Writes the local run's input once per harness run: `messages` envelopes, one per line.
fn local_input(dir: &Path, messages: usize) -> Result<std::path::PathBuf> {
    let path = dir.join(format!("local-in-{messages}.jsonl"));
    if !path.exists() {
        let envelopes = Envelopes::new()?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut body = Vec::new();
        for i in 0..messages {
            envelopes.write(i, &mut body);
            body.push(b'\n');
            w.write_all(&body)?;
        }
        w.flush()?;
        // On disk before the run: otherwise the kernel writes the 1 GB back while kafclaw
        // runs, and the run's wall time carries the harness's own writes.
        w.get_ref().sync_all()?;
    }
    Ok(path)
}

/// `kafclaw run --local` of the same topology, its Kafka nodes stood in by files; timed from
/// the process's start to its exit, its CPU read from this process's waited-for children.
fn local(tools: &Tools, messages: usize) -> Result<FreeRow> {
    let input = local_input(&tools.work_dir, messages)?;
    let (output, dlq) = (tools.work_dir.join("local-out.jsonl"), tools.work_dir.join("local.dlq.jsonl"));
    let topo = tools.work_dir.join("local.toml");
    std::fs::write(&topo, crate::contenders::topology("bench-local", "at-least-once", 6, "in", "out"))?;
    eprintln!("local mode: {messages} envelopes…");
    let children_before = procstat::children_cpu_secs();
    let start = Instant::now();
    let mut child = Command::new(&tools.kafclaw)
        .args(["run", "--local"])
        .arg(&topo)
        .arg("--input")
        .arg(format!("in={}", input.display()))
        .arg("--output")
        .arg(format!("out={}", output.display()))
        .arg("--dead-letter")
        .arg(&dlq)
        .arg("--state-dir")
        .arg(tools.work_dir.join("local-state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting kafclaw --local")?;
    let mut peak_rss_mb: f64 = 0.0;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if let Ok(u) = procstat::usage(child.id()) {
            peak_rss_mb = peak_rss_mb.max(u.peak_rss_mb);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu = procstat::children_cpu_secs() - children_before;
    if !status.success() {
        bail!("kafclaw --local failed ({status})");
    }
    let written = std::io::BufReader::new(std::fs::File::open(&output)?).lines().count();
    let kept = (0..messages).filter(|n| n % 2 == 0).count();
    if written != kept {
        bail!("local mode wrote {written} envelopes, {kept} expected");
    }
    eprintln!("local mode: {secs:.1} s, {:.0} msgs/s, {cpu:.1} CPU s", messages as f64 / secs);
    let _ = std::fs::remove_file(&output);
    Ok(FreeRow {
        who: Free::Local,
        secs,
        spread: (secs, secs),
        first_secs: None,
        steady_rate: None,
        process_cpu: cpu,
        mock_cpu: None,
        harness_cpu: None,
        contender_cpu: cpu,
        peak_rss_mb,
    })
}
