//! `kafclaw journal export`: the journal tables of a topology (model answers, embeddings),
//! read from their changelog topics, as JSON Lines `{"operator", "key", "entry"}`.
//!
//! Each changelog is read to its end (read_committed, partition EOF) from the beginning; the
//! latest value of a key wins, a tombstone deletes it, and a replay's reset marker drops what
//! came before it in that partition. Journal records of transactions that never committed are
//! kept, as restore keeps them: an answer paid for is worth keeping. The export is what a
//! model's `recorded = "<file>"` reads to run the topology offline with the same answers.

use crate::compiler::PhysicalPlan;
use crate::kafka::settings::ClientSettings;
use crate::kafka::tables::latest::read_latest;
use crate::kafka::topics::changelog_topic;

/// One exported journal entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExportedEntry {
    /// The operator whose journal it is.
    pub operator: String,
    /// The key a recording looks the entry up by: the entry's `input` (the input envelope's
    /// id, or its coordinates, `#<rank>` past an input's first record), or for an entry
    /// journalled before entries named their input, its state key (then the input's id or
    /// coordinates). State journals are keyed by the input's coordinates and rank.
    pub key: String,
    /// The journalled value (an `llm` answer, an `embed` vector).
    pub entry: serde_json::Value,
}

/// Every journal entry of `plan`, by operator and key.
pub fn export_journals(plan: &PhysicalPlan, settings: &ClientSettings) -> Result<Vec<ExportedEntry>, String> {
    let mut out = Vec::new();
    for node in &plan.nodes {
        for table in node.config.tables(&node.name).into_iter().filter(|t| t.journal) {
            let topic = changelog_topic(plan, &table.name);
            for (key, value) in read_latest(settings, &topic, "journal")? {
                let key = String::from_utf8(key).map_err(|_| format!("{topic}: a journal key is not UTF-8"))?;
                let entry: serde_json::Value = serde_json::from_slice(&value)
                    .map_err(|e| format!("{topic}: the entry of `{key}` is not JSON: {e}"))?;
                let key = entry.get("input").and_then(|v| v.as_str()).map_or(key, str::to_owned);
                out.push(ExportedEntry { operator: node.name.to_string(), key, entry });
            }
        }
    }
    Ok(out)
}
