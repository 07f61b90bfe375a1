//! Reading: what one poll brought (a record, a partition's end, an error), each record fed
//! through the driver to its task (created on its partition's first record) and its output
//! into the open transaction, the global tables' records into the in-memory global store, and
//! the state of newly assigned partitions restored before their first record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafclaw_operators::RawView;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::context::InstanceContext;
use super::fatal::Fatal;
use super::{Core, Instance, lock};
use crate::kafka::fault::{Fault, classify};
use crate::kafka::producer::{CALL_TIMEOUT, QuietEof};
use crate::kafka::stats::Stats;
use crate::kafka::tables::restore::restore;
use crate::metrics::{TopicPartition, observe};
use crate::runtime::task::{BuildError, Task};

/// Most records of the global tables read per turn of the loop.
const GLOBAL_BATCH: usize = 1000;

impl Core {
    pub(super) fn ensure_task(&mut self, sub: usize, partition: i32) -> Result<(), BuildError> {
        if !self.tasks.contains_key(&(sub, partition)) {
            let mut task = Task::new(self.plan.clone(), &self.plan.subtopologies[sub], partition)?;
            task.count_with(self.stats.metrics.operators.counters(&self.plan));
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

    /// The topic's name as the records read from it share it (allocated once per topic).
    fn location(&mut self, topic: &str) -> Arc<str> {
        if let Some(l) = self.locations.get(topic) {
            return l.clone();
        }
        let l: Arc<str> = topic.into();
        self.locations.insert(topic.to_owned(), l.clone());
        l
    }

    /// Where `m` goes: (its source's plan index, its sub-topology, its location), with the task
    /// of its partition created on its first record. `None` for a topic the plan does not read,
    /// or when the task cannot be built (the instance must stop).
    fn route(&mut self, m: &BorrowedMessage<'_>) -> Option<(usize, usize, Arc<str>)> {
        let source = self.routes.source(m.topic())?;
        let sub = self.routes.sub_of_node[source];
        let location = self.location(m.topic());
        if let Err(e) = self.ensure_task(sub, m.partition()) {
            self.fail(Fatal::Build(e));
            return None;
        }
        Some((source, sub, location))
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
                .collect::<std::collections::HashMap<_, _>>(),
            Err(e) => {
                self.fail(Fatal::RestoreOffsets(e));
                return;
            }
        };
        for ((topic, partition), offset) in &committed {
            self.stats.metrics.committed(&TopicPartition { topic: topic.clone(), partition: *partition }, *offset);
        }
        if let Err(e) = restore(&self.plan, &mut self.store, &self.settings, &committed, &jobs, &self.stats.metrics) {
            self.fail(Fatal::Restore(e));
        }
    }
}

impl Instance {
    /// What one poll of the group's consumer brought.
    pub(super) fn on_polled(&mut self, polled: Option<KafkaResult<BorrowedMessage<'_>>>) {
        match polled {
            Some(Ok(m)) => {
                self.process(&m);
                self.core.until.record_seen();
            }
            // Replay: the partition is read to its end (see `until.rs`).
            Some(Err(KafkaError::PartitionEOF(p))) => self.core.until.partition_end(p),
            Some(Err(e)) if classify(&e) == Fault::Fatal => self.core.fail(Fatal::Consume(e)),
            Some(Err(e)) => tracing::warn!(error = %e, "consume error"),
            None => {}
        }
    }

    /// Feeds one record to its task; its output goes into the open transaction.
    pub(super) fn process(&mut self, m: &BorrowedMessage<'_>) {
        let core = &mut self.core;
        if !core.routes.global_topics.is_empty() && core.routes.global_topics.contains(m.topic()) {
            let _in = crate::telemetry::kafka_process_span(consumed(m), &core.plan.name).entered();
            return self.process_global(m);
        }
        // After a failure nothing more is processed: the record is read again after the abort
        // (or the restart), from the last committed offset.
        if core.stopping() || !core.begin() {
            return;
        }
        let Some((source, sub, location)) = core.route(m) else { return };
        // The record's consumer span (a child of its `traceparent`); the work it starts runs in it.
        let span = crate::telemetry::kafka_process_span(consumed(m), &core.plan.name);
        let _in = span.enter();
        let key = core.task_key(sub, m.partition());
        let started = Instant::now();
        let Ok(fed) = self.driver.feed(core, key, source, &location, raw(m));
        if fed {
            observe(&core.stats.metrics.process_latency, started.elapsed());
            core.stats.metrics.consumed(&location, m.partition());
            Stats::add(&core.stats.consumed, 1);
            core.positions.insert((location, m.partition()), m.offset() + 1);
        }
    }

    /// A record of a global table: into the in-memory global store, no changelog, no offsets;
    /// only dead letters leave the instance.
    fn process_global(&mut self, m: &BorrowedMessage<'_>) {
        let core = &mut self.core;
        if core.stopping() {
            return;
        }
        let Some((source, sub, location)) = core.route(m) else { return };
        let task = core.tasks.get_mut(&(sub, m.partition())).expect("routed");
        let out = self.driver.process(task, source, &location, raw(m), &mut core.global_store);
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
            core.fail(Fatal::GlobalState(failure));
        }
        if let Err(e) = core.global_store.seal(Vec::new()) {
            core.fail(Fatal::GlobalTable(e));
        }
        if !out.dead_letters.is_empty() && core.begin() {
            core.emit(out);
        }
        out.dead_letters.clear();
    }
}

/// What the record's span needs of it.
fn consumed<'m>(m: &'m BorrowedMessage<'_>) -> crate::telemetry::Consumed<'m> {
    use rdkafka::message::Headers;
    crate::telemetry::Consumed {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        body_size: m.payload_len(),
        traceparent: m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == crate::kafka::headers::TRACEPARENT))
            .and_then(|h| h.value),
    }
}

/// The record as its task reads it.
fn raw<'m>(m: &'m BorrowedMessage<'_>) -> RawView<'m> {
    RawView { bytes: m.payload().unwrap_or_default(), partition: m.partition(), offset: m.offset(), line: None }
}

/// Follows the global tables: what arrived since the last turn (at most [`GLOBAL_BATCH`]
/// records), each under the lock on its own.
pub(super) fn follow_globals(global: &BaseConsumer<QuietEof>, instance: &Mutex<Instance>) {
    for _ in 0..GLOBAL_BATCH {
        match global.poll(Duration::ZERO) {
            Some(Ok(m)) => lock(instance).process(&m),
            Some(Err(KafkaError::PartitionEOF(_))) | None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "global table consume error");
                break;
            }
        }
    }
}
