//! The runtime half of `conversation`: per answered record, the exchange (the user's turn and
//! the answer) appended to its conversation's history; past a bound, the oldest turns
//! summarised by a model call journalled by input (`<operator>.journal`), so a restart or a
//! replay applies the same summary without calling; the hard bounds applied last, whatever
//! the model did.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AUDIT_PORT;
use super::history::{self, History, Limits, Plan, Turn};
use crate::model::protocol::{Message, Usage};
use crate::model::{ModelClient, SharedModel};
use kafclaw_operators::api::asynchronous::{AsyncOperator, Outcome, Started};
use kafclaw_operators::api::operator::{Cause, Emit, Failure, Port};
use kafclaw_operators::api::record::Record;
use kafclaw_operators::api::state::{StateAccess, TableSpec};
use kafclaw_operators::envelope::EnvelopeType;
use kafclaw_operators::lang::expr::Expr;
use kafclaw_operators::lang::key::eval_key;
use kafclaw_operators::lang::template::Template;

/// The opening of the summary call's user message (what the turns follow).
pub const SUMMARY_REQUEST: &str = "Summarise this conversation:";

/// A journalled summary call (the value of `<operator>.journal`): what it gave, or why it
/// gave nothing, and how many of the oldest turns it replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryEntry {
    /// The summary, when the call succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why there is none (the call failed for good): the turns were dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many of the oldest turns it replaced (or, failed, dropped).
    pub folded: usize,
    /// The model that answered.
    pub model: String,
    /// Tokens billed.
    #[serde(default)]
    pub usage: Usage,
    /// The key of the record in a journal export (`Record::recording_key`); the state journal
    /// is keyed by the input's coordinates and the record's rank (`Record::journal_key`).
    /// Absent from entries journalled before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// What starting a record gave.
enum Kept {
    /// No summary needed; or needed, with no model to make one: the oldest `fold` turns go.
    Plain { key: String, history: History, fold: Option<usize> },
    /// A summary call's entry; `fresh`: made now (to be journalled under the state key `at`),
    /// not read back.
    Summarised { key: String, history: History, entry: SummaryEntry, fresh: bool, at: String },
}

/// Runtime half of `conversation`.
pub struct Conversation {
    pub(super) name: String,
    pub(super) key: Expr,
    pub(super) user: Expr,
    pub(super) assistant: Expr,
    pub(super) model: Option<Arc<SharedModel>>,
    pub(super) client: Option<Arc<ModelClient>>,
    pub(super) summary_prompt: Option<Template>,
    pub(super) limits: Limits,
    pub(super) table: TableSpec,
    pub(super) journal: TableSpec,
}

/// The conversation key of `record` by `key`: a failing or null key is the record's fault.
pub(super) fn conversation_key(key: &Expr, record: &Record) -> Result<String, Cause> {
    match eval_key(key, record) {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(Cause::Record(format!("conversation key `{}` gave null", key.source()))),
        Err(m) => Err(Cause::Record(format!("conversation key: {m}"))),
    }
}

/// The stored history of `key` in `table` (none yet: empty).
pub(super) fn read_history(state: &mut dyn StateAccess, table: &str, key: &str) -> Result<History, Cause> {
    match state.get(table, key.as_bytes())? {
        None => Ok(History::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Cause::Record(format!("state `{table}` for `{key}` is not a conversation history: {e}"))),
    }
}

impl Conversation {
    /// The text of a turn: a string as is, other values as JSON text.
    fn turn_text(expr: &Expr, role: &str, record: &Record) -> Result<String, Cause> {
        match expr.eval_json(record)? {
            Value::String(s) => Ok(s),
            Value::Null => Err(Cause::Record(format!("`{}` gave null: no {role} turn to record", expr.source()))),
            other => Ok(other.to_string()),
        }
    }

    /// The summary call's system prompt.
    fn system_prompt(&self, record: &Record) -> Result<String, Cause> {
        match &self.summary_prompt {
            Some(t) => Ok(t.render(record)?),
            None => Ok(format!(
                "You keep the memory of a long conversation. Merge the earlier summary, if there is one, and \
                 the turns you are given into one summary of at most {} words. Keep names, facts, numbers, \
                 decisions, promises and open questions; leave out greetings and repetition. Write only the \
                 summary.",
                self.limits.summary_tokens * 3 / 4
            )),
        }
    }

