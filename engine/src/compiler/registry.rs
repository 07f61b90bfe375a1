//! The explicit list of node kinds: every source, operator and sink type a topology may use.
//! Adding a kind means writing its config half (a struct implementing
//! [`kafclaw_operators::api::kind::Kind`]), adding one line to [`KINDS`], one variant to
//! [`NodeConfig`] and one arm to `with_kind!`; everything the compiler and the runtimes ask of
//! a node goes through that trait.

use kafclaw_agent::llm::LlmConfig;
use kafclaw_agent::memory::conversation::{ConversationConfig, ConversationContextConfig};
use kafclaw_agent::memory::embed_op::EmbedConfig;
use kafclaw_agent::memory::{MemoryIndexConfig, MemorySearchConfig};
use kafclaw_operators::api::kind::{Built, Kind as KindContract, LintContext, SourceStage};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::connectors::kafka::{KafkaSinkConfig, KafkaSourceConfig};
use kafclaw_operators::connectors::schedule::ScheduleConfig;
use kafclaw_operators::connectors::{FileSinkConfig, FileSourceConfig, StdinSourceConfig, StdoutSinkConfig};
use kafclaw_operators::{
    ConfigError, Ports, TableSpec,
    group::approve::ApproveConfig,
    group::guard::GuardConfig,
    group::onboard::{AdmissionsConfig, OnboardConfig},
    group::roster::RosterConfig,
    keyed::aggregate::AggregateConfig,
    keyed::count::CountConfig,
    keyed::dedupe::DedupeConfig,
    keyed::join::JoinConfig,
    keyed::window::WindowConfig,
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
// One per node, built once at compile time: the size of the largest variant (`llm`'s
// options) costs nothing worth a box in every match of `with_kind!`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum NodeConfig {
    /// Source `file`.
    FileSource(FileSourceConfig),
    /// Source `stdin`.
    StdinSource(StdinSourceConfig),
    /// Source `kafka`.
    KafkaSource(KafkaSourceConfig),
    /// Source `schedule`.
    Schedule(ScheduleConfig),
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
    /// Operator `approve`.
    Approve(ApproveConfig),
    /// Operator `roster`.
    Roster(RosterConfig),
    /// Operator `embed`.
    Embed(EmbedConfig),
    /// Operator `memory-index`.
    MemoryIndex(MemoryIndexConfig),
    /// Operator `memory-search`.
    MemorySearch(MemorySearchConfig),
    /// Operator `conversation`.
    Conversation(ConversationConfig),
    /// Operator `conversation-context`.
    ConversationContext(ConversationContextConfig),
    /// Sink `file`.
    FileSink(FileSinkConfig),
    /// Sink `stdout`.
    StdoutSink(StdoutSinkConfig),
    /// Sink `kafka`.
    KafkaSink(KafkaSinkConfig),
}

/// Parses a kind's options: the config and whether it is complete (no placeholders).
pub type ParseOptions = fn(&Spanned<DeValue<'_>>, &mut Diagnostics) -> Option<(NodeConfig, bool)>;

/// One entry of the registry: how a `type = "…"` is parsed. (What a parsed kind is then asked
/// is the config half's trait, [`kafclaw_operators::api::kind::Kind`], here `KindContract`.)
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
    kind!(Role::Source, "schedule", "ticks at the due times of a cron pattern, once per due time", Schedule),
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
    kind!(
        Role::Operator,
        "approve",
        "park a record until a person approves or rejects it (or a timeout decides)",
        Approve
    ),
    kind!(Role::Operator, "roster", "group members from announce/heartbeat envelopes, expired by TTL", Roster),
    kind!(Role::Operator, "embed", "put a vector on each record (/v1/embeddings or local; journalled)", Embed),
    kind!(Role::Operator, "memory-index", "index memory items for vector search (usearch)", MemoryIndex),
    kind!(Role::Operator, "memory-search", "find the memory items nearest to a query", MemorySearch),
    kind!(
        Role::Operator,
        "conversation",
        "keep a bounded history per conversation; summarise the oldest turns (journalled)",
        Conversation
    ),
    kind!(Role::Operator, "conversation-context", "put a conversation's history on a record", ConversationContext),
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

/// Expands to a match over every variant of [`NodeConfig`], binding the kind's config to
/// `$c` (every config half implements [`KindContract`]): the registry's one dispatch, as
/// RisingWave's `build_executor!` routes its `NodeBody`.
macro_rules! with_kind {
    ($config:expr, $c:ident => $body:expr) => {
        match $config {
            NodeConfig::FileSource($c) => $body,
            NodeConfig::StdinSource($c) => $body,
            NodeConfig::KafkaSource($c) => $body,
            NodeConfig::Schedule($c) => $body,
            NodeConfig::Filter($c) => $body,
            NodeConfig::Map($c) => $body,
            NodeConfig::Route($c) => $body,
            NodeConfig::Count($c) => $body,
            NodeConfig::Aggregate($c) => $body,
            NodeConfig::Dedupe($c) => $body,
            NodeConfig::Window($c) => $body,
            NodeConfig::Join($c) => $body,
            NodeConfig::Llm($c) => $body,
            NodeConfig::Onboard($c) => $body,
            NodeConfig::Admissions($c) => $body,
            NodeConfig::Guard($c) => $body,
            NodeConfig::Approve($c) => $body,
            NodeConfig::Roster($c) => $body,
            NodeConfig::Embed($c) => $body,
            NodeConfig::MemoryIndex($c) => $body,
            NodeConfig::MemorySearch($c) => $body,
            NodeConfig::Conversation($c) => $body,
            NodeConfig::ConversationContext($c) => $body,
            NodeConfig::FileSink($c) => $body,
            NodeConfig::StdoutSink($c) => $body,
            NodeConfig::KafkaSink($c) => $body,
        }
    };
}

/// Each question is the kind's own ([`KindContract`]); see the trait for what each means.
impl NodeConfig {
    /// The outputs of the node (sinks have none).
    pub fn ports(&self) -> Ports {
        with_kind!(self, c => c.ports())
    }

    /// The state tables of node `node`, known without building it.
    pub fn tables(&self, node: &str) -> Vec<TableSpec> {
        with_kind!(self, c => c.tables(node))
    }

    /// Puts what node `node` offers the others into `resources`.
    pub fn provides(&self, node: &str, resources: &mut Resources) {
        with_kind!(self, c => c.provides(node, resources))
    }

    /// Every option error of node `node`, whose inputs are the nodes `inputs`.
    pub fn check(&self, node: &str, inputs: &[&str], resources: &Resources) -> Vec<ConfigError> {
        with_kind!(self, c => c.check(node, inputs, resources))
    }

    /// The warnings about node `node`.
    pub fn lint(&self, node: &str, cx: &LintContext<'_>) -> Vec<ConfigError> {
        with_kind!(self, c => c.lint(node, cx))
    }

    /// Builds the runtime half of node `node` (sources and sinks are [`Built::Edge`]: opened
    /// by the runtime).
    pub fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        with_kind!(self, c => c.build(node, resources))
    }

    /// The stage source `node` runs on each record before its operators, if any.
    pub fn source_stage(&self, node: &str) -> Result<Option<Box<dyn SourceStage>>, Vec<ConfigError>> {
        with_kind!(self, c => c.source_stage(node))
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
            // Bound by the plan: `<topology>.schedule.<node>`.
            Self::Schedule(c) => c.topic(),
            _ => None,
        }
    }
}
