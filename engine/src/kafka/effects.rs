//! The effect log of `at-most-once` and `reconcile` tools on Kafka (docs/effects.md): the
//! compacted topic `<topology>.effects`, keyed by idempotency key.
//!
//! - **Writes** go through a transactional producer of their own
//!   (`transactional.id = <topology>-<instance id>-effects`, fencing the previous incarnation
//!   of the instance), each batch of records in a small transaction committed *before* the
//!   append resolves: an intent is durable before its call is made, whatever happens to the
//!   instance's own (output) transaction. One writer thread batches what is waiting.
//! - **Lookups** see everything any instance made durable before them: one reader thread
//!   reads the topic from its beginning (`read_committed`) into a map, and a lookup first
//!   commits a *barrier* record (unique id) to every partition and waits until the reader has
//!   read all of them. High watermarks are not trusted (some brokers report them wrong); a
//!   barrier committed after the lookup began can only be read after everything before it.
//!
//! A record with an outcome is never replaced by one without (the reader may read an intent
//! after this instance already knows the result).
//!
//! **Bounded** by `[topology] effects_retention` (default 7 days): a record only matters while
//! the input of its step is uncommitted. The topic is created `cleanup.policy=compact,delete`
//! with that `retention.ms` (and a `segment.ms` of a tenth of it, so the broker deletes a
//! record at most 1.1 × the retention after it was written), and the reader forgets a key
//! once the Kafka timestamp of its last record is that old (`evict`, run every minute) —
//! the clock the broker's retention uses, which deletes no earlier: a restart reads back
//! everything the running reader still remembered. A topic made by an earlier version
//! (compacted only) is left as it is, with a warning.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafclaw_agent::tools::effect::{EffectLog, EffectRecord, LogFuture};
use kafclaw_operators::api::record::now_ms;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::inspect::cluster::topic_configs;
use super::producer::{CALL_TIMEOUT, Logged};
use super::settings::ClientSettings;
use super::topics::{ensure_topic_configured, partition_counts};

/// How long a lookup waits for the reader to catch up with its barrier.
const CATCH_UP: Duration = Duration::from_secs(60);
/// Attempts of one batch's transaction before its appends fail.
const ATTEMPTS: u32 = 3;
/// Most records in one transaction.
const BATCH: usize = 256;
/// How often the reader forgets what is older than the retention.
const SWEEP: Duration = Duration::from_secs(60);

/// The effects topic of a topology.
pub fn effects_topic(topology: &str) -> String {
    format!("{topology}.effects")
}

/// The record a key stands at, and the Kafka timestamp (ms) of its last record: what the
/// retention is measured from.
#[derive(Debug, Clone, PartialEq)]
struct Known {
    record: EffectRecord,
    timestamp_ms: i64,
}

/// What the reader has read, and the lookups waiting for their barriers.
#[derive(Default)]
struct Seen {
    records: HashMap<String, Known>,
    /// Barrier id → partitions still to read it on, and who waits.
    barriers: HashMap<String, (usize, Option<oneshot::Sender<()>>)>,
}

impl Seen {
    fn merge(&mut self, record: EffectRecord, timestamp_ms: i64) {
        match self.records.get_mut(&record.key) {
            Some(known) => {
                known.timestamp_ms = known.timestamp_ms.max(timestamp_ms);
                if known.record.outcome.is_none() || record.outcome.is_some() {
                    known.record = record;
                }
            }
            None => {
                self.records.insert(record.key.clone(), Known { record, timestamp_ms });
            }
        }
    }
}

/// Whether a record last written at `timestamp_ms` is past `retention_ms` at `now_ms`.
fn expired(timestamp_ms: i64, now_ms: i64, retention_ms: i64) -> bool {
    timestamp_ms.saturating_add(retention_ms) <= now_ms
}

/// Forgets the keys whose last record is past the retention at `now_ms`; returns how many.
fn evict(records: &mut HashMap<String, Known>, now_ms: i64, retention_ms: i64) -> usize {
    let before = records.len();
    records.retain(|_, k| !expired(k.timestamp_ms, now_ms, retention_ms));
    before - records.len()
}

