//! Recorded runs: `kafclaw journal export` lines and recorded answers, read by a model with
//! `recorded = "<file>"` so a topology runs offline.

use serde::Deserialize;

use super::protocol::Usage;

/// One line of `kafclaw journal export`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEntry {
    /// The operator whose journal held it.
    pub operator: String,
    /// The journal key (the input envelope's id, or its coordinates).
    pub key: String,
    /// The journalled value.
    pub entry: serde_json::Value,
}

/// What a recording holds.
#[derive(Debug, Default)]
pub struct Recording {
    /// Answers by prompt.
    pub answers: Vec<Recorded>,
    /// Journal entries by (operator, key).
    pub journal: std::collections::HashMap<(String, String), serde_json::Value>,
}

impl Recording {
    /// Reads a recording (`path` for messages): JSON Lines, LF or CRLF, blank lines and a
    /// leading byte-order mark skipped.
    pub fn parse(path: &str, text: &str) -> Result<Self, String> {
        let mut r = Self::default();
        let text = kafclaw_operators::connectors::strip_bom_str(text);
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = |e: serde_json::Error| format!("recording {path}:{}: {e}", i + 1);
            let value: serde_json::Value = serde_json::from_str(line).map_err(at)?;
            if value.get("operator").is_some() {
                let e: ExportedEntry = serde_json::from_value(value).map_err(at)?;
                r.journal.insert((e.operator, e.key), e.entry);
            } else {
                r.answers.push(serde_json::from_value(value).map_err(at)?);
            }
        }
        Ok(r)
    }
}

/// One recorded answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The user message it answers (`*`: any).
    pub prompt: String,
    /// The answer.
    pub answer: String,
    /// Token counts to report.
    #[serde(default)]
    pub usage: Usage,
}
