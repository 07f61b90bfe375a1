//! TOML → [`Spec`]: the topology as written, every node's options parsed, every error collected.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use kafclaw_operators::lang::suggest::did_you_mean;
use kafclaw_operators::llm::SharedModel;
use kafclaw_operators::llm::model::ModelConfig;
use kafclaw_operators::memory::SharedIndex;
use kafclaw_operators::tools::delegate::BusSlot;
use kafclaw_operators::tools::{Tool, ToolConfig, ToolContext};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::collect::deserialize_all;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::registry::{NodeConfig, Role};
use super::source::SourceFile;
use super::tests_spec::TestSpec;

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
    /// How often (milliseconds) outputs, state and offsets are committed.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
}

impl TopologySection {
    /// The stand-in for a `[topology]` with errors (reported), so the rest is still checked.
    fn unparsed() -> Self {
        Self {
            name: Spanned::new(0..0, String::new()),
            group: None,
            guarantee: Guarantee::default(),
            description: None,
            partitions: default_partitions(),
            replication: default_replication(),
            commit_interval_ms: default_commit_interval_ms(),
        }
    }
}

fn default_partitions() -> i32 {
    6
}

fn default_replication() -> i32 {
    -1
}

fn default_commit_interval_ms() -> u64 {
    100
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

/// A reference to an upstream node's output in `inputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    /// The upstream node.
    pub node: String,
    /// Its named output, for `node.port`.
    pub port: Option<String>,
    /// Where the reference is written.
    pub span: Range<usize>,
}

/// One source, operator or sink as written.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its name (the key of its table).
    pub name: String,
    /// Where the name is written.
    pub name_span: Range<usize>,
    /// Its section.
    pub role: Role,
    /// Its `type` (`None` when the type is missing or unknown; an error was reported).
    pub kind: Option<&'static str>,
    /// Its `inputs`, in order.
    pub inputs: Vec<InputRef>,
    /// Where `inputs` is written, if it is.
    pub inputs_span: Option<Range<usize>>,
    /// Its options (`None` when they could not be parsed; an error was reported). Such a node
    /// still takes part in wiring checks, so one mistake does not cascade into others.
    pub config: Option<NodeConfig>,
    /// For a node whose options had errors: the options made with placeholders for the
    /// fields at fault, only so the checks of the other fields (expressions, templates) run.
    pub partial: Option<NodeConfig>,
}

impl NodeSpec {
    /// The options of a node of a topology that compiled.
    pub fn config(&self) -> &NodeConfig {
        self.config.as_ref().expect("a compiled topology has every node's options")
    }
}

/// A parsed topology file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `[topology]`.
    pub topology: TopologySection,
    /// Every node that parsed, sources, operators and sinks, in file order.
    pub nodes: Vec<NodeSpec>,
    /// `[dead_letter]`.
    pub dead_letter: DeadLetterSection,
    /// `[[tests]]`.
    pub tests: Vec<TestSpec>,
    /// `[kafka]`: librdkafka properties for every client (SASL, TLS, timeouts, …).
    pub kafka: BTreeMap<String, KafkaValue>,
    /// `[models.<name>]`: the model endpoints `llm` operators call.
    pub models: BTreeMap<String, Arc<SharedModel>>,
    /// Where a runtime with peers (Kafka) installs the bus `delegate` tools use.
    pub bus: Arc<BusSlot>,
    /// `[agent]`: the group the instances join, and how they announce themselves.
    pub agent: Option<super::agent::Agent>,
}

const ROOT_KEYS: [&str; 10] =
    ["topology", "agent", "models", "tools", "sources", "operators", "sinks", "dead_letter", "tests", "kafka"];

/// Characters allowed in topology and node names.
pub fn valid_name(name: &str, allow_dot: bool) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.'))
}

