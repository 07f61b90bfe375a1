//! Consumer lag per assigned partition, for `/metrics`: the end of the partition as the
//! consumer last saw it (the last stable offset its fetch responses carried, reported by
//! librdkafka's statistics every second: no request to the broker, no ListOffsets) minus the
//! committed offset (what this instance committed, or what the group had committed when it
//! got the partition). Like `kafka-consumer-groups.sh`, it counts a transaction marker after
//! the last record as lag.

use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::TopicPartitionListElem;

use super::Core;
use crate::kafka::producer::CALL_TIMEOUT;
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
        let unknown: Vec<TopicPartition> = assignment
            .elements()
            .iter()
            .filter(|e| !self.routes.global_topics.contains(e.topic()))
            .map(tp_of)
            .filter(|tp| metrics.committed_offset(tp).is_none())
            .collect();
        // Partitions with no commit seen yet: ask the group coordinator once (OffsetFetch).
        if !unknown.is_empty() {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for tp in &unknown {
                tpl.add_partition(&tp.topic, tp.partition);
            }
            if let Ok(c) = consumer.committed_offsets(tpl, CALL_TIMEOUT) {
                for e in c.elements() {
                    let offset = match e.offset() {
                        Offset::Offset(o) => o,
                        // Nothing committed: the group starts from the beginning.
                        _ => metrics.seen(&tp_of(&e)).map_or(0, |(low, _)| low.max(0)),
                    };
                    metrics.committed(&tp_of(&e), offset);
                }
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
            metrics.partition_seen(TopicPartition { topic: topic.clone(), partition: p.partition }, p.lo_offset, end);
        }
    }
}
