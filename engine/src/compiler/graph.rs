//! [`Spec`] → [`LogicalGraph`]: names resolved, wiring checked (dangling, duplicate and cyclic
//! inputs, sinks fed by nothing, unused sources), operator options compiled.

use std::collections::HashMap;

use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::lang::suggest::did_you_mean;
use kafclaw_operators::{ConfigError, Ports};

use super::diagnostic::{Diagnostic, Diagnostics};
use super::registry::{NodeConfig, Role};
use super::source::SourceFile;
use super::spec::{NodeSpec, Spec};

/// An edge: `from`'s output `port` feeds `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Upstream node index.
    pub from: usize,
    /// Upstream port index.
    pub port: usize,
    /// Downstream node index.
    pub to: usize,
}

/// The validated graph: nodes in file order and the edges between them.
#[derive(Debug, Clone)]
pub struct LogicalGraph {
    /// Nodes, indexed as in [`Spec::nodes`].
    pub nodes: Vec<NodeSpec>,
    /// Ports of each node (`None` for a node whose options did not parse).
    pub ports: Vec<Option<Ports>>,
    /// Every edge, in the order the `inputs` lists give them.
    pub edges: Vec<Edge>,
}

impl LogicalGraph {
    /// Index of a node by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The port names of node `i` (`None` for the default output).
    pub fn port_name(&self, node: usize, port: usize) -> Option<&str> {
        let p = self.ports[node].as_ref()?;
        if p.default && port == 0 { None } else { p.named.get(port - usize::from(p.default)).map(String::as_str) }
    }
}

/// The parser's message, without the Rust debug dump some of its errors come wrapped in
/// (`OtherError(ParseError { …, msg: "…", … })`) or its internal asserts (`No \`X\`!`).
fn plain_cel_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("CEL syntax: ") else { return message.to_owned() };
    if rest.contains("Recursion limit") {
        return "CEL syntax: the expression nests too deeply for the parser".to_owned();
    }
    if let Some(i) = rest.find("msg: \"") {
        let msg = rest[i + 6..].split('"').next().unwrap_or("");
        return format!("CEL syntax: {msg}");
    }
    if rest.starts_with("No `") || rest.contains('{') && rest.contains("Error") {
        return "CEL syntax: the parser could not read the expression from here".to_owned();
    }
    message.to_owned()
}

/// One syntax error per expression: the first the parser met (its follow-ons, and one per
/// character of a run of bad characters, are the same mistake). A nesting too deep for the
/// parser is reported as that, whatever the parser said first.
fn first_cel_error_per_expression(errors: Vec<ConfigError>) -> Vec<ConfigError> {
    let syntax = |e: &ConfigError| e.message.starts_with("CEL syntax: ");
    let mut out: Vec<ConfigError> = Vec::new();
    for mut e in errors.iter().cloned() {
        if syntax(&e) {
            if out.iter().any(|o| syntax(o) && o.span == e.span) {
                continue;
            }
            let same = errors.iter().filter(|o| syntax(o) && o.span == e.span);
            if let Some(deep) = same.clone().find(|o| o.message.contains("Recursion limit")) {
                e = deep.clone();
                e.hint = Some("split it, or use `in [...]` for long alternatives".into());
            }
            e.message = plain_cel_message(&e.message);
        }
        out.push(e);
    }
    out
}

/// Turns an operator's option errors into diagnostics.
pub fn config_diagnostics(file: &SourceFile, node: &NodeSpec, errors: Vec<ConfigError>, diags: &mut Diagnostics) {
    for e in first_cel_error_per_expression(errors) {
        let offset = match (e.span.start..e.span.end, e.char_offset) {
            (s, _) if s.is_empty() && s.start == 0 => node.name_span.start,
            (s, Some(c)) => file.string_content_offset(s, c),
            (s, None) => s.start,
        };
        diags.push(Diagnostic::error(offset..offset, e.message).maybe_hint(e.hint));
    }
}

