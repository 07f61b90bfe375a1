//! The plain sections of a topology: `[topology]` ([`TopologySection`], with its
//! [`Guarantee`]), `[dead_letter]` ([`DeadLetterSection`]) and the values of `[kafka]`
//! ([`KafkaValue`]).

use std::time::Duration;

use kafclaw_operators::api::config::parse_duration_ms;
use serde::Deserialize;
use toml::Spanned;

/// The delivery guarantee of a topology.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Outputs, state and offsets commit in one Kafka transaction.
    #[default]
    ExactlyOnce,
    /// Outputs are flushed before offsets commit; a crash may repeat outputs.
    AtLeastOnce,
}

/// `[topology]`: who this topology is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySection {
    /// Application id: the consumer group, the transactional id prefix and the prefix of state
    /// tables and changelog topics. Letters, digits, `.`, `_` and `-`.
    pub name: Spanned<String>,
    /// Agent group whose topics (`group.<group>.*`) the topology reads and writes.
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    /// `exactly-once` (default) or `at-least-once`.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// What the topology does, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Partitions of the topics kafclaw creates (outputs, dead letters, changelogs).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics kafclaw creates; `-1` takes the broker's default.
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// How often (milliseconds) outputs, state and offsets are committed. Default: 100 with
    /// `exactly-once` (outputs become visible to `read_committed` readers at the commit, so
    /// this is part of their latency; Kafka Streams' default too) and 1,000 with
    /// `at-least-once`, where each commit waits for the broker to acknowledge every output
    /// before it commits the offsets (Kafka Streams waits 30,000 there; at 100 those waits held
    /// a stream thread about a third of the time, docs/benchmarks.md). After a crash the
    /// records since the last commit are read again.
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
    /// Stream threads of each instance (1 to 256). Kafka mode: each thread is a member of the
    /// consumer group with its own consumer, its own transactional producer and the tasks of
    /// the partitions assigned to it, as in Kafka Streams (`num.stream.threads`). Local mode:
    /// the workers of each sub-topology of stateless operators (`filter`, `map`, `route`)
    /// reading files, outputs in input order. Default: 1 in Kafka mode (Kafka Streams' default;
    /// more threads are not yet proven under the kill -9 chaos test on the test broker, see
    /// docs/benchmarks.md), the machine's cores in local mode; `kafclaw run --threads`
    /// overrides it.
    #[serde(default)]
    pub threads: Option<u32>,
    /// How long the effect log keeps a logged tool call (docs/effects.md): the `retention.ms`
    /// of `<topology>.effects` when kafclaw creates it, and how long its reader remembers a
    /// record (by the record's Kafka timestamp). An input left uncommitted longer than this
    /// loses its protection: its logged calls run as if never made. Default `"7days"`.
    #[serde(default = "default_retention")]
    pub effects_retention: Spanned<String>,
    /// How long the approvals channel of gated tools remembers a request after its deadline,
    /// its decision and its last record, whichever is latest (docs/approvals.md): a step run
    /// again later than this asks again. Default `"7days"`.
    #[serde(default = "default_retention")]
    pub approvals_retention: Spanned<String>,
}

impl TopologySection {
    /// The stand-in for a `[topology]` with errors (reported), so the rest is still checked.
    pub(super) fn unparsed() -> Self {
        Self {
            name: Spanned::new(0..0, String::new()),
            group: None,
            guarantee: Guarantee::default(),
            description: None,
            partitions: default_partitions(),
            replication: default_replication(),
            commit_interval_ms: None,
            threads: None,
            effects_retention: default_retention(),
            approvals_retention: default_retention(),
        }
    }

    /// How often (milliseconds) an instance commits: `commit_interval_ms`, else the
    /// guarantee's default.
    pub fn commit_interval_ms(&self) -> u64 {
        self.commit_interval_ms.unwrap_or(match self.guarantee {
            Guarantee::ExactlyOnce => DEFAULT_COMMIT_INTERVAL_MS_EXACTLY_ONCE,
            Guarantee::AtLeastOnce => DEFAULT_COMMIT_INTERVAL_MS_AT_LEAST_ONCE,
        })
    }

