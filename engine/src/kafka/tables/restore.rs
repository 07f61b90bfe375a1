//! Restoring state tables from their changelogs when partitions are assigned.
//!
//! All pending table-partitions are read at once by one reader (no group, read_committed,
//! partition-EOF events), each from its local checkpoint (or the beginning) to its end. A
//! changelog record counts only when the input that produced it is below the source's
//! committed offset: records of transactions that never committed (which some brokers leak)
//! are skipped, and since values are absolute, re-applying committed ones is harmless. A
//! record whose input is no source of the table's sub-topology (a punctuation's write) has no
//! offset to hold against and is applied.
//! A record carrying the [`RESET`](headers::RESET) header is a reset marker written by
//! `kafclaw replay`: the state of that table-partition is dropped and restoring continues from
//! the marker, so every instance forgets pre-replay state however old its local copy is.
//! Runs on the stream thread outside the rebalance callback, so the group sees the member
//! alive while it restores. Progress shows as a bar on a terminal, log lines otherwise.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafclaw_state::{Batch, StateStore, Write};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::compiler::PhysicalPlan;
use crate::kafka::headers;
use crate::kafka::producer::QuietEof;
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::changelog_topic;
use crate::metrics::InstanceMetrics;
use crate::progress::Progress as Bar;
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
    /// A journal table (model answers): every record is applied, even one of a transaction
    /// that never committed — an answer paid for is worth keeping.
    pub journal: bool,
}

#[derive(Default)]
struct Progress {
    batch: Batch,
    next: Option<i64>,
    restored: u64,
    skipped: u64,
    resets: u64,
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
    metrics: &InstanceMetrics,
) -> Result<(), String> {
    let started = Instant::now();
    let mut tables: Vec<&str> = jobs.iter().map(|j| j.table.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        let mine: Vec<RestoreJob> = jobs.iter().filter(|j| j.table == table).cloned().collect();
        restore_table(plan, store, settings, committed, &mine, metrics)?;
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
    metrics: &InstanceMetrics,
) -> Result<(), String> {
    let journal = jobs.iter().all(|j| j.journal);
    // The topics the restored sub-topologies read: a write whose input is not one of them was
    // made by a punctuation (a schedule's tick, a timeout), with no input offset to hold it
    // against; it is applied, as `read_committed` shows only committed ones on Apache Kafka
    // (docs/kafka-brokers.md: brokers that leak aborted records).
    let source_topics: std::collections::HashSet<&str> = jobs
        .iter()
        .flat_map(|j| plan.subtopologies[j.sub].sources.iter())
        .filter_map(|&s| plan.nodes[s].config.kafka_topic())
        .collect();
    let reader: BaseConsumer<QuietEof> = settings
        .client_config(&[
            ("group.id", &format!("{}-restore", plan.name)),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(QuietEof("changelog"))
        .map_err(|e| e.to_string())?;
    let mut assign = TopicPartitionList::new();
    let mut progress: HashMap<(String, i32), Progress> = HashMap::new();
    let mut table_of: HashMap<String, (String, usize)> = HashMap::new();
    for job in jobs {
        store.store_mut().open_table(&job.table).map_err(|e| e.to_string())?;
        let topic = changelog_topic(plan, &job.table);
        let from = store.store().checkpoint(&job.table, job.partition as u32).map_err(|e| e.to_string())?;
        assign
            .add_partition_offset(&topic, job.partition, from.map_or(Offset::Beginning, Offset::Offset))
            .map_err(|e| e.to_string())?;
        table_of.insert(topic.clone(), (job.table.clone(), job.sub));
        progress.insert((topic, job.partition), Progress { next: from, ..Progress::default() });
    }
    reader.assign(&assign).map_err(|e| e.to_string())?;
    let mut total = 0u64;
    for ((topic, partition), p) in &progress {
        if let Ok((low, high)) = reader.fetch_watermarks(topic, *partition, Duration::from_secs(10)) {
            let remaining = (high - p.next.unwrap_or(low).max(low)).max(0);
            total += remaining as u64;
            metrics.restore_started(&table_of[topic].0, *partition, remaining);
        }
    }
    let mut bar = Bar::new("restore", total);
    let mut quiet_since = Instant::now();
    while progress.values().any(|p| !p.done) {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let Some(p) = progress.get_mut(&(m.topic().to_owned(), m.partition())) else { continue };
                let (table, _) = &table_of[m.topic()];
                p.next = Some(m.offset() + 1);
                bar.inc(1);
                metrics.restored(table, m.partition(), 1);
                let header = |name: &str| {
                    m.headers()
                        .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                };
                if header(headers::RESET).is_some() {
                    // Everything before the marker belongs to the state replay threw away.
                    p.batch = Batch::default();
                    store.store_mut().drop_partition(table, m.partition() as u32).map_err(|e| e.to_string())?;
                    p.resets += 1;
                    continue;
                }
                let input_topic = header(headers::INPUT_TOPIC).unwrap_or_default();
                let input_partition: i32 = header(headers::INPUT_PARTITION).and_then(|o| o.parse().ok()).unwrap_or(-1);
                let input_offset: i64 = header(headers::INPUT_OFFSET).and_then(|o| o.parse().ok()).unwrap_or(i64::MAX);
                let from_source = input_offset == i64::MAX || source_topics.contains(input_topic.as_str());
                if !journal
                    && from_source
                    && input_offset >= committed.get(&(input_topic, input_partition)).copied().unwrap_or(0)
                {
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
    }
    bar.finish();
    for ((topic, partition), mut p) in progress {
        let (table, _) = &table_of[&topic];
        metrics.restore_finished(table, partition);
        if let Some(n) = p.next {
            p.batch.checkpoints = vec![(table.clone(), partition as u32, n)];
        }
        if !p.batch.is_empty() {
            store.store_mut().apply(&p.batch).map_err(|e| e.to_string())?;
        }
        if p.restored == 0 && p.skipped == 0 && p.resets == 0 {
            tracing::info!(table = %table, partition, checkpoint = ?p.next, "state is current; nothing to restore");
        } else {
            tracing::info!(
                table = %table, partition, restored = p.restored, skipped_uncommitted = p.skipped, resets = p.resets,
                bytes = p.bytes,
                "state restored from the changelog"
            );
        }
    }
    Ok(())
}
