//! Restoring state tables from their changelogs when partitions are assigned.
//!
//! A table's pending partitions are read at once by its readers (no group, read_committed,
//! partition-EOF events), each from its local checkpoint (or the beginning) to its end. A
//! changelog record counts only when the input that produced it is below the source's
//! committed offset: records of transactions that never committed (which some brokers leak)
//! are skipped, and since values are absolute, re-applying committed ones is harmless. A
//! record whose input is no source of the table's sub-topology (a punctuation's write) has no
//! offset to hold against and is applied.
//! A record carrying the [`RESET`](crate::kafka::headers::RESET) header is a reset marker written by
//! `kafclaw replay`: the state of that table-partition is dropped and restoring continues from
//! the marker, so every instance forgets pre-replay state however old its local copy is.
//! Runs on the stream thread outside the rebalance callback, so the group sees the member
//! alive while it restores. Progress shows as a bar on a terminal, log lines otherwise.
//!
//! Throughput: a table's partitions are shared among up to [`default_readers`] changelog
//! readers, one thread and one consumer (with its own connection and fetch in flight) each: a
//! reader is bound by its fetch round trips or by its poll loop (~1.6 µs a record here;
//! docs/benchmarks.md, "State restore"). Each reader buffers records per partition without
//! an allocation each (the store's [`Restored`]) and hands its buffers over every
//! [`LOAD_BYTES`] ÷ readers; the state writer (the calling thread) bulk-loads them
//! ([`StateStore::load`]: RocksDB sorts each partition into an SST file, partitions in
//! parallel, and ingests them, bypassing the memtable and the WAL — the changelog is the truth)
//! while the readers go on reading. A partition belongs to one reader, so its loads and its
//! reset markers reach the writer in the order read. A partition's checkpoint is written only
//! once the data it covers is on disk, so a crash mid-restore resumes from an older
//! checkpoint, never a newer one.

mod reader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use kafclaw_state::{Restored, StateStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use self::reader::{Ended, Handed, Progress, Reader, Shared};
use crate::compiler::PhysicalPlan;
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

/// Buffered bytes (keys and values, all partitions of a table) before a load, shared among
/// the table's readers (each hands over at its share): the default
/// [`RestoreOptions::load_bytes`].
pub const LOAD_BYTES: usize = 32 << 20;

/// One changelog reader's librdkafka defaults when `readers` share a table (a topology's
/// `[kafka]` table overrides them): large fetches and a deep prefetch queue, since a restore
/// reads as fast as it can; the fetch and queue sizes (64 MiB, 256 MiB for one reader) are
/// divided among the readers, so prefetched memory stays that of one reader up to 4 readers,
/// each keeping at least one partition's fetch (16 MiB) and 32 MiB of queue past that.
pub fn reader_defaults(readers: usize) -> [(&'static str, String); 4] {
    let readers = readers.max(1);
    [
        ("fetch.max.bytes", ((64 << 20) / readers).max(16 << 20).to_string()),
        ("max.partition.fetch.bytes", (16 << 20).to_string()),
        ("queued.max.messages.kbytes", ((256 << 10) / readers).max(32 << 10).to_string()),
        ("queued.min.messages", "1000000".to_owned()),
    ]
}

/// [`reader_defaults`] as `client_config_with` takes them.
pub fn as_pairs<'a>(defaults: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    defaults.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// How a restore reads and writes; the default is what the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Readers of one table at most (and at most one per partition; 0 counts as 1). Default:
    /// [`default_readers`].
    pub readers: usize,
    /// Bytes of keys and values a table's readers buffer, all together, before a load.
    /// Default: [`LOAD_BYTES`].
    pub load_bytes: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self { readers: default_readers(), load_bytes: LOAD_BYTES }
    }
}

/// Restores `jobs` with the default [`RestoreOptions`], one table after another.
/// `committed` holds the committed offset of every (source topic, partition) the jobs'
/// sub-topologies read. Errors: the broker's or the store's, as text.
pub fn restore(
    plan: &PhysicalPlan,
    store: &mut TaskStore,
    settings: &ClientSettings,
    committed: &HashMap<(String, i32), i64>,
    jobs: &[RestoreJob],
    metrics: &InstanceMetrics,
) -> Result<(), String> {
    let context = RestoreContext { plan, settings, committed, metrics };
    restore_with(&context, store, jobs, RestoreOptions::default())
}

