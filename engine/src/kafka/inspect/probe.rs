//! The broker's features, measured on a probe topic of the probe's own (created compacted,
//! one partition, deleted at the end) with the runtime's producer and consumer settings:
//!
//! 1. a transactional producer (the runtime's `transactional.id` scheme, a unique id) commits
//!    one record and the offset 1 of a probe group on the topic (`send_offsets_to_transaction`,
//!    as the runtime commits), then aborts a transaction holding one record;
//! 2. an idempotent producer writes a marker after both;
//! 3. a fresh `read_committed` consumer reads the partition to the marker: the aborted
//!    record must not be among what it read;
//! 4. the probe group's committed offset is read back (it must be 1);
//! 5. DescribeConfigs on the topic must report `cleanup.policy = compact`;
//! 6. a consumer joins a fresh group with the classic protocol (the one the runtime uses),
//!    another with the KIP-848 consumer protocol (`group.protocol = consumer`).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{CALL_TIMEOUT, Capture, ClientSettings, block_on, unique_name};

/// What the probe measured; every field is the outcome of one step, an `Err` carrying
/// librdkafka's error and reasons.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The probe topic.
    pub topic: String,
    /// Creating it (compacted, one partition).
    pub create: Result<(), String>,
    /// A transaction committed (with the probe group's offset) and one aborted.
    pub transactions: Result<(), String>,
    /// The idempotent producer's record acknowledged.
    pub idempotence: Result<(), String>,
    /// Whether the aborted record was visible to the `read_committed` reader.
    pub aborted_visible: Result<bool, String>,
    /// The probe group's committed offset read back (`None`: none shows).
    pub committed_offset: Result<Option<i64>, String>,
    /// The topic's `cleanup.policy` as DescribeConfigs reports it.
    pub cleanup_policy: Result<Option<String>, String>,
    /// How long a classic-protocol consumer took to get its assignment.
    pub classic_group: Result<Duration, String>,
    /// How long a KIP-848 (`group.protocol = consumer`) consumer took to get its assignment.
    pub consumer_protocol: Result<Duration, String>,
    /// Deleting the probe topic.
    pub cleanup: Result<(), String>,
}

const COMMITTED: &[u8] = b"kafclaw-doctor:committed";
const ABORTED: &[u8] = b"kafclaw-doctor:aborted";
const MARKER: &[u8] = b"kafclaw-doctor:marker";

/// Runs the probe (module docs). `join_timeout` bounds each group join (a broker with slow
/// rebalances needs a few seconds).
pub fn run(settings: &ClientSettings, join_timeout: Duration) -> Probe {
    let topic = unique_name("kafclaw-doctor-probe");
    let group = unique_name("kafclaw-doctor-probe");
    fn not_run<T>() -> Result<T, String> {
        Err("not measured: the probe topic could not be created".to_owned())
    }
    let mut p = Probe {
        topic: topic.clone(),
        create: create_topic(settings, &topic),
        transactions: not_run(),
        idempotence: not_run(),
        aborted_visible: not_run(),
        committed_offset: not_run(),
        cleanup_policy: not_run(),
        classic_group: not_run(),
        consumer_protocol: not_run(),
        cleanup: Ok(()),
    };
    if p.create.is_err() {
        return p;
    }
    p.transactions = transactions(settings, &topic, &group);
    p.idempotence = produce_marker(settings, &topic);
    p.aborted_visible = match (&p.transactions, &p.idempotence) {
        (Ok(()), Ok(())) => read_committed(settings, &topic),
        _ => Err("not measured: the probe's transactions or marker failed".to_owned()),
    };
    p.committed_offset = match &p.transactions {
        Ok(()) => committed_offset(settings, &topic, &group),
        Err(_) => Err("not measured: the probe's transaction failed".to_owned()),
    };
    p.cleanup_policy = super::cluster::cleanup_policies(settings, &[&topic])
        .map_err(|e| e.to_string())
        .and_then(|mut v| v.pop().unwrap_or(Ok(None)));
    p.classic_group = join(settings, &topic, &[], join_timeout);
    // `debug = cgrp`: librdkafka says that the broker lacks ConsumerGroupHeartbeat only there
    // (and retries for ever).
    p.consumer_protocol = join(settings, &topic, &[("group.protocol", "consumer"), ("debug", "cgrp")], join_timeout);
    p.cleanup = delete_topic(settings, &topic);
    p
}

/// `e` with librdkafka's reasons appended.
fn with_reasons(e: impl std::fmt::Display, capture: &Capture) -> String {
    let reasons = capture.reasons();
    if reasons.is_empty() { e.to_string() } else { format!("{e} ({})", reasons.join("; ")) }
}

fn create_topic(settings: &ClientSettings, topic: &str) -> Result<(), String> {
    let capture = Capture::default();
    let admin: AdminClient<Capture> =
        settings.client_config(&[]).create_with_context(capture.clone()).map_err(|e| e.to_string())?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
    let results = block_on(admin.create_topics([&new], &opts)).map_err(|e| e.to_string())?;
    match results.map_err(|e| with_reasons(e, &capture))?.pop() {
        Some(Err((_, code))) => Err(with_reasons(code, &capture)),
        _ => Ok(()),
    }
}

