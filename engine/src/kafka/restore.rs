//! Restoring state tables from their changelogs when partitions are assigned.
//!
//! All pending table-partitions are read at once by one reader (no group, read_committed,
//! partition-EOF events), each from its local checkpoint (or the beginning) to its end. A
//! changelog record counts only when the input that produced it is below the source's
//! committed offset: records of transactions that never committed (which some brokers leak)
//! are skipped, and since values are absolute, re-applying committed ones is harmless.
//! Runs on the stream thread outside the rebalance callback, so the group sees the member
//! alive while it restores.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafclaw_state::{Batch, StateStore, Write};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::client::ClientSettings;
use super::instance::headers;
use super::topics::changelog_topic;
use crate::compiler::PhysicalPlan;
use crate::runtime::TaskStore;

/// One table-partition to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreJob {
    /// Sub-topology the table belongs to.
    pub sub: usize,
    /// Table.
    pub table: String,
    /// Partition.
    pub partition: i32,
}

/// The reader's context: end-of-partition is expected here, not an error worth a log line.
struct ReaderCtx;

impl ClientContext for ReaderCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, "changelog reader");
        }
    }
}

impl ConsumerContext for ReaderCtx {}

#[derive(Default)]
struct Progress {
    batch: Batch,
    next: Option<i64>,
    restored: u64,
    skipped: u64,
    bytes: u64,
    done: bool,
}

/// How long a changelog may stay silent before the reader gives up waiting for its end.
const QUIET: Duration = Duration::from_secs(10);

/// Restores `jobs`, one reader per table. `committed` holds the committed offset of every
/// (source topic, partition) the jobs' sub-topologies read.
pub fn restore(
    plan: &PhysicalPlan,
    store: &mut TaskStore,
    settings: &ClientSettings,
    committed: &HashMap<(String, i32), i64>,
    jobs: &[RestoreJob],
) -> Result<(), String> {
    let started = Instant::now();
    let mut tables: Vec<&str> = jobs.iter().map(|j| j.table.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        let mine: Vec<RestoreJob> = jobs.iter().filter(|j| j.table == table).cloned().collect();
        restore_table(plan, store, settings, committed, &mine)?;
    }
    if !jobs.is_empty() {
        tracing::info!(partitions = jobs.len(), ms = started.elapsed().as_millis() as u64, "restore finished");
    }
    Ok(())
}

/// Restores the partitions of one table (`jobs` all name the same table).
fn restore_table(
    plan: &PhysicalPlan,
    store: &mut TaskStore,
    settings: &ClientSettings,
    committed: &HashMap<(String, i32), i64>,
    jobs: &[RestoreJob],
) -> Result<(), String> {
    let reader: BaseConsumer<ReaderCtx> = settings
        .client_config(&[
            ("group.id", &format!("{}-restore", plan.name)),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(ReaderCtx)
        .map_err(|e| e.to_string())?;
    let mut assign = TopicPartitionList::new();
    let mut progress: HashMap<(String, i32), Progress> = HashMap::new();
    let mut table_of: HashMap<String, (String, usize)> = HashMap::new();
    for job in jobs {
        let topic = changelog_topic(plan, &job.table);
        let from = store.store().checkpoint(&job.table, job.partition as u32).map_err(|e| e.to_string())?;
        assign
            .add_partition_offset(&topic, job.partition, from.map_or(Offset::Beginning, Offset::Offset))
            .map_err(|e| e.to_string())?;
        table_of.insert(topic.clone(), (job.table.clone(), job.sub));
        progress.insert((topic, job.partition), Progress { next: from, ..Progress::default() });
    }
    reader.assign(&assign).map_err(|e| e.to_string())?;
    let mut quiet_since = Instant::now();
    let mut last_log = Instant::now();
    while progress.values().any(|p| !p.done) {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let Some(p) = progress.get_mut(&(m.topic().to_owned(), m.partition())) else { continue };
                let (table, _) = &table_of[m.topic()];
                p.next = Some(m.offset() + 1);
                let header = |name: &str| {
                    m.headers()
                        .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                };
                let input_topic = header(headers::INPUT_TOPIC).unwrap_or_default();
                let input_partition: i32 = header(headers::INPUT_PARTITION).and_then(|o| o.parse().ok()).unwrap_or(-1);
                let input_offset: i64 = header(headers::INPUT_OFFSET).and_then(|o| o.parse().ok()).unwrap_or(i64::MAX);
                if input_offset >= committed.get(&(input_topic, input_partition)).copied().unwrap_or(0) {
                    p.skipped += 1;
                    continue;
                }
                let key = m.key().unwrap_or_default().to_vec();
                p.bytes += (key.len() + m.payload().map_or(0, <[u8]>::len)) as u64;
                p.batch.writes.push(Write {
                    table: table.clone(),
                    partition: m.partition() as u32,
                    key,
                    value: m.payload().map(<[u8]>::to_vec),
                });
                p.restored += 1;
                if p.batch.writes.len() >= 10_000 {
                    p.batch.checkpoints = vec![(table.clone(), m.partition() as u32, m.offset() + 1)];
                    store.store_mut().apply(&std::mem::take(&mut p.batch)).map_err(|e| e.to_string())?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // One reader per table: the partition number alone names the changelog partition.
                for ((_, part), p) in progress.iter_mut() {
                    if *part == partition {
                        p.done = true;
                    }
                }
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                progress.values_mut().for_each(|p| p.done = true);
            }
            Some(Err(e)) => return Err(e.to_string()),
            None if quiet_since.elapsed() > QUIET => {
                tracing::warn!(
                    "changelog reader saw no end-of-partition for {QUIET:?}; treating the changelogs as fully read"
                );
                break;
            }
            None => {}
        }
        if last_log.elapsed() > Duration::from_secs(2) {
            let restored: u64 = progress.values().map(|p| p.restored).sum();
            tracing::info!(restored, "restoring state");
            last_log = Instant::now();
        }
    }
    for ((topic, partition), mut p) in progress {
        let (table, _) = &table_of[&topic];
        if let Some(n) = p.next {
            p.batch.checkpoints = vec![(table.clone(), partition as u32, n)];
        }
        if !p.batch.is_empty() {
            store.store_mut().apply(&p.batch).map_err(|e| e.to_string())?;
        }
        if p.restored == 0 && p.skipped == 0 {
            tracing::info!(table = %table, partition, checkpoint = ?p.next, "state is current; nothing to restore");
        } else {
            tracing::info!(
                table = %table, partition, restored = p.restored, skipped_uncommitted = p.skipped, bytes = p.bytes,
                "state restored from the changelog"
            );
        }
    }
    Ok(())
}
