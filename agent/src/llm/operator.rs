//! The runtime half of `llm`: per record, the journal, the budget, the call and its outputs.

use std::sync::Arc;

use serde_json::{Value, json};

use kafclaw_operators::api::asynchronous::{AsyncOperator, Outcome, Started};
use kafclaw_operators::api::operator::{Cause, Emit, Failure, Port};
use kafclaw_operators::api::record::Record;
use kafclaw_operators::api::state::{StateAccess, TableSpec};
use kafclaw_operators::envelope::EnvelopeType;
use kafclaw_operators::lang::expr::Expr;
use kafclaw_operators::lang::key::eval_key;
use kafclaw_operators::lang::path::{FieldPath, emit_set};
use kafclaw_operators::lang::template::Template;

use super::journal::{JournalEntry, delta_of, memory_of, trace_of};
use super::tool_loop::{ToolLimits, call_with_tools};
use super::{AUDIT_PORT, DELTAS_PORT, MEMORIES_PORT, REFUSED_PORT, TRACES_PORT};
use crate::model::protocol::Message;
use crate::model::{CallError, ModelClient, SharedModel};
use crate::tools::{CallContext, NamedTools, Tool};

pub(crate) enum LlmOutcome {
    /// A fresh answer, to journal under the state key it carries (the record's journal key:
    /// the input's coordinates and the record's rank).
    Answered(JournalEntry, String),
    Journaled(JournalEntry),
    OverBudget {
        key: String,
        used: u64,
        budget: u64,
    },
    Failed(CallError),
}

/// Runtime half of `llm`.
pub struct Llm {
    pub(super) name: String,
    /// The topology's name: with the node's, the first part of every tool call's
    /// idempotency key.
    pub(super) topology: String,
    pub(super) tools: Vec<(String, Arc<dyn Tool>)>,
    /// The topology's effect log slot: where rounds are journalled when a logged tool is
    /// offered (docs/effects.md, "Round records").
    pub(super) effects: Option<Arc<crate::tools::effect::EffectSlot>>,
    /// The `<available_skills>` section added to the system prompt (`skills`), if any.
    pub(super) skills_prompt: Option<String>,
    pub(super) internal_senders: Option<Vec<String>>,
    pub(super) external_tool_tier: u8,
    pub(super) limits: ToolLimits,
    pub(super) model: Arc<SharedModel>,
    pub(super) client: Option<Arc<ModelClient>>,
    /// The model's `fallbacks`, in order.
    pub(super) fallbacks: Vec<Arc<SharedModel>>,
    /// The model's client, then its fallbacks' (opened with it).
    pub(super) clients: Vec<Arc<ModelClient>>,
    /// The schema answers must match, if any.
    pub(super) structured: Option<super::structured::Structured>,
    /// Whether answers are streamed (deltas on `deltas`).
    pub(super) stream: bool,
    /// Where an answer without usable text goes.
    pub(super) no_answer: super::NoAnswer,
    pub(super) system: Option<Template>,
    pub(super) prompt: Template,
    /// The conversation history put at `payload.conversation` for the prompts, if any.
    pub(super) conversation: Option<crate::memory::conversation::context::HistoryReader>,
    pub(super) into: FieldPath,
    pub(super) usage_into: FieldPath,
    pub(super) order_by: Option<Expr>,
    pub(super) budget: Option<(u64, Expr)>,
    pub(super) journal: TableSpec,
    pub(super) budget_table: TableSpec,
}

