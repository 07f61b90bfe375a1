//! End-to-end throughput and latency, side by side on one broker in one run (docs/benchmarks.md).
//!
//! The same job — read ~1 KB JSON envelopes from a 6-partition topic, keep those whose
//! `payload.n` is even, write them to an output topic — run by five contenders, one at a time,
//! each a process of its own on an input topic of its own filled with the same envelopes:
//!   1. a raw rdkafka consume → JSON decode → filter → produce loop (the limit here),
//!   2. kafclaw at-least-once,
//!   3. kafclaw exactly-once,
//!   4. Quix Streams at-least-once and 5. exactly-once (PyPI `quixstreams`, installed into a
//!      venv on first use).
//!
//! Then the broker-free ceiling (`free`): kafclaw's local mode over files, and the raw loop and
//! kafclaw (one and two stream threads, two instances) on librdkafka's in-process mock cluster.
//!
//! Per contender: throughput (start of the process until its group has committed every input
//! offset), CPU seconds and peak RSS of the process (from /proc), then end-to-end latency of a
//! paced stream (1,000 envelopes/s stamped at send, read back read_committed from its output).
//! Then kafclaw's idle RSS and binary size. Writes a table and a chart into docs/.
//!
//!   cargo build --release -p kafclaw -p kafclaw-bench
//!   $CARGO_TARGET_DIR/release/e2e --messages 1000000 --rounds 3   # writes docs/benchmarks.md
//!   target/release/e2e --messages 100000 --only mock --report /tmp/e2e.md   # a quick subset

mod chart;
mod contenders;
mod envelopes;
mod free;
mod inprocess;
mod kafka;
mod mockcluster;
mod mockrun;
mod raw;
mod report;
mod report_free;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use contenders::{Contender, Job, Tools};
use free::{Free, FreeRow};
use kafclaw_bench::procstat;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The kafclaw binary (a release build).
    /// Default: `kafclaw` beside this binary (the same target directory), else
    /// target/release/kafclaw.
    #[arg(long)]
    kafclaw: Option<PathBuf>,
    /// Bootstrap servers.
    #[arg(long, env = "KAFCLAW_TEST_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Input envelopes (~1 KB each) per contender.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Envelopes of the paced latency stream per contender (sent at `--latency-rate`).
    #[arg(long, default_value_t = 10_000)]
    latency_messages: usize,
    /// Envelopes per second of the latency stream.
    #[arg(long, default_value_t = 1_000)]
    latency_rate: u32,
    /// Partitions of the input and output topics (at least 1).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Rounds: every contender runs once per round (interleaved); the report gives each
    /// contender's median round and the spread.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Contenders to run, comma separated: on the broker raw, alo, eos, quix, quix-eos (or
    /// `broker` for all five); broker-free local, mock-raw, mock-t1, mock-t2, mock-2x1 (or
    /// `mock` for the four mock-cluster runs, `free` for all five); `all`.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    only: Vec<String>,
    /// Mock-cluster runs: how many envelopes the feeder may write ahead of what the contender
    /// consumed, over all partitions. Each partition gets its share, checked against what was
    /// consumed of it, and at most 3,800 (the mock cluster keeps only 5 MiB per partition,
    /// a feeder batch of up to 1 MB included).
    #[arg(long, default_value_t = 22_800)]
    mock_lag: usize,
    /// The venv Quix Streams runs from (made on first use).
    #[arg(long, env = "KAFCLAW_QUIX_VENV")]
    quix_venv: Option<PathBuf>,
    /// Markdown file whose `e2e` section is replaced with the results (the chart goes beside it).
    /// Default: docs/benchmarks.md, written only when every contender ran.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Command name of the broker's process, whose CPU seconds are reported beside each
    /// contender's (when it runs on this machine).
    #[arg(long, default_value = "tansu")]
    broker_process: String,
    /// The broker, as the report names it.
    #[arg(long, default_value = "Tansu (in memory, scripts/broker)")]
    broker_name: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the raw rdkafka loop until killed (the harness starts it as a process of its own).
    RawLoop { brokers: String, input: String, output: String, group: String },
    /// One broker-free run on an in-process mock cluster (the harness starts it as a process
    /// of its own): mock-raw, mock-t1, mock-t2 or mock-2x1. Prints `mock-result: {json}`.
    MockRun {
        contender: String,
        #[arg(long)]
        messages: usize,
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        #[arg(long)]
        mock_lag: usize,
    },
}

