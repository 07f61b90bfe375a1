//! Config halves of the Kafka `source` and `sink`. Their runtime halves live in the engine's
//! Kafka I/O module (`engine/src/kafka/`), the only code that touches rdkafka.

use serde::Deserialize;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::parse_duration_ms;
use crate::keyed::dedupe::Dedupe;

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
    /// Drop envelopes whose `id` this partition has already processed within `dedup_within`
    /// (an upstream retry, a producer that leaks aborted transactions). The seen ids are a
    /// changelogged state table `<source>.dedup` with a TTL (see the `dedupe` operator), so
    /// they survive restarts and move with their partition. Envelopes without an `id` pass.
    #[serde(default)]
    pub dedup: bool,
    /// How long (event time, after an id's first envelope) the dedup table remembers it.
    #[serde(default = "default_dedup_within")]
    pub dedup_within: Spanned<String>,
    /// Read every partition on every instance (a global table, like a Kafka Streams
    /// GlobalKTable), e.g. shared memory: no consumer group, no offsets; the instance reads the
    /// topic from the beginning into memory before it starts processing, then follows it. Its
    /// sub-topology feeds state only (no sinks).
    #[serde(default)]
    pub global: bool,
}

fn default_dedup_within() -> Spanned<String> {
    Spanned::new(0..0, "1h".to_owned())
}

impl KafkaSourceConfig {
    /// The dedup table of source `name`.
    pub fn dedup_table(name: &str) -> String {
        format!("{name}.dedup")
    }

    /// The source's dedupe stage, when `dedup` is on.
    pub fn dedupe(&self, name: &str) -> Result<Option<Dedupe>, Vec<ConfigError>> {
        if !self.dedup {
            return Ok(None);
        }
        let within = parse_duration_ms(&self.dedup_within)?;
        Ok(Some(Dedupe::by_id(&Self::dedup_table(name), within)))
    }
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
    /// Create the topic compacted (`cleanup.policy=compact`) when kafclaw creates it: a
    /// table's topic such as `group.<g>.control.roster`, where each key's latest record
    /// counts.
    #[serde(default)]
    pub compact: bool,
}
