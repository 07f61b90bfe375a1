//! `kafclaw graph`: the logical graph as Graphviz DOT or Mermaid.

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
