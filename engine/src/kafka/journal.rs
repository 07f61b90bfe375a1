//! `kafclaw journal export`: the journal tables of a topology (model answers, embeddings),
//! read from their changelog topics, as JSON Lines `{"operator", "key", "entry"}`.
//!
//! Each changelog is read to its end (read_committed, partition EOF) from the beginning; the
//! latest value of a key wins, a tombstone deletes it, and a replay's reset marker drops what
//! came before it in that partition. Journal records of transactions that never committed are
//! kept, as restore keeps them: an answer paid for is worth keeping. The export is what a
//! model's `recorded = "<file>"` reads to run the topology offline with the same answers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::client::ClientSettings;
use super::clients::QuietEof;
use super::instance::headers;
use super::topics::changelog_topic;
use crate::compiler::PhysicalPlan;

/// One exported journal entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExportedEntry {
    /// The operator whose journal it is.
    pub operator: String,
    /// The journal key (the input envelope's id, or its coordinates).
    pub key: String,
    /// The journalled value (an `llm` answer, an `embed` vector).
    pub entry: serde_json::Value,
}

/// How long a changelog may stay silent before it counts as read.
const QUIET: Duration = Duration::from_secs(10);

/// Every journal entry of `plan`, by operator and key.
pub fn export_journals(plan: &PhysicalPlan, settings: &ClientSettings) -> Result<Vec<ExportedEntry>, String> {
    let mut out = Vec::new();
    for node in &plan.nodes {
        for table in node.config.state_tables(&node.name).into_iter().filter(|t| t.journal) {
            let topic = changelog_topic(plan, &table.name);
            for (key, value) in read_table(settings, &topic)? {
                let key = String::from_utf8(key).map_err(|_| format!("{topic}: a journal key is not UTF-8"))?;
                let entry = serde_json::from_slice(&value)
                    .map_err(|e| format!("{topic}: the entry of `{key}` is not JSON: {e}"))?;
                out.push(ExportedEntry { operator: node.name.to_string(), key, entry });
            }
        }
    }
    Ok(out)
}

/// The live entries of one changelog topic (none when the topic does not exist).
fn read_table(settings: &ClientSettings, topic: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let reader: BaseConsumer<QuietEof> = settings
        .client_config(&[
            ("group.id", "kafclaw-journal-export"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(QuietEof("journal"))
        .map_err(|e| e.to_string())?;
    let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(30)).map_err(|e| format!("{topic}: {e}"))?;
    let partitions: Vec<i32> = match metadata.topics().first() {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => Vec::new(),
    };
    if partitions.is_empty() {
        tracing::warn!(topic, "no journal changelog on the cluster: nothing to export for it");
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
