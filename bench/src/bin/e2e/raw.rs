//! The limit: a plain rdkafka consume → JSON decode → filter → produce loop, at-least-once
//! (offsets committed every 100 ms after the producer has flushed). Runs until killed, or in
//! the mock-cluster run until told to stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::kafka::config;

pub fn run(brokers: &str, input: &str, output: &str, group: &str) -> Result<()> {
    run_until(brokers, input, output, group, ("6000", "500"), &AtomicBool::new(false), &[AtomicU64::new(0)])
}

/// The loop, until `stop` is set (then it flushes and commits); counts the records of partition
/// `p` in `consumed[p % consumed.len()]` (`consumed` must not be empty).
/// The group's session timeout and heartbeat interval are given (shorter on the mock cluster).
pub fn run_until(
    brokers: &str,
    input: &str,
    output: &str,
    group: &str,
    (session_timeout_ms, heartbeat_ms): (&str, &str),
    stop: &AtomicBool,
    consumed: &[AtomicU64],
) -> Result<()> {
    let c: BaseConsumer = config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_timeout_ms)
        .set("heartbeat.interval.ms", heartbeat_ms)
        .set("fetch.wait.max.ms", crate::contenders::FETCH_WAIT_MAX_MS)
        .create()?;
    let p: BaseProducer = config(brokers).set("linger.ms", "5").set("enable.idempotence", "true").create()?;
    c.subscribe(&[input])?;
    let mut last_commit = Instant::now();
    let mut stored = false;
    while !stop.load(Ordering::Relaxed) {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
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
            consumed[m.partition() as usize % consumed.len()].fetch_add(1, Ordering::Relaxed);
            stored = true;
        }
        if stored && last_commit.elapsed() > Duration::from_millis(100) {
            p.flush(Duration::from_secs(30))?;
            c.commit_consumer_state(CommitMode::Sync)?;
            last_commit = Instant::now();
            stored = false;
        }
    }
    p.flush(Duration::from_secs(30))?;
    if stored {
        c.commit_consumer_state(CommitMode::Sync)?;
    }
    Ok(())
}