/// The configuration `<topology>.effects` is created with: compacted (one record per key) and
/// deleted past the retention, in segments of a tenth of it (1 minute to 1 day), so a record
/// is gone at most 1.1 × the retention after it was written.
fn topic_config(retention_ms: i64) -> [(&'static str, String); 3] {
    [
        ("cleanup.policy", "compact,delete".to_owned()),
        ("retention.ms", retention_ms.to_string()),
        ("segment.ms", (retention_ms / 10).clamp(60_000, 86_400_000).to_string()),
    ]
}

/// What is wrong with an existing effects topic's `cleanup.policy` and `retention.ms` (as
/// DescribeConfigs reports them) for `retention_ms`, if anything.
fn config_problem(policy: Option<&str>, topic_retention: Option<&str>, retention_ms: i64) -> Option<String> {
    let deletes = policy.is_some_and(|p| p.split(',').any(|v| v.trim_matches(['[', ']', ' ']) == "delete"));
    let kept = topic_retention.and_then(|r| r.trim().parse::<i64>().ok());
    match (deletes, kept) {
        (false, _) => Some(format!(
            "its cleanup.policy is `{}`, without `delete`: the reader forgets records after \
             effects_retention, but every start reads all of them",
            policy.unwrap_or("unknown")
        )),
        (true, Some(ms)) if ms >= 0 && ms < retention_ms => Some(format!(
            "its retention.ms ({ms}) is shorter than effects_retention ({retention_ms} ms): \
             logged calls are protected only {ms} ms"
        )),
        (true, Some(ms)) if ms < 0 || ms > retention_ms.saturating_mul(2) => Some(format!(
            "its retention.ms ({ms}) is far longer than effects_retention ({retention_ms} ms): \
             every start reads records the reader forgets"
        )),
        _ => None,
    }
}

/// Warns when an effects topic made earlier (by an earlier version, or by hand) is not
/// bounded like a new one; the topic is left as it is (its configuration is the operator's).
fn check_existing(settings: &ClientSettings, topic: &str, retention_ms: i64) {
    match topic_configs(settings, topic, &["cleanup.policy", "retention.ms"]) {
        Ok(v) => {
            if let Some(problem) = config_problem(v[0].as_deref(), v[1].as_deref(), retention_ms) {
                let fix = topic_config(retention_ms)
                    .map(|(k, v)| if v.contains(',') { format!("{k}=[{v}]") } else { format!("{k}={v}") })
                    .join(",");
                tracing::warn!(
                    topic,
                    problem,
                    fix =
                        format!("kafka-configs --alter --entity-type topics --entity-name {topic} --add-config {fix}"),
                    "effect log topic not bounded like effects_retention"
                );
            }
        }
        Err(e) => tracing::warn!(topic, error = %e, "effect log: cannot read the topic's configuration"),
    }
}

/// Records to write in one transaction, and who waits for the commit.
struct Write {
    records: Vec<(String, Vec<u8>, Option<i32>)>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The Kafka effect log of one instance.
pub struct KafkaEffectLog {
    topic: String,
    partitions: usize,
    instance: String,
    seen: Arc<Mutex<Seen>>,
    writes: Mutex<Sender<Write>>,
    barriers: AtomicU64,
    /// Ends the reader (the writer ends when `writes` is dropped).
    stop: Arc<AtomicBool>,
}

impl Drop for KafkaEffectLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for KafkaEffectLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEffectLog").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl KafkaEffectLog {
    /// Creates `<topology>.effects` when missing (compacted and deleted past `retention`, one
    /// partition; an existing one is checked, see `check_existing`), initialises the
    /// transactional producer (fencing an earlier incarnation) and starts the writer and
    /// reader threads, which end when the log is dropped — not when the instance is told to
    /// stop: the calls still in flight then are finished first, and log through it.
    ///
    /// Errors: the topic cannot be made or read, the producer cannot be initialised (the
    /// cluster's fault; the instance does not start).
    pub fn start(
        settings: &ClientSettings,
        topology: &str,
        instance: &str,
        replication: i32,
        retention: Duration,
    ) -> Result<Self, String> {
        let topic = effects_topic(topology);
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let config = topic_config(retention_ms);
        let config: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let created = ensure_topic_configured(settings, &topic, 1, replication, &config, CALL_TIMEOUT)
            .map_err(|e| format!("effect log `{topic}`: {e}"))?;
        if !created {
            check_existing(settings, &topic, retention_ms);
        }
        let partitions = partition_counts(settings, &[&topic], CALL_TIMEOUT)
            .map_err(|e| format!("effect log `{topic}`: {e}"))?[0]
            .ok_or_else(|| format!("effect log `{topic}`: the topic was made but is not listed"))?;
        let txn_id = format!("{topology}-{instance}-effects");
        let producer: BaseProducer<Logged> = settings
            .client_config_with(
                &[("linger.ms", "0")],
                &[("enable.idempotence", "true"), ("transactional.id", &txn_id), ("client.id", &txn_id)],
            )
            .create_with_context(Logged("effect log producer"))
            .map_err(|e| format!("effect log producer: {e}"))?;
        producer.init_transactions(CALL_TIMEOUT).map_err(|e| format!("effect log producer `{txn_id}`: {e}"))?;
        let consumer: BaseConsumer<Logged> = settings
            .client_config(&[
                ("group.id", &format!("{topology}-effects-reader")),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
                // A lookup waits for its barrier: the broker answers a fetch at once.
                ("fetch.wait.max.ms", "10"),
            ])
            .create_with_context(Logged("effect log reader"))
            .map_err(|e| format!("effect log reader: {e}"))?;
        let mut assign = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            assign.add_partition_offset(&topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
        }
        consumer.assign(&assign).map_err(|e| format!("effect log reader: {e}"))?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, rx) = channel::<Write>();
        let t = topic.clone();
        std::thread::Builder::new()
            .name("kafclaw-effects-w".into())
            .spawn(move || write_loop(&producer, &t, &rx))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (t, w, s) = (topic.clone(), seen.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafclaw-effects-r".into())
            .spawn(move || read_loop(&consumer, &t, &w, &s, retention_ms))
            .map_err(|e| e.to_string())?;
        tracing::info!(topic, partitions, transactional_id = %txn_id, retention_ms, "effect log started");
        Ok(Self {
            topic,
            partitions,
            instance: instance.to_owned(),
            seen,
            writes: Mutex::new(tx),
            barriers: AtomicU64::new(0),
            stop,
        })
    }

    /// Commits `records` in one transaction (batched with others waiting).
    fn write(&self, records: Vec<(String, Vec<u8>, Option<i32>)>) -> oneshot::Receiver<Result<(), String>> {
        let (done, rx) = oneshot::channel();
        let sent = self.writes.lock().unwrap_or_else(|e| e.into_inner()).send(Write { records, done });
        if let Err(std::sync::mpsc::SendError(w)) = sent {
            let _ = w.done.send(Err("the effect log's writer has stopped".into()));
        }
        rx
    }
}

/// Commits what is waiting, a batch per transaction, until the log is dropped.
fn write_loop(producer: &BaseProducer<Logged>, topic: &str, rx: &Receiver<Write>) {
    let mut broken: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH
            && let Ok(w) = rx.try_recv()
        {
            batch.push(w);
        }
        let result = match &broken {
            Some(why) => Err(why.clone()),
            None => match commit(producer, topic, &batch) {
                Ok(()) => Ok(()),
                Err(Failed::Retried(e)) => Err(e),
                // The producer is unusable (fenced by a newer incarnation): every later
                // append fails too, and no call is made.
                Err(Failed::Fatal(e)) => {
                    broken = Some(e.clone());
                    Err(e)
                }
            },
        };
        for w in batch {
            let _ = w.done.send(result.clone());
        }
    }
}

