//! `e2e mock-run <contender>`: one broker-free run in a process of its own (the harness starts
//! it). It starts librdkafka's mock cluster in this process, runs the contender against it
//! in-process and prints what it measured as one JSON line (`mock-result: {…}`).
//!
//! The mock cluster keeps at most 5 MB per partition, so the input cannot be preloaded: a
//! feeder thread of the harness writes it round-robin over the partitions while the contender
//! reads, never more than `per_partition(lag, partitions)` envelopes of a partition ahead of
//! what the contender consumed of it (so nothing unread is dropped, however unevenly the
//! partitions are read, as when a rebalance moves them). The bound counts records, not
//! offsets: records read again after a rewind (a lost partition or an abort; a rebalance
//! commits first) count twice for the rest of the run, and the backlog may pass the bound by
//! as many. An input the mock dropped for it fails the run: the output's count is checked at
//! the end, and a feeder whose partition's consumption stops for 60 s fails at once. The
//! feeder writes round-robin, so one partition nobody reads (during a rebalance) holds back
//! every partition's input.
//!
//! CPU is split by thread: the mock cluster's (`rdk:mock`), the harness's (the feeder and its
//! producer: threads that existed before the contender started) and the rest, the contender's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::contenders::Job;
use crate::envelopes::{self, Envelopes};
use crate::free::Free;
use crate::inprocess::ConsumedFrom;
use crate::kafka::config;
use crate::mockcluster::{self, MockCluster};
use crate::procstat;