/// What a restore reads against: the plan, the client settings, the committed offset of every
/// (source topic, partition) the jobs' sub-topologies read, and the metrics to tell.
pub struct RestoreContext<'a> {
    /// The compiled topology.
    pub plan: &'a PhysicalPlan,
    /// The client settings (the readers add [`reader_defaults`]).
    pub settings: &'a ClientSettings,
    /// Committed offset of each (source topic, partition).
    pub committed: &'a HashMap<(String, i32), i64>,
    /// The instance's metrics.
    pub metrics: &'a InstanceMetrics,
}

/// [`restore`] with the given options.
pub fn restore_with(
    context: &RestoreContext<'_>,
    store: &mut TaskStore,
    jobs: &[RestoreJob],
    options: RestoreOptions,
) -> Result<(), String> {
    let started = Instant::now();
    let mut tables: Vec<&str> = jobs.iter().map(|j| j.table.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        let mine: Vec<RestoreJob> = jobs.iter().filter(|j| j.table == table).cloned().collect();
        let count = options.readers.min(mine.len()).max(1);
        restore_table(context, store, &mine, count, options.load_bytes / count)?;
    }
    if !jobs.is_empty() {
        tracing::info!(partitions = jobs.len(), ms = started.elapsed().as_millis() as u64, "restore finished");
    }
    Ok(())
}

/// How many readers [`restore`] gives a table at most: one per core, at most [`MAX_READERS`].
pub fn default_readers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores.clamp(1, MAX_READERS)
}

/// The most readers one table's restore starts (each is a consumer with its own broker
/// connection and threads).
pub const MAX_READERS: usize = 8;