impl Llm {
    /// Whether `sender` is internal (see `internal_senders`).
    fn internal(&self, sender: &str) -> bool {
        self.internal_senders.as_ref().is_none_or(|list| {
            list.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => sender.starts_with(prefix),
                None => p == sender,
            })
        })
    }

    /// The tools offered for `record`, and the names of those withheld from its sender.
    fn tools_for(&self, record: &Record) -> (NamedTools, Vec<String>) {
        if self.internal(&record.envelope.sender_id) {
            return (self.tools.clone(), Vec::new());
        }
        let (offered, withheld): (Vec<_>, Vec<_>) =
            self.tools.iter().cloned().partition(|(_, t)| t.tier() <= self.external_tool_tier);
        (offered, withheld.into_iter().map(|(n, _)| n).collect())
    }

    /// An `audit` envelope of a policy decision about `record`.
    fn audit(&self, record: &Record, event: &str, details: Value) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Audit;
        r.envelope.sender_id = self.name.clone();
        *r.envelope.payload = json!({"event_type": event, "agent_id": self.name, "details": details});
        r
    }

    fn budget_key(&self, record: &Record) -> Result<Option<(u64, String)>, String> {
        match &self.budget {
            None => Ok(None),
            Some((b, e)) => Ok(Some((*b, eval_key(e, record)?.unwrap_or_default()))),
        }
    }

    fn used(&self, key: &str, state: &mut dyn StateAccess) -> Result<u64, Cause> {
        match state.get(&self.budget_table.name, key.as_bytes())? {
            None => Ok(0),
            Some(v) => std::str::from_utf8(&v).ok().and_then(|t| t.parse().ok()).ok_or_else(|| {
                Cause::Record(format!("state `{}` for `{key}` is not a token count", self.budget_table.name))
            }),
        }
    }

    /// The output: the same whether the answer came from the model or the journal, so a
    /// replay reproduces the first run's messages exactly.
    fn output(&self, record: Record, entry: &JournalEntry, out: &mut Emit) -> Result<(), Failure> {
        let usage = json!({
            "prompt_tokens": entry.usage.prompt_tokens,
            "completion_tokens": entry.usage.completion_tokens,
            "total_tokens": entry.usage.total_tokens,
            "model": entry.model,
            "latency_ms": entry.latency_ms,
            "attempts": entry.attempts,
            "finish_reason": entry.finish_reason,
        });
        // Ids derived from the input name the record's rank past its first (the entry's
        // `input`; an entry journalled before it existed is of a rank 0 record).
        let key = entry.input.clone().unwrap_or_else(|| record.input_key());
        for (i, step) in entry.steps.iter().enumerate() {
            out.emit(TRACES_PORT, trace_of(&record, &key, i, step));
        }
        for (i, text) in entry.remembered.iter().enumerate() {
            out.emit(MEMORIES_PORT, memory_of(&record, &key, i, text, &self.name));
        }
        for audit in &entry.audits {
            let event = audit["event_type"].as_str().unwrap_or("tool_limit");
            out.emit(AUDIT_PORT, self.audit(&record, event, audit["details"].clone()));
        }
        let (_, withheld) = self.tools_for(&record);
        if !withheld.is_empty() {
            let details = json!({
                "sender_id": record.envelope.sender_id, "class": "external",
                "withheld": withheld, "max_tier": self.external_tool_tier,
            });
            out.emit(AUDIT_PORT, self.audit(&record, "tools_withheld", details));
        }
        let mut record = record;
        if let Err(m) = self.usage_into.set(&mut record.envelope, usage) {
            return Err(Failure::new(record, m));
        }
        // A structured answer lands as JSON (it was checked before it was journalled).
        let answer = match self.structured.as_ref().map(|s| s.check(&entry.content)) {
            Some(Ok(value)) => value,
            _ => Value::String(entry.content.clone()),
        };
        // Deltas after the answer, so streaming does not move the other outputs' ids.
        let deltas: Vec<Record> = if self.stream {
            entry.deltas.iter().enumerate().map(|(i, d)| delta_of(&record, i, d, &self.name)).collect()
        } else {
            Vec::new()
        };
        emit_set(out, Port::DEFAULT, record, &self.into, answer)?;
        for d in deltas {
            out.emit(DELTAS_PORT, d);
        }
        Ok(())
    }
}

impl AsyncOperator for Llm {
    fn order_key(&self, record: &Record) -> String {
        match &self.order_by {
            Some(e) => eval_key(e, record).ok().flatten().unwrap_or_default(),
            None => record.envelope.correlation_id.clone(),
        }
    }

    /// Creates the client now, so a missing API key stops the instance at start-up instead of
    /// dead-lettering every record.
    fn open(&mut self) -> Result<(), String> {
        if self.client.is_none() {
            let client = self.model.client()?;
            let mut clients = vec![client.clone()];
            for f in &self.fallbacks {
                clients.push(f.client()?);
            }
            self.clients = clients;
            self.client = Some(client);
            // Tools that start something (an MCP server) start now, once per instance.
            for (_, tool) in &self.tools {
                tool.open()?;
            }
        }
        Ok(())
    }

