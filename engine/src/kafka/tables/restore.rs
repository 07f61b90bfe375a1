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
//!
//! Throughput: records are buffered per partition without an allocation each (the store's
//! [`Restored`]), and every [`LOAD_BYTES`] handed to a helper thread that bulk-loads them
//! ([`StateStore::load`]: RocksDB sorts each partition into an SST file, partitions in
//! parallel, and ingests them, bypassing the memtable and the WAL — the changelog is the truth)
//! while the reader goes on reading. A partition's checkpoint is written only once the data it
//! covers is on disk, so a crash mid-restore resumes from an older checkpoint, never a newer one.

use std::collections::HashMap;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use kafclaw_state::{Restored, StateError, StateStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
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

/// Per table-partition progress of a restore.
#[derive(Default)]
struct Progress {
    partition: i32,
    next: Option<i64>,
    restored: u64,
    skipped: u64,
    resets: u64,
    bytes: u64,
    /// Records read since the metrics were last told.
    unreported: u64,
    done: bool,
}

/// How long a changelog may stay silent before the reader gives up waiting for its end.
const QUIET: Duration = Duration::from_secs(10);

/// Buffered bytes (keys and values, all partitions of a table) handed to the store at once.
pub const LOAD_BYTES: usize = 32 << 20;

/// The changelog reader's librdkafka defaults (a topology's `[kafka]` table overrides them):
/// large fetches and a deep prefetch queue, since a restore reads as fast as it can.
pub const READER_DEFAULTS: [(&str, &str); 4] = [
    ("fetch.max.bytes", "67108864"),
    ("max.partition.fetch.bytes", "16777216"),
    ("queued.max.messages.kbytes", "262144"),
    ("queued.min.messages", "1000000"),
];

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

/// What a load hands back: the store, the (emptied) buffers to reuse, the outcome.
type Loaded<'env> = (&'env mut TaskStore, Vec<Restored>, Result<(), StateError>);

/// Loads buffers into the store on a helper thread while the reader goes on reading; one
/// load at a time, in order.
struct Loader<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    store: Option<&'env mut TaskStore>,
    running: Option<ScopedJoinHandle<'scope, Loaded<'env>>>,
    spare: Vec<Restored>,
}

impl<'scope, 'env> Loader<'scope, 'env> {
    /// Waits for the running load, and gives the store back.
    fn store(&mut self) -> Result<&mut TaskStore, String> {
        if let Some(h) = self.running.take() {
            let (store, mut buffers, outcome) =
                h.join().map_err(|_| "the restore's state writer panicked (an infrastructure fault)".to_owned())?;
            self.store = Some(store);
            buffers.iter_mut().for_each(Restored::clear);
            self.spare = buffers;
            outcome.map_err(|e| format!("writing restored state: {e}"))?;
        }
        self.store.as_deref_mut().ok_or_else(|| "the restore's state store is gone".to_owned())
    }

    /// Starts loading `buffers` (after the running load), and returns empty buffers like them.
    fn start(&mut self, buffers: Vec<Restored>) -> Result<Vec<Restored>, String> {
        self.store()?;
        let store = self.store.take().ok_or_else(|| "the restore's state store is gone".to_owned())?;
        let fresh = if self.spare.len() == buffers.len() {
            std::mem::take(&mut self.spare)
        } else {
            buffers.iter().map(|b| Restored::new(b.table(), b.partition())).collect()
        };
        self.running = Some(self.scope.spawn(move || {
            let outcome = store.store_mut().load(&buffers);
            (store, buffers, outcome)
        }));
        Ok(fresh)
    }
}

/// The headers a restore reads, found in one pass (the first of each name counts).
#[derive(Default)]
struct Coordinates<'m> {
    reset: Option<Option<&'m [u8]>>,
    topic: Option<Option<&'m [u8]>>,
    partition: Option<Option<&'m [u8]>>,
    offset: Option<Option<&'m [u8]>>,
}

impl<'m> Coordinates<'m> {
    fn of(m: &'m BorrowedMessage<'_>) -> Self {
        let mut c = Self::default();
        if let Some(h) = m.headers() {
            for x in h.iter() {
                let slot = match x.key {
                    headers::RESET => &mut c.reset,
                    headers::INPUT_TOPIC => &mut c.topic,
                    headers::INPUT_PARTITION => &mut c.partition,
                    headers::INPUT_OFFSET => &mut c.offset,
                    _ => continue,
                };
                slot.get_or_insert(x.value);
            }
        }
        c
    }

    /// Whether the record is a reset marker (the header with a value).
    fn is_reset(&self) -> bool {
        self.reset.flatten().is_some()
    }
}

