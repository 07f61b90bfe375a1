//! Reading: what one poll brought (a record, a partition's end, an error), each record run
//! through its task (created on its partition's first record) into the open transaction, the
//! global tables' records into the in-memory global store, and the state of newly assigned
//! partitions restored before their first record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafclaw_operators::RawView;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::context::InstanceContext;
use super::fatal::Fatal;
use super::{Core, lock};
use crate::kafka::fault::{Fault, classify};
use crate::kafka::producer::{CALL_TIMEOUT, QuietEof};
use crate::kafka::stats::Stats;
use crate::kafka::tables::restore::restore;
use crate::runtime::task::{BuildError, Task, TaskOutput};

/// Most records of the global tables read per turn of the loop.
const GLOBAL_BATCH: usize = 1000;

impl Core {
    pub(super) fn ensure_task(&mut self, sub: usize, partition: i32) -> Result<(), BuildError> {
        if !self.tasks.contains_key(&(sub, partition)) {
            let task = Task::new(self.plan.clone(), &self.plan.subtopologies[sub], partition)?;
            tracing::debug!(subtopology = sub, partition, "task started");
            self.generation += 1;
            self.task_gen.insert((sub, partition), self.generation);
            self.tasks.insert((sub, partition), task);
        }
        Ok(())
    }

    pub(super) fn drop_task(&mut self, sub: usize, partition: i32) {
        self.tasks.remove(&(sub, partition));
        self.task_gen.remove(&(sub, partition));
    }

    /// What one poll of the group's consumer brought.
    pub(super) fn on_polled(&mut self, polled: Option<KafkaResult<BorrowedMessage<'_>>>) {
        match polled {
            Some(Ok(m)) => {
                self.process(&m);
                self.until.record_seen();
            }
            // Replay: the partition is read to its end (see `until.rs`).
            Some(Err(KafkaError::PartitionEOF(p))) => self.until.partition_end(p),
            Some(Err(e)) if classify(&e) == Fault::Fatal => self.fail(Fatal::Consume(e)),
            Some(Err(e)) => tracing::warn!(error = %e, "consume error"),
            None => {}
        }
    }

    /// Runs one record through its task and sends what it output into the open transaction.
    pub(super) fn process(&mut self, m: &BorrowedMessage<'_>) {
        if self.routes.global_topics.contains(m.topic()) {
            return self.process_global(m);
        }
        // After a failure nothing more is processed: the record is read again after the abort
        // (or the restart), from the last committed offset.
        if self.stopping() || !self.begin() {
            return;
        }
        let Some((sub, mut out)) = self.run_record(m, false) else { return };
        self.spawn(&mut out, sub, m.partition());
        Stats::add(&self.stats.consumed, 1);
        Stats::add(&self.stats.deduplicated, std::mem::take(&mut out.deduplicated));
        self.emit(&mut out);
        self.out = out;
        let location = self.location(m.topic());
        self.positions.insert((location, m.partition()), m.offset() + 1);
    }

    /// The topic's name as the records read from it share it (allocated once per topic).
    fn location(&mut self, topic: &str) -> Arc<str> {
        if let Some(l) = self.locations.get(topic) {
            return l.clone();
        }
        let l: Arc<str> = topic.into();
        self.locations.insert(topic.to_owned(), l.clone());
        l
    }

    /// Decodes `m` and runs it through its task (created on its partition's first record),
    /// on the global store for a global table; the task's outputs, to be handled by the caller.
    fn run_record(&mut self, m: &BorrowedMessage<'_>, global: bool) -> Option<(usize, TaskOutput)> {
        let topic = m.topic();
        let source = self.routes.source(topic)?;
        let sub = self.routes.sub_of_node[source];
        let location = self.location(topic);
        let raw = RawView {
            bytes: m.payload().unwrap_or_default(),
            partition: m.partition(),
            offset: m.offset(),
            line: None,
        };
        if let Err(e) = self.ensure_task(sub, m.partition()) {
            self.fail(Fatal::Build(e));
            return None;
        }
        let mut out = std::mem::take(&mut self.out);
        let task = self.tasks.get_mut(&(sub, m.partition())).expect("ensured above");
        let store = if global { &mut self.global_store } else { &mut self.store };
        task.process_raw(source, &location, raw, store, &mut out);
        Some((sub, out))
    }

    /// A record of a global table: into the in-memory global store, no changelog, no offsets;
    /// only dead letters leave the instance.
    fn process_global(&mut self, m: &BorrowedMessage<'_>) {
        if self.stopping() {
            return;
        }
        let Some((_, mut out)) = self.run_record(m, true) else { return };
        out.changelog.clear();
        if !out.spawned.is_empty() {
            tracing::warn!(
                topic = m.topic(),
                "asynchronous operators do not run on global tables; their work is dropped"
            );
            out.spawned.clear();
        }
        // A global table is not rewound (no offsets): its store failing stops the instance.
        if let Some(failure) = out.state_failure.take() {
            self.fail(Fatal::GlobalState(failure));
        }
        if let Err(e) = self.global_store.seal(Vec::new()) {
            self.fail(Fatal::GlobalTable(e));
        }
        if !out.dead_letters.is_empty() && self.begin() {
            self.emit(&mut out);
        }
        out.dead_letters.clear();
        self.out = out;
    }

    /// Restores the state of newly assigned partitions (queued by the assign callback) before
    /// any of their records is processed.
    pub(super) fn restore_pending(&mut self, consumer: &BaseConsumer<InstanceContext>) {
        if self.pending_restore.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.pending_restore);
        let mut tpl = TopicPartitionList::new();
        for job in &jobs {
            for &s in &self.plan.subtopologies[job.sub].sources {
                if let Some(t) = self.plan.nodes[s].config.kafka_topic() {
                    tpl.add_partition(t, job.partition);
                }
            }
        }
        let committed = match consumer.committed_offsets(tpl, CALL_TIMEOUT) {
            Ok(c) => c
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                self.fail(Fatal::RestoreOffsets(e));
                return;
            }
        };
        if let Err(e) = restore(&self.plan, &mut self.store, &self.settings, &committed, &jobs) {
            self.fail(Fatal::Restore(e));
        }
    }
}

/// Follows the global tables: what arrived since the last turn (at most [`GLOBAL_BATCH`]
/// records), each under the lock on its own.
pub(super) fn follow_globals(global: &BaseConsumer<QuietEof>, core: &Mutex<Core>) {
    for _ in 0..GLOBAL_BATCH {
        match global.poll(Duration::ZERO) {
            Some(Ok(m)) => lock(core).process(&m),
            Some(Err(KafkaError::PartitionEOF(_))) | None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "global table consume error");
                break;
            }
        }
    }
}
