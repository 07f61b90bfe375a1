//! The explicit list of node kinds: every source, operator and sink type a topology may use.
//! Adding a kind means adding one line to [`KINDS`] and one variant to [`NodeConfig`].

use kafclaw_operators::api::config::valid_topic;
use kafclaw_operators::connectors::kafka::{KafkaSinkConfig, KafkaSourceConfig};
use kafclaw_operators::connectors::{FileSinkConfig, FileSourceConfig, StdinSourceConfig, StdoutSinkConfig};
use kafclaw_operators::memory::embed_op::EmbedConfig;
use kafclaw_operators::memory::{MemoryIndexConfig, MemorySearchConfig};
use kafclaw_operators::{
    ConfigError, Ports, SyncOperator, TableSpec,
    api::asynchronous::AsyncOperator,
    group::guard::GuardConfig,
    group::onboard::{AdmissionsConfig, OnboardConfig},
    group::roster::RosterConfig,
    keyed::aggregate::AggregateConfig,
    keyed::count::CountConfig,
    keyed::dedupe::DedupeConfig,
    keyed::join::JoinConfig,
    keyed::window::WindowConfig,
    llm::LlmConfig,
    stream::filter::FilterConfig,
    stream::map::MapConfig,
    stream::route::RouteConfig,
};
use toml::Spanned;
use toml::de::DeValue;

use super::collect::deserialize_partial;
use super::diagnostic::Diagnostics;

/// Which section of the topology a node is declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `[sources.<name>]`: reads records; has no inputs.
    Source,
    /// `[operators.<name>]`: transforms records.
    Operator,
    /// `[sinks.<name>]`: writes records; has no outputs.
    Sink,
}

impl Role {
    /// The TOML section name.
    pub fn section(self) -> &'static str {
        match self {
            Self::Source => "sources",
            Self::Operator => "operators",
            Self::Sink => "sinks",
        }
    }

    /// The singular noun for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Operator => "operator",
            Self::Sink => "sink",
        }
    }
}

/// A node's parsed, kind-specific configuration.
#[derive(Debug, Clone)]
pub enum NodeConfig {
    /// Source `file`.
    FileSource(FileSourceConfig),
    /// Source `stdin`.
    StdinSource(StdinSourceConfig),
    /// Source `kafka`.
    KafkaSource(KafkaSourceConfig),
    /// Operator `filter`.
    Filter(FilterConfig),
    /// Operator `map`.
    Map(MapConfig),
    /// Operator `route`.
    Route(RouteConfig),
    /// Operator `count`.
    Count(CountConfig),
    /// Operator `aggregate`.
    Aggregate(AggregateConfig),
    /// Operator `dedupe`.
    Dedupe(DedupeConfig),
    /// Operator `window`.
    Window(WindowConfig),
    /// Operator `join`.
    Join(JoinConfig),
    /// Operator `llm`.
    Llm(LlmConfig),
    /// Operator `onboard`.
    Onboard(OnboardConfig),
    /// Operator `admissions`.
    Admissions(AdmissionsConfig),
    /// Operator `guard`.
    Guard(GuardConfig),
    /// Operator `roster`.
    Roster(RosterConfig),
    /// Operator `embed`.
    Embed(EmbedConfig),
    /// Operator `memory-index`.
    MemoryIndex(MemoryIndexConfig),
    /// Operator `memory-search`.
    MemorySearch(MemorySearchConfig),
    /// Sink `file`.
    FileSink(FileSinkConfig),
    /// Sink `stdout`.
    StdoutSink(StdoutSinkConfig),
    /// Sink `kafka`.
    KafkaSink(KafkaSinkConfig),
}

/// Parses a kind's options: the config and whether it is complete (no placeholders).
pub type ParseOptions = fn(&Spanned<DeValue<'_>>, &mut Diagnostics) -> Option<(NodeConfig, bool)>;

/// One entry of the registry.
pub struct Kind {
    /// Section the kind belongs to.
    pub role: Role,
    /// The `type = "…"` name.
    pub name: &'static str,
    /// One line for `kafclaw validate --list-kinds` and hints.
    pub summary: &'static str,
    /// Parses the kind's options (the table without `type` and `inputs`), and whether they
    /// are complete (see [`deserialize_partial`]).
    pub parse: ParseOptions,
}

macro_rules! kind {
    ($role:expr, $name:literal, $summary:literal, $variant:ident) => {
        Kind {
            role: $role,
            name: $name,
            summary: $summary,
            parse: |v, d| deserialize_partial(v, d, &["type", "inputs"]).map(|(c, ok)| (NodeConfig::$variant(c), ok)),
        }
    };
}

/// Every kind, in documentation order.
pub const KINDS: &[Kind] = &[
    kind!(Role::Source, "file", "JSON Lines file, one envelope per line", FileSource),
    kind!(Role::Source, "stdin", "JSON Lines on standard input", StdinSource),
    kind!(
        Role::Source,
        "kafka",
        "a Kafka topic, one envelope per record (consumer group = topology name)",
        KafkaSource
    ),
    kind!(Role::Operator, "filter", "keep records for which a CEL condition holds", Filter),
    kind!(Role::Operator, "map", "set fields from CEL expressions or templates, remove fields", Map),
    kind!(Role::Operator, "route", "send records to named outputs by CEL condition", Route),
    kind!(Role::Operator, "count", "running count per key, in a changelogged state table", Count),
    kind!(
        Role::Operator,
        "aggregate",
        "running count/sum/min/max/avg per key, in a changelogged state table",
        Aggregate
    ),
    kind!(Role::Operator, "dedupe", "drop repeats of a key within an event-time window", Dedupe),
    kind!(Role::Operator, "window", "tumbling event-time window aggregates per key", Window),
    kind!(Role::Operator, "join", "enrich a stream from a table fed by another input", Join),
    kind!(Role::Operator, "llm", "call an OpenAI-compatible chat model (journalled, budgeted)", Llm),
    kind!(Role::Operator, "onboard", "the group's gatekeeper: open or HMAC-gated admission, audited", Onboard),
    kind!(Role::Operator, "admissions", "the instance's set of admitted members (for guards)", Admissions),
    kind!(Role::Operator, "guard", "enforce zones, delegation depth and deadlines on receive; audit refusals", Guard),
    kind!(Role::Operator, "roster", "group members from announce/heartbeat envelopes, expired by TTL", Roster),
    kind!(Role::Operator, "embed", "put a vector on each record (/v1/embeddings or local; journalled)", Embed),
    kind!(Role::Operator, "memory-index", "index memory items for vector search (usearch)", MemoryIndex),
    kind!(Role::Operator, "memory-search", "find the memory items nearest to a query", MemorySearch),
    kind!(Role::Sink, "file", "JSON Lines file", FileSink),
    kind!(Role::Sink, "stdout", "JSON Lines on standard output", StdoutSink),
    kind!(Role::Sink, "kafka", "a Kafka topic, keyed by correlation_id by default", KafkaSink),
];

/// The kind called `name` in `role`'s section.
pub fn lookup(role: Role, name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.role == role && k.name == name)
}