/// The contenders `--only` selects.
fn selected(only: &[String]) -> Result<(Vec<Contender>, Vec<Free>)> {
    let mut broker = Vec::new();
    let mut free = Vec::new();
    for o in only {
        let o = o.trim();
        match o {
            "all" => {
                broker.extend(Contender::ALL);
                free.extend(Free::ALL);
            }
            "broker" => broker.extend(Contender::ALL),
            "free" => free.extend(Free::ALL),
            "mock" => free.extend(Free::ALL.into_iter().filter(|f| *f != Free::Local)),
            _ => match (Contender::ALL.into_iter().find(|c| c.short() == o), Free::from_short(o)) {
                (Some(c), _) => broker.push(c),
                (_, Some(f)) => free.push(f),
                _ => anyhow::bail!("--only: unknown contender `{o}`"),
            },
        }
    }
    let broker: Vec<Contender> = Contender::ALL.into_iter().filter(|c| broker.contains(c)).collect();
    let free: Vec<Free> = Free::ALL.into_iter().filter(|f| free.contains(f)).collect();
    Ok((broker, free))
}

/// What one contender achieved.
pub struct Row {
    pub who: Contender,
    /// msgs/s of the slowest and fastest round.
    pub spread: (f64, f64),
    pub secs: f64,
    pub usage: procstat::Usage,
    /// CPU seconds the broker spent while the contender worked through its backlog.
    pub broker_cpu_secs: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn stamp() -> String {
    format!("{}-{}", std::process::id(), kafka::now_ms())
}

fn cache_dir() -> PathBuf {
    std::env::var_os("KAFCLAW_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kafclaw")))
        .unwrap_or_else(|| PathBuf::from(".cache/kafclaw"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Cmd::RawLoop { brokers, input, output, group }) => return raw::run(brokers, input, output, group),
        Some(Cmd::MockRun { contender, messages, partitions, mock_lag }) => {
            let who = Free::from_short(contender)
                .filter(|f| *f != Free::Local)
                .ok_or_else(|| anyhow::anyhow!("mock-run: unknown contender `{contender}`"))?;
            return mockrun::run(who, *messages, *partitions, *mock_lag);
        }
        None => {}
    }
    let (contenders, free) = selected(&args.only)?;
    let kafclaw = args.kafclaw.clone().unwrap_or_else(|| {
        let beside = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.join("kafclaw")));
        beside.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("target/release/kafclaw"))
    });
    let everything = contenders.len() == Contender::ALL.len() && free.len() == Free::ALL.len();
    if !contenders.is_empty() || free.contains(&Free::Local) {
        anyhow::ensure!(kafclaw.exists(), "no kafclaw binary at {} (build it with --release)", kafclaw.display());
    }
    let s = stamp();
    let work_dir = std::env::temp_dir().join(format!("kafclaw-bench-{s}"));
    std::fs::create_dir_all(&work_dir)?;
    let tools = Tools {
        kafclaw: kafclaw.clone(),
        quix_venv: args.quix_venv.clone().unwrap_or_else(|| cache_dir().join("quixstreams")),
        work_dir: work_dir.clone(),
    };
    let mut runs: Vec<Vec<Row>> = contenders.iter().map(|_| Vec::new()).collect();
    let mut free_runs: Vec<Vec<FreeRow>> = free.iter().map(|_| Vec::new()).collect();
    let mut bytes = 0;
    for round in 0..args.rounds.max(1) {
        for (i, &who) in contenders.iter().enumerate() {
            let (row, filled) = run_one(&args, &tools, who, &format!("{s}-{round}"))?;
            bytes = filled;
            runs[i].push(row);
        }
        for (i, &who) in free.iter().enumerate() {
            free_runs[i].push(free::run(who, &tools, args.messages, args.partitions, args.mock_lag)?);
        }
    }
    if bytes == 0 {
        bytes = envelope_bytes(args.messages)?;
    }
    let rows: Vec<Row> = runs.into_iter().filter_map(median).collect();
    let free_rows: Vec<FreeRow> = free_runs.into_iter().filter_map(free::median).collect();
    let idle = if contenders.is_empty() { None } else { Some(idle_rss(&args, &tools, &s)?) };
    let binary_mb = std::fs::metadata(&kafclaw).map(|m| m.len() as f64 / (1024.0 * 1024.0)).ok();
    let _ = std::fs::remove_dir_all(&work_dir);

    let summary = report::Summary {
        messages: args.messages,
        bytes,
        partitions: args.partitions,
        latency_messages: args.latency_messages,
        latency_rate: args.latency_rate,
        rounds: args.rounds.max(1),
        broker: &args.broker_name,
        idle_rss_mb: idle,
        binary_mb,
        mock_lag: args.mock_lag,
    };
    let report = match &args.report {
        Some(r) => r.clone(),
        None if everything => PathBuf::from("docs/benchmarks.md"),
        None => {
            println!("{}", report::section(&summary, &rows, &free_rows, "benchmarks-e2e.svg"));
            eprintln!("a subset ran: docs/benchmarks.md is left alone (--report writes one)");
            return Ok(());
        }
    };
    let chart = report.with_file_name("benchmarks-e2e.svg");
    std::fs::write(&chart, report::chart(&summary, &rows, &free_rows))?;
    let chart_name = chart.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let section = report::section(&summary, &rows, &free_rows, chart_name);
    println!("{section}");
    kafclaw_bench::write_report_section(&report, "e2e", "End to end (`bench/src/bin/e2e`)", &section)?;
    Ok(())
}

