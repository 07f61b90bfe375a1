//! A conversation's history as it is kept (one state value per key, compact JSON), its
//! size in estimated tokens, how it is shown to a model, and the pure rules that keep it within
//! its bounds: which oldest turns a summary replaces, and what is dropped when no summary can
//! be had.
//!
//! **Tokens are estimated, not counted**: `ceil(bytes / 4)` of the rendered text, the rule the
//! model client's token-rate limiter uses too (`model::rate::estimate`). A tokenizer would be
//! exact for one model family only (a BPE table per family, megabytes each), and the budget is
//! a bound on what enters a prompt, so an estimate is enough: leave headroom below the
//! model's context window (text in scripts of 3-byte characters runs about a quarter over).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The estimated tokens of a text of `bytes` bytes: `ceil(bytes / 4)`.
pub fn estimate_tokens(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

/// One turn: who spoke, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Turn {
    /// A turn of `role`.
    pub fn new(role: &str, content: String) -> Self {
        Self { role: role.to_owned(), content }
    }
}

/// The history of one conversation (the value of the `conversation` operator's table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// What the oldest turns said, summarised by the model, if any were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// How many turns the summary stands for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub summarised: u64,
    /// How many turns were dropped without a summary (no model, a failed summary, a hard
    /// bound).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    /// The turns kept verbatim, oldest first.
    pub turns: Vec<Turn>,
    /// The input whose exchange was recorded last: the same input again (a rerun after a
    /// crash between recording it and storing its summary) appends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_input: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The line that introduces the summary in the rendered text.
const SUMMARY_LEAD: &str = "Summary of the earlier conversation: ";

impl History {
    /// The history as prompt text: the summary, then one `role: content` line per turn; empty
    /// when there is nothing (so `{% if payload.conversation %}` works).
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(s) = &self.summary {
            out.push_str(SUMMARY_LEAD);
            out.push_str(s);
            out.push('\n');
        }
        for t in &self.turns {
            out.push_str(&t.role);
            out.push_str(": ");
            out.push_str(&t.content);
            out.push('\n');
        }
        out
    }

    /// The history as chat messages (`{"role", "content"}`): the summary as a `system`
    /// message, then the turns.
    pub fn messages(&self) -> Value {
        let summary = self.summary.iter().map(|s| json!({"role": "system", "content": format!("{SUMMARY_LEAD}{s}")}));
        let turns = self.turns.iter().map(|t| json!({"role": t.role, "content": t.content}));
        Value::Array(summary.chain(turns).collect())
    }

    /// The estimated tokens of [`History::text`].
    pub fn tokens(&self) -> u64 {
        estimate_tokens(self.text().len())
    }

    /// The size of the stored value (compact JSON).
    pub fn stored_bytes(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }

    /// The turns `..n` as a transcript for the summary call, with the earlier summary first.
    pub fn transcript(&self, n: usize) -> String {
        let mut out = String::new();
        if let Some(s) = &self.summary {
            out.push_str("Earlier summary: ");
            out.push_str(s);
            out.push_str("\n\n");
        }
        for t in &self.turns[..n.min(self.turns.len())] {
            out.push_str(&t.role);
            out.push_str(": ");
            out.push_str(&t.content);
            out.push('\n');
        }
        out
    }
}

/// The bounds of a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most estimated tokens of the rendered history (summary and turns).
    pub max_tokens: u64,
    /// Most turns kept verbatim.
    pub max_turns: usize,
    /// Most bytes of the stored value.
    pub max_bytes: usize,
    /// Most estimated tokens of the summary.
    pub summary_tokens: u64,
    /// Newest turns never summarised (while the hard bounds allow).
    pub keep_turns: usize,
}

impl Limits {
    /// The longest a turn's text is kept, in bytes: an eighth of `max_bytes`, and of
    /// `max_tokens` at 4 bytes a token, so one more exchange (two turns) always fits beside
    /// a history within [`Limits::soft`].
    pub fn max_turn_bytes(&self) -> usize {
        (self.max_bytes / 8).min(usize::try_from(self.max_tokens / 2).unwrap_or(usize::MAX)).max(16)
    }

    /// The bounds a history is brought back under when it passes them: the hard bounds less
    /// the room of one exchange, so the exchange recorded while its summary is being made
    /// still holds the hard bounds.
    pub fn soft(&self) -> Limits {
        Limits {
            max_tokens: self.max_tokens - self.max_tokens / 4 - 8,
            max_turns: self.max_turns - 2,
            max_bytes: self.max_bytes - self.max_bytes / 4 - 64,
            ..*self
        }
    }

