//! The instance's Prometheus metrics, served as OpenMetrics text at `/metrics` ([`encode`]).
//!
//! They follow what a Kafka Streams user reads (process, poll and commit latency and rate,
//! records per operator, dead letters, aborts, rebalances, restores, consumer lag), named in
//! Prometheus style; every sample carries the `topology` label. docs/operations.md lists them
//! with their labels and units. The model calls' OpenTelemetry GenAI metrics come from
//! [`kafclaw_agent::model::metrics`] and are served with them.
//!
//! Recording is cheap on the record path: counters and histograms are atomics; the labelled
//! ones a record touches (its topic-partition, its operator) are looked up once and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use kafclaw_agent::model::SharedModel;
use kafclaw_operators::DeadLetter;

mod operators;
pub mod view;

pub use operators::OperatorCounters;

/// The content type of `/metrics` (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets (seconds) of the process, poll and commit histograms: 100 µs to ~52 s,
/// doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 20))
}

/// A topic-partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    operator: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorePartition {
    store: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    gen_ai_request_model: String,
}

/// An instance's metrics (see the module docs for what each means).
#[derive(Debug)]
pub struct InstanceMetrics {
    consumed: Family<TopicPartition, Counter>,
    produced: Family<TopicLabel, Counter>,
    /// Records into and out of each operator.
    pub operators: operators::OperatorFamilies,
    dead_letters: Family<DeadLetterLabels, Counter>,
    /// Time to push one input record through its task's synchronous operators.
    pub process_latency: Histogram,
    /// Time of one poll of the group's consumer.
    pub poll_latency: Histogram,
    /// Time of one commit (transaction commit, or flush and offset commit).
    pub commit_latency: Histogram,
    /// Transactions aborted.
    pub aborts: Counter,
    rebalances: Family<EventLabel, Counter>,
    restored: Family<StoreLabel, Counter>,
    restore_remaining: Family<StorePartition, Gauge>,
    lag: Family<TopicPartition, Gauge>,
    committed: Family<TopicPartition, Gauge>,
    /// The consumed counters already looked up, by (topic, partition).
    consumed_cache: Mutex<HashMap<(Arc<str>, i32), Counter>>,
    /// (low watermark, end, the group's committed offset) of each partition as the
    /// consumer's statistics last showed them.
    ends: Mutex<HashMap<TopicPartition, (i64, i64, i64)>>,
}

impl Default for InstanceMetrics {
    fn default() -> Self {
        Self {
            consumed: Family::default(),
            produced: Family::default(),
            operators: operators::OperatorFamilies::default(),
            dead_letters: Family::default(),
            process_latency: latency_histogram(),
            poll_latency: latency_histogram(),
            commit_latency: latency_histogram(),
            aborts: Counter::default(),
            rebalances: Family::default(),
            restored: Family::default(),
            restore_remaining: Family::default(),
            lag: Family::default(),
            committed: Family::default(),
            consumed_cache: Mutex::default(),
            ends: Mutex::default(),
        }
    }
}

impl InstanceMetrics {
    /// One record of `topic`/`partition` consumed and fed to its task.
    pub fn consumed(&self, topic: &Arc<str>, partition: i32) {
        let mut cache = self.consumed_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry((topic.clone(), partition))
            .or_insert_with(|| {
                self.consumed.get_or_create_owned(&TopicPartition { topic: topic.to_string(), partition })
            })
            .inc();
    }

    /// Records of `topic`/`partition` this instance consumed and fed to their task so far (its
    /// `kafclaw_records_consumed_total` series); 0 before the first. A record read again (after
    /// an abort, or a partition lost and assigned back) counts again.
    pub fn consumed_from(&self, topic: &str, partition: i32) -> u64 {
        self.consumed.get(&TopicPartition { topic: topic.to_owned(), partition }).map_or(0, |c| c.get())
    }

    /// One record produced to `topic`.
    pub fn produced(&self, topic: &str) {
        self.produced.get_or_create(&TopicLabel { topic: topic.to_owned() }).inc();
    }