/// The table `v` is, or `None` (reported: `what` must be a table).
pub(super) fn as_table<'a, 'i>(
    v: &'a Spanned<DeValue<'i>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        other => {
            diags.push(Diagnostic::error(v.span(), format!("{what} must be a table, not {}", other.type_str())));
            None
        }
    }
}

/// Parses a topology file. Returns the spec when the file is TOML, errors or not, with every
/// problem found in any section in `diags` (a section with errors is replaced by a stand-in,
/// so the rest is still checked); `None` when the file is not TOML (syntax errors reported).
pub fn parse(file: &SourceFile, diags: &mut Diagnostics) -> Option<Spec> {
    let (root, errors) = DeTable::parse_recoverable(&file.text);
    // Syntax errors are reported with the rest: what parsed is still checked.
    super::syntax::report(file, errors, diags);
    let mut root = root.into_inner();
    let unknown: Vec<_> =
        root.iter().map(|(k, _)| k.clone()).filter(|k| !ROOT_KEYS.contains(&k.get_ref().as_ref())).collect();
    for key in unknown {
        let meant = did_you_mean(key.get_ref(), &ROOT_KEYS);
        let hint = match meant {
            Some(m) => format!("did you mean `{m}`? sections: {}", ROOT_KEYS.join(", ")),
            None => format!("sections: {}", ROOT_KEYS.join(", ")),
        };
        diags.push(Diagnostic::error(key.span(), format!("unknown section `{}`", key.get_ref())).hint(hint));
        // `[topologyy]`: read as the section it stood for, when the file has none such.
        if let Some(m) = meant
            && !root.contains_key(m)
            && let Some((k, v)) = root.remove_entry(key.get_ref().as_ref())
        {
            root.insert(Spanned::new(k.span(), std::borrow::Cow::Borrowed(m)), v);
        }
    }
    let root = &root;

    let topology = match root.get("topology") {
        Some(v) => deserialize_all::<TopologySection>(v, diags, &[]),
        None => {
            diags.push(
                Diagnostic::error(0..0, "missing `[topology]` section")
                    .hint("add [topology] with at least name = \"my-agent\""),
            );
            None
        }
    };
    if let Some(t) = &topology {
        if !valid_name(t.name.get_ref(), true) {
            diags.push(
                Diagnostic::error(t.name.span(), format!("`{}` is not a valid topology name", t.name.get_ref()))
                    .hint("it names the consumer group and topics: use letters, digits, `.`, `_` and `-`"),
            );
        }
        if let Some(g) = &t.group
            && !valid_name(g.get_ref(), false)
        {
            diags.push(
                Diagnostic::error(g.span(), format!("`{}` is not a valid group name", g.get_ref()))
                    .hint("it names topics group.<group>.*: use letters, digits, `_` and `-`"),
            );
        }
    }

    let models = parse_models(root.get("models"), file.base_dir(), diags);

    let mut nodes = Vec::new();
    for role in [Role::Source, Role::Operator, Role::Sink] {
        let Some(section) = root.get(role.section()) else { continue };
        let Some(table) = as_table(section, &format!("`{}`", role.section()), diags) else { continue };
        for (name, value) in table.iter() {
            if let Some(node) = super::node::parse_node(role, name, value, diags) {
                nodes.push(node);
            }
        }
    }
    nodes.sort_by_key(|n| n.name_span.start);
    // One vector index per memory-index operator, shared with the searches that name it.
    let mut indexes = BTreeMap::new();
    for node in &mut nodes {
        if let Some(NodeConfig::MemoryIndex(c)) = &mut node.config {
            let shared = SharedIndex::new(&node.name);
            c.shared = Some(shared.clone());
            indexes.insert(node.name.clone(), shared);
        }
    }
    let bus = Arc::new(BusSlot::default());
    let (tools, broken_tools) = parse_tools(
        root.get("tools"),
        &ToolContext {
            base: file.base_dir(),
            indexes: &indexes,
            models: &models,
            agent: topology.as_ref().map_or("kafclaw", |t| t.name.get_ref().as_str()),
            bus: &bus,
        },
        diags,
    );
    let consumed: std::collections::HashSet<String> = nodes
        .iter()
        .flat_map(|n| n.inputs.iter().filter_map(|i| Some(format!("{}.{}", i.node, i.port.as_ref()?))))
        .collect();
    let mut admissions = BTreeMap::new();
    for node in &mut nodes {
        if let Some(NodeConfig::Admissions(c)) = &mut node.config {
            let shared = kafclaw_operators::group::onboard::SharedAdmissions::new(&node.name);
            c.shared = Some(shared.clone());
            admissions.insert(node.name.clone(), shared);
        }
    }
    for node in &mut nodes {
        if let Some(NodeConfig::Guard(c)) = &mut node.config {
            c.admissions = c.admitted.as_ref().and_then(|a| admissions.get(a.get_ref()).cloned());
        }
        if let Some(NodeConfig::MemorySearch(c)) = &mut node.config {
            c.shared = indexes.get(c.index.get_ref()).cloned();
        }
        if let Some(NodeConfig::Embed(c)) = &mut node.config {
            c.resolved = c.model.as_ref().and_then(|m| models.get(m.get_ref()).cloned());
        }
        if let Some(NodeConfig::Llm(c)) = &mut node.config {
            // A tool declared with errors (reported) is declared: not named again here.
            c.tools.retain(|t| !broken_tools.contains(t.get_ref()));
            c.resolved = models.get(c.model.get_ref()).cloned();
            c.resolved_tools = c
                .tools
                .iter()
                .filter_map(|t| tools.get(t.get_ref()).map(|tool| (t.get_ref().clone(), tool.clone())))
                .collect();
            let memories = format!("{}.{}", node.name, kafclaw_operators::llm::MEMORIES);
            if let Some((name, _)) = c.resolved_tools.iter().find(|(_, t)| t.remembers())
                && !consumed.contains(&memories)
            {
                let span = c.tools.iter().find(|t| t.get_ref() == name).map_or(0..0, |t| t.span());
                diags.push(
                    Diagnostic::warning(span, format!("tool `{name}` remembers, but no node reads `{memories}`"))
                        .hint("wire it to a kafka sink on the shared memory topic, or to a memory-index"),
                );
            }
            let eos = topology.as_ref().is_some_and(|t| t.guarantee == Guarantee::ExactlyOnce);
            for (name, tool) in &c.resolved_tools {
                if eos && tool.side_effects() && !tool.idempotent() {
                    let span = c.tools.iter().find(|t| t.get_ref() == name).map_or(0..0, |t| t.span());
                    diags.push(
                        Diagnostic::warning(
                            span,
                            format!("tool `{name}` has side effects and no idempotency key; under exactly-once a call may run again after a crash"),
                        )
                        .hint("make it idempotent (http POST sends an Idempotency-Key), or accept repeats"),
                    );
                }
            }
        }
    }

    let dead_letter = match root.get("dead_letter") {
        Some(v) => deserialize_all::<DeadLetterSection>(v, diags, &[]),
        None => Some(DeadLetterSection::default()),
    };
    if let Some(t) = dead_letter.as_ref().and_then(|d| d.topic.as_ref())
        && !kafclaw_operators::api::config::valid_topic(t.get_ref())
    {
        diags.push(Diagnostic::error(t.span(), format!("`{}` is not a valid Kafka topic name", t.get_ref())));
    }
    if let Some(dl) = &dead_letter
        && dl.kind == DeadLetterKind::Stderr
        && let Some(p) = &dl.path
    {
        diags.push(Diagnostic::error(p.span(), "a `stderr` dead-letter output has no `path`"));
    }

    let tests = match root.get("tests") {
        Some(v) => {
            let mut tests = deserialize_all::<Vec<TestSpec>>(v, diags, &[]).unwrap_or_default();
            super::tests_spec::keep_exact_numbers(&mut tests, v, diags);
            for output in tests.iter().flat_map(|t| &t.outputs) {
                super::tests_spec::check_expected(&output.envelope, v, diags);
            }
            tests
        }
        None => Vec::new(),
    };

    let kafka = match root.get("kafka") {
        Some(v) => deserialize_all::<BTreeMap<String, KafkaValue>>(v, diags, &[]).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    if let Some(t) = &topology {
        let at = |key: &str| match root.get("topology").map(|v| v.get_ref()) {
            Some(DeValue::Table(table)) => table.get(key).map_or(0..0, |v| v.span()),
            _ => 0..0,
        };
        if t.partitions < 1 {
            diags.push(Diagnostic::error(at("partitions"), "`topology.partitions` must be at least 1"));
        }
        if t.commit_interval_ms == 0 {
            diags.push(Diagnostic::error(at("commit_interval_ms"), "`topology.commit_interval_ms` must be at least 1"));
        }
    }

    let agent = root.get("agent").and_then(|v| super::agent::parse_agent(v, topology.as_ref(), diags));
    // A section with errors (reported) is replaced by a stand-in so every other check still
    // runs; the spec is then only used for checking.
    let topology = topology.unwrap_or_else(TopologySection::unparsed);
    let dead_letter = dead_letter.unwrap_or_default();
    Some(Spec { topology, nodes, dead_letter, tests, kafka, models, bus, agent })
}

fn parse_tools(
    section: Option<&Spanned<DeValue<'_>>>,
    cx: &ToolContext<'_>,
    diags: &mut Diagnostics,
) -> (BTreeMap<String, Arc<dyn Tool>>, std::collections::BTreeSet<String>) {
    let mut out = BTreeMap::new();
    let mut broken = std::collections::BTreeSet::new();
    let Some(section) = section else { return (out, broken) };
    let Some(table) = as_table(section, "`tools`", diags) else { return (out, broken) };
    for (name, value) in table.iter() {
        if !valid_name(name.get_ref(), false) {
            diags.push(Diagnostic::error(name.span(), format!("`{}` is not a valid tool name", name.get_ref())));
            continue;
        }
        let Some(config) = deserialize_all::<ToolConfig>(value, diags, &[]) else {
            broken.insert(name.get_ref().to_string());
            continue;
        };
        match config.build(cx) {
            Ok(tool) => {
                out.insert(name.get_ref().to_string(), tool);
            }
            Err(errors) => {
                broken.insert(name.get_ref().to_string());
                for e in errors {
                    let span = if e.span == (0..0) { name.span() } else { e.span };
                    diags.push(Diagnostic::error(span, e.message));
                }
            }
        }
    }
    (out, broken)
}

fn parse_models(
    section: Option<&Spanned<DeValue<'_>>>,
    base: &std::path::Path,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Arc<SharedModel>> {
    let mut out = BTreeMap::new();
    let Some(section) = section else { return out };
    let Some(table) = as_table(section, "`models`", diags) else { return out };
    for (name, value) in table.iter() {
        if !valid_name(name.get_ref(), false) {
            diags.push(Diagnostic::error(name.span(), format!("`{}` is not a valid model name", name.get_ref())));
            continue;
        }
        let Some(mut config) = deserialize_all::<ModelConfig>(value, diags, &[]) else { continue };
        // A recording is named relative to the topology file.
        if let Some(r) = &mut config.recorded
            && std::path::Path::new(r.as_str()).is_relative()
        {
            *r = base.join(&*r).display().to_string();
        }
        for e in config.check() {
            let d = Diagnostic::error(e.span, e.message);
            diags.push(match e.hint {
                Some(h) => d.hint(h),
                None => d,
            });
        }
        out.insert(name.get_ref().to_string(), SharedModel::new(name.get_ref(), config));
    }
    out
}
