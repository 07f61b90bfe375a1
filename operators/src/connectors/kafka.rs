//! Config halves of the Kafka `source` and `sink`. Their runtime halves live in the engine's
//! Kafka I/O module (`engine/src/kafka/`), the only code that touches rdkafka.

use serde::Deserialize;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::{parse_duration_ms, valid_topic};
use crate::api::kind::{Built, Kind, SourceStage, no_ports};
use crate::api::operator::Ports;
use crate::api::resources::Resources;
use crate::api::state::TableSpec;
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

    /// The dedup table of source `node`, when `dedup` is on: its entries expire
    /// `dedup_within` after an id's first envelope.
    fn dedup_spec(&self, node: &str) -> Result<Option<TableSpec>, Vec<ConfigError>> {
        if !self.dedup {
            return Ok(None);
        }
        let within = parse_duration_ms(&self.dedup_within)?;
        Ok(Some(TableSpec::expiring(Self::dedup_table(node), Some(within))))
    }

    /// The dedupe stage of source `node`, when `dedup` is on: [`Kind::source_stage`], as the
    /// concrete type.
    pub fn dedupe(&self, node: &str) -> Result<Option<Dedupe>, Vec<ConfigError>> {
        Ok(self.dedup_spec(node)?.map(Dedupe::by_id))
    }
}

impl Kind for KafkaSourceConfig {
    /// `<node>.dedup`, when `dedup` is on.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        self.dedup_spec(node).ok().flatten().into_iter().collect()
    }

    /// The topic's name, then `dedup_within`.
    fn check(&self, node: &str, _: &[&str], _: &Resources) -> Vec<ConfigError> {
        match topic_error(&self.topic) {
            Some(e) => vec![e],
            None => self.dedup_spec(node).err().unwrap_or_default(),
        }
    }

    /// Run by the engine's Kafka instance.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Edge)
    }

    /// With `dedup`, a [`Dedupe`] by envelope `id` in `<node>.dedup`.
    fn source_stage(&self, node: &str) -> Result<Option<Box<dyn SourceStage>>, Vec<ConfigError>> {
        Ok(self.dedupe(node)?.map(|d| Box::new(d) as Box<dyn SourceStage>))
    }
}

/// The error of a topic name Kafka would refuse.
fn topic_error(topic: &Spanned<String>) -> Option<ConfigError> {
    (!valid_topic(topic.get_ref())).then(|| {
        ConfigError::at(topic.span(), format!("`{}` is not a valid Kafka topic name", topic.get_ref()))
            .with_hint(Some("1 to 249 of letters, digits, `.`, `_` and `-`".into()))
    })
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

impl Kind for KafkaSinkConfig {
    /// None: a sink writes, nothing reads it.
    fn ports(&self) -> Ports {
        no_ports()
    }

    /// The topic's name.
    fn check(&self, _: &str, _: &[&str], _: &Resources) -> Vec<ConfigError> {
        topic_error(&self.topic).into_iter().collect()
    }

    /// Run by the engine's Kafka instance.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Edge)
    }
}
