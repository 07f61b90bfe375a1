//! End-to-end throughput, side by side on one broker in one run: N envelopes through
//! kafka source → filter (keeps half) → kafka sink, by
//!   1. a raw rdkafka consume → JSON decode → filter → produce loop (the limit here),
//!   2. kafclaw at-least-once,
//!   3. kafclaw exactly-once.
//!
//! Each reads the same pre-filled 6-partition input topic and is timed from start until its
//! consumer group has committed every input offset. Writes a table into docs/benchmarks.md.
//!
//!   cargo build --release -p kafclaw -p kafclaw-bench
//!   target/release/e2e --kafclaw target/release/kafclaw --messages 200000

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    /// The kafclaw binary (a release build).
    #[arg(long, default_value = "target/release/kafclaw")]
    kafclaw: PathBuf,
    /// Bootstrap servers.
    #[arg(long, env = "KAFCLAW_TEST_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Input envelopes (~1 KB each).
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Markdown file whose `e2e` section is replaced with the results.
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
}

fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

fn stamp() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{}-{n}", std::process::id())
}

fn create_topic(brokers: &str, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for r in rt.block_on(admin.create_topics([&t], &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    Ok(())
}

/// ~1 KB envelopes with distinct ids; `n` alternates so the filter keeps half.
fn fill(brokers: &str, topic: &str, n: usize) -> Result<u64> {
    let template: serde_json::Value = serde_json::from_slice(&kafclaw_bench::envelope_1kb())?;
    let p: BaseProducer = config(brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("enable.idempotence", "true")
        .create()?;
    let mut bytes = 0;
    for i in 0..n {
        let mut v = template.clone();
        v["id"] = format!("{i:032x}").into();
        v["correlation_id"] = format!("c-{i}").into();
        v["payload"]["n"] = i.into();
        let body = serde_json::to_vec(&v)?;
        bytes += body.len() as u64;
        let key = format!("c-{i}");
        kafclaw_bench::send_blocking(&p, BaseRecord::to(topic).key(key.as_bytes()).payload(&body));
    }
    p.flush(Duration::from_secs(120))?;
    Ok(bytes)
}

fn committed_sum(brokers: &str, group: &str, topic: &str, partitions: i32) -> Result<i64> {
    let c: BaseConsumer = config(brokers).set("group.id", group).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum())
}

fn wait_committed(brokers: &str, group: &str, topic: &str, partitions: i32, n: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while committed_sum(brokers, group, topic, partitions)? < n as i64 {
        if Instant::now() > deadline {
            bail!("{group}: not every input committed after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The baseline: consume, decode, filter, produce; commit offsets after a flush (at-least-once).
fn raw_loop(brokers: &str, input: &str, output: &str, group: &str, n: usize) -> Result<()> {
    let c: BaseConsumer = config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()?;
    let p: BaseProducer = config(brokers).set("linger.ms", "5").set("enable.idempotence", "true").create()?;
    c.subscribe(&[input])?;
    let mut seen = 0;
    let mut last_commit = Instant::now();
    while seen < n {
        let Some(m) = c.poll(Duration::from_millis(100)) else { continue };
        let m = m?;
        seen += 1;
        let body = m.payload().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(body)?;
        if v["payload"]["n"].as_i64().unwrap_or(1) % 2 == 0 {
            let mut rec = BaseRecord::to(output).payload(body);
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            kafclaw_bench::send_blocking(&p, rec);
        }
        c.store_offset(m.topic(), m.partition(), m.offset())?;
        if last_commit.elapsed() > Duration::from_millis(100) {
            p.flush(Duration::from_secs(30))?;
            c.commit_consumer_state(CommitMode::Sync)?;
            last_commit = Instant::now();
        }
    }
    p.flush(Duration::from_secs(30))?;
    c.commit_consumer_state(CommitMode::Sync)?;
    Ok(())
}

fn kafclaw(args: &Args, dir: &std::path::Path, app: &str, input: &str, output: &str, guarantee: &str) -> Result<Child> {
    let topo = dir.join(format!("{app}.toml"));
    std::fs::write(
        &topo,
        format!(
            r#"[topology]
name = "{app}"
guarantee = "{guarantee}"
partitions = {p}

[sources.in]
type = "kafka"
topic = "{input}"

[operators.even]
type = "filter"
inputs = ["in"]
where = 'payload.n % 2 == 0'

[sinks.out]
type = "kafka"
inputs = ["even"]
topic = "{output}"
"#,
            p = args.partitions
        ),
    )?;
    Command::new(&args.kafclaw)
        .args(["run", topo.to_str().unwrap_or_default(), "--instance-id", "bench", "--brokers", &args.brokers])
        .env("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.kafclaw.display()))
}

struct Row {
    name: &'static str,
    secs: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let s = stamp();
    let input = format!("bench-in-{s}");
    create_topic(&args.brokers, &input, args.partitions)?;
    eprintln!("filling {input} with {} envelopes…", args.messages);
    let bytes = fill(&args.brokers, &input, args.messages)?;
    let dir = std::env::temp_dir().join(format!("kafclaw-bench-{s}"));
    std::fs::create_dir_all(&dir)?;
    let timeout = Duration::from_secs(1800);
    let mut rows = Vec::new();

    let group = format!("bench-raw-{s}");
    let start = Instant::now();
    raw_loop(&args.brokers, &input, &format!("bench-raw-out-{s}"), &group, args.messages)?;
    wait_committed(&args.brokers, &group, &input, args.partitions, args.messages, timeout)?;
    rows.push(Row { name: "raw rdkafka loop (at-least-once)", secs: start.elapsed().as_secs_f64() });
    eprintln!("raw loop: {:.1}s", rows[0].secs);

    for (name, guarantee) in [("kafclaw at-least-once", "at-least-once"), ("kafclaw exactly-once", "exactly-once")] {
        let app = format!("bench-{guarantee}-{s}");
        let start = Instant::now();
        let mut child = kafclaw(&args, &dir, &app, &input, &format!("{app}-out"), guarantee)?;
        let r = wait_committed(&args.brokers, &app, &input, args.partitions, args.messages, timeout);
        let secs = start.elapsed().as_secs_f64();
        let _ = child.kill();
        let _ = child.wait();
        r?;
        eprintln!("{name}: {secs:.1}s");
        rows.push(Row { name, secs });
    }

    let n = args.messages as f64;
    let mb = bytes as f64 / (1024.0 * 1024.0);
    let raw = n / rows[0].secs;
    let mut table = format!(
        "{} envelopes of ~{} bytes, {} partitions, filter keeps half; one instance each, same broker (Tansu, in memory), same run. Time = start until the group has committed every input offset (includes group join and, for kafclaw, process start).\n\n| contender | msgs/s | MB/s in | × raw loop |\n|---|---|---|---|\n",
        args.messages,
        bytes / args.messages.max(1) as u64,
        args.partitions
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {:.0} | {:.1} | {:.2} |\n",
            r.name,
            n / r.secs,
            mb / r.secs,
            (n / r.secs) / raw
        ));
    }
    let eos_vs_alo = rows[1].secs / rows[2].secs;
    table.push_str(&format!("\nexactly-once ÷ at-least-once: {eos_vs_alo:.2}\n"));
    println!("{table}");

    kafclaw_bench::write_report_section(&args.report, "e2e", "End to end (`bench/src/bin/e2e.rs`)", &table)?;
    Ok(())
}