/// A header value parsed as a number.
fn number<T: std::str::FromStr>(v: Option<Option<&[u8]>>) -> Option<T> {
    v.flatten().and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.parse().ok())
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
    let Some(table) = jobs.first().map(|j| j.table.as_str()) else { return Ok(()) };
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
    let committed: HashMap<(&str, i32), i64> = committed.iter().map(|((t, p), o)| ((t.as_str(), *p), *o)).collect();
    let reader: BaseConsumer<QuietEof> = settings
        .client_config_with(
            &READER_DEFAULTS,
            &[
                ("group.id", &format!("{}-restore", plan.name)),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                ("isolation.level", "read_committed"),
                // A start offset out of range (a recreated changelog) means "read it all".
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create_with_context(QuietEof("changelog"))
        .map_err(|e| e.to_string())?;
    let topic = changelog_topic(plan, table);
    let mut assign = TopicPartitionList::new();
    let mut progress: Vec<Progress> = Vec::with_capacity(jobs.len());
    let mut index: HashMap<i32, usize> = HashMap::new();
    let mut total = 0u64;
    store.store_mut().open_table(table).map_err(|e| e.to_string())?;
    for job in jobs {
        let from = store.store().checkpoint(table, job.partition as u32).map_err(|e| e.to_string())?;
        // The watermarks first: an explicit start offset spares librdkafka the offset query
        // it would otherwise retry only after 500 ms, its partition leader not known yet.
        let start = match reader.fetch_watermarks(&topic, job.partition, Duration::from_secs(10)) {
            Ok((low, high)) => {
                let remaining = (high - from.unwrap_or(low).max(low)).max(0);
                total += remaining as u64;
                metrics.restore_started(table, job.partition, remaining);
                Offset::Offset(from.unwrap_or(low).max(low))
            }
            Err(_) => from.map_or(Offset::Beginning, Offset::Offset),
        };
        assign.add_partition_offset(&topic, job.partition, start).map_err(|e| e.to_string())?;
        index.insert(job.partition, progress.len());
        progress.push(Progress { partition: job.partition, next: from, ..Progress::default() });
    }
    reader.assign(&assign).map_err(|e| e.to_string())?;
    let mut bar = Bar::new("restore", total);
    let buffers: Vec<Restored> = progress.iter().map(|p| Restored::new(table, p.partition as u32)).collect();
    std::thread::scope(|scope| -> Result<(), String> {
        let mut loader = Loader { scope, store: Some(store), running: None, spare: Vec::new() };
        let mut buffers = buffers;
        let mut buffered = 0usize;
        // Hands the buffers to the loader with each partition's checkpoint: every record below
        // it is in these buffers, in an earlier load, or skipped.
        let mut hand_over = |buffers: &mut Vec<Restored>, progress: &mut [Progress], loader: &mut Loader<'_, '_>| {
            let mut read = 0;
            for (b, p) in buffers.iter_mut().zip(progress.iter_mut()) {
                b.checkpoint = p.next;
                metrics.restored(table, p.partition, std::mem::take(&mut p.unreported));
                read += p.restored + p.skipped + p.resets;
            }
            bar.set(read);
            *buffers = loader.start(std::mem::take(buffers))?;
            Ok::<_, String>(())
        };
        let mut quiet_since = Instant::now();
        while progress.iter().any(|p| !p.done) {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    quiet_since = Instant::now();
                    let Some(&i) = index.get(&m.partition()) else { continue };
                    let p = &mut progress[i];
                    p.next = Some(m.offset() + 1);
                    p.unreported += 1;
                    let coordinates = Coordinates::of(&m);
                    if coordinates.is_reset() {
                        // Everything before the marker belongs to the state replay threw away.
                        buffered -= buffers[i].bytes();
                        buffers[i].clear();
                        let store = loader.store()?;
                        store.store_mut().drop_partition(table, m.partition() as u32).map_err(|e| e.to_string())?;
                        p.resets += 1;
                        continue;
                    }
                    if !journal {
                        let input_offset: i64 = number(coordinates.offset).unwrap_or(i64::MAX);
                        let input_topic =
                            coordinates.topic.flatten().and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("");
                        let from_source = input_offset == i64::MAX || source_topics.contains(input_topic);
                        if from_source {
                            let input_partition: i32 = number(coordinates.partition).unwrap_or(-1);
                            if input_offset >= committed.get(&(input_topic, input_partition)).copied().unwrap_or(0) {
                                p.skipped += 1;
                                continue;
                            }
                        }
                    }
                    let key = m.key().unwrap_or_default();
                    let value = m.payload();
                    p.bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
                    p.restored += 1;
                    let before = buffers[i].bytes();
                    buffers[i].push(key, value);
                    buffered += buffers[i].bytes() - before;
                    if buffered >= LOAD_BYTES {
                        hand_over(&mut buffers, &mut progress, &mut loader)?;
                        buffered = 0;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // One reader per table: the partition number alone names the changelog partition.
                    if let Some(&i) = index.get(&partition) {
                        progress[i].done = true;
                    }
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                    progress.iter_mut().for_each(|p| p.done = true);
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
        hand_over(&mut buffers, &mut progress, &mut loader)?;
        loader.store()?;
        Ok(())
    })?;
    bar.finish();
    for p in progress {
        let partition = p.partition;
        metrics.restore_finished(table, partition);
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
