//! Commits and aborts: the one place positions become committed offsets.
//!
//! The rule (docs/ARCHITECTURE.md): **a position is committed only with every record it
//! caused.** Exactly-once: offsets go into the transaction that holds the outputs, changelog
//! records and dead letters of the inputs below them (when the inputs since the last commit
//! caused none, the group consumer commits the offsets alone); at-least-once: offsets are
//! committed only after the producer confirmed every delivery. So:
//! - once the instance must stop ([`Core::fail`]) nothing is committed any more: the open
//!   transaction is aborted on the way out, and a restart reads the inputs again;
//! - a failed send ([`Core::abort_needed`]), a failed delivery, or a failed commit aborts the
//!   open transaction and rewinds every assigned partition to its committed offset;
//! - records the broker refused as their own fault (too large, invalid) are remembered by
//!   input across the abort, so that when those inputs come again they are dead-lettered
//!   instead of failing the transaction once more.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};

use super::context::InstanceContext;
use super::fatal::Fatal;
use super::{Core, SWEEP_INTERVAL};
use crate::kafka::fault::{Fault, classify};
use crate::kafka::producer::{CALL_TIMEOUT, new_producer};
use crate::kafka::stats::Stats;
use crate::metrics::{TopicPartition, observe};
use crate::runtime::task::TaskOutput;

/// Aborts in a row (no successful commit between them) at which the instance stops with an
/// error instead of trying again: a restart (by the orchestrator) starts from the last commit.
const MAX_ABORTS_IN_A_ROW: u32 = 10;

/// Most inputs remembered with refused records (bounded: the oldest are forgotten first).
const MAX_REFUSED_INPUTS: usize = 100_000;

impl Core {
    /// Begins the transaction if none is open (exactly-once); `false` on a fatal error.
    pub(super) fn begin(&mut self) -> bool {
        if self.eos && !self.in_txn {
            if let Err(e) = self.producer.begin_transaction() {
                self.fail(Fatal::Begin(e));
                return false;
            }
            self.in_txn = true;
        }
        true
    }

    /// The open transaction must be aborted (and the inputs read again) before anything else.
    pub(super) fn abort_needed(&mut self, why: impl Into<String>) {
        self.pending_abort.get_or_insert_with(|| why.into());
    }

    /// Whether sending and committing have stopped (an abort or a stop is due).
    pub(super) fn stopping(&self) -> bool {
        self.failed() || self.pending_abort.is_some()
    }

    /// Deletes what the tasks' TTL tables hold past its time, inside the open transaction
    /// (the tombstones go to the changelogs with the outputs).
    fn sweep(&mut self) {
        if self.eos && !self.in_txn {
            return;
        }
        let mut out = TaskOutput::default();
        let mut swept = 0;
        for task in self.tasks.values_mut() {
            match task.sweep(&mut self.store, &mut out) {
                Ok(n) => swept += n,
                Err(e) => {
                    self.fail(Fatal::Sweep(e.to_string()));
                    break;
                }
            }
        }
        if swept > 0 {
            tracing::debug!(swept, "expired state entries deleted");
        }
        self.emit(&mut out);
    }

    /// A failure the delivery reports saw that retrying cannot mend.
    fn take_delivery_fatal(&mut self) {
        let fatal = self.deliveries.fatal.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(f) = fatal {
            self.fail(Fatal::Producer(f));
        }
    }

