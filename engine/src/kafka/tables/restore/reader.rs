//! One changelog reader of a restore: reads its share of a table's partitions, each from its
//! start offset to its end, keeps the records of committed inputs, buffers them per partition
//! and hands the buffers to the restore's state writer (see the parent module).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use kafclaw_state::Restored;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::kafka::headers;
use crate::kafka::producer::QuietEof;
use crate::metrics::InstanceMetrics;

/// How long a changelog may stay silent before the reader gives up waiting for its end.
const QUIET: Duration = Duration::from_secs(10);

/// Per table-partition progress of a restore.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) partition: i32,
    /// The next changelog offset to read (`None`: nothing read and no checkpoint).
    pub(super) next: Option<i64>,
    pub(super) restored: u64,
    pub(super) skipped: u64,
    pub(super) resets: u64,
    pub(super) bytes: u64,
    /// Records read since the metrics were last told.
    unreported: u64,
    done: bool,
}

impl Progress {
    /// A partition about to be read from `next` (its checkpoint, if any).
    pub(super) fn new(partition: i32, next: Option<i64>) -> Self {
        Self { partition, next, ..Self::default() }
    }
}

/// What a reader hands the state writer, in the order it read it.
pub(super) enum Handed {
    /// Buffers to load, each with its partition's checkpoint: every record of the partition
    /// below it is in these buffers, in an earlier load, or skipped. `read` counts the records
    /// read since the reader's last hand-over; `reader` names the reader, which gets the
    /// emptied buffers back.
    Load { reader: usize, buffers: Vec<Restored>, read: u64 },
    /// A reset marker was read: drop the partition's state (loaded before the marker).
    Drop { partition: u32 },
}

/// Why a reader ended before its partitions' end.
pub(super) enum Ended {
    /// Another reader or the writer failed (the cause is theirs).
    Stopped,
    /// This reader's consumer failed (the broker's error, as text).
    Failed(String),
}

/// Sets the shared stop flag when dropped armed: a reader that ends early, by an error or a
/// panic, stops the others.
struct StopOthers<'a>(Option<&'a AtomicBool>);

