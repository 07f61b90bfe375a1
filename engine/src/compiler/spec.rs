//! TOML → [`Spec`]: the topology as written, every section's and node's options parsed,
//! every error collected. Plain data: what the nodes share (models, tools, indexes) is made
//! from it by the link stage ([`super::link`]).

use std::collections::BTreeMap;
use std::ops::Range;

use kafclaw_agent::model::ModelConfig;
use kafclaw_agent::tools::ToolConfig;
use kafclaw_operators::api::config::valid_topic;
use kafclaw_operators::lang::suggest::did_you_mean;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::agent::{Agent, parse_agent};
use super::collect::{as_table, deserialize_all, valid_name};
use super::diagnostic::{Diagnostic, Diagnostics};
pub use super::node::{InputRef, NodeSpec};
use super::registry::Role;
use super::sections::MAX_THREADS;
use super::sections::{DeadLetterKind, DeadLetterSection, KafkaValue, TopologySection};
use super::source::SourceFile;
use super::tests_section::TestSpec;

/// A `[tools.<name>]` table as written.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    /// Where its name is written (errors of its options that have no place point here).
    pub name_span: Range<usize>,
    /// Its options (`None` when they had errors, reported: the tool is still declared).
    pub config: Option<ToolConfig>,
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
    /// `[models.<name>]`: the model endpoints `llm` and `embed` operators call, by name (a
    /// `recorded` path as written, relative to the topology file).
    pub models: BTreeMap<String, ModelConfig>,
    /// `[tools.<name>]`: the tools `llm` operators may offer, by name.
    pub tools: BTreeMap<String, ToolSpec>,
    /// `[agent]`: the group the instances join, and how they announce themselves.
    pub agent: Option<Agent>,
}

const ROOT_KEYS: [&str; 10] =
    ["topology", "agent", "models", "tools", "sources", "operators", "sinks", "dead_letter", "tests", "kafka"];

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

    let models = parse_models(root.get("models"), diags);
    let tools = parse_tools(root.get("tools"), diags);

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

    let dead_letter = match root.get("dead_letter") {
        Some(v) => deserialize_all::<DeadLetterSection>(v, diags, &[]),
        None => Some(DeadLetterSection::default()),
    };
    if let Some(t) = dead_letter.as_ref().and_then(|d| d.topic.as_ref())
        && !valid_topic(t.get_ref())
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
            super::tests_section::keep_exact_numbers(&mut tests, v, diags);
            for output in tests.iter().flat_map(|t| &t.outputs) {
                super::tests_section::check_expected(&output.envelope, v, diags);
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
        if t.commit_interval_ms == Some(0) {
            diags.push(Diagnostic::error(at("commit_interval_ms"), "`topology.commit_interval_ms` must be at least 1"));
        }
        if t.threads.is_some_and(|n| !(1..=MAX_THREADS).contains(&n)) {
            diags.push(Diagnostic::error(at("threads"), format!("`topology.threads` must be 1 to {MAX_THREADS}")));
        }
        for (key, retention) in
            [("effects_retention", &t.effects_retention), ("approvals_retention", &t.approvals_retention)]
        {
            for e in kafclaw_operators::api::config::parse_duration_ms(retention).err().unwrap_or_default() {
                diags.push(Diagnostic::error(e.span, format!("`topology.{key}`: {}", e.message)).maybe_hint(e.hint));
            }
        }
    }

    let agent = root.get("agent").and_then(|v| parse_agent(v, topology.as_ref(), diags));
    // A section with errors (reported) is replaced by a stand-in so every other check still
    // runs; the spec is then only used for checking.
    let topology = topology.unwrap_or_else(TopologySection::unparsed);
    let dead_letter = dead_letter.unwrap_or_default();
    Some(Spec { topology, nodes, dead_letter, tests, kafka, models, tools, agent })
}

/// `[tools]`: each tool's options, by name (a tool whose options have errors, reported, is
/// still declared; one with an invalid name, reported, is not).
fn parse_tools(section: Option<&Spanned<DeValue<'_>>>, diags: &mut Diagnostics) -> BTreeMap<String, ToolSpec> {
    let mut out = BTreeMap::new();
    let Some(section) = section else { return out };
    let Some(table) = as_table(section, "`tools`", diags) else { return out };
    for (name, value) in table.iter() {
        if !valid_name(name.get_ref(), false) {
            diags.push(Diagnostic::error(name.span(), format!("`{}` is not a valid tool name", name.get_ref())));
            continue;
        }
        let config = deserialize_all::<ToolConfig>(value, diags, &[]);
        out.insert(name.get_ref().to_string(), ToolSpec { name_span: name.span(), config });
    }
    out
}

/// `[models]`: each model's options, by name (a model whose options could not be read, or
/// with an invalid name, reported, is left out).
fn parse_models(section: Option<&Spanned<DeValue<'_>>>, diags: &mut Diagnostics) -> BTreeMap<String, ModelConfig> {
    let mut out = BTreeMap::new();
    let Some(section) = section else { return out };
    let Some(table) = as_table(section, "`models`", diags) else { return out };
    for (name, value) in table.iter() {
        if !valid_name(name.get_ref(), false) {
            diags.push(Diagnostic::error(name.span(), format!("`{}` is not a valid model name", name.get_ref())));
            continue;
        }
        if let Some(config) = deserialize_all::<ModelConfig>(value, diags, &[]) {
            out.insert(name.get_ref().to_string(), config);
        }
    }
    out
}