/// Why a batch was not committed.
enum Failed {
    /// Every attempt failed.
    Retried(String),
    /// The producer cannot go on.
    Fatal(String),
}

/// One transaction holding every record of `batch`, tried up to [`ATTEMPTS`] times.
fn commit(producer: &BaseProducer<Logged>, topic: &str, batch: &[Write]) -> Result<(), Failed> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let tried = (|| -> rdkafka::error::KafkaResult<()> {
            producer.begin_transaction()?;
            for w in batch {
                for (key, value, partition) in &w.records {
                    let mut r = BaseRecord::to(topic).key(key.as_bytes()).payload(value.as_slice());
                    if let Some(p) = partition {
                        r = r.partition(*p);
                    }
                    producer.send(r).map_err(|(e, _)| e)?;
                }
            }
            producer.commit_transaction(CALL_TIMEOUT)
        })();
        match tried {
            Ok(()) => return Ok(()),
            Err(e) => {
                let fatal = matches!(&e, rdkafka::error::KafkaError::Transaction(t) if t.is_fatal());
                if fatal {
                    return Err(Failed::Fatal(format!("effect log producer: {e}")));
                }
                tracing::warn!(topic, attempt, error = %e, "effect log transaction failed");
                if let Err(abort) = producer.abort_transaction(CALL_TIMEOUT) {
                    tracing::warn!(topic, error = %abort, "effect log: aborting");
                }
                last = e.to_string();
            }
        }
    }
    Err(Failed::Retried(format!("effect log `{topic}`: {ATTEMPTS} transactions failed, the last with: {last}")))
}