fn check_wiring(
    spec: &Spec,
    by_name: &HashMap<&str, usize>,
    ports: &[Option<Ports>],
    diags: &mut Diagnostics,
) -> Vec<Edge> {
    let names: Vec<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut edges = Vec::new();
    for (to, node) in spec.nodes.iter().enumerate() {
        if node.role == Role::Source {
            continue;
        }
        if node.inputs.is_empty() {
            let span = node.inputs_span.clone().unwrap_or(node.name_span.clone());
            let fed = if node.role == Role::Sink { "is fed by nothing" } else { "reads nothing" };
            diags.push(
                Diagnostic::error(
                    span,
                    format!("{} `{}` {fed}: `inputs` is missing or empty", node.role.noun(), node.name),
                )
                .hint("list what it reads, e.g. inputs = [\"requests\"]"),
            );
            continue;
        }
        let mut seen: Vec<(&str, Option<&str>)> = Vec::new();
        for input in &node.inputs {
            let key = (input.node.as_str(), input.port.as_deref());
            if seen.contains(&key) {
                diags.push(Diagnostic::error(
                    input.span.clone(),
                    format!("`{}` is listed twice in `inputs`", input.node),
                ));
                continue;
            }
            seen.push(key);
            let Some(&from) = by_name.get(input.node.as_str()) else {
                let hint = match did_you_mean(&input.node, &names) {
                    Some(m) => format!("did you mean `{m}`? nodes: {}", names.join(", ")),
                    None => format!("nodes: {}", names.join(", ")),
                };
                diags.push(
                    Diagnostic::error(input.span.clone(), format!("input `{}` names no node", input.node)).hint(hint),
                );
                continue;
            };
            let up = &spec.nodes[from];
            if up.role == Role::Sink {
                diags.push(
                    Diagnostic::error(
                        input.span.clone(),
                        format!("`{}` is a sink; sinks have no output to read", up.name),
                    )
                    .hint("read the operator that feeds the sink instead"),
                );
                continue;
            }
            if from == to {
                diags.push(Diagnostic::error(input.span.clone(), format!("`{}` reads its own output", node.name)));
                continue;
            }
            let Some(from_ports) = &ports[from] else {
                // Its options had errors (reported); keep the edge so nothing cascades.
                edges.push(Edge { from, port: 0, to });
                continue;
            };
            match from_ports.index_of(input.port.as_deref()) {
                Some(port) => edges.push(Edge { from, port, to }),
                None => {
                    let listed =
                        from_ports.named.iter().map(|p| format!("{}.{p}", up.name)).collect::<Vec<_>>().join(", ");
                    let msg = match &input.port {
                        None => format!("`{}` has only named outputs", up.name),
                        Some(p) => format!("`{}` has no output named `{p}`", up.name),
                    };
                    let hint = if listed.is_empty() {
                        format!("read it as `{}`", up.name)
                    } else {
                        format!("outputs: {listed}")
                    };
                    diags.push(Diagnostic::error(input.span.clone(), msg).hint(hint));
                }
            }
        }
    }
    edges
}

/// Finds cycles (Tarjan's strongly connected components) and reports each once.
fn check_cycles(spec: &Spec, edges: &[Edge], diags: &mut Diagnostics) -> Vec<bool> {
    let n = spec.nodes.len();
    let mut succ = vec![Vec::new(); n];
    for e in edges {
        succ[e.from].push(e.to);
    }
    struct T<'a> {
        succ: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        sccs: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T<'_>, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for i in 0..t.succ[v].len() {
            let w = t.succ[v][i];
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                scc.push(w);
                if w == v {
                    break;
                }
            }
            t.sccs.push(scc);
        }
    }
    let mut t = T {
        succ: &succ,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    let mut in_cycle = vec![false; n];
    for mut scc in t.sccs {
        if scc.len() < 2 {
            continue;
        }
        scc.sort_unstable();
        for &v in &scc {
            in_cycle[v] = true;
        }
        let first = &spec.nodes[scc[0]];
        let path = scc.iter().map(|&i| spec.nodes[i].name.as_str()).collect::<Vec<_>>().join(" → ");
        let span = first.inputs_span.clone().unwrap_or(first.name_span.clone());
        diags.push(
            Diagnostic::error(span, format!("cycle in `inputs`: {path} → {}", first.name))
                .hint("a topology is a DAG; to feed results back, write them to a topic and read it as a source"),
        );
    }
    in_cycle
}

