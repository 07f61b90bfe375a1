//! `kafclaw replay`: rebuilds a topology's state by reprocessing its inputs.
//!
//! 1. The consumer group (the topology name) must have no live member: a replay owns the
//!    group while it runs.
//! 2. The group's committed offsets of every source partition are reset to the start
//!    (`earliest`, or the first offset at or after a time); the end of each partition is
//!    noted.
//! 3. Every changelog partition gets a reset marker (a record with the
//!    [`RESET`](crate::kafka::headers::RESET) header), so any instance restoring through
//!    it later drops what it held before; this instance's local tables are emptied. Journal
//!    tables (model answers) are kept, locally and in their changelogs: a replay reuses the
//!    answers instead of calling and paying again.
//! 4. The instance runs (same code path as `kafclaw run`, exactly-once when the topology is)
//!    until every source partition has reported its end (partition EOF, which under
//!    `read_committed` means the last stable offset) and everything before it is committed,
//!    with a progress bar. EOF is used rather than high watermarks because some brokers (Tansu)
//!    report wrong ones; the watermarks only size the progress bar.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::compiler::Compiled;
use crate::kafka::headers;
use crate::kafka::instance::{InstanceError, InstanceOptions, run_instance};
use crate::kafka::topics::{TopicRole, changelog_topic, ensure_topics, partition_counts, topic_uses};
use crate::progress::Progress;
use kafclaw_state::{RocksStore, StateStore};

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The start of every source partition.
    Earliest,
    /// The first record at or after this time (ms since the Unix epoch).
    Time(i64),
}

impl std::str::FromStr for ReplayFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "earliest" {
            return Ok(Self::Earliest);
        }
        kafclaw_operators::api::record::event_time_ms(s)
            .map(Self::Time)
            .map_err(|_| format!("expected `earliest` or an RFC 3339 time (e.g. 2026-11-24T09:00:00Z), got `{s}`"))
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Source records to reprocess, summed over partitions, by the brokers' watermarks (an
    /// estimate: some brokers report wrong ones).
    pub records: u64,
    /// Source partitions reset.
    pub partitions: usize,
    /// Changelog partitions given a reset marker.
    pub markers: usize,
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn setup(msg: impl Into<String>) -> InstanceError {
    InstanceError::Setup(msg.into())
}

