//! `kafclaw graph`: the logical graph as Graphviz DOT or Mermaid; and as JSON, for the
//! console's Topologies page.

use std::fmt::Write as _;

use crate::compiler::registry::Role;
use crate::compiler::{Compiled, LogicalGraph};

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn edge_label(graph: &LogicalGraph, from: usize, port: usize) -> Option<String> {
    graph.port_name(from, port).map(str::to_owned)
}

/// Graphviz DOT (render with `dot -Tsvg`).
pub fn dot(c: &Compiled) -> String {
    let g = &c.graph;
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&c.plan.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [fontname=\"Helvetica\"];");
    for (i, n) in g.nodes.iter().enumerate() {
        let shape = match n.role {
            Role::Source => "invhouse",
            Role::Operator => "box",
            Role::Sink => "house",
        };
        let _ = writeln!(
            out,
            "  n{i} [label=\"{}\\n({} {})\", shape={shape}];",
            dot_escape(&n.name),
            n.role.noun(),
            n.kind.unwrap_or("?")
        );
    }
    for e in &g.edges {
        match edge_label(g, e.from, e.port) {
            Some(l) => {
                let _ = writeln!(out, "  n{} -> n{} [label=\"{}\"];", e.from, e.to, dot_escape(&l));
            }
            None => {
                let _ = writeln!(out, "  n{} -> n{};", e.from, e.to);
            }
        }
    }
    out.push_str("}\n");
    out
}

/// The same graph as JSON: `{"nodes": [{"name", "role", "kind", "topic"?}], "edges":
/// [{"from", "to", "port"?}]}` (edges by node index; `role`: `source`, `operator` or `sink`;
/// `topic`: a Kafka source's or sink's topic).
pub fn json(c: &Compiled) -> serde_json::Value {
    let g = &c.graph;
    let nodes: Vec<serde_json::Value> = g
        .nodes
        .iter()
        .map(|n| {
            let mut v = serde_json::json!({"name": n.name, "role": n.role.noun(), "kind": n.kind.unwrap_or("?")});
            if let Some(t) = n.config.as_ref().and_then(|c| c.kafka_topic()) {
                v["topic"] = serde_json::json!(t);
            }
            v
        })
        .collect();
    let edges: Vec<serde_json::Value> = g
        .edges
        .iter()
        .map(|e| match edge_label(g, e.from, e.port) {
            Some(l) => serde_json::json!({"from": e.from, "to": e.to, "port": l}),
            None => serde_json::json!({"from": e.from, "to": e.to}),
        })
        .collect();
    serde_json::json!({"nodes": nodes, "edges": edges})
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// Mermaid flowchart.
pub fn mermaid(c: &Compiled) -> String {
    let g = &c.graph;
    let mut out = String::from("flowchart LR\n");
    for (i, n) in g.nodes.iter().enumerate() {
        let label = mermaid_text(&format!("{}<br/>{} {}", n.name, n.role.noun(), n.kind.unwrap_or("?")));
        let _ = match n.role {
            Role::Source => writeln!(out, "  n{i}[/\"{label}\"/]"),
            Role::Operator => writeln!(out, "  n{i}[\"{label}\"]"),
            Role::Sink => writeln!(out, "  n{i}[\\\"{label}\"\\]"),
        };
    }
    for e in &g.edges {
        let _ = match edge_label(g, e.from, e.port) {
            Some(l) => writeln!(out, "  n{} -->|\"{}\"| n{}", e.from, mermaid_text(&l), e.to),
            None => writeln!(out, "  n{} --> n{}", e.from, e.to),
        };
    }
    out
}