/// Reads the topic into `seen`, releasing the lookups whose barriers it reads; forgets what
/// is past `retention_ms` (not read in, swept out every [`SWEEP`]).
fn read_loop(consumer: &BaseConsumer<Logged>, topic: &str, seen: &Mutex<Seen>, stop: &AtomicBool, retention_ms: i64) {
    let mut swept = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if swept.elapsed() >= SWEEP {
            swept = Instant::now();
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            let forgotten = evict(&mut s.records, now_ms(), retention_ms);
            tracing::debug!(topic, forgotten, kept = s.records.len(), "effect log: forgot what is past its retention");
        }
        let m = match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(topic, error = %e, "reading the effect log");
                continue;
            }
            None => continue,
        };
        let Some(value) = m.payload().and_then(|p| serde_json::from_slice::<Value>(p).ok()) else {
            tracing::warn!(topic, partition = m.partition(), offset = m.offset(), "effect log: not JSON; skipped");
            continue;
        };
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = value.get("barrier").and_then(Value::as_str) {
            if let Some((left, waiter)) = s.barriers.get_mut(id) {
                *left = left.saturating_sub(1);
                if *left == 0
                    && let Some(tx) = waiter.take()
                {
                    let _ = tx.send(());
                }
            }
            s.barriers.retain(|_, (left, _)| *left > 0);
            continue;
        }
        match serde_json::from_value::<EffectRecord>(value) {
            Ok(r) => {
                // The broker's retention measures the record's timestamp; a broker without
                // one leaves the record's own time.
                let at = m.timestamp().to_millis().unwrap_or(r.outcome.as_ref().map_or(r.at_ms, |o| o.at_ms));
                if !expired(at, now_ms(), retention_ms) {
                    s.merge(r, at);
                }
            }
            Err(e) => {
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "effect log: not an effect record; skipped")
            }
        }
    }
}