    /// The stream threads of a Kafka instance: `cli` (`--threads`) if given, else `threads`,
    /// else 1; at most [`MAX_THREADS`].
    pub fn stream_threads(&self, cli: Option<u32>) -> usize {
        cli.or(self.threads).unwrap_or(1).clamp(1, MAX_THREADS) as usize
    }

    /// The worker threads of a local run: `cli` (`--threads`) if given, else `threads`, else
    /// the machine's cores (1 when they cannot be read); at most [`MAX_THREADS`].
    pub fn local_threads(&self, cli: Option<u32>) -> usize {
        let cores = || std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        cli.or(self.threads).unwrap_or_else(cores).clamp(1, MAX_THREADS) as usize
    }

    /// `effects_retention`, checked by `validate` (the default when it is not a duration).
    pub fn effects_retention(&self) -> Duration {
        retention_or_default(&self.effects_retention)
    }

    /// `approvals_retention`, checked by `validate` (the default when it is not a duration).
    pub fn approvals_retention(&self) -> Duration {
        retention_or_default(&self.approvals_retention)
    }

    /// Whether this is the stand-in for a `[topology]` that is missing or has errors (a
    /// written `name` always has a place in the file).
    pub fn is_stand_in(&self) -> bool {
        self.name.span() == (0..0)
    }
}

fn default_partitions() -> i32 {
    6
}

fn default_replication() -> i32 {
    -1
}

/// The most stream threads an instance runs (`topology.threads`, `kafclaw run --threads`).
pub const MAX_THREADS: u32 = 256;

/// The default `commit_interval_ms` of `exactly-once` topologies.
pub const DEFAULT_COMMIT_INTERVAL_MS_EXACTLY_ONCE: u64 = 100;
/// The default `commit_interval_ms` of `at-least-once` topologies.
pub const DEFAULT_COMMIT_INTERVAL_MS_AT_LEAST_ONCE: u64 = 1_000;

/// The default of `effects_retention` and `approvals_retention`.
pub const DEFAULT_RETENTION: &str = "7days";

fn default_retention() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_RETENTION.to_owned())
}

fn retention_or_default(value: &Spanned<String>) -> Duration {
    // `validate` refuses a value that is not a duration; 7 days is `DEFAULT_RETENTION`.
    Duration::from_millis(parse_duration_ms(value).unwrap_or(7 * 24 * 3_600_000) as u64)
}

/// A librdkafka property value in `[kafka]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum KafkaValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for KafkaValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Where dead letters go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterKind {
    /// A JSON Lines file (`path`).
    #[default]
    File,
    /// Standard error, one JSON object per line.
    Stderr,
}

/// `[dead_letter]`: where records that fail to decode or process go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSection {
    /// `file` (default) or `stderr`.
    #[serde(rename = "type", default)]
    pub kind: DeadLetterKind,
    /// For `file`: the path, relative to the current folder. Default `<name>.dlq.jsonl`.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// In Kafka mode: the dead-letter topic. Default `<name>.dlq`.
    #[serde(default)]
    pub topic: Option<Spanned<String>>,
    /// In Kafka mode: the most bytes of the failed record a dead letter keeps (bytes); a longer
    /// copy is cut and the letter's `kafclaw.raw.size` header gives the whole size. Whatever
    /// this says, a dead letter is cut to fit under the producer's `message.max.bytes`.
    /// Default: as much as fits.
    #[serde(default)]
    pub max_copy_bytes: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(extra: &str) -> TopologySection {
        toml::from_str(&format!("name = \"t\"\n{extra}")).unwrap()
    }

    #[test]
    fn the_commit_interval_defaults_by_guarantee_and_an_explicit_one_wins() {
        assert_eq!(topology("").commit_interval_ms(), DEFAULT_COMMIT_INTERVAL_MS_EXACTLY_ONCE);
        assert_eq!(topology("guarantee = \"exactly-once\"").commit_interval_ms(), 100);
        assert_eq!(topology("guarantee = \"at-least-once\"").commit_interval_ms(), 1_000);
        assert_eq!(topology("guarantee = \"at-least-once\"\ncommit_interval_ms = 50").commit_interval_ms(), 50);
        assert_eq!(topology("commit_interval_ms = 250").commit_interval_ms(), 250);
    }
}