/// Checks the spec's wiring and options (with the linked `resources`) and builds the graph.
/// `None` when an error was found.
pub fn build(file: &SourceFile, spec: &Spec, resources: &Resources, diags: &mut Diagnostics) -> Option<LogicalGraph> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, node) in spec.nodes.iter().enumerate() {
        if let Some(&first) = by_name.get(node.name.as_str()) {
            let (line, _) = file.line_col(spec.nodes[first].name_span.start);
            diags.push(
                Diagnostic::error(node.name_span.clone(), format!("`{}` is already defined (line {line})", node.name))
                    .hint("sources, operators and sinks share one namespace"),
            );
        } else {
            by_name.insert(&node.name, i);
        }
    }
    for node in &spec.nodes {
        if let Some(config) = node.config.as_ref().or(node.partial.as_ref()) {
            let inputs: Vec<&str> = node.inputs.iter().map(|i| i.node.as_str()).collect();
            config_diagnostics(file, node, config.check(&node.name, &inputs, resources), diags);
        }
    }
    let ports: Vec<Option<Ports>> = spec.nodes.iter().map(|n| n.config.as_ref().map(NodeConfig::ports)).collect();
    let edges = check_wiring(spec, &by_name, &ports, diags);
    let in_cycle = check_cycles(spec, &edges, diags);

    // Reachability from sources: what no source reaches is fed by nothing.
    let n = spec.nodes.len();
    let mut reached = vec![false; n];
    // A node with an input that is a mistake (reported) counts as reached: what it would be
    // fed is unknown, and nothing downstream of it is reported for that.
    let mistaken = |i: usize| edges.iter().filter(|e| e.to == i).count() < spec.nodes[i].inputs.len();
    let mut stack: Vec<usize> = (0..n).filter(|&i| spec.nodes[i].role == Role::Source || mistaken(i)).collect();
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut reached[v], true) {
            continue;
        }
        stack.extend(edges.iter().filter(|e| e.from == v).map(|e| e.to));
    }
    // Named in some `inputs`, even with a mistake (reported), or read by a guard's `admitted`
    // (an `admissions` set): not unused.
    let mut named: std::collections::HashSet<&str> =
        spec.nodes.iter().flat_map(|n| n.inputs.iter().map(|i| i.node.as_str())).collect();
    named.extend(spec.nodes.iter().filter_map(|n| match &n.config {
        Some(NodeConfig::Guard(g)) => g.admitted.as_ref().map(|a| a.get_ref().as_str()),
        _ => None,
    }));
    for (i, node) in spec.nodes.iter().enumerate() {
        let has_upstream = edges.iter().any(|e| e.to == i);
        if !reached[i] && has_upstream && !in_cycle[i] {
            diags.push(
                Diagnostic::error(
                    node.inputs_span.clone().unwrap_or(node.name_span.clone()),
                    format!("{} `{}` is fed by nothing: no source reaches it", node.role.noun(), node.name),
                )
                .hint("its inputs only lead back to nodes that read nothing"),
            );
        }
        let has_downstream = edges.iter().any(|e| e.from == i);
        if !has_downstream && !named.contains(node.name.as_str()) && node.role != Role::Sink {
            let what = if node.role == Role::Source { "source" } else { "output of operator" };
            diags.push(
                Diagnostic::warning(
                    node.name_span.clone(),
                    format!("{what} `{}` is not used: nothing reads it", node.name),
                )
                .hint("add it to some node's `inputs`, or remove it"),
            );
        }
    }
    if !spec.nodes.iter().any(|n| n.role == Role::Source) {
        diags.push(Diagnostic::error(0..0, "the topology has no source").hint("add a [sources.<name>] table"));
    }
    if !spec.nodes.iter().any(|n| n.role == Role::Sink) {
        diags.push(Diagnostic::error(0..0, "the topology has no sink").hint("add a [sinks.<name>] table"));
    }
    (!diags.has_errors()).then(|| LogicalGraph { nodes: spec.nodes.clone(), ports, edges })
}
