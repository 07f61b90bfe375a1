//! The end of a replay: its last committed offsets, visible before it leaves the group.

use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::CALL_TIMEOUT;
use crate::kafka::instance::context::InstanceContext;

/// A replay ends with every offset it read committed. The test broker shows a transactional
/// offset commit a moment after the transaction ends, and loses it when the member leaves
/// the group first: stay a member until the group's committed offsets reach the consumer's
/// positions (bounded; a warning otherwise).
pub(super) fn await_visible_commit(consumer: &BaseConsumer<InstanceContext>) {
    let Ok(positions) = consumer.position() else { return };
    let want: Vec<(String, i32, i64)> = positions
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.topic().to_owned(), e.partition(), o)),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = consumer.committed(CALL_TIMEOUT).ok();
        let behind: Vec<&(String, i32, i64)> = want
            .iter()
            .filter(|(t, p, o)| {
                let got = committed.as_ref().and_then(|c| c.find_partition(t, *p)).map(|e| e.offset());
                !matches!(got, Some(Offset::Offset(c)) if c >= *o)
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(partitions = ?behind, "the broker does not show the replay's last committed offsets yet");
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