fn delete_topic(settings: &ClientSettings, topic: &str) -> Result<(), String> {
    let admin: AdminClient<Capture> =
        settings.client_config(&[]).create_with_context(Capture::default()).map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
    match block_on(admin.delete_topics(&[topic], &opts)).map_err(|e| e.to_string())? {
        Ok(mut r) => match r.pop() {
            Some(Err((_, code))) => Err(code.to_string()),
            _ => Ok(()),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// A producer with the runtime's producer settings (`partitioner`, `linger.ms` defaults;
/// idempotence forced), transactional when `txn_id` is given.
fn producer(
    settings: &ClientSettings,
    txn_id: Option<&str>,
    capture: &Capture,
) -> Result<BaseProducer<Capture>, String> {
    let mut forced = vec![("enable.idempotence", "true"), ("client.id", "kafclaw-doctor")];
    if let Some(id) = txn_id {
        forced.push(("transactional.id", id));
    }
    settings
        .client_config_with(&[("partitioner", "murmur2_random"), ("linger.ms", "5")], &forced)
        .create_with_context(capture.clone())
        .map_err(|e| e.to_string())
}

fn send(p: &BaseProducer<Capture>, topic: &str, value: &[u8]) -> Result<(), String> {
    p.send(BaseRecord::<[u8], [u8]>::to(topic).key(b"probe".as_slice()).payload(value).partition(0))
        .map_err(|(e, _)| e.to_string())
}

fn transactions(settings: &ClientSettings, topic: &str, group: &str) -> Result<(), String> {
    let capture = Capture::default();
    let id = unique_name("kafclaw-doctor");
    let p = producer(settings, Some(&id), &capture)?;
    let step = |what: &str, r: Result<(), rdkafka::error::KafkaError>| {
        r.map_err(|e| with_reasons(format!("{what}: {e}"), &capture))
    };
    step("init_transactions", p.init_transactions(CALL_TIMEOUT))?;
    step("begin_transaction", p.begin_transaction())?;
    send(&p, topic, COMMITTED)?;
    let consumer: BaseConsumer = settings
        .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer.group_metadata().ok_or("no consumer group metadata")?;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(topic, 0, Offset::Offset(1)).map_err(|e| e.to_string())?;
    step("send_offsets_to_transaction", p.send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT))?;
    step("commit_transaction", p.commit_transaction(CALL_TIMEOUT))?;
    step("begin_transaction", p.begin_transaction())?;
    send(&p, topic, ABORTED)?;
    step("flush", p.flush(CALL_TIMEOUT))?;
    step("abort_transaction", p.abort_transaction(CALL_TIMEOUT))?;
    Ok(())
}

fn produce_marker(settings: &ClientSettings, topic: &str) -> Result<(), String> {
    let capture = Capture::default();
    let p = producer(settings, None, &capture)?;
    send(&p, topic, MARKER)?;
    p.flush(CALL_TIMEOUT).map_err(|e| with_reasons(e, &capture))?;
    match capture.delivered() {
        1 => Ok(()),
        _ => Err(with_reasons("the record was not acknowledged", &capture)),
    }
}

/// Reads the partition from the start with `isolation.level = read_committed` until the
/// marker: whether the aborted record was among the records read.
fn read_committed(settings: &ClientSettings, topic: &str) -> Result<bool, String> {
    let capture = Capture::default();
    let group = unique_name("kafclaw-doctor-reader");
    let consumer: BaseConsumer<Capture> = settings
        .client_config(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(capture.clone())
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CALL_TIMEOUT * 2;
    let (mut committed, mut aborted) = (false, false);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => match m.payload() {
                Some(COMMITTED) => committed = true,
                Some(ABORTED) => aborted = true,
                Some(MARKER) if committed => return Ok(aborted),
                Some(MARKER) => return Err("the committed record was not visible to a read_committed reader".into()),
                _ => {}
            },
            Some(Err(e)) => return Err(with_reasons(e, &capture)),
            None => {}
        }
    }
    Err(with_reasons("the marker did not show within 20 s", &capture))
}

fn committed_offset(settings: &ClientSettings, topic: &str, group: &str) -> Result<Option<i64>, String> {
    let consumer: BaseConsumer = settings.client_config(&[("group.id", group)]).create().map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = consumer.committed_offsets(tpl, CALL_TIMEOUT).map_err(|e| e.to_string())?;
    Ok(got.elements().first().and_then(|e| match e.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }))
}

/// Joins a fresh group on `topic` with the runtime's consumer defaults and `extra` forced
/// properties; how long until the assignment arrived.
fn join(settings: &ClientSettings, topic: &str, extra: &[(&str, &str)], timeout: Duration) -> Result<Duration, String> {
    let capture = Capture::default();
    let group = unique_name("kafclaw-doctor-join");
    let mut forced = vec![("group.id", group.as_str()), ("enable.auto.commit", "false")];
    forced.extend_from_slice(extra);
    // The consumer protocol assigns on the broker: no client-side strategy then.
    let defaults: &[(&str, &str)] = if extra.is_empty() {
        &[("auto.offset.reset", "earliest"), ("partition.assignment.strategy", "cooperative-sticky")]
    } else {
        &[("auto.offset.reset", "earliest")]
    };
    let mut config = settings.client_config_with(defaults, &forced);
    if !extra.is_empty() {
        for key in ["partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"] {
            config.remove(key);
        }
        // The debug lines reach the context only at this level.
        config.set_log_level(RDKafkaLogLevel::Debug);
    }
    let consumer: BaseConsumer<Capture> = config.create_with_context(capture.clone()).map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            return Err(with_reasons(e, &capture));
        }
        if consumer.assignment().is_ok_and(|a| a.count() > 0) {
            let took = start.elapsed();
            consumer.unsubscribe();
            return Ok(took);
        }
        if let Some(r) = capture.reasons().into_iter().find(|r| r.contains("not supported by broker")) {
            return Err(r.rsplit(": ").next().unwrap_or(&r).to_owned());
        }
    }
    Err(with_reasons(format!("no assignment within {} s", timeout.as_secs()), &capture))
}
