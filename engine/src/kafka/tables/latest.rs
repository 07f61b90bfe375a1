//! Reading a table-like topic (a changelog, a compacted topic such as
//! `group.<g>.control.roster`) to its end: the latest value of each key.
//!
//! Every partition is read from the beginning to its end (read_committed, partition EOF);
//! the latest value of a key wins, a tombstone deletes it, and a replay's reset marker drops
//! what came before it in that partition.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::headers;
use crate::kafka::producer::QuietEof;
use crate::kafka::settings::ClientSettings;

/// How long a topic may stay silent before it counts as read.
const QUIET: Duration = Duration::from_secs(10);

/// The live entries of `topic` (none when it does not exist); `what` names the reader in logs.
pub fn read_latest(
    settings: &ClientSettings,
    topic: &str,
    what: &'static str,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let reader: BaseConsumer<QuietEof> = settings
        .client_config(&[
            ("group.id", "kafclaw-reader"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(QuietEof(what))
        .map_err(|e| e.to_string())?;
    let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(30)).map_err(|e| format!("{topic}: {e}"))?;
    let partitions: Vec<i32> = match metadata.topics().first() {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => Vec::new(),
    };
    if partitions.is_empty() {
        tracing::warn!(topic, reader = what, "no such topic on the cluster: nothing to read");
        return Ok(BTreeMap::new());
    }
    let mut assign = TopicPartitionList::new();
    for p in &partitions {
        assign.add_partition_offset(topic, *p, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    reader.assign(&assign).map_err(|e| e.to_string())?;
    let mut live: HashMap<i32, BTreeMap<Vec<u8>, Vec<u8>>> = HashMap::new();
    let mut open: std::collections::HashSet<i32> = partitions.iter().copied().collect();
    let mut quiet_since = Instant::now();
    while !open.is_empty() {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let entries = live.entry(m.partition()).or_default();
                if m.headers().is_some_and(|h| h.iter().any(|x| x.key == headers::RESET)) {
                    entries.clear();
                    continue;
                }
                let key = m.key().unwrap_or_default().to_vec();
                match m.payload() {
                    Some(v) => entries.insert(key, v.to_vec()),
                    None => entries.remove(&key),
                };
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => break,
            Some(Err(e)) => return Err(format!("{topic}: {e}")),
            None if quiet_since.elapsed() > QUIET => {
                tracing::warn!(topic, "no end-of-partition for {QUIET:?}; treating the changelog as fully read");
                break;
            }
            None => {}
        }
    }
    Ok(live.into_values().flatten().collect())
}
