//! A consumer group as the broker describes it: state, members, committed offsets against the
//! partitions' ends. The end is what a `read_committed` consumer's fetch responses carry (the
//! last stable offset, from librdkafka's statistics, as the runtime's lag metric reads it),
//! else the high watermark of ListOffsets: some brokers (Tansu) answer ListOffsets wrongly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use super::{CALL_TIMEOUT, ClientSettings, InspectError};

/// DescribeGroups' answer for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// `Stable`, `Empty`, `PreparingRebalance`, `Dead`, … as the broker says.
    pub state: String,
    /// The assignment protocol (`cooperative-sticky`, …), empty when none.
    pub protocol: String,
    /// The members: `<client id>@<host>`.
    pub members: Vec<String>,
}

/// Describes `group` (`None`: the broker does not know it).
pub fn describe(settings: &ClientSettings, group: &str) -> Result<Option<GroupDescription>, InspectError> {
    let consumer: BaseConsumer = settings.client_config(&[]).create()?;
    let list = consumer.fetch_group_list(Some(group), CALL_TIMEOUT)?;
    Ok(list.groups().iter().find(|g| g.name() == group).map(|g| GroupDescription {
        state: g.state().to_owned(),
        protocol: g.protocol().to_owned(),
        members: g.members().iter().map(|m| format!("{}@{}", m.client_id(), m.client_host())).collect(),
    }))
}

/// One partition's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (the next record it will read), `None` when it has none.
    pub committed: Option<i64>,
    /// The partition's end (see the module docs), or why it could not be read.
    pub high: Result<i64, String>,
    /// Where the end comes from: `fetch` or `list_offsets`.
    pub end_from: &'static str,
}

impl PartitionPosition {
    /// Records between the committed offset (the start when none) and the high watermark;
    /// `None` when the high watermark is unknown or below the committed offset (a broker
    /// reporting a wrong watermark).
    pub fn lag(&self) -> Option<i64> {
        let high = *self.high.as_ref().ok()?;
        let from = self.committed.unwrap_or(0);
        (high >= from).then_some(high - from)
    }
}

/// The committed offsets of `group` on every partition of `topics` (name and partition
/// count), with each partition's end (module docs).
pub fn positions(
    settings: &ClientSettings,
    group: &str,
    topics: &[(&str, usize)],
) -> Result<Vec<PartitionPosition>, InspectError> {
    let consumer: BaseConsumer =
        settings.client_config(&[("group.id", group), ("enable.auto.commit", "false")]).create()?;
    let mut tpl = TopicPartitionList::new();
    for (t, n) in topics {
        for p in 0..*n as i32 {
            tpl.add_partition(t, p);
        }
    }
    let committed = consumer.committed_offsets(tpl, CALL_TIMEOUT)?;
    let fetched = fetched_ends(settings, &committed).unwrap_or_default();
    Ok(committed
        .elements()
        .iter()
        .map(|e| {
            let fetched = fetched.get(&(e.topic().to_owned(), e.partition())).copied();
            PartitionPosition {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                committed: match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
                high: match fetched {
                    Some(end) => Ok(end),
                    None => consumer
                        .fetch_watermarks(e.topic(), e.partition(), CALL_TIMEOUT)
                        .map(|(_, high)| high)
                        .map_err(|e| e.to_string()),
                },
                end_from: if fetched.is_some() { "fetch" } else { "list_offsets" },
            }
        })
        .collect())
}

/// Keeps each partition's end from librdkafka's statistics.
#[derive(Clone, Default)]
struct Ends(Arc<Mutex<HashMap<(String, i32), i64>>>);

impl ClientContext for Ends {
    fn stats(&self, s: Statistics) {
        let mut ends = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, t) in &s.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                if end >= 0 {
                    ends.insert((topic.clone(), p.partition), end);
                }
            }
        }
    }
}

impl ConsumerContext for Ends {}

/// The ends a `read_committed` consumer's fetches report, reading from each committed offset
/// (no group joined, nothing committed) for at most a few seconds.
fn fetched_ends(
    settings: &ClientSettings,
    committed: &TopicPartitionList,
) -> Result<HashMap<(String, i32), i64>, InspectError> {
    let ends = Ends::default();
    let group = super::unique_name("kafclaw-doctor-lag");
    let consumer: BaseConsumer<Ends> = settings
        .client_config(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
            ("statistics.interval.ms", "100"),
        ])
        .create_with_context(ends.clone())?;
    let mut tpl = TopicPartitionList::new();
    for e in committed.elements() {
        let from = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        tpl.add_partition_offset(e.topic(), e.partition(), from)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        let seen = ends.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= committed.count() {
            break;
        }
    }
    let seen = ends.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Ok(seen)
}