    /// Commits the open transaction (or, at-least-once, flushes and commits offsets). Commits
    /// nothing once the instance is stopping; `Err` when the commit failed (the caller aborts).
    fn commit(&mut self, consumer: &BaseConsumer<InstanceContext>) -> KafkaResult<()> {
        if self.stopping() {
            return Ok(());
        }
        if Instant::now() >= self.next_sweep {
            self.sweep();
            self.next_sweep = Instant::now() + SWEEP_INTERVAL;
            if self.stopping() {
                return Ok(());
            }
        }
        if self.positions.is_empty() && !self.in_txn {
            self.until.settle();
            return Ok(());
        }
        let started = Instant::now();
        // Offsets are committed only below inputs whose asynchronous work is unfinished.
        let mut tpl = TopicPartitionList::new();
        let mut committing = Vec::new();
        for ((topic, partition), next) in &self.positions {
            let unfinished = self
                .routes
                .sub_of_topic(topic)
                .and_then(|sub| self.tasks.get(&(sub, *partition)).and_then(|t| t.first_unfinished(topic)));
            let offset = unfinished.map_or(*next, |u| u.min(*next));
            tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))?;
            committing.push(((topic.clone(), *partition), offset));
        }
        self.add_fencing_offsets(consumer, &mut tpl)?;
        if self.eos && !self.sent_since_commit {
            // Nothing was sent since the last commit (filtered or deduplicated inputs, inputs
            // whose work is in flight): there is nothing for the offsets to be atomic with, so
            // the group's consumer commits them, fenced like a transactional offset commit by
            // the group generation (KIP-447), and the empty transaction ends without a request
            // (librdkafka sends no EndTxn for a transaction that registered no partition). One
            // round trip instead of AddOffsetsToTxn, TxnOffsetCommit and EndTxn; and Tansu
            // drops the offsets of a transaction that produced no record.
            if tpl.count() > 0
                && let Err(e) = consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            {
                // Nothing was sent, so nothing needs aborting: a commit the group cannot take
                // now (a plain commit is refused while a rebalance completes, where a
                // transactional one is not) waits for the next commit point. A fenced member
                // (a stale generation, an unknown member id) aborts and rewinds.
                if commit_can_wait(&e) {
                    tracing::debug!(error = %e, "offset commit deferred to the next commit point");
                    return Ok(());
                }
                return Err(e);
            }
            if self.in_txn {
                self.producer.commit_transaction(CALL_TIMEOUT)?;
                self.in_txn = false;
            }
        } else if self.eos {
            // Inputs read whose work is still in flight produce no output yet, so no
            // transaction may be open: their offsets are committed in one of their own.
            if !self.in_txn && !self.begin() {
                return Ok(());
            }
            if tpl.count() > 0 {
                let cgm = consumer.group_metadata().ok_or(KafkaError::Canceled)?;
                self.producer.send_offsets_to_transaction(&tpl, &cgm, CALL_TIMEOUT)?;
            }
            // librdkafka flushes and fails the commit when any delivery of the transaction
            // failed; the delivery reports say which records were at fault.
            self.producer.commit_transaction(CALL_TIMEOUT)?;
            self.in_txn = false;
        } else {
            self.producer.flush(CALL_TIMEOUT)?;
            let failures = self.deliveries.failures.load(Ordering::Relaxed);
            if failures > self.delivery_failures_seen {
                self.delivery_failures_seen = failures;
                return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
            }
            if tpl.count() > 0 {
                consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)?;
            }
        }
        self.sent_since_commit = false;
        self.punctuated.clear();
        self.aborts_in_a_row = 0;
        self.until.settle();
        for (tp, offset) in committing {
            let labels = TopicPartition { topic: tp.0.to_string(), partition: tp.1 };
            self.stats.metrics.committed(&labels, offset);
            if self.positions.get(&tp).is_some_and(|next| *next <= offset) {
                self.positions.remove(&tp);
            }
            // Inputs below a committed offset will not come again.
            if !self.refused.is_empty() {
                self.refused.retain(|(t, p, o), _| !(**t == *tp.0 && *p == tp.1 && *o < offset));
            }
        }
        // The transaction committed: seal the epoch with how far each changelog now reaches.
        let ends: Vec<((String, i32), i64)> =
            self.deliveries.changelog_ends.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let checkpoints = ends
            .into_iter()
            .filter_map(|((topic, p), end)| {
                self.routes.changelog_tables.get(&topic).map(|t| (t.clone(), p as u32, end + 1))
            })
            .collect();
        if let Err(e) = self.store.seal(checkpoints) {
            self.fail(Fatal::Seal(e));
        }
        Stats::add(&self.stats.commits, 1);
        observe(&self.stats.metrics.commit_latency, started.elapsed());
        Ok(())
    }

    /// Abandons the open transaction and rewinds every assigned partition to its committed
    /// offset, so its records are processed again.
    pub(super) fn abort(&mut self, consumer: &BaseConsumer<InstanceContext>, why: &str) {
        tracing::warn!(error = %why, "aborting the open transaction and rewinding");
        self.pending_abort = None;
        self.aborts_in_a_row += 1;
        // What was sent is aborted with the transaction, or (at-least-once) sent again.
        self.sent_since_commit = false;
        if self.eos && self.in_txn {
            if let Err(e) = self.abort_open_transaction() {
                self.fail(Fatal::Abort(e));
                return;
            }
            self.in_txn = false;
            // A new incarnation of the producer (same transactional id): some brokers (Tansu)
            // stop applying a producer's transactional offset commits after it aborted one.
            match new_producer(&self.producer_config, &self.deliveries) {
                Ok(p) => self.producer = p,
                Err(e) => {
                    self.fail(Fatal::ProducerRestart(e));
                    return;
                }
            }
        } else if !self.eos {
            // At-least-once: whatever is still queued is delivered (or reported) before the
            // rewind, so the refusals below are complete.
            let _ = self.producer.flush(CALL_TIMEOUT);
        }
        self.remember_refused();
        self.take_delivery_fatal();
        // Failed deliveries up to here belong to what is being read again.
        self.delivery_failures_seen = self.deliveries.failures.load(Ordering::Relaxed);
        if self.aborts_in_a_row >= MAX_ABORTS_IN_A_ROW {
            self.fail(Fatal::TooManyAborts { count: self.aborts_in_a_row, last: why.to_owned() });
        }
        self.positions.clear();
        self.punctuated.clear();
        // Tasks start afresh from the committed state; work they had in flight is forgotten
        // (its inputs are read again).
        self.tasks.clear();
        self.task_gen.clear();
        self.store.abort();
        self.deliveries.changelog_ends.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Stats::add(&self.stats.aborts, 1);
        self.stats.metrics.aborts.inc();
        let rewound = consumer.assignment().and_then(|a| consumer.committed_offsets(a, CALL_TIMEOUT)).and_then(|c| {
            let mut seek = TopicPartitionList::new();
            for e in c.elements() {
                let to = if e.offset() == Offset::Invalid { Offset::Beginning } else { e.offset() };
                seek.add_partition_offset(e.topic(), e.partition(), to)?;
            }
            consumer.seek_partitions(seek, CALL_TIMEOUT).map(|_| ())
        });
        if let Err(e) = rewound {
            self.fail(Fatal::Rewind(e));
        }
    }

    /// Aborts the open transaction. Records still queued are purged first and the delivery
    /// reports of those in flight are served (this thread polls the producer: librdkafka's
    /// abort waits for them but does not serve them).
    fn abort_open_transaction(&mut self) -> KafkaResult<()> {
        self.producer.purge(PurgeConfig::default().queue());
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
        }
        let aborted = self.producer.abort_transaction(CALL_TIMEOUT);
        self.producer.poll(Duration::ZERO);
        aborted
    }

    /// Keeps the records the broker refused as their own fault, by input, for when the inputs
    /// come again.
    fn remember_refused(&mut self) {
        let refused = std::mem::take(&mut *self.deliveries.refused.lock().unwrap_or_else(|p| p.into_inner()));
        for r in refused {
            tracing::warn!(
                topic = %r.topic, input_topic = %r.input.0, input_partition = r.input.1, input_offset = r.input.2,
                size = r.size, error = %r.error, "the broker refused a record; its input will be dead-lettered"
            );
            if self.refused.len() >= MAX_REFUSED_INPUTS
                && let Some(k) = self.refused.keys().next().cloned()
            {
                self.refused.remove(&k);
            }
            self.refused.entry(r.input.clone()).or_default().push(r);
        }
    }

    /// The loop's commit step: serves the producer's delivery reports, then aborts when a
    /// failed send made that due, and commits when the interval is up. Nothing is committed
    /// once the instance must stop.
    pub(super) fn commit_if_due(&mut self, consumer: &BaseConsumer<InstanceContext>) {
        self.producer.poll(Duration::ZERO);
        if let Some(why) = self.pending_abort.clone()
            && !self.failed()
        {
            self.abort(consumer, &why);
            self.next_commit = Instant::now() + self.commit_interval;
        }
        if !self.failed() && Instant::now() >= self.next_commit {
            self.commit_or_abort(consumer);
            self.next_commit = Instant::now() + self.commit_interval;
        }
    }

    /// Commits, or aborts and rewinds. Once the instance must stop, or an abort is due,
    /// nothing is committed: a due abort happens here, a stop's in the loop on the way out.
    pub(super) fn commit_or_abort(&mut self, consumer: &BaseConsumer<InstanceContext>) {
        self.take_delivery_fatal();
        if self.failed() {
            return;
        }
        if let Some(why) = self.pending_abort.clone() {
            return self.abort(consumer, &why);
        }
        if let Err(e) = self.commit(consumer) {
            self.take_delivery_fatal();
            match classify(&e) {
                Fault::Fatal => self.fail(Fatal::Commit(e)),
                _ if self.failed() => {}
                _ => self.abort(consumer, &format!("commit: {e}")),
            }
        } else if let Some(why) = self.pending_abort.clone() {
            // The sweep inside the commit failed to send.
            self.abort(consumer, &why);
        }
    }

    /// On the way out after a failure: the open transaction is aborted, so that nothing of it
    /// is ever committed.
    pub(super) fn abort_on_exit(&mut self) {
        if self.eos && self.in_txn {
            if let Err(e) = self.abort_open_transaction() {
                tracing::warn!(error = %e, "aborting the open transaction on exit failed; it times out on the broker");
            }
            self.in_txn = false;
        }
    }
}

/// Whether a failed offset commit of the group consumer may simply be tried again at the next
/// commit point: the group is rebalancing, its coordinator is moving or loading, or the
/// request timed out. Fencing errors (`ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`) and the rest
/// are not.
fn commit_can_wait(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::WaitingForCoordinator
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
        )
    )
}
