//! What reaches the shared instance from outside the poll loop: the consumer's rebalance callbacks
//! (commit before a revoke, queue restores on an assignment) and interactive state queries.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};

use super::{DRAIN_TIMEOUT, Instance, lock};
use crate::kafka::producer::forward_log;
use crate::kafka::tables::restore::RestoreJob;
use crate::metrics::TopicPartition;
use crate::runtime::query::{self, KeyValue, QueryError, StateQuery, TableReport};

/// Interactive queries over the instance's committed state: the RocksDB store every stream
/// thread seals its epochs into (atomic write batches), read without stopping any thread.
pub(super) struct StoreQuery {
    pub(super) store: kafclaw_state::RocksStore,
    /// The time-to-live of each TTL table (milliseconds), so expired entries stay hidden.
    pub(super) ttls: HashMap<String, i64>,
}

impl StateQuery for StoreQuery {
    fn inspect(&self, samples: usize) -> Result<Vec<TableReport>, QueryError> {
        query::inspect(&self.store, &self.ttls, samples)
    }

    fn get(&self, table: &str, key: &[u8]) -> Result<Vec<KeyValue>, QueryError> {
        query::get(&self.store, &self.ttls, table, key)
    }
}

/// The consumer's context: rebalance callbacks reach the shared instance.
pub(super) struct InstanceContext {
    pub(super) instance: Arc<Mutex<Instance>>,
    /// The instance's counters (reached without the instance's lock).
    pub(super) stats: Arc<crate::kafka::Stats>,
    /// Which stream thread of the instance this consumer is (for the logs).
    pub(super) thread: usize,
}

impl InstanceContext {
    fn lock(&self) -> MutexGuard<'_, Instance> {
        lock(&self.instance)
    }
}

impl ClientContext for InstanceContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        super::lag::on_statistics(&self.stats.metrics, &statistics);
    }
}

impl ConsumerContext for InstanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut instance = self.lock();
            // Finish the work in flight and the open transaction before the partitions go to
            // another instance.
            instance.drain_in_flight(DRAIN_TIMEOUT);
            let core = &mut instance.core;
            core.commit_or_abort(consumer);
            // After a failure the open transaction is not committed: abort it now, so that its
            // records never hold back the partitions' next owner.
            if core.failed() {
                core.abort_on_exit();
            }
            for e in tpl.elements() {
                // What was not committed above (inputs whose work is still in flight, or a
                // commit that failed or waits) is the next owner's to read again: a position
                // kept past its task would be committed later with nothing holding it back,
                // skipping inputs whose work was dropped with the task.
                core.positions.retain(|(t, p), _| !(**t == *e.topic() && *p == e.partition()));
                if let Some(sub) = core.routes.sub_of_topic(e.topic()) {
                    core.drop_task(sub, e.partition());
                    core.assigned.remove(&(sub, e.partition()));
                    core.punctuated.remove(&(sub, e.partition()));
                }
            }
            core.stats.assigned.fetch_sub(tpl.count() as u64, Ordering::Relaxed);
            core.stats.metrics.rebalanced("revoked");
            for e in tpl.elements() {
                core.stats.metrics.forget(&TopicPartition { topic: e.topic().to_owned(), partition: e.partition() });
            }
            tracing::info!(thread = self.thread, revoked = tpl.count(), partitions = %describe(tpl), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut instance = self.lock();
                let core = &mut instance.core;
                // Queue the state tables of the new partitions for restoring; the stream thread
                // restores them right after this callback, before processing any record.
                for e in tpl.elements() {
                    if let Some(sub) = core.routes.sub_of_topic(e.topic()) {
                        core.assigned.insert((sub, e.partition()));
                        for (table, journal) in core.routes.sub_tables[sub].clone() {
                            let job = RestoreJob { sub, table, partition: e.partition(), journal };
                            if !core.pending_restore.contains(&job) {
                                core.pending_restore.push(job);
                            }
                        }
                    }
                }
                core.stats.assigned.fetch_add(tpl.count() as u64, Ordering::Relaxed);
                core.stats.metrics.rebalanced("assigned");
                core.stats.ready.store(true, Ordering::Relaxed);
                tracing::info!(thread = self.thread, assigned = tpl.count(), partitions = %describe(tpl), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// `topic[0,3,5] other[1]`: the partitions of a rebalance, for the log.
fn describe(tpl: &rdkafka::TopicPartitionList) -> String {
    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = std::collections::BTreeMap::new();
    for e in tpl.elements() {
        by_topic.entry(e.topic().to_owned()).or_default().push(e.partition());
    }
    let parts: Vec<String> = by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            format!("{t}{ps:?}")
        })
        .collect();
    parts.join(" ")
}