    /// One dead letter written, counted by where it failed and why: `operator` is the
    /// operator or source the stage names (for a decode failure, the source), `reason` the
    /// engine's error code when it has one (`record_too_large`, …), else `decode` or
    /// `processing`.
    pub fn dead_lettered(&self, letter: &DeadLetter) {
        let (operator, class) = match letter.stage.split_once(':') {
            Some((_, name)) => (name, "processing"),
            None if letter.stage == "decode" => (letter.source.as_str(), "decode"),
            None => (letter.stage.as_str(), "processing"),
        };
        let reason = letter.code.unwrap_or(class);
        self.dead_letters
            .get_or_create(&DeadLetterLabels { operator: operator.to_owned(), reason: reason.to_owned() })
            .inc();
    }

    /// A rebalance event: `assigned` or `revoked`.
    pub fn rebalanced(&self, event: &'static str) {
        self.rebalances.get_or_create(&EventLabel { event }).inc();
    }

    /// A store partition's restore starts with `remaining` changelog records to read.
    pub fn restore_started(&self, store: &str, partition: i32, remaining: i64) {
        self.restore_remaining.get_or_create(&StorePartition { store: store.to_owned(), partition }).set(remaining);
    }

    /// `n` changelog records of `store`/`partition` read while restoring.
    pub fn restored(&self, store: &str, partition: i32, n: u64) {
        self.restored.get_or_create(&StoreLabel { store: store.to_owned() }).inc_by(n);
        let remaining = self.restore_remaining.get_or_create(&StorePartition { store: store.to_owned(), partition });
        let now = remaining.get();
        remaining.set((now - n as i64).max(0));
    }

    /// Changelog records of `store` read while restoring so far (all partitions).
    pub fn restored_records(&self, store: &str) -> u64 {
        self.restored.get(&StoreLabel { store: store.to_owned() }).map_or(0, |c| c.get())
    }

    /// A store partition is restored.
    pub fn restore_finished(&self, store: &str, partition: i32) {
        self.restore_remaining.get_or_create(&StorePartition { store: store.to_owned(), partition }).set(0);
    }

    /// The offset committed for `tp` (the next record to process).
    pub fn committed(&self, tp: &TopicPartition, offset: i64) {
        self.committed.get_or_create(tp).set(offset);
    }

    /// The committed offset last recorded for `tp`, if any.
    pub fn committed_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.committed.get(tp).map(|g| g.get())
    }

    /// The consumer lag of `tp` in records: the end of the partition the consumer has seen
    /// minus the committed offset.
    pub fn lag(&self, tp: &TopicPartition, records: i64) {
        self.lag.get_or_create(tp).set(records.max(0));
    }

    /// `tp` is no longer assigned: its lag and committed offset are this instance's no more.
    pub fn forget(&self, tp: &TopicPartition) {
        self.lag.remove(tp);
        self.committed.remove(tp);
        self.ends.lock().unwrap_or_else(|p| p.into_inner()).remove(tp);
    }

    /// The low watermark and the end of `tp` as the consumer's fetches last showed them (for
    /// a `read_committed` consumer the end is the last stable offset), and the group's
    /// committed offset as the consumer fetched it (-1: none or not yet known).
    pub fn partition_seen(&self, tp: TopicPartition, low: i64, end: i64, committed: i64) {
        self.ends.lock().unwrap_or_else(|p| p.into_inner()).insert(tp, (low, end, committed));
    }

    /// The low watermark and end [`Self::partition_seen`] last recorded for `tp`.
    pub fn seen(&self, tp: &TopicPartition) -> Option<(i64, i64)> {
        self.ends.lock().unwrap_or_else(|p| p.into_inner()).get(tp).map(|&(low, end, _)| (low, end))
    }

    /// The group's committed offset of `tp` as the consumer's statistics last showed it.
    pub fn group_committed(&self, tp: &TopicPartition) -> Option<i64> {
        let ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        ends.get(tp).map(|&(_, _, c)| c).filter(|c| *c >= 0)
    }
}

/// What `/metrics` encodes besides the instance's own metrics.
pub struct Scrape<'a> {
    /// The topology's name (the `topology` label).
    pub topology: &'a str,
    /// Partitions assigned now.
    pub assigned: u64,
    /// Whether the instance is ready to process.
    pub ready: bool,
    /// Inputs dropped as duplicates.
    pub deduplicated: u64,
    /// The topology's models (their calls in flight).
    pub models: &'a [Arc<SharedModel>],
}