    /// An `audit` envelope about `record`.
    fn audit(&self, record: &Record, event: &str, details: Value) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Audit;
        r.envelope.sender_id = self.name.clone();
        *r.envelope.payload = json!({"event_type": event, "agent_id": self.name, "details": details});
        r
    }

    /// The summary for the oldest `fold` turns of `history`, from the model.
    /// `at`: the record's journal key; `input`: its recording key.
    fn summarise(
        &self,
        record: &Record,
        key: String,
        history: History,
        fold: usize,
        (at, input): (String, String),
    ) -> Result<Started, Cause> {
        let client =
            self.client.clone().ok_or_else(|| Cause::Record("internal: the summary model is not open".into()))?;
        let name = input.clone();
        let named = move |entry: SummaryEntry| SummaryEntry { input: Some(name.clone()), ..entry };
        if let Some(found) = client.recorded_entry(&self.name, &input) {
            // A journal export: the summary as the recorded run journalled it.
            let entry = found
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::from_value::<SummaryEntry>(v.clone()).map_err(|e| e.to_string()))
                .unwrap_or_else(|m| failed_entry(&client, fold, m));
            let entry = named(entry);
            return Ok(Started::Ready(Box::new(Kept::Summarised { key, history, entry, fresh: true, at })));
        }
        // A prompt that does not render fails the summary, not the answered record.
        let system = match self.system_prompt(record) {
            Ok(s) => s,
            Err(e) => {
                let entry = named(failed_entry(&client, fold, format!("summary_prompt: {e}")));
                return Ok(Started::Ready(Box::new(Kept::Summarised { key, history, entry, fresh: true, at })));
            }
        };
        let messages = vec![
            Message::text("system", system),
            Message::text("user", format!("{SUMMARY_REQUEST}\n\n{}", history.transcript(fold))),
        ];
        Ok(Started::Pending(Box::pin(async move {
            let entry = match client.chat(messages, Vec::new()).await {
                Ok(a) if a.content.trim().is_empty() => failed_entry(&client, fold, "an empty summary".into()),
                Ok(a) => {
                    let (summary, model, usage) = (Some(a.content), a.model, a.usage);
                    SummaryEntry { summary, error: None, folded: fold, model, usage, input: None }
                }
                Err(e) => failed_entry(&client, fold, e.to_string()),
            };
            let entry = named(entry);
            Box::new(Kept::Summarised { key, history, entry, fresh: true, at }) as Outcome
        })))
    }

    /// Writes `done` (the journal entry first), and emits its audits and the record.
    fn store(
        &self,
        record: Record,
        mut done: Done,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure> {
        let dropped = history::bound(&mut done.history, &self.limits);
        if dropped > 0 {
            done.audits.push((
                "conversation_turns_dropped",
                json!({"key": done.key, "dropped": dropped, "reason": "hard bound (max_turns, max_bytes or max_tokens)"}),
            ));
        }
        let written = (|| -> Result<(), Cause> {
            if let Some((at, entry)) = &done.journal {
                let bytes = serde_json::to_vec(entry).map_err(|e| Cause::Record(e.to_string()))?;
                state.put(&self.journal.name, at.as_bytes(), &bytes)?;
            }
            let bytes = serde_json::to_vec(&done.history).map_err(|e| Cause::Record(e.to_string()))?;
            Ok(state.put(&self.table.name, done.key.as_bytes(), &bytes)?)
        })();
        if let Err(cause) = written {
            return Err(Failure::because(record, cause));
        }
        for (event, details) in done.audits {
            out.emit(AUDIT_PORT, self.audit(&record, event, details));
        }
        out.emit(Port::DEFAULT, record);
        Ok(())
    }
}

/// What finishing a record stores and says.
struct Done {
    /// The conversation.
    key: String,
    /// Its history (the hard bounds are applied when it is stored).
    history: History,
    /// A summary entry made now, to journal, and its state key.
    journal: Option<(String, SummaryEntry)>,
    /// `audit` events, with their details.
    audits: Vec<(&'static str, Value)>,
}

fn failed_entry(client: &ModelClient, fold: usize, error: String) -> SummaryEntry {
    SummaryEntry {
        summary: None,
        error: Some(error),
        folded: fold,
        model: client.name().to_owned(),
        usage: Usage::default(),
        input: None,
    }
}

impl AsyncOperator for Conversation {
    /// One conversation at a time: its exchanges are recorded in arrival order.
    fn order_key(&self, record: &Record) -> String {
        eval_key(&self.key, record).ok().flatten().unwrap_or_default()
    }

