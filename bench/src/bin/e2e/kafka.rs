//! The harness's own Kafka work: topics, the input backlog, committed offsets and the
//! latency probe (paced envelopes in, their filtered copies read back).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

pub fn create_topics(brokers: &str, names: &[&str], partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let topics: Vec<_> = names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    for r in rt.block_on(admin.create_topics(&topics, &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    Ok(())
}

/// Deletes topics, best effort (a failure is reported, not fatal).
pub fn delete_topics(brokers: &str, names: &[&str]) {
    let run = || -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        for r in rt.block_on(admin.delete_topics(names, &AdminOptions::new()))? {
            r.map_err(|(t, e)| anyhow::anyhow!("delete {t}: {e}"))?;
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("warning: {e}");
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Writes envelopes `first..first + n` (distinct ids; odd `payload.n` is filtered out), each
/// sent `rate` per second when given (stamped with `payload.sent_us`), else as fast as the
/// producer takes them. Returns the bytes written.
pub fn fill(brokers: &str, topic: &str, first: usize, n: usize, rate: Option<u32>) -> Result<u64> {
    let template: serde_json::Value = serde_json::from_slice(&kafclaw_bench::envelope_1kb())?;
    let linger = if rate.is_some() { "0" } else { "20" };
    let p: BaseProducer = config(brokers)
        .set("linger.ms", linger)
        .set("batch.size", "1000000")
        .set("enable.idempotence", "true")
        .create()?;
    let start = Instant::now();
    let mut bytes = 0;
    for i in first..first + n {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64((i - first) as f64 / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                p.poll(wait);
            }
        }
        let mut v = template.clone();
        v["id"] = format!("{i:032x}").into();
        v["correlation_id"] = format!("c-{i}").into();
        v["payload"]["n"] = i.into();
        if rate.is_some() {
            v["payload"]["sent_us"] = now_us().into();
        }
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

/// Waits until `group` has committed `n` offsets of `topic` in all.
pub fn wait_committed(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while committed_sum(brokers, group, topic, partitions)? < n as i64 {
        if Instant::now() > deadline {
            bail!("{group}: not every input committed after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The probe's thread; joins to the sorted latencies.
pub type Probe = std::thread::JoinHandle<Result<Vec<i64>>>;

/// Reads a contender's output on a thread of its own (read_committed, so an exactly-once
/// contender's latency includes its commit): first to the end of every partition, then it
/// says it is ready and records the latency (µs, receive time − `payload.sent_us`) of each
/// envelope stamped by a paced [`fill`], until `expected` arrived. Returns them sorted.
pub fn latency_probe(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Result<(std::sync::mpsc::Receiver<()>, Probe)> {
    let consumer: BaseConsumer = config(brokers)
        .set("group.id", format!("probe-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "5")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        let mut at_end = std::collections::HashSet::new();
        let mut ready_tx = Some(ready_tx);
        let mut lat = Vec::with_capacity(expected);
        while lat.len() < expected {
            if Instant::now() > deadline {
                bail!("latency probe: {} of {expected} envelopes after {timeout:?}", lat.len());
            }
            let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
            let m = match m {
                Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p);
                    if at_end.len() == partitions as usize {
                        ready_tx.take().map(|tx| tx.send(()));
                    }
                    continue;
                }
                m => m?,
            };
            let got = now_us();
            let body = m.payload().unwrap_or_default();
            if ready_tx.is_some() || !body.windows(9).any(|w| w == b"\"sent_us\"") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(body)?;
            if let Some(sent) = v["payload"]["sent_us"].as_i64() {
                lat.push(got - sent);
            }
        }
        lat.sort_unstable();
        Ok(lat)
    });
    Ok((ready, handle))
}

/// The `q`-quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn now_ms() -> i64 {
    now_us() / 1000
}