pub fn run(who: Free, messages: usize, partitions: i32, lag: usize) -> Result<()> {
    let mock = MockCluster::new()?;
    let brokers = mock.bootstrap().to_owned();
    let group = format!("mock-{}", who.short());
    let (input, output) = (format!("{group}-in"), format!("{group}-out"));
    mock.create_topic(&input, partitions)?;
    mock.create_topic(&output, partitions)?;
    let dir = tempfile::tempdir()?;
    let compiled = match who {
        Free::MockRaw => None,
        _ => {
            let c = crate::inprocess::compile(dir.path(), &group, &input, &output, partitions)?;
            mock.create_topic(&kafclaw_engine::kafka::topics::dead_letter_topic(&c.plan), partitions)?;
            Some(c)
        }
    };

    // The feeder: a full backlog of every partition now, the rest as the contender reads.
    let mut feeder = Feeder::new(&brokers, &input, partitions)?;
    let per_partition = per_partition(lag, partitions);
    let preload = (per_partition * partitions as usize).min(messages);
    for i in 0..preload {
        feeder.send(i);
    }
    feeder.producer.flush(Duration::from_secs(60))?;
    let checker: BaseConsumer = config(&brokers).set("group.id", &group).create()?;

    let go = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let consumed_slot: Arc<OnceLock<ConsumedFrom>> = Arc::default();
    let feed = {
        let (go, done, consumed_slot) = (go.clone(), done.clone(), consumed_slot.clone());
        std::thread::Builder::new().name("feeder".into()).spawn(move || -> Result<()> {
            while !go.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let consumed = consumed_slot.get().context("no progress counter")?.clone();
            // Each partition's consumption as last read: read again only when its backlog looks
            // full (a read takes a lock and allocates, and this runs once per envelope).
            let mut known = vec![0u64; partitions as usize];
            for i in preload..messages {
                // Envelope `i` is the `i / partitions`-th of its partition (0-based).
                let (p, nth) = (i % partitions as usize, i / partitions as usize);
                if nth >= known[p] as usize + per_partition {
                    known[p] = consumed(p as i32);
                    let mut since = Instant::now();
                    while nth >= known[p] as usize + per_partition {
                        if done.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        feeder.producer.poll(Duration::ZERO);
                        std::thread::sleep(Duration::from_micros(500));
                        let now = consumed(p as i32);
                        if now != known[p] {
                            (known[p], since) = (now, Instant::now());
                        } else if since.elapsed() > STALLED {
                            bail!(
                                "partition {p}: nothing consumed for {} s while its backlog is full \
                                 (input dropped by the mock cluster?)",
                                STALLED.as_secs()
                            );
                        }
                    }
                }
                feeder.send(i);
            }
            feeder.producer.flush(Duration::from_secs(60))?;
            // Stays (with its producer's threads) until the CPU is counted.
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })?
    };

    let before: HashMap<u32, procstat::Thread> = procstat::threads().into_iter().map(|t| (t.tid, t)).collect();
    let process_before = procstat::self_cpu_secs();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let contender = {
        let job = Job { brokers: &brokers, input: &input, output: &output, group: &group, partitions };
        crate::inprocess::start(who, compiled, &job, &stop, dir.path())?
    };
    let _ = consumed_slot.set(contender.consumed_from.clone());
    go.store(true, Ordering::Release);

    let deadline = start + Duration::from_secs(1800);
    let (mut first, mut tenth, mut ninth) = (None, None, None);
    let mut last_check = Instant::now() - Duration::from_secs(1);
    loop {
        let consumed = (contender.consumed)();
        if first.is_none() && consumed > 0 {
            first = Some(start.elapsed().as_secs_f64());
        }
        // The steady part: from 10 % to 90 % of the input consumed.
        if tenth.is_none() && consumed * 10 >= messages as u64 {
            tenth = Some(start.elapsed().as_secs_f64());
        }
        if ninth.is_none() && consumed * 10 >= 9 * messages as u64 {
            ninth = Some(start.elapsed().as_secs_f64());
        }
        if last_check.elapsed() >= Duration::from_millis(20) {
            last_check = Instant::now();
            if committed_sum(&checker, &input, partitions)? >= messages as i64 {
                break;
            }
        }
        if Instant::now() > deadline || contender.finished() || feed.is_finished() {
            let consumed = (contender.consumed)();
            stop.store(true, Ordering::Release);
            done.store(true, Ordering::Release);
            contender.join()?;
            feed.join().map_err(|_| anyhow::anyhow!("feeder panicked"))??;
            bail!("{}: not every input committed ({consumed} consumed)", who.name());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = start.elapsed().as_secs_f64();
    let process = procstat::self_cpu_secs() - process_before;
    let after = procstat::threads();
    let delta = |t: &procstat::Thread| t.cpu_secs - before.get(&t.tid).map_or(0.0, |b| b.cpu_secs);
    let mock_cpu: f64 = after.iter().filter(|t| t.name == mockcluster::THREAD).map(delta).sum();
    let harness: f64 =
        after.iter().filter(|t| t.name != mockcluster::THREAD && before.contains_key(&t.tid)).map(delta).sum();
    let contender_rdk: f64 =
        after.iter().filter(|t| t.name.starts_with("rdk:") && !before.contains_key(&t.tid)).map(delta).sum();
    let peak_rss_mb = procstat::usage(std::process::id())?.peak_rss_mb;
    // CPU by thread name, harness threads marked, to stderr.
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    for t in &after {
        let mark = if before.contains_key(&t.tid) { "harness " } else { "" };
        *by_name.entry(format!("{mark}{}", t.name)).or_default() += delta(t);
    }
    let by_name: Vec<String> = by_name.iter().filter(|(_, c)| **c > 0.0).map(|(n, c)| format!("{n} {c:.2}")).collect();
    eprintln!("{}: CPU s by thread: {}", who.short(), by_name.join(", "));

    stop.store(true, Ordering::Release);
    done.store(true, Ordering::Release);
    contender.join()?;
    feed.join().map_err(|_| anyhow::anyhow!("feeder panicked"))??;
    let kept = (0..messages).filter(|n| n % 2 == 0).count() as i64;
    let written = high_watermarks(&checker, &output, partitions)?;
    if written < kept {
        bail!(
            "{}: {written} envelopes in the output, {kept} expected (input dropped by the mock cluster?)",
            who.name()
        );
    }
    let result = serde_json::json!({
        "secs": secs,
        "first_secs": first,
        "steady_secs": tenth.zip(ninth).map(|(a, b)| b - a).filter(|d| *d > 0.0),
        "process_cpu": process,
        "mock_cpu": mock_cpu,
        "harness_cpu": harness,
        "contender_cpu": process - mock_cpu - harness,
        "contender_rdk_cpu": contender_rdk,
        "peak_rss_mb": peak_rss_mb,
        "written": written,
    });
    println!("mock-result: {result}");
    Ok(())
}

/// The most envelopes of one partition the mock cluster keeps unread: it keeps 5 MiB per
/// partition (librdkafka 2.12 `rdkafka_mock.c`, `max_size`) and drops whole batches from the
/// head, so the backlog plus one partly read 1 MB batch must fit: (5 MiB − 1 MB) ÷ ~1,080
/// bytes a record ≈ 3,900. (At 4,500, two instances on two partitions lost input in 4 runs
/// of 9.)
const MOCK_PARTITION_ENVELOPES: usize = 3_800;

/// How long the feeder waits on a partition whose backlog is full and whose consumption does
/// not move before it fails the run.
const STALLED: Duration = Duration::from_secs(60);

/// The backlog the feeder allows each partition: `lag` over the partitions, at most what the
/// mock cluster keeps of one (`MOCK_PARTITION_ENVELOPES`), at least 1.
pub fn per_partition(lag: usize, partitions: i32) -> usize {
    (lag / partitions.max(1) as usize).clamp(1, MOCK_PARTITION_ENVELOPES)
}

/// Writes envelope `i` to partition `i mod partitions` of the input.
struct Feeder {
    producer: BaseProducer,
    envelopes: Envelopes,
    body: Vec<u8>,
    topic: String,
    partitions: i32,
}

impl Feeder {
    /// The mock cluster answers a fetch with one produce batch per partition (librdkafka 2.12
    /// `rdkafka_mock_handlers.c`, Fetch: "FIXME: Multiple messageSets ?"), so the feeder's
    /// batch size bounds what a consumer reads per round trip: with 5 ms batches every
    /// contender waited on its fetches (about 90 k envelopes/s, one stream thread 75 % busy,
    /// two threads no faster). Batches of up to 1 MB (linger 20 ms) lift that bound; the
    /// backlog per partition (`per_partition`) keeps them within the mock's 5 MB per partition.
    fn new(brokers: &str, topic: &str, partitions: i32) -> Result<Self> {
        let producer = config(brokers).set("linger.ms", "20").set("batch.size", "1000000").create()?;
        Ok(Self { producer, envelopes: Envelopes::new()?, body: Vec::new(), topic: topic.to_owned(), partitions })
    }

    fn send(&mut self, i: usize) {
        self.envelopes.write(i, &mut self.body);
        let key = envelopes::key(i);
        let partition = (i % self.partitions as usize) as i32;
        let rec = BaseRecord::to(&self.topic).partition(partition).key(key.as_bytes()).payload(&self.body[..]);
        kafclaw_bench::send_blocking(&self.producer, rec);
    }
}

fn committed_sum(c: &BaseConsumer, topic: &str, partitions: i32) -> Result<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum())
}

fn high_watermarks(c: &BaseConsumer, topic: &str, partitions: i32) -> Result<i64> {
    let mut sum = 0;
    for p in 0..partitions {
        sum += c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_partition_gets_its_share_within_the_mocks_retention() {
        assert_eq!(per_partition(22_800, 6), 3_800);
        assert_eq!(per_partition(12_000, 6), 2_000);
        assert_eq!(per_partition(1_000_000, 2), MOCK_PARTITION_ENVELOPES, "capped");
        assert_eq!(per_partition(1, 6), 1, "at least one");
    }
}
