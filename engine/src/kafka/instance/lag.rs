//! Consumer lag per assigned partition, for `/metrics`: the end of the partition as the
//! consumer last saw it (the last stable offset its fetch responses carried, reported by
//! librdkafka's statistics every second: no request to the broker, no ListOffsets) minus the
//! committed offset (what this instance committed, or what the group had committed when it
//! got the partition, from librdkafka's statistics too). Like `kafka-consumer-groups.sh`, it
//! counts a transaction marker after the last record as lag.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::TopicPartitionListElem;

use super::Core;
use crate::metrics::TopicPartition;

/// How often the lag metrics are updated.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

impl Core {
    /// Updates the lag of every assigned partition, at most once per [`LAG_INTERVAL`].
    pub(super) fn update_lag<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if Instant::now() < self.next_lag {
            return;
        }
        self.next_lag = Instant::now() + LAG_INTERVAL;
        let Ok(assignment) = consumer.assignment() else { return };
        let metrics = &self.stats.metrics;
        // Partitions this instance has not committed yet: the group's committed offset as
        // librdkafka fetched it for the assignment (its statistics), never a blocking request
        // from the stream thread.
        for e in assignment.elements().iter().filter(|e| !self.routes.global_topics.contains(e.topic())) {
            let tp = tp_of(e);
            if metrics.committed_offset(&tp).is_none()
                && let Some(c) = metrics.group_committed(&tp)
            {
                metrics.committed(&tp, c);
            }
        }
        for e in assignment.elements() {
            let tp = tp_of(&e);
            // No end before the first fetch response (librdkafka reports -1).
            if let (Some(committed), Some((_, end))) = (metrics.committed_offset(&tp), metrics.seen(&tp))
                && end >= 0
            {
                metrics.lag(&tp, end - committed);
            }
        }
    }
}

fn tp_of(e: &TopicPartitionListElem<'_>) -> TopicPartition {
    TopicPartition { topic: e.topic().to_owned(), partition: e.partition() }
}

/// What librdkafka's statistics say of the consumer's partitions: each assigned partition's
/// low watermark and end (`ls_offset`, the last stable offset, for this `read_committed`
/// consumer; `hi_offset` if the broker gave none).
pub(super) fn on_statistics(metrics: &crate::metrics::InstanceMetrics, s: &rdkafka::Statistics) {
    for (topic, t) in &s.topics {
        for p in t.partitions.values().filter(|p| p.partition >= 0 && p.desired) {
            let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
            let tp = TopicPartition { topic: topic.clone(), partition: p.partition };
            metrics.partition_seen(tp, p.lo_offset, end, p.committed_offset);
        }
    }
}