impl Drop for StopOthers<'_> {
    fn drop(&mut self) {
        if let Some(stop) = self.0 {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// What every reader of one table's restore shares.
pub(super) struct Shared<'a> {
    pub(super) table: &'a str,
    /// A journal table: every record is applied, committed input or not.
    pub(super) journal: bool,
    /// The topics the restored sub-topologies read (a write from any other input was made by
    /// a punctuation and is applied).
    pub(super) source_topics: HashSet<&'a str>,
    /// Committed offset of each (source topic, partition).
    pub(super) committed: HashMap<(&'a str, i32), i64>,
    pub(super) metrics: &'a InstanceMetrics,
    /// Set by a reader that failed, or by the writer: every reader stops.
    pub(super) stop: AtomicBool,
}

/// One reader: its consumer (assigned its partitions) and their progress.
pub(super) struct Reader {
    pub(super) id: usize,
    pub(super) consumer: BaseConsumer<QuietEof>,
    pub(super) progress: Vec<Progress>,
    /// Buffered bytes (keys and values, all its partitions) handed over at once.
    pub(super) load_bytes: usize,
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

impl Reader {
    /// Reads every assigned partition to its end, handing buffers to the writer through
    /// `to_writer` and getting them back emptied through `spares`; at most two sets of
    /// buffers exist (one filling, one loading). Returns the partitions' progress. Errors: the
    /// consumer's, or stopped (the writer or another reader failed); either way, and on a
    /// panic, the other readers stop too.
    pub(super) fn run(
        mut self,
        shared: &Shared<'_>,
        to_writer: SyncSender<Handed>,
        spares: Receiver<Vec<Restored>>,
    ) -> Result<Vec<Progress>, Ended> {
        let mut others = StopOthers(Some(&shared.stop));
        self.read(shared, &to_writer, &spares)?;
        others.0 = None;
        Ok(self.progress)
    }

    fn read(
        &mut self,
        shared: &Shared<'_>,
        to_writer: &SyncSender<Handed>,
        spares: &Receiver<Vec<Restored>>,
    ) -> Result<(), Ended> {
        let table = shared.table;
        let gone = || Ended::Stopped;
        let index: HashMap<i32, usize> = self.progress.iter().enumerate().map(|(i, p)| (p.partition, i)).collect();
        let fresh = |progress: &[Progress]| -> Vec<Restored> {
            progress.iter().map(|p| Restored::new(table, p.partition as u32)).collect()
        };
        let mut buffers = fresh(&self.progress);
        let mut spare = Some(fresh(&self.progress));
        let mut buffered = 0usize;
        let mut read = 0u64;
        let id = self.id;
        let mut hand_over = |buffers: &mut Vec<Restored>, progress: &mut [Progress], read: &mut u64| {
            for (b, p) in buffers.iter_mut().zip(progress.iter_mut()) {
                b.checkpoint = p.next;
                shared.metrics.restored(table, p.partition, std::mem::take(&mut p.unreported));
            }
            let next = match spare.take() {
                Some(s) => s,
                None => spares.recv().map_err(|_| gone())?,
            };
            let full = std::mem::replace(buffers, next);
            to_writer.send(Handed::Load { reader: id, buffers: full, read: std::mem::take(read) }).map_err(|_| gone())
        };
        let mut quiet_since = Instant::now();
        while self.progress.iter().any(|p| !p.done) {
            if shared.stop.load(Ordering::Relaxed) {
                return Err(gone());
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    quiet_since = Instant::now();
                    let Some(&i) = index.get(&m.partition()) else { continue };
                    let p = &mut self.progress[i];
                    p.next = Some(m.offset() + 1);
                    p.unreported += 1;
                    read += 1;
                    let coordinates = Coordinates::of(&m);
                    if coordinates.is_reset() {
                        // Everything before the marker belongs to the state replay threw away:
                        // the buffered records go, and the writer drops what it loaded.
                        buffered -= buffers[i].bytes();
                        buffers[i].clear();
                        to_writer.send(Handed::Drop { partition: m.partition() as u32 }).map_err(|_| gone())?;
                        p.resets += 1;
                        continue;
                    }
                    if !shared.journal {
                        let input_offset: i64 = number(coordinates.offset).unwrap_or(i64::MAX);
                        let input_topic =
                            coordinates.topic.flatten().and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("");
                        let from_source = input_offset == i64::MAX || shared.source_topics.contains(input_topic);
                        if from_source {
                            let input_partition: i32 = number(coordinates.partition).unwrap_or(-1);
                            let committed = shared.committed.get(&(input_topic, input_partition)).copied().unwrap_or(0);
                            if input_offset >= committed {
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
                    if buffered >= self.load_bytes {
                        hand_over(&mut buffers, &mut self.progress, &mut read)?;
                        buffered = 0;
                        // Waiting for the writer is not the changelog's silence.
                        quiet_since = Instant::now();
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // A reader reads one table's changelog: the partition number alone names the
                    // changelog partition.
                    if let Some(&i) = index.get(&partition) {
                        self.progress[i].done = true;
                    }
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                    self.progress.iter_mut().for_each(|p| p.done = true);
                }
                Some(Err(e)) => return Err(Ended::Failed(e.to_string())),
                None if quiet_since.elapsed() > QUIET => {
                    let waiting: Vec<i32> = self.progress.iter().filter(|p| !p.done).map(|p| p.partition).collect();
                    tracing::warn!(
                        table, partitions = ?waiting,
                        "changelog reader saw no end-of-partition for {QUIET:?}; treating the changelogs as fully read"
                    );
                    break;
                }
                None => {}
            }
        }
        hand_over(&mut buffers, &mut self.progress, &mut read)
    }
}
