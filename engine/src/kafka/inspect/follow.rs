//! Follow a topic's records: every partition assigned by hand (no consumer group, nothing
//! committed), from the beginning or the end, `read_committed` unless asked otherwise.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{CALL_TIMEOUT, Capture, ClientSettings, InspectError, unique_name};

/// Where to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Each partition's first record.
    Beginning,
    /// What arrives from now on.
    End,
}

/// How to follow.
#[derive(Debug, Clone, Copy)]
pub struct FollowOptions<'a> {
    /// Where to start.
    pub start: Start,
    /// `isolation.level = read_uncommitted` (also records of open and aborted transactions).
    pub uncommitted: bool,
    /// Return once every partition is read to its end.
    pub exit_at_end: bool,
    /// Return when set (SIGINT, SIGTERM).
    pub stop: &'a AtomicBool,
}

/// One record read.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<&'a [u8]>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
}

/// Follows `topic`, handing each record to `on` until it breaks, `opts.stop` is set or (with
/// `exit_at_end`) every partition is at its end. A topic that does not exist is an error
/// (it is not created).
pub fn follow(
    settings: &ClientSettings,
    topic: &str,
    opts: FollowOptions<'_>,
    mut on: impl FnMut(Seen<'_>) -> ControlFlow<()>,
) -> Result<(), InspectError> {
    let capture = Capture::default();
    let group = unique_name("kafclaw-tap");
    let consumer: BaseConsumer<Capture> = settings
        .client_config(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("allow.auto.create.topics", "false"),
            ("isolation.level", if opts.uncommitted { "read_uncommitted" } else { "read_committed" }),
            ("enable.partition.eof", if opts.exit_at_end { "true" } else { "false" }),
        ])
        .create_with_context(capture.clone())?;
    // All topics: asking for this one by name could make a broker create it.
    let md = consumer.fetch_metadata(None, CALL_TIMEOUT)?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .ok_or_else(|| InspectError::Failed(format!("topic `{topic}` does not exist")))?;
    let offset = match opts.start {
        Start::Beginning => Offset::Beginning,
        Start::End => Offset::End,
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    while !opts.stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                let seen = Seen { partition: m.partition(), offset: m.offset(), key: m.key(), value: m.payload() };
                if on(seen).is_break() {
                    return Ok(());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if at_end.len() == partitions {
                    return Ok(());
                }
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                return Err(InspectError::Failed(format!("topic `{topic}` does not exist")));
            }
            Some(Err(e)) => tracing::warn!(topic, error = %e, reasons = ?capture.reasons(), "tap: consumer error"),
        }
    }
    Ok(())
}