/// The OpenMetrics text of `metrics` and the process's GenAI metrics.
///
/// # Errors
/// Only if formatting fails (never for a `String`).
pub fn encode(metrics: &InstanceMetrics, s: &Scrape<'_>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_labels([("topology".into(), s.topology.to_owned().into())].into_iter());
    let m = metrics;
    registry.register("kafclaw_records_consumed", "Records consumed and fed to a task", m.consumed.clone());
    registry.register("kafclaw_records_produced", "Records produced to output topics", m.produced.clone());
    m.operators.register(&mut registry);
    registry.register("kafclaw_dead_letters", "Records dead-lettered, by operator and reason", m.dead_letters.clone());
    let dedup = Counter::<u64>::default();
    dedup.inc_by(s.deduplicated);
    registry.register("kafclaw_deduplicated", "Inputs dropped as duplicates by dedup", dedup);
    registry.register_with_unit(
        "kafclaw_process_latency",
        "Time to push one input record through its task's synchronous operators",
        Unit::Seconds,
        m.process_latency.clone(),
    );
    registry.register_with_unit(
        "kafclaw_poll_latency",
        "Time of one consumer poll",
        Unit::Seconds,
        m.poll_latency.clone(),
    );
    registry.register_with_unit(
        "kafclaw_commit_latency",
        "Time of one commit (count: commits)",
        Unit::Seconds,
        m.commit_latency.clone(),
    );
    registry.register("kafclaw_transaction_aborts", "Transactions aborted", m.aborts.clone());
    registry.register("kafclaw_rebalances", "Rebalance events, by event (assigned, revoked)", m.rebalances.clone());
    registry.register("kafclaw_restore_records", "Changelog records read while restoring state", m.restored.clone());
    registry.register(
        "kafclaw_restore_remaining_records",
        "Changelog records left to read before a store partition is restored",
        m.restore_remaining.clone(),
    );
    registry.register(
        "kafclaw_consumer_lag_records",
        "End of the partition the consumer has seen minus the committed offset",
        m.lag.clone(),
    );
    registry.register("kafclaw_committed_offset", "Last committed offset", m.committed.clone());
    let assigned = Gauge::<i64>::default();
    assigned.set(s.assigned as i64);
    registry.register("kafclaw_assigned_partitions", "Partitions assigned now", assigned);
    let ready = Gauge::<i64>::default();
    ready.set(i64::from(s.ready));
    registry.register("kafclaw_ready", "1 when ready to process", ready);
    let in_flight = Family::<ModelLabel, Gauge>::default();
    for model in s.models {
        if let (Some(u), Some(request_model)) = (model.usage(), model.request_model()) {
            let label = ModelLabel { gen_ai_request_model: request_model.to_owned() };
            in_flight.get_or_create(&label).inc_by(u.in_flight as i64);
        }
    }
    registry.register("kafclaw_model_calls_in_flight", "Model calls in flight now", in_flight);
    kafclaw_agent::model::metrics::register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The OpenMetrics text of a running instance of `topology`: its `stats` (metrics and
/// snapshot) and its `models`' calls in flight — what `/metrics` serves and what the
/// instance's status on its group carries.
///
/// # Errors
/// Only if formatting fails (never for a `String`).
pub fn encode_instance(
    stats: &crate::kafka::Stats,
    topology: &str,
    models: &[Arc<SharedModel>],
) -> Result<String, std::fmt::Error> {
    let s = stats.snapshot();
    let scrape = Scrape { topology, assigned: s.assigned, ready: s.ready, deduplicated: s.deduplicated, models };
    encode(&stats.metrics, &scrape)
}

/// Observes `d` in seconds.
pub fn observe(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_from_counts_one_topic_partition() {
        let m = InstanceMetrics::default();
        let t: Arc<str> = "t".into();
        m.consumed(&t, 3);
        m.consumed(&t, 3);
        m.consumed(&t, 2);
        assert_eq!(m.consumed_from("t", 3), 2);
        assert_eq!(m.consumed_from("t", 2), 1);
        assert_eq!(m.consumed_from("t", 1), 0);
        assert_eq!(m.consumed_from("u", 3), 0);
    }
}
