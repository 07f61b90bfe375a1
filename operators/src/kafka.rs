//! Config halves of the Kafka `source` and `sink`. Their runtime halves live in the engine's
//! Kafka I/O module (`engine/src/kafka/`), the only code that touches rdkafka.

use serde::Deserialize;
use toml::Spanned;

/// Config half of the Kafka source.
///
/// ```toml
/// [sources.requests]
/// type = "kafka"
/// topic = "group.acme.requests"
/// dedup = true
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Topic to read. Sources of one sub-topology must have the same partition count
    /// (co-partitioned); the instance checks this at start-up.
    pub topic: Spanned<String>,
    /// Drop envelopes whose `id` this partition has already processed (an upstream retry or a
    /// broker that leaks aborted transactions). Envelopes without an `id` always pass.
    #[serde(default)]
    pub dedup: bool,
    /// How many ids per partition the dedup set remembers (oldest forgotten first).
    #[serde(default = "default_dedup_capacity")]
    pub dedup_capacity: usize,
}

fn default_dedup_capacity() -> usize {
    100_000
}

/// Which envelope field keys the records a Kafka sink writes (and so picks their partition).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    /// `correlation_id` (default): a conversation stays on one partition, in order.
    #[default]
    CorrelationId,
    /// `sender_id`.
    SenderId,
    /// The output's deterministic `id`.
    Id,
    /// No key: the producer's partitioner spreads records.
    None,
}

/// Config half of the Kafka sink.
///
/// ```toml
/// [sinks.responses]
/// type = "kafka"
/// inputs = ["answer"]
/// topic = "group.acme.responses"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Topic to write; created when missing with the topology's partitions and replication.
    pub topic: Spanned<String>,
    /// Record key: `correlation_id` (default), `sender_id`, `id` or `none`.
    #[serde(default)]
    pub key: KeyField,
}

/// Kafka topic names: 1 to 249 of letters, digits, `.`, `_`, `-`, and not `.` or `..`.
pub fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 250
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