/// Bytes of `messages` benchmark envelopes (when no broker contender filled a topic).
fn envelope_bytes(messages: usize) -> Result<u64> {
    let e = envelopes::Envelopes::new()?;
    let mut body = Vec::new();
    let mut bytes = 0;
    for i in 0..messages {
        e.write(i, &mut body);
        bytes += body.len() as u64;
    }
    Ok(bytes)
}

/// The median round by throughput, with the spread of all rounds.
fn median(mut rounds: Vec<Row>) -> Option<Row> {
    rounds.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    let spread = (rounds.first()?.secs, rounds.last()?.secs);
    let mut row = rounds.swap_remove(rounds.len() / 2);
    row.spread = spread;
    Some(row)
}

fn run_one(args: &Args, tools: &Tools, who: Contender, s: &str) -> Result<(Row, u64)> {
    let group = format!("bench-{}-{s}", who.short());
    let (input, output) = (format!("{group}-in"), format!("{group}-out"));
    kafka::create_topics(&args.brokers, &[&input, &output], args.partitions)?;
    eprintln!("{}: filling {input} with {} envelopes…", who.name(), args.messages);
    let bytes = kafka::fill(&args.brokers, &input, 0, args.messages, None)?;
    let job =
        Job { brokers: &args.brokers, input: &input, output: &output, group: &group, partitions: args.partitions };

    let broker = procstat::find(&args.broker_process);
    let broker_cpu = || broker.and_then(|pid| procstat::usage(pid).ok()).map(|u| u.cpu_secs);
    let broker_before = broker_cpu();
    let start = Instant::now();
    let mut child = contenders::spawn(who, &job, tools)?;
    let measured = (|| -> Result<Row> {
        let timeout = Duration::from_secs(3600);
        kafka::wait_committed(&args.brokers, &group, &input, args.partitions, args.messages, timeout)?;
        let secs = start.elapsed().as_secs_f64();
        let at_end = procstat::usage(child.id())?;
        let broker_cpu_secs = broker_before.zip(broker_cpu()).map(|(a, b)| b - a);
        eprintln!("{}: {:.1} s, {:.1} CPU s", who.name(), secs, at_end.cpu_secs);

        let kept = (args.messages..args.messages + args.latency_messages).filter(|n| n % 2 == 0).count();
        let (ready, probe) =
            kafka::latency_probe(&args.brokers, &output, args.partitions, kept, Duration::from_secs(600))?;
        ready.recv_timeout(Duration::from_secs(300)).context("latency probe never reached the end of the output")?;
        kafka::fill(&args.brokers, &input, args.messages, args.latency_messages, Some(args.latency_rate))?;
        let lat = probe.join().map_err(|_| anyhow::anyhow!("latency probe panicked"))??;
        let peak = procstat::usage(child.id())?.peak_rss_mb;
        let usage = procstat::Usage { peak_rss_mb: peak, ..at_end };
        let ms = |q| kafka::quantile(&lat, q) as f64 / 1000.0;
        Ok(Row { who, secs, spread: (secs, secs), usage, broker_cpu_secs, p50_ms: ms(0.5), p99_ms: ms(0.99) })
    })();
    let _ = child.kill();
    let _ = child.wait();
    // The test broker keeps topics in memory: give it back before the next contender.
    kafka::delete_topics(&args.brokers, &[&input, &output]);
    Ok((measured?, bytes))
}

/// Resident memory of a kafclaw instance that joined its group and has nothing to do.
fn idle_rss(args: &Args, tools: &Tools, s: &str) -> Result<f64> {
    let group = format!("bench-idle-{s}");
    let (input, output) = (format!("{group}-in"), format!("{group}-out"));
    kafka::create_topics(&args.brokers, &[&input, &output], args.partitions)?;
    let job =
        Job { brokers: &args.brokers, input: &input, output: &output, group: &group, partitions: args.partitions };
    let mut child = contenders::kafclaw(&job, tools, "exactly-once")?.spawn()?;
    std::thread::sleep(Duration::from_secs(15));
    let rss = procstat::usage(child.id()).map(|u| u.rss_mb);
    let _ = child.kill();
    let _ = child.wait();
    kafka::delete_topics(&args.brokers, &[&input, &output]);
    rss
}