    /// Whether `h` is within every bound.
    pub fn hold(&self, h: &History) -> bool {
        h.tokens() <= self.max_tokens && h.turns.len() <= self.max_turns && h.stored_bytes() <= self.max_bytes
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What adding turns to a history asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Within the budget: keep it as it is (the hard bounds are still applied).
    Keep(History),
    /// Over a bound: the oldest `fold` turns should be summarised.
    Summarise {
        /// The history with the new turns.
        history: History,
        /// How many of the oldest turns the summary replaces.
        fold: usize,
    },
}

/// Adds `turns` (each cut to [`Limits::max_turn_bytes`]) to `h`; when the result passes a
/// [soft bound](Limits::soft), the oldest turns to summarise: enough that the turns left take
/// at most half of what the soft budget leaves beside the summary (so summaries come every so
/// often, not at every turn), at most half its turns, and never fewer than `keep_turns`;
/// rounded up to whole exchanges.
pub fn plan(mut h: History, turns: Vec<Turn>, limits: &Limits) -> Plan {
    let max_turn = limits.max_turn_bytes();
    h.turns.extend(turns.into_iter().map(|t| Turn { content: cut(&t.content, max_turn), role: t.role }));
    let soft = limits.soft();
    if soft.hold(&h) {
        return Plan::Keep(h);
    }
    let room = soft.max_tokens.saturating_sub(limits.summary_tokens + 16) / 2;
    let summary_bytes = usize::try_from(limits.summary_tokens).unwrap_or(usize::MAX).saturating_mul(4);
    let byte_room = soft.max_bytes.saturating_sub(summary_bytes + 64) / 2;
    let mut fold = 0;
    let mut left_tokens: u64 = h.turns.iter().map(turn_tokens).sum();
    let mut left_bytes: usize = h.turns.iter().map(turn_bytes).sum();
    while h.turns.len() - fold > limits.keep_turns
        && (left_tokens > room || left_bytes > byte_room || h.turns.len() - fold > soft.max_turns / 2)
    {
        left_tokens -= turn_tokens(&h.turns[fold]);
        left_bytes -= turn_bytes(&h.turns[fold]);
        fold += 1;
    }
    // Whole exchanges (a user's turn and its answer), while the newest exchange stays.
    if fold % 2 == 1 && h.turns.len() >= fold + 3 {
        fold += 1;
    }
    Plan::Summarise { history: h, fold: fold.max(1) }
}

/// A turn's share of the stored value: its text as JSON, and the field names around it.
fn turn_bytes(t: &Turn) -> usize {
    serde_json::to_string(&t.content).map_or(usize::MAX / 2, |s| s.len()) + t.role.len() + 32
}

fn turn_tokens(t: &Turn) -> u64 {
    estimate_tokens(t.role.len() + 2 + t.content.len() + 1)
}

/// Replaces the oldest `fold` turns with `summary` (cut to the summary's budget); with no
/// summary (no model, a failed call) they are dropped. Returns how many turns were dropped.
pub fn apply(h: &mut History, fold: usize, summary: Option<&str>, limits: &Limits) -> u64 {
    let fold = fold.min(h.turns.len());
    h.turns.drain(..fold);
    match summary {
        Some(s) => {
            let max = (limits.summary_tokens as usize).saturating_mul(4);
            h.summary = Some(cut(s.trim(), max));
            h.summarised += fold as u64;
            0
        }
        None => {
            h.dropped += fold as u64;
            fold as u64
        }
    }
}

/// Makes `h` hold every bound, whatever happened before: drops the oldest turns, then cuts
/// (at last removes) the summary. Returns how many turns were dropped.
pub fn bound(h: &mut History, limits: &Limits) -> u64 {
    let mut dropped = 0;
    while !limits.hold(h) && !h.turns.is_empty() {
        h.turns.remove(0);
        h.dropped += 1;
        dropped += 1;
    }
    while !limits.hold(h) {
        match &h.summary {
            Some(s) if s.len() > 32 => h.summary = Some(cut(s, s.len() / 2)),
            Some(_) => h.summary = None,
            // Nothing left to take: an empty history holds every bound the config allows.
            None => break,
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_tokens: 400, max_turns: 40, max_bytes: 8192, summary_tokens: 100, keep_turns: 2 }
    }

    fn exchange(i: usize) -> Vec<Turn> {
        vec![
            Turn::new("user", format!("question {i} about the invoice")),
            Turn::new("assistant", format!("answer {i}")),
        ]
    }

    #[test]
    fn the_estimate_rounds_up() {
        assert_eq!((estimate_tokens(0), estimate_tokens(1), estimate_tokens(4), estimate_tokens(5)), (0, 1, 1, 2));
    }

    #[test]
    fn small_histories_are_kept_and_large_ones_fold_their_oldest_turns() {
        let l = limits();
        let mut h = History::default();
        let mut folded_at = None;
        for i in 0..200 {
            match plan(h.clone(), exchange(i), &l) {
                Plan::Keep(next) => h = next,
                Plan::Summarise { history, fold } => {
                    assert!(fold >= 1 && history.turns.len() - fold >= l.keep_turns, "fold {fold}");
                    folded_at.get_or_insert(i);
                    h = history;
                    apply(&mut h, fold, Some("they talked about invoices"), &l);
                }
            }
            assert_eq!(bound(&mut h, &l), 0, "a summary keeps it within bounds, nothing dropped");
            assert!(l.hold(&h), "turn {i}: {} tokens", h.tokens());
            assert!(
                folded_at.is_none() || l.soft().hold(&h) || h.turns.len() <= 2,
                "turn {i}: back under the soft bounds"
            );
            assert_eq!(h.turns[0].role, "user", "turn {i}: whole exchanges are summarised");
            let last = h.turns.last().unwrap();
            assert_eq!(last.content, format!("answer {i}"), "the newest turn is verbatim");
        }
        assert!(folded_at.is_some_and(|i| i > 3), "summaries begin once past the budget: {folded_at:?}");
        assert_eq!(h.summarised + h.turns.len() as u64, 400, "every turn is summarised or kept");
    }

    #[test]
    fn without_a_summary_the_oldest_turns_are_dropped_and_counted() {
        let l = limits();
        let mut h = History::default();
        for i in 0..100 {
            h = match plan(h, exchange(i), &l) {
                Plan::Keep(next) => next,
                Plan::Summarise { mut history, fold } => {
                    assert_eq!(apply(&mut history, fold, None, &l), fold as u64);
                    history
                }
            };
            bound(&mut h, &l);
            assert!(l.hold(&h));
        }
        assert_eq!(h.summary, None);
        assert_eq!(h.dropped + h.turns.len() as u64, 200);
    }

    #[test]
    fn hard_bounds_hold_against_a_huge_turn_and_a_huge_summary() {
        let l = Limits { max_tokens: 10_000, max_turns: 4, max_bytes: 1024, summary_tokens: 2000, keep_turns: 1 };
        let mut h = History::default();
        let Plan::Keep(mut h2) = plan(h.clone(), vec![Turn::new("user", "x".repeat(100_000))], &l) else {
            panic!("one cut turn fits")
        };
        assert!(h2.turns[0].content.len() <= l.max_turn_bytes() && h2.turns[0].content.ends_with('…'));
        assert_eq!(bound(&mut h2, &l), 0);
        h.summary = Some("é".repeat(5000));
        h.turns = (0..10).map(|i| Turn::new("user", format!("t{i}"))).collect();
        let dropped = bound(&mut h, &l);
        assert!(l.hold(&h), "{}", h.stored_bytes());
        assert_eq!(dropped, 10, "turns go first, then the summary is cut");
        assert!(h.summary.as_ref().is_some_and(|s| s.len() < 1024));
    }

    #[test]
    fn the_text_and_messages_forms_agree() {
        let h = History {
            summary: Some("s".into()),
            summarised: 2,
            dropped: 0,
            turns: vec![Turn::new("user", "hi".into()), Turn::new("assistant", "hello".into())],
            last_input: None,
        };
        assert_eq!(h.text(), "Summary of the earlier conversation: s\nuser: hi\nassistant: hello\n");
        assert_eq!(h.messages().as_array().unwrap().len(), 3);
        assert_eq!(History::default().text(), "");
        let stored = serde_json::to_string(&h).unwrap();
        assert_eq!(
            stored,
            r#"{"summary":"s","summarised":2,"turns":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#
        );
        assert_eq!(h.transcript(1), "Earlier summary: s\n\nuser: hi\n");
    }
}
