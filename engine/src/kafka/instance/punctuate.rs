//! The loop's punctuation step: the tasks of every assigned partition exist from the
//! assignment on (after their state is restored), and their wall-clock punctuations
//! ([`kafclaw_operators::SyncOperator::punctuate`]) run about every interval, inside the open
//! transaction, whether records arrive or not.
//!
//! A transaction that holds what a punctuation produced also commits the offsets of its
//! task's partitions (the positions reached, or the committed offsets again): under KIP-447
//! the broker refuses a transactional offset commit from a member of an older group
//! generation, so a fenced ("zombie") member cannot commit a punctuation's outputs after its
//! partitions moved to another instance.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::context::InstanceContext;
use super::fatal::Fatal;
use super::{Core, Instance};
use crate::kafka::producer::CALL_TIMEOUT;
use kafclaw_operators::api::record::now_ms;

/// How often the assigned tasks are looked at for due punctuations (each operator's own
/// interval decides whether it runs).
const PUNCTUATION_TICK: Duration = Duration::from_millis(100);

impl Instance {
    /// Runs the punctuations due now in every assigned task, creating the tasks of newly
    /// assigned partitions once their state is restored.
    pub(super) fn punctuate_if_due(&mut self) {
        let core = &mut self.core;
        if core.stopping() || !core.pending_restore.is_empty() || Instant::now() < core.next_punctuation {
            return;
        }
        core.next_punctuation = Instant::now() + PUNCTUATION_TICK;
        let now = now_ms();
        let assigned: Vec<(usize, i32)> = core.assigned.iter().copied().collect();
        for (sub, partition) in assigned {
            if let Err(e) = core.ensure_task(sub, partition) {
                core.fail(Fatal::Build(e));
                return;
            }
            if !core.tasks.get(&(sub, partition)).is_some_and(|t| t.punctuation_due(now)) {
                continue;
            }
            let key = core.task_key(sub, partition);
            let Ok(produced) = self.driver.punctuate(core, key, now);
            if produced {
                core.punctuated.insert((sub, partition));
            }
            if core.stopping() {
                return;
            }
        }
    }
}

impl Core {
    /// Adds to `tpl` the offsets of the partitions whose tasks punctuated since the last
    /// commit and that `tpl` does not hold yet: their committed offsets again (0 when none was
    /// ever committed: the same start as `auto.offset.reset = earliest`).
    pub(super) fn add_fencing_offsets(
        &mut self,
        consumer: &BaseConsumer<InstanceContext>,
        tpl: &mut TopicPartitionList,
    ) -> KafkaResult<()> {
        if self.punctuated.is_empty() {
            return Ok(());
        }
        let mut missing = TopicPartitionList::new();
        for &(sub, partition) in &self.punctuated {
            for &s in &self.plan.subtopologies[sub].sources {
                if let Some(topic) = self.plan.nodes[s].config.kafka_topic()
                    && tpl.find_partition(topic, partition).is_none()
                {
                    missing.add_partition(topic, partition);
                }
            }
        }
        if missing.count() == 0 {
            return Ok(());
        }
        for e in consumer.committed_offsets(missing, CALL_TIMEOUT)?.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset))?;
        }
        Ok(())
    }
}
