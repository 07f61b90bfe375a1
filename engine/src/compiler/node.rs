//! One `[sources|operators|sinks.<name>]` table → [`NodeSpec`] (with its [`InputRef`]s).
//!
//! A node with a mistake is still kept (unless it is not a table at all), so the graph checks
//! see it and report nothing about it that follows from that mistake: a node of unknown type
//! has no options and no ports, but is still an input others may name and still reads its
//! own `inputs`. A typo of `type` or `inputs` is reported once, and then read as what it
//! stood for.

use std::ops::Range;

use kafclaw_operators::lang::suggest::did_you_mean;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::collect::{as_table, valid_name};
use super::diagnostic::{Diagnostic, Diagnostics};
use super::registry::{self, NodeConfig, Role};

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

fn input_ref(s: &str, span: Range<usize>) -> InputRef {
    let (node, port) = match s.split_once('.') {
        Some((n, p)) => (n.to_owned(), Some(p.to_owned())),
        None => (s.to_owned(), None),
    };
    InputRef { node, port, span }
}

fn parse_inputs(value: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Vec<InputRef> {
    let DeValue::Array(items) = value.get_ref() else {
        let mut d = Diagnostic::error(value.span(), "`inputs` must be a list of node names");
        if let Some(s) = value.get_ref().as_str() {
            // `inputs = "g"`: reported once, then read as the list it stood for.
            diags.push(d.hint(format!("write inputs = [{s:?}]")));
            return vec![input_ref(s, value.span())];
        }
        d = d.hint("e.g. inputs = [\"requests\"], or [\"router.urgent\"] for a named output");
        diags.push(d);
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match item.get_ref().as_str() {
            Some(s) => out.push(input_ref(s, item.span())),
            None => diags.push(Diagnostic::error(item.span(), "an input must be a string naming a node")),
        }
    }
    out
}

type Entry<'i> = (Spanned<DeString<'i>>, Spanned<DeValue<'i>>);

/// The key of `table` that looks like a typo of `key` (which `table` lacks) and whose value
/// passes `fits`.
fn typo_of<'i>(table: &DeTable<'i>, key: &str, fits: impl Fn(&DeValue<'_>) -> bool) -> Option<Entry<'i>> {
    if table.contains_key(key) {
        return None;
    }
    table
        .iter()
        .filter(|(k, v)| k.get_ref() != "type" && k.get_ref() != "inputs" && fits(v.get_ref()))
        .find(|(k, _)| did_you_mean(k.get_ref(), &[key]).is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
}

/// The node's kind from its `type` (or a typo of it, reported here), `None` when missing or
/// unknown (reported).
fn parse_kind(
    role: Role,
    name: &Spanned<DeString<'_>>,
    options: &mut DeTable<'_>,
    diags: &mut Diagnostics,
) -> Option<&'static registry::Kind> {
    let names = registry::names(role);
    let types = || format!("{} types: {}", role.noun(), names.join(", "));
    let type_value = match options.remove("type") {
        Some(t) => t,
        None => {
            // `tpye = "map"`: a typo of `type` whose value is (close to) a type name.
            let close_to_a_type =
                |v: &DeValue<'_>| v.as_str().is_some_and(|s| names.contains(&s) || did_you_mean(s, &names).is_some());
            let Some((key, value)) = typo_of(options, "type", close_to_a_type) else {
                diags.push(
                    Diagnostic::error(name.span(), format!("{} `{}` has no `type`", role.noun(), name.get_ref()))
                        .hint(types()),
                );
                return None;
            };
            options.remove(key.get_ref().as_ref());
            diags.push(
                Diagnostic::error(key.span(), format!("unknown field `{}`", key.get_ref()))
                    .hint(format!("did you mean `type`? {}", types())),
            );
            value
        }
    };
    let Some(s) = type_value.get_ref().as_str() else {
        diags.push(Diagnostic::error(type_value.span(), "`type` must be a string"));
        return None;
    };
    let kind = registry::lookup(role, s);
    if kind.is_none() {
        let hint = match did_you_mean(s, &names) {
            Some(m) => format!("did you mean `{m}`? {}", types()),
            None => types(),
        };
        diags.push(Diagnostic::error(type_value.span(), format!("unknown {} type `{s}`", role.noun())).hint(hint));
    }
    kind
}

/// Parses one node table. `None` only when the node is not a table (reported).
pub(super) fn parse_node(
    role: Role,
    name: &Spanned<DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
    diags: &mut Diagnostics,
) -> Option<NodeSpec> {
    let table = as_table(value, &format!("{} `{}`", role.noun(), name.get_ref()), diags)?;
    if !valid_name(name.get_ref(), false) {
        diags.push(
            Diagnostic::error(name.span(), format!("`{}` is not a valid node name", name.get_ref()))
                .hint("use letters, digits, `_` and `-` (a `.` separates a node from its named output)"),
        );
    }
    let mut options = table.clone();
    let kind = parse_kind(role, name, &mut options, diags);
    let (mut inputs, mut inputs_span) = (Vec::new(), None);
    match (role, options.remove_entry("inputs")) {
        (Role::Source, Some((k, _))) => diags.push(
            Diagnostic::error(k.span(), "a source has no `inputs`").hint("sources read from outside; remove `inputs`"),
        ),
        (_, Some((_, v))) => (inputs, inputs_span) = (parse_inputs(&v, diags), Some(v.span())),
        (_, None) => {}
    }
    // `inptus = [...]`: read as `inputs` once the options show it is no option of the kind.
    let inputs_typo = match role {
        Role::Source => None,
        _ => typo_of(&options, "inputs", |v| matches!(v, DeValue::Array(_))),
    };
    let mut node = NodeSpec {
        name: name.get_ref().to_string(),
        name_span: name.span(),
        role,
        kind: kind.map(|k| k.name),
        inputs,
        inputs_span,
        config: None,
        partial: None,
    };
    let Some(kind) = kind else {
        // No options to check; the look-alike is taken as `inputs` so the wiring is checked.
        if let Some((_, v)) = inputs_typo {
            node.inputs = parse_inputs(&v, &mut Diagnostics::default());
            node.inputs_span = Some(v.span());
        }
        return Some(node);
    };
    let options = Spanned::new(value.span(), DeValue::Table(options));
    let before = diags.items.len();
    match (kind.parse)(&options, diags) {
        Some((config, true)) => node.config = Some(config),
        Some((config, false)) => node.partial = Some(config),
        None => {}
    }
    // Option errors reported on the whole (type- and inputs-less) table point at the name.
    for d in &mut diags.items[before..] {
        if d.offset == value.span().start {
            d.offset = name.span().start;
        }
    }
    if let Some((k, v)) = inputs_typo
        && diags.items[before..].iter().any(|d| d.offset == k.span().start && d.message.starts_with("unknown field"))
    {
        node.inputs = parse_inputs(&v, &mut Diagnostics::default());
        node.inputs_span = Some(v.span());
    }
    Some(node)
}
