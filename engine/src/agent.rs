//! `kafclaw agent -m "…"`: runs the standard agent topology once, locally, on one request,
//! and prints the answer. The topology, its recorded answers and its notes are built into the
//! binary (`topologies/agent.toml`), so this works on a fresh machine with no network; with
//! `--topology` another agent topology (with a `inbox` source and a `responses` sink) runs.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::compiler::{self, CompileError};
use crate::runtime::{LocalOptions, run_local};

/// The built-in agent: topology, recording, notes and sample memories.
const FILES: [(&str, &str); 4] = [
    ("agent.toml", include_str!("../../topologies/agent.toml")),
    ("agent/recorded.jsonl", include_str!("../../topologies/agent/recorded.jsonl")),
    ("agent/notes/refunds.md", include_str!("../../topologies/agent/notes/refunds.md")),
    ("agent/inbox.jsonl", include_str!("../../topologies/agent/inbox.jsonl")),
];

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The topology or the set-up is wrong (exit code 2).
    #[error("{0}")]
    Setup(String),
    /// The run failed (exit code 1).
    #[error("{0}")]
    Run(String),
}

/// The answer of one run.
#[derive(Debug, Clone)]
pub struct AgentAnswer {
    /// The response envelope.
    pub response: Value,
    /// Whether the answer came from a recording (no live model).
    pub recorded: bool,
    /// The request's trace spans (the `traces` sink's envelopes of its correlation id), in
    /// order: the model calls and tool calls that made the answer.
    pub traces: Vec<Value>,
}

fn write_builtin(dir: &Path) -> Result<PathBuf, AgentError> {
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| AgentError::Setup(e.to_string()))?;
        }
        std::fs::write(&path, text).map_err(|e| AgentError::Setup(format!("{}: {e}", path.display())))?;
    }
    Ok(dir.join("agent.toml"))
}

/// Runs `message` through the agent (the built-in one unless `topology` is given).
pub fn run_agent(message: &str, sender: &str, topology: Option<&Path>) -> Result<AgentAnswer, AgentError> {
    let work = tempfile::tempdir().map_err(|e| AgentError::Setup(e.to_string()))?;
    let topo = match topology {
        Some(t) => t.to_path_buf(),
        None => write_builtin(work.path())?,
    };
    let compiled = compiler::compile_file(&topo).map_err(|e| match e {
        CompileError::Read(p, e) => AgentError::Setup(format!("{p}: {e}")),
        CompileError::Invalid(f) => AgentError::Setup(f.to_string()),
    })?;
    let now = chrono_like_now();
    let id = format!("agent-{}", now.replace([':', '.', '-'], ""));
    let request = json!({
        "type": "request", "correlation_id": id, "sender_id": sender, "timestamp": now, "id": id,
        "payload": {"task_id": id, "description": message}
    });
    // The memories the built-in agent knows, then the request, on its one input.
    let memories: Vec<&str> = if topology.is_none() {
        FILES[3].1.lines().filter(|l| l.contains("\"type\": \"memory\"")).collect()
    } else {
        Vec::new()
    };
    let inbox = work.path().join("in.jsonl");
    let mut lines: Vec<String> = memories.into_iter().map(str::to_owned).collect();
    lines.push(request.to_string());
    std::fs::write(&inbox, lines.join("\n") + "\n").map_err(|e| AgentError::Setup(e.to_string()))?;
    let out = work.path().join("responses.jsonl");
    let mut opts = LocalOptions::default();
    opts.inputs.insert("inbox".into(), inbox);
    for sink in compiled.plan.nodes.iter().filter(|n| n.role == crate::compiler::registry::Role::Sink) {
        let target =
            if &*sink.name == "responses" { out.clone() } else { work.path().join(format!("{}.jsonl", sink.name)) };
        opts.outputs.insert(sink.name.to_string(), target);
    }
    opts.dead_letter = Some(work.path().join("dead-letters.jsonl"));
    let summary = run_local(&compiled, &opts).map_err(|e| AgentError::Run(e.to_string()))?;
    if summary.dead_letters > 0 {
        let dead = std::fs::read_to_string(work.path().join("dead-letters.jsonl")).unwrap_or_default();
        return Err(AgentError::Run(format!("the request failed: {}", dead.trim())));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| AgentError::Run(format!("no response: {e}")))?;
    let response: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["correlation_id"] == id.as_str())
        .ok_or_else(|| AgentError::Run("the agent produced no response (see the refused and trace outputs)".into()))?;
    let recorded = response["payload"]["usage"]["model"].as_str().is_some_and(|m| m.starts_with("recorded:"));
    let traces = std::fs::read_to_string(work.path().join("traces.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|t| t["correlation_id"] == id.as_str())
        .collect();
    Ok(AgentAnswer { response, recorded, traces })
}

/// Now as RFC 3339 (UTC, milliseconds).
fn chrono_like_now() -> String {
    let ms = kafclaw_operators::api::record::now_ms();
    kafclaw_operators::api::record::format_time_ms(ms)
}