/// Restores the partitions of one table (`jobs` all name the same table) with `count` readers
/// (1 ≤ `count` ≤ the jobs), each handing its buffers over every `load_bytes`.
fn restore_table(
    context: &RestoreContext<'_>,
    store: &mut TaskStore,
    jobs: &[RestoreJob],
    count: usize,
    load_bytes: usize,
) -> Result<(), String> {
    let RestoreContext { plan, settings, committed, metrics } = *context;
    let Some(table) = jobs.first().map(|j| j.table.as_str()) else { return Ok(()) };
    let shared = Shared {
        table,
        journal: jobs.iter().all(|j| j.journal),
        // The topics the restored sub-topologies read: a write whose input is not one of them
        // was made by a punctuation (a schedule's tick, a timeout), with no input offset to
        // hold it against; it is applied, as `read_committed` shows only committed ones on
        // Apache Kafka (docs/kafka-brokers.md: brokers that leak aborted records).
        source_topics: jobs
            .iter()
            .flat_map(|j| plan.subtopologies[j.sub].sources.iter())
            .filter_map(|&s| plan.nodes[s].config.kafka_topic())
            .collect(),
        committed: committed.iter().map(|((t, p), o)| ((t.as_str(), *p), *o)).collect(),
        metrics,
        stop: AtomicBool::new(false),
    };
    let topic = changelog_topic(plan, table);
    store.store_mut().open_table(table).map_err(|e| e.to_string())?;
    let mut total = 0u64;
    let mut readers = Vec::with_capacity(count);
    let defaults = reader_defaults(count);
    for id in 0..count {
        let consumer: BaseConsumer<QuietEof> = settings
            .client_config_with(
                &as_pairs(&defaults),
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
        let mut assign = TopicPartitionList::new();
        let mut progress = Vec::new();
        // The partitions dealt out in turn.
        for job in jobs.iter().skip(id).step_by(count) {
            let from = store.store().checkpoint(table, job.partition as u32).map_err(|e| e.to_string())?;
            // The watermarks first: an explicit start offset spares librdkafka the offset
            // query it would otherwise retry only after 500 ms, its partition leader not known.
            let start = match consumer.fetch_watermarks(&topic, job.partition, Duration::from_secs(10)) {
                Ok((low, high)) => {
                    let remaining = (high - from.unwrap_or(low).max(low)).max(0);
                    total += remaining as u64;
                    metrics.restore_started(table, job.partition, remaining);
                    Offset::Offset(from.unwrap_or(low).max(low))
                }
                Err(_) => from.map_or(Offset::Beginning, Offset::Offset),
            };
            assign.add_partition_offset(&topic, job.partition, start).map_err(|e| e.to_string())?;
            progress.push(Progress::new(job.partition, from));
        }
        consumer.assign(&assign).map_err(|e| e.to_string())?;
        readers.push(Reader { id, consumer, progress, load_bytes: load_bytes.max(1) });
    }
    let mut bar = Bar::new("restore", total);
    let progress = std::thread::scope(|scope| -> Result<Vec<Progress>, String> {
        let (to_writer, handed) = std::sync::mpsc::sync_channel(count);
        let mut spares = Vec::with_capacity(count);
        let mut running = Vec::with_capacity(count);
        for reader in readers {
            let (spare_tx, spare_rx) = std::sync::mpsc::channel();
            spares.push(spare_tx);
            let (to_writer, shared) = (to_writer.clone(), &shared);
            let thread = std::thread::Builder::new()
                .name(format!("restore-{}", reader.id))
                .spawn_scoped(scope, move || reader.run(shared, to_writer, spare_rx))
                .map_err(|e| {
                    shared.stop.store(true, Ordering::Relaxed);
                    format!("starting a changelog reader: {e}")
                })?;
            running.push(thread);
        }
        drop(to_writer);
        let written =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(store, &shared, handed, spares, &mut bar)))
                .unwrap_or_else(|_| Err("the restore's state writer panicked (an infrastructure fault)".to_owned()));
        if written.is_err() {
            shared.stop.store(true, Ordering::Relaxed);
        }
        let mut progress = Vec::new();
        let (mut failed, mut stopped) = (None, false);
        for thread in running {
            match thread.join() {
                Ok(Ok(p)) => progress.extend(p),
                Ok(Err(Ended::Failed(e))) => failed = failed.or(Some(e)),
                Ok(Err(Ended::Stopped)) => stopped = true,
                Err(_) => failed = failed.or(Some("a changelog reader panicked (an infrastructure fault)".to_owned())),
            }
        }
        // The writer's error, else the first failed reader's (in join order); the readers a
        // failure stopped say only that they stopped.
        written?;
        match (failed, stopped) {
            (Some(e), _) => Err(e),
            (None, true) => Err("a changelog reader stopped before its partitions' end".to_owned()),
            (None, false) => Ok(progress),
        }
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

/// The state writer: applies what the readers hand over, in the order each read it, until
/// every reader is done; loads that arrive together are loaded together (their partitions in
/// parallel). Returns the emptied buffers to their readers. Errors: the store's; on one the
/// channels close and the readers stop.
fn write(
    store: &mut TaskStore,
    shared: &Shared<'_>,
    handed: Receiver<Handed>,
    spares: Vec<Sender<Vec<Restored>>>,
    bar: &mut Bar,
) -> Result<(), String> {
    let mut read = 0u64;
    let mut next = handed.recv().ok();
    while let Some(first) = next.take() {
        match first {
            Handed::Drop { partition } => {
                store.store_mut().drop_partition(shared.table, partition).map_err(|e| e.to_string())?;
                next = handed.recv().ok();
            }
            Handed::Load { reader, buffers, read: n } => {
                // Every load already waiting joins this one; a reset stops the gathering.
                let mut owners = vec![(reader, buffers.len())];
                let mut all = buffers;
                read += n;
                loop {
                    match handed.try_recv() {
                        Ok(Handed::Load { reader, buffers, read: n }) => {
                            owners.push((reader, buffers.len()));
                            all.extend(buffers);
                            read += n;
                        }
                        Ok(reset) => {
                            next = Some(reset);
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                store.store_mut().load(&all).map_err(|e| format!("writing restored state: {e}"))?;
                bar.set(read);
                let mut all = all.into_iter();
                for (reader, n) in owners {
                    let mut buffers: Vec<Restored> = all.by_ref().take(n).collect();
                    buffers.iter_mut().for_each(Restored::clear);
                    // A reader that finished wants no buffers back.
                    let _ = spares[reader].send(buffers);
                }
                if next.is_none() {
                    next = handed.recv().ok();
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_the_prefetch_memory_of_one() {
        let get = |readers: usize, key: &str| -> usize {
            reader_defaults(readers).iter().find(|(k, _)| *k == key).map(|(_, v)| v.parse().unwrap()).unwrap()
        };
        assert_eq!(get(1, "fetch.max.bytes"), 64 << 20);
        assert_eq!(get(1, "queued.max.messages.kbytes"), 256 << 10);
        for readers in [2, 4] {
            assert_eq!(get(readers, "fetch.max.bytes") * readers, 64 << 20, "{readers} readers");
            assert_eq!(get(readers, "queued.max.messages.kbytes") * readers, 256 << 10, "{readers} readers");
        }
        // Never below one partition's fetch, nor 0 readers.
        assert_eq!(get(MAX_READERS, "fetch.max.bytes"), 16 << 20);
        assert_eq!(get(0, "fetch.max.bytes"), 64 << 20);
    }
}