/// The kind names of one section.
pub fn names(role: Role) -> Vec<&'static str> {
    KINDS.iter().filter(|k| k.role == role).map(|k| k.name).collect()
}

impl NodeConfig {
    /// The outputs of the node (sinks have none).
    pub fn ports(&self) -> Ports {
        match self {
            Self::Route(r) => r.ports(),
            Self::Dedupe(_) => DedupeConfig::ports(),
            Self::Join(_) => JoinConfig::ports(),
            Self::Llm(_) => LlmConfig::ports(),
            Self::Guard(_) => GuardConfig::ports(),
            Self::Onboard(_) => OnboardConfig::ports(),
            Self::FileSink(_) | Self::StdoutSink(_) | Self::KafkaSink(_) => Ports { default: false, named: Vec::new() },
            _ => Ports::single(),
        }
    }

    /// Whether the node reads or writes Kafka (and so runs only in Kafka mode).
    pub fn is_kafka(&self) -> bool {
        matches!(self, Self::KafkaSource(_) | Self::KafkaSink(_))
    }

    /// The Kafka topic a Kafka node reads or writes.
    pub fn kafka_topic(&self) -> Option<&str> {
        match self {
            Self::KafkaSource(c) => Some(c.topic.get_ref()),
            Self::KafkaSink(c) => Some(c.topic.get_ref()),
            _ => None,
        }
    }

    /// Every option error of the node (whose inputs are the nodes `inputs`): operators'
    /// expressions, templates and durations, topic names.
    pub fn check(&self, inputs: &[&str]) -> Vec<ConfigError> {
        let topic = match self {
            Self::KafkaSource(c) => Some(&c.topic),
            Self::KafkaSink(c) => Some(&c.topic),
            _ => None,
        };
        if let Some(t) = topic
            && !valid_topic(t.get_ref())
        {
            return vec![
                ConfigError::at(t.span(), format!("`{}` is not a valid Kafka topic name", t.get_ref()))
                    .with_hint(Some("1 to 249 of letters, digits, `.`, `_` and `-`".into())),
            ];
        }
        let mut errors = match (self.build_operator("check"), self.build_async("check")) {
            (Some(Err(errors)), _) | (_, Some(Err(errors))) => errors,
            _ => Vec::new(),
        };
        match self {
            Self::KafkaSource(c) => errors.extend(c.dedupe("check").err().unwrap_or_default()),
            Self::Join(j) => errors.extend(j.check_inputs(inputs).err()),
            _ => {}
        }
        errors
    }

    /// The state tables of node `name` (named after the node; a deduplicating Kafka source's
    /// is `<name>.dedup`).
    pub fn state_tables(&self, name: &str) -> Vec<TableSpec> {
        match self {
            Self::KafkaSource(c) => c.dedupe(name).ok().flatten().map(|d| d.table().clone()).into_iter().collect(),
            _ => match (self.build_operator(name), self.build_async(name)) {
                (Some(Ok(op)), _) => op.tables(),
                (_, Some(Ok(op))) => op.tables(),
                _ => Vec::new(),
            },
        }
    }

    /// Builds the runtime half of asynchronous operator `name`.
    pub fn build_async(&self, name: &str) -> Option<Result<Box<dyn AsyncOperator>, Vec<ConfigError>>> {
        Some(match self {
            Self::Llm(c) => c.build(name).map(|o| Box::new(o) as Box<dyn AsyncOperator>),
            Self::Embed(c) => c.build(name).map(|o| Box::new(o) as Box<dyn AsyncOperator>),
            _ => return None,
        })
    }

    /// Builds the runtime half of operator `name` (sources and sinks are opened by the
    /// runtime).
    pub fn build_operator(&self, name: &str) -> Option<Result<Box<dyn SyncOperator>, Vec<ConfigError>>> {
        Some(match self {
            Self::Filter(c) => c.build().map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Map(c) => c.build().map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Route(c) => c.build().map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Count(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Aggregate(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Dedupe(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Window(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Join(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::MemoryIndex(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::MemorySearch(c) => c.build().map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Roster(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Guard(c) => c.build().map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Onboard(c) => c.build(name).map(|o| Box::new(o) as Box<dyn SyncOperator>),
            Self::Admissions(c) => Ok(Box::new(c.build(name)) as Box<dyn SyncOperator>),
            _ => return None,
        })
    }
}