    fn start(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<Started, Cause> {
        self.start_ranked(record, 0, state)
    }

    /// The journal is keyed by the input's coordinates and the record's rank, never by the
    /// sender-chosen id; the tool calls' idempotency keys by the coordinates and the rank.
    /// Rank 0 keeps the keys of before ranks.
    fn start_ranked(&mut self, record: &Record, rank: u32, state: &mut dyn StateAccess) -> Result<Started, Cause> {
        let key = record.journal_key(rank);
        let input = record.recording_key(rank);
        if let Some(bytes) = state.get(&self.journal.name, key.as_bytes())? {
            let entry: JournalEntry = serde_json::from_slice(&bytes)
                .map_err(|e| format!("state `{}`: not a journal entry: {e}", self.journal.name))?;
            return Ok(Started::Ready(Box::new(LlmOutcome::Journaled(entry))));
        }
        self.open()?;
        let client = self.client.clone().expect("opened above");
        if let Some(found) = client.recorded_entry(&self.name, &input) {
            // A journal export: this record's answer as the recorded run journalled it.
            let outcome = match found.map(|v| serde_json::from_value::<JournalEntry>(v.clone())) {
                Ok(Ok(entry)) => LlmOutcome::Answered(JournalEntry { input: Some(input), ..entry }, key),
                Ok(Err(e)) => LlmOutcome::Failed(CallError {
                    exhausted: false,
                    no_answer: false,
                    model: self.model.name.clone(),
                    attempts: 0,
                    message: format!("the recording's entry is not an llm answer: {e}"),
                }),
                Err(e) => LlmOutcome::Failed(e),
            };
            return Ok(Started::Ready(Box::new(outcome)));
        }
        if let Some((budget, key)) = self.budget_key(record)? {
            let used = self.used(&key, state)?;
            if used >= budget {
                return Ok(Started::Ready(Box::new(LlmOutcome::OverBudget { key, used, budget })));
            }
        }
        // The conversation's history, read now: this key's previous call is recorded.
        let with_history;
        let view = match &self.conversation {
            Some(c) => {
                with_history = c.put_on(record, &crate::memory::conversation::history_field(), state)?;
                &with_history
            }
            None => record,
        };
        let mut messages = Vec::with_capacity(2);
        let system = match &self.system {
            Some(s) => Some(s.render(view)?),
            None => None,
        };
        if let Some(s) = super::skills::with_catalog(system, self.skills_prompt.as_deref()) {
            messages.push(Message::text("system", s));
        }
        messages.push(Message::text("user", self.prompt.render(view)?));
        let (tools, _) = self.tools_for(record);
        let limits = self.limits;
        // An unreadable task id or delegation depth fails the record (dead letter naming it).
        // Idempotency keys name the input's coordinates and the step (docs/effects.md).
        // Past the first record of an input, `#<rank>` keeps each record's calls apart.
        let prefix = kafclaw_operators::api::record::ranked(
            crate::tools::effect::step_prefix(&self.topology, &self.name, record),
            rank,
        );
        let base = CallContext::for_input(record, prefix).map_err(|e| e.to_string())?;
        let clients = self.clients.clone();
        let structured = self.structured.clone();
        let stream = self.stream;
        let effects = self.effects.as_ref().and_then(|slot| slot.get());
        Ok(Started::Pending(Box::pin(async move {
            let called =
                call_with_tools(&clients, messages, &tools, limits, structured.as_ref(), stream, &base, effects);
            let outcome = match called.await {
                Ok(entry) => LlmOutcome::Answered(JournalEntry { input: Some(input), ..entry }, key),
                Err(e) => LlmOutcome::Failed(e),
            };
            Box::new(outcome) as Outcome
        })))
    }

    fn finish(
        &mut self,
        record: Record,
        outcome: Outcome,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure> {
        let outcome = match outcome.downcast::<LlmOutcome>() {
            Ok(o) => *o,
            Err(_) => return Err(Failure::new(record, "internal: not an llm outcome")),
        };
        match outcome {
            LlmOutcome::Journaled(entry) => self.output(record, &entry, out),
            LlmOutcome::Answered(entry, key) => {
                let stored = match serde_json::to_vec(&entry) {
                    Ok(s) => s,
                    Err(e) => return Err(Failure::new(record, e.to_string())),
                };
                let budget = match self.budget_key(&record) {
                    Ok(b) => b,
                    Err(m) => return Err(Failure::new(record, m)),
                };
                let written =
                    state.put(&self.journal.name, key.as_bytes(), &stored).map_err(Cause::from).and_then(|()| {
                        match budget {
                            Some((_, k)) => {
                                let used = self.used(&k, state)?.saturating_add(entry.usage.total_tokens);
                                Ok(state.put(&self.budget_table.name, k.as_bytes(), used.to_string().as_bytes())?)
                            }
                            None => Ok(()),
                        }
                    });
                if let Err(cause) = written {
                    return Err(Failure::because(record, cause));
                }
                self.output(record, &entry, out)
            }
            LlmOutcome::OverBudget { key, used, budget } => {
                let details =
                    json!({"budget_key": key, "used": used, "budget": budget, "sender_id": record.envelope.sender_id});
                out.emit(AUDIT_PORT, self.audit(&record, "budget_exceeded", details));
                let mut r = record;
                r.envelope.kind = EnvelopeType::TaskStatus;
                *r.envelope.payload = json!({
                    "task_id": r.envelope.correlation_id,
                    "status": "budget_exceeded",
                    "summary": format!("`{key}` has used {used} of its {budget} tokens; no model call was made"),
                    "model": self.model.name,
                });
                out.emit(REFUSED_PORT, r);
                Ok(())
            }
            LlmOutcome::Failed(e) if e.no_answer && self.no_answer == super::NoAnswer::Refused => {
                let details = json!({"model": e.model, "reason": e.message, "sender_id": record.envelope.sender_id});
                out.emit(AUDIT_PORT, self.audit(&record, "no_answer", details));
                let mut r = record;
                r.envelope.kind = EnvelopeType::TaskStatus;
                *r.envelope.payload = json!({
                    "task_id": r.envelope.correlation_id,
                    "status": "no_answer",
                    "summary": e.message,
                    "model": self.model.name,
                });
                out.emit(REFUSED_PORT, r);
                Ok(())
            }
            LlmOutcome::Failed(e) => Err(Failure::new(record, e.to_string())),
        }
    }
}