/// Replays `compiled` from `from`; `opts.until` is set here.
pub fn replay(
    compiled: &Compiled,
    from: ReplayFrom,
    mut opts: InstanceOptions,
) -> Result<ReplaySummary, InstanceError> {
    let plan = &compiled.plan;
    let t = &compiled.spec.topology;
    let settings = &opts.settings;
    ensure_topics(settings, plan, t.partitions, t.replication, TIMEOUT).map_err(|e| setup(e.to_string()))?;
    let group = plan.name.as_str();
    let consumer: BaseConsumer = settings
        .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
        .create()
        .map_err(|e| setup(format!("consumer: {e}")))?;

    // 1. Nobody else may be processing.
    match consumer.fetch_group_list(Some(group), TIMEOUT) {
        Ok(list) => {
            if let Some(g) = list.groups().iter().find(|g| g.name() == group)
                && !g.members().is_empty()
            {
                return Err(setup(format!(
                    "consumer group `{group}` has {} live member(s); stop every instance of the topology before a replay",
                    g.members().len()
                )));
            }
        }
        Err(e) => return Err(setup(format!("describing consumer group `{group}`: {e}"))),
    }

    // 2. Reset the group's offsets; note where each partition ends.
    let uses = topic_uses(plan);
    let sources: Vec<&str> = uses.iter().filter(|u| u.role == TopicRole::Source).map(|u| u.topic.as_str()).collect();
    let counts = partition_counts(settings, &sources, TIMEOUT).map_err(|e| setup(e.to_string()))?;
    let mut starts = TopicPartitionList::new();
    let mut until = HashSet::new();
    let mut summary = ReplaySummary::default();
    for (topic, count) in sources.iter().zip(counts) {
        let count = count.ok_or_else(|| setup(format!("source topic `{topic}` does not exist")))?;
        for p in 0..count as i32 {
            let (low, high) =
                consumer.fetch_watermarks(topic, p, TIMEOUT).map_err(|e| setup(format!("{topic}/{p}: {e}")))?;
            let start = match from {
                ReplayFrom::Earliest => low,
                ReplayFrom::Time(ms) => {
                    let mut q = TopicPartitionList::new();
                    q.add_partition_offset(topic, p, Offset::Offset(ms)).map_err(|e| setup(e.to_string()))?;
                    let found = consumer
                        .offsets_for_times(q, TIMEOUT)
                        .map_err(|e| setup(format!("{topic}/{p}: offsets for a time: {e}")))?;
                    match found.find_partition(topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.clamp(low, high),
                        // No record at or after the time: nothing to replay here.
                        _ => high,
                    }
                }
            };
            starts.add_partition_offset(topic, p, Offset::Offset(start)).map_err(|e| setup(e.to_string()))?;
            summary.records += (high - start).max(0) as u64;
            summary.partitions += 1;
            until.insert(((*topic).to_owned(), p));
        }
    }
    // A broker refuses offsets from outside the group while it has members: the check that
    // works where describing the group does not list them (Tansu).
    if let Err(e) = consumer.commit(&starts, CommitMode::Sync) {
        let busy = matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::RebalanceInProgress
            )
        );
        return Err(setup(if busy {
            format!(
                "consumer group `{group}` has live members ({e}); stop every instance of the topology before a replay"
            )
        } else {
            format!("resetting the offsets of group `{group}`: {e}")
        }));
    }
    drop(consumer);
    tracing::info!(group, partitions = summary.partitions, records = summary.records, ?from, "offsets reset");

    // 3. Reset markers on every changelog partition; this instance's local state goes.
    let producer: BaseProducer = settings
        .client_config(&[("enable.idempotence", "true")])
        .create()
        .map_err(|e| setup(format!("producer: {e}")))?;
    let journals: Vec<String> =
        plan.nodes.iter().flat_map(|n| n.config.tables(&n.name)).filter(|t| t.journal).map(|t| t.name).collect();
    let journal_topics: Vec<String> = journals.iter().map(|t| changelog_topic(plan, t)).collect();
    let changelogs: Vec<&str> = uses
        .iter()
        .filter(|u| u.role == TopicRole::Changelog && !journal_topics.contains(&u.topic))
        .map(|u| u.topic.as_str())
        .collect();
    let counts = partition_counts(settings, &changelogs, TIMEOUT).map_err(|e| setup(e.to_string()))?;
    let marker = match from {
        ReplayFrom::Earliest => "earliest".to_owned(),
        ReplayFrom::Time(ms) => kafclaw_operators::api::record::format_time_ms(ms),
    };
    for (topic, count) in changelogs.iter().zip(counts) {
        for p in 0..count.unwrap_or(0) as i32 {
            let h = headers::reset_marker(&marker);
            let record = BaseRecord::<[u8], [u8]>::to(topic).partition(p).key(headers::RESET_KEY).headers(h);
            producer.send(record).map_err(|(e, _)| setup(format!("reset marker to {topic}/{p}: {e}")))?;
            summary.markers += 1;
        }
    }
    producer.flush(TIMEOUT).map_err(|e| setup(format!("reset markers: {e}")))?;
    let db = opts.state_dir.join(&plan.name).join(&opts.instance_id);
    if db.exists() {
        let mut store = RocksStore::open(&db).map_err(|e| setup(format!("state store: {e}")))?;
        for table in store.tables() {
            if !journals.contains(&table) {
                store.clear_table(&table).map_err(|e| setup(format!("emptying `{table}`: {e}")))?;
            }
        }
    }
    tracing::info!(markers = summary.markers, state = %db.display(), kept = ?journals, "state wiped");

    // 4. Reprocess to the noted ends.
    opts.until = Some(until);
    let stats = opts.stats.clone();
    let total = summary.records;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut bar = Progress::new("replay", total);
            while !done.load(Ordering::Relaxed) {
                bar.set(stats.consumed.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.set(stats.consumed.load(Ordering::Relaxed));
            bar.finish();
        })
    };
    let result = run_instance(compiled, opts);
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    result.map(|()| summary)
}