    /// Creates the summary model's client now, so a missing API key stops the instance at
    /// start-up instead of failing summaries.
    fn open(&mut self) -> Result<(), String> {
        if let (Some(model), None) = (&self.model, &self.client) {
            self.client = Some(model.client()?);
        }
        Ok(())
    }

    fn start(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<Started, Cause> {
        self.start_ranked(record, 0, state)
    }

    /// The summary journal is keyed by the input's coordinates and the record's rank, never by
    /// the sender-chosen id; the history's last input names the input as a recording does.
    fn start_ranked(&mut self, record: &Record, rank: u32, state: &mut dyn StateAccess) -> Result<Started, Cause> {
        let key = conversation_key(&self.key, record)?;
        let input = record.recording_key(rank);
        let at = record.journal_key(rank);
        let mut old = read_history(state, &self.table.name, &key)?;
        // Recorded already (the summary of a run that crashed is to be made again): as it is.
        let turns = match old.last_input.as_deref() == Some(input.as_str()) {
            true => Vec::new(),
            false => vec![
                Turn::new("user", Self::turn_text(&self.user, "user", record)?),
                Turn::new("assistant", Self::turn_text(&self.assistant, "assistant", record)?),
            ],
        };
        old.last_input = Some(input.clone());
        let (history, fold) = match history::plan(old, turns, &self.limits) {
            Plan::Keep(history) => return Ok(Started::Ready(Box::new(Kept::Plain { key, history, fold: None }))),
            Plan::Summarise { history, fold } => (history, fold),
        };
        if let Some(bytes) = state.get(&self.journal.name, at.as_bytes())? {
            let entry: SummaryEntry = serde_json::from_slice(&bytes)
                .map_err(|e| format!("state `{}`: not a summary entry: {e}", self.journal.name))?;
            return Ok(Started::Ready(Box::new(Kept::Summarised { key, history, entry, fresh: false, at })));
        }
        if self.model.is_none() {
            return Ok(Started::Ready(Box::new(Kept::Plain { key, history, fold: Some(fold) })));
        }
        self.open()?;
        // The exchange is stored now, within the hard bounds (the turns to be summarised still
        // there), so the conversation's next `llm` call, which may start before the summary
        // comes, sees it; the summary replaces them when it comes.
        let mut interim = history.clone();
        history::bound(&mut interim, &self.limits);
        let bytes = serde_json::to_vec(&interim).map_err(|e| Cause::Record(e.to_string()))?;
        state.put(&self.table.name, key.as_bytes(), &bytes)?;
        self.summarise(record, key, history, fold, (at, input))
    }

    fn finish(
        &mut self,
        record: Record,
        outcome: Outcome,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure> {
        let Ok(kept) = outcome.downcast::<Kept>() else {
            return Err(Failure::new(record, "internal: not a conversation outcome"));
        };
        let done = match *kept {
            Kept::Plain { key, history, fold: None } => Done { key, history, journal: None, audits: Vec::new() },
            Kept::Plain { key, mut history, fold: Some(fold) } => {
                let dropped = history::apply(&mut history, fold, None, &self.limits);
                let audit = json!({"key": key, "dropped": dropped, "reason": "max_tokens, and no summary model"});
                Done { key, history, journal: None, audits: vec![("conversation_turns_dropped", audit)] }
            }
            Kept::Summarised { key, mut history, entry, fresh, at } => {
                let dropped = history::apply(&mut history, entry.folded, entry.summary.as_deref(), &self.limits);
                let mut audits = Vec::new();
                if let Some(error) = &entry.error {
                    audits.push((
                        "conversation_summary_failed",
                        json!({"key": key, "model": entry.model, "error": error, "dropped": dropped}),
                    ));
                }
                Done { key, history, journal: fresh.then_some((at, entry)), audits }
            }
        };
        self.store(record, done, state, out)
    }
}