impl EffectLog for KafkaEffectLog {
    fn lookup(&self, key: &str) -> LogFuture<Option<EffectRecord>> {
        let id = format!("{}-{}-{}", self.instance, std::process::id(), self.barriers.fetch_add(1, Ordering::Relaxed));
        let (tx, caught_up) = oneshot::channel();
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).barriers.insert(id.clone(), (self.partitions, Some(tx)));
        let value = json!({ "barrier": id }).to_string().into_bytes();
        let records = (0..self.partitions as i32)
            .map(|p| (format!("barrier/{}", self.instance), value.clone(), Some(p)))
            .collect();
        let committed = self.write(records);
        let (seen, key, topic) = (self.seen.clone(), key.to_owned(), self.topic.clone());
        Box::pin(async move {
            let gone = |_| "the effect log's writer has stopped".to_owned();
            let outcome = committed.await.map_err(gone).and_then(|r| r);
            if let Err(e) = outcome {
                seen.lock().unwrap_or_else(|e| e.into_inner()).barriers.remove(&id);
                return Err(e);
            }
            match tokio::time::timeout(CATCH_UP, caught_up).await {
                Ok(Ok(())) => {
                    Ok(seen.lock().unwrap_or_else(|e| e.into_inner()).records.get(&key).map(|k| k.record.clone()))
                }
                _ => {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).barriers.remove(&id);
                    Err(format!("`{topic}` was not read up to a barrier within {CATCH_UP:?}"))
                }
            }
        })
    }

    /// What the reader has read, without a barrier: complete for what was committed before
    /// an `llm` attempt once a barrier of that attempt was read (`EffectLog::lookup_synced`).
    fn lookup_synced(&self, key: &str) -> LogFuture<Option<EffectRecord>> {
        let found = self.seen.lock().unwrap_or_else(|e| e.into_inner()).records.get(key).map(|k| k.record.clone());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn append(&self, record: EffectRecord) -> LogFuture<()> {
        let value = match serde_json::to_vec(&record) {
            Ok(v) => v,
            Err(e) => return Box::pin(std::future::ready(Err(e.to_string()))),
        };
        let committed = self.write(vec![(record.key.clone(), value, None)]);
        let seen = self.seen.clone();
        Box::pin(async move {
            committed.await.map_err(|_| "the effect log's writer has stopped".to_owned())??;
            seen.lock().unwrap_or_else(|e| e.into_inner()).merge(record, now_ms());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafclaw_agent::tools::effect::Outcome;

    const DAY: i64 = 86_400_000;

    fn record(key: &str, outcome: Option<&str>) -> EffectRecord {
        EffectRecord {
            key: key.into(),
            tool: "pay".into(),
            arguments: json!({}),
            input: "t/answer/in/0/1".into(),
            at_ms: 0,
            outcome: outcome.map(|text| Outcome { ok: true, text: text.into(), at_ms: 0 }),
        }
    }

    #[test]
    fn eviction_forgets_exactly_the_keys_whose_last_record_is_past_the_retention() {
        let mut seen = Seen::default();
        seen.merge(record("old", Some("done")), 0);
        seen.merge(record("edge", None), 3 * DAY);
        seen.merge(record("fresh", None), 5 * DAY);
        // An intent written long ago whose result came recently is kept from the result on.
        seen.merge(record("late", None), 0);
        seen.merge(record("late", Some("done")), 6 * DAY);
        let forgotten = evict(&mut seen.records, 10 * DAY, 7 * DAY);
        assert_eq!(forgotten, 2);
        let mut kept: Vec<&str> = seen.records.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["fresh", "late"]);
        assert_eq!(seen.records["late"].record.outcome.as_ref().map(|o| o.text.as_str()), Some("done"));
        // Nothing is past a retention that has not run out; everything is past a short one.
        assert_eq!(evict(&mut seen.records, 10 * DAY, 10 * DAY), 0);
        assert_eq!(evict(&mut seen.records, 10 * DAY, DAY), 2);
        assert!(seen.records.is_empty());
    }

    #[test]
    fn an_intent_read_after_the_result_keeps_the_result_and_refreshes_the_time() {
        let mut seen = Seen::default();
        seen.merge(record("k", Some("paid")), DAY);
        seen.merge(record("k", None), 2 * DAY);
        let k = &seen.records["k"];
        assert_eq!((k.record.outcome.as_ref().map(|o| o.text.as_str()), k.timestamp_ms), (Some("paid"), 2 * DAY));
        // An older record does not move the time back.
        seen.merge(record("k", None), 0);
        assert_eq!(seen.records["k"].timestamp_ms, 2 * DAY);
        assert!(expired(0, 7 * DAY, 7 * DAY) && !expired(1, 7 * DAY, 7 * DAY));
    }

    #[test]
    fn the_topic_is_created_compacted_and_deleted_past_the_retention() {
        let c = topic_config(7 * DAY);
        assert_eq!(c[0], ("cleanup.policy", "compact,delete".to_owned()));
        assert_eq!(c[1], ("retention.ms", "604800000".to_owned()));
        assert_eq!(c[2], ("segment.ms", "60480000".to_owned()));
        // Segments of 1 minute to 1 day.
        assert_eq!(topic_config(60_000)[2].1, "60000");
        assert_eq!(topic_config(365 * DAY)[2].1, DAY.to_string());
    }

    #[test]
    fn an_existing_topic_not_bounded_like_the_retention_is_reported() {
        let week = 7 * DAY;
        assert_eq!(config_problem(Some("compact,delete"), Some("604800000"), week), None);
        assert_eq!(config_problem(Some("[compact, delete]"), Some("864000000"), week), None);
        let only_compact = config_problem(Some("compact"), Some("604800000"), week).unwrap();
        assert!(only_compact.contains("without `delete`"), "{only_compact}");
        assert!(config_problem(None, None, week).unwrap().contains("`unknown`"));
        let shorter = config_problem(Some("compact,delete"), Some("3600000"), week).unwrap();
        assert!(shorter.contains("protected only 3600000 ms"), "{shorter}");
        assert!(config_problem(Some("delete"), Some("-1"), week).unwrap().contains("far longer"));
        assert!(config_problem(Some("delete"), Some("2419200000"), week).unwrap().contains("far longer"));
    }
}
