//! `llm`: calls an OpenAI-compatible chat model per record (the asynchronous tier).
//!
//! ```toml
//! [models.fast]
//! base_url = "http://127.0.0.1:11434/v1"
//! model = "llama3.2"
//!
//! [operators.answer]
//! type = "llm"
//! inputs = ["requests"]
//! model = "fast"
//! system = "You are the support agent of {{ sender_id }}'s team."
//! prompt = "{{ payload.description }}"
//! budget_tokens = 100000           # per sender (budget_by), checked before the call
//! ```
//! Each record passes on with the answer in `into` (default `payload.answer`) and the call's
//! usage in `usage_into` (default `payload.usage`: prompt, completion and total tokens, model,
//! latency and attempts of the call that produced the answer). Calls for one `order_by` key
//! (default: the correlation id) are made one at a time in arrival order; other keys run
//! concurrently, bounded by the model's `max_concurrency`.
//!
//! **Response journal.** Every answer is written to the state table `<operator>.journal`,
//! keyed by the input envelope's id (or its coordinates), in the same transaction as the
//! output. A restart, a rebalance or `kafclaw replay` finds the answer there and does not call
//! (or bill) the model again; the journal survives a replay's state wipe.
//!
//! **Budgets.** With `budget_tokens`, the tokens used per `budget_by` key (default: the
//! sender) are kept in `<operator>.budget`; a record whose key has used its budget makes no
//! call and goes to the output `refused` as a `task_status` envelope with status
//! `budget_exceeded`. A call that fails for good (after the model's `max_attempts`) is
//! dead-lettered with the last error; other records keep flowing.

pub mod limiter;
pub mod model;
pub mod protocol;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;

use crate::asynchronous::{AsyncOperator, Outcome, Started};
use crate::envelope::EnvelopeType;
use crate::expr::Expr;
use crate::filter::compile_expr;
use crate::keyed::{Errors, eval_key};
use crate::operator::{ConfigError, Emit, Failure, Ports, emit_set};
use crate::path::FieldPath;
use crate::record::Record;
use crate::state::{StateAccess, TableSpec};
use crate::template::Template;
use model::{Answer, CallError, ModelClient, ModelConfig};
use protocol::{Message, Usage};

/// The output of records refused before a call (over budget).
pub const REFUSED: &str = "refused";

/// A declared model, shared by every `llm` operator (and task) that names it, so one client
/// and one concurrency limit serve the instance.
#[derive(Debug)]
pub struct SharedModel {
    /// Its name in the topology.
    pub name: String,
    /// Its options.
    pub config: ModelConfig,
    client: OnceLock<Result<Arc<ModelClient>, String>>,
}

impl SharedModel {
    /// A model not yet connected.
    pub fn new(name: &str, config: ModelConfig) -> Arc<Self> {
        Arc::new(Self { name: name.to_owned(), config, client: OnceLock::new() })
    }

    /// The client, created on first use (reads the API key then).
    pub fn client(&self) -> Result<Arc<ModelClient>, String> {
        self.client.get_or_init(|| self.config.client(&self.name).map(Arc::new)).clone()
    }
}

/// Config half of `llm`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The model, by its name under `[models]`.
    pub model: Spanned<String>,
    /// System prompt template (Jinja) over the envelope.
    #[serde(default)]
    pub system: Option<Spanned<String>>,
    /// User prompt template (Jinja) over the envelope.
    #[serde(default = "default_prompt")]
    pub prompt: Spanned<String>,
    /// Field the answer text is written to.
    #[serde(default = "default_into")]
    pub into: Spanned<String>,
    /// Field the usage object is written to.
    #[serde(default = "default_usage_into")]
    pub usage_into: Spanned<String>,
    /// CEL key whose records are called one at a time, in order (default: `correlation_id`).
    #[serde(default)]
    pub order_by: Option<Spanned<String>>,
    /// Tokens each `budget_by` key may use; none: no budget.
    #[serde(default)]
    pub budget_tokens: Option<u64>,
    /// CEL key the budget is kept per (default: `sender_id`).
    #[serde(default)]
    pub budget_by: Option<Spanned<String>>,
    /// The model, resolved by the compiler from `[models]`.
    #[serde(skip)]
    pub resolved: Option<Arc<SharedModel>>,
}

fn spanned(s: &str) -> Spanned<String> {
    Spanned::new(0..0, s.to_owned())
}
fn default_prompt() -> Spanned<String> {
    spanned("{{ payload.description }}")
}
fn default_into() -> Spanned<String> {
    spanned("payload.answer")
}
fn default_usage_into() -> Spanned<String> {
    spanned("payload.usage")
}

fn template(t: &Spanned<String>) -> Result<Template, ConfigError> {
    Template::compile(t.get_ref())
        .map_err(|e| ConfigError::at(t.span(), format!("template line {}: {}", e.line, e.message)))
}

impl LlmConfig {
    /// The outputs: answers, and `refused` (over budget).
    pub fn ports() -> Ports {
        Ports { default: true, named: vec![REFUSED.to_owned()] }
    }

    /// Builds the runtime half; its tables are `<name>.journal` (and `<name>.budget`).
    pub fn build(&self, name: &str) -> Result<Llm, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let system = match &self.system {
            Some(s) => errors.take_one(template(s)).map(Some),
            None => Some(None),
        };
        let prompt = errors.take_one(template(&self.prompt));
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        let usage_into = errors.take_one(FieldPath::parse_spanned(&self.usage_into));
        let order_by = match &self.order_by {
            Some(e) => errors.take(compile_expr(e)).map(Some),
            None => Some(None),
        };
        let budget_by = match &self.budget_by {
            Some(e) => errors.take(compile_expr(e)),
            None => errors.take(compile_expr(&spanned("sender_id"))),
        };
        let model = self.resolved.clone();
        if model.is_none() {
            errors.push(
                ConfigError::at(self.model.span(), format!("model `{}` is not declared", self.model.get_ref()))
                    .with_hint(Some(format!("add a [models.{}] table", self.model.get_ref()))),
            );
        }
        errors.finish(|| {
            Some(Llm {
                model: model?,
                client: None,
                system: system?,
                prompt: prompt?,
                into: into?,
                usage_into: usage_into?,
                order_by: order_by?,
                budget: self.budget_tokens.map(|b| (b, budget_by.clone())).and_then(|(b, e)| Some((b, e?))),
                journal: TableSpec::journal(format!("{name}.journal")),
                budget_table: TableSpec::kept(format!("{name}.budget")),
            })
        })
    }
}

/// A journalled answer (the value of `<operator>.journal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The answer text.
    pub content: String,
    /// Token counts.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
    /// Why it stopped.
    pub finish_reason: Option<String>,
    /// HTTP attempts the call took.
    pub attempts: u32,
    /// Latency of the call.
    pub latency_ms: u64,
}

impl From<&Answer> for JournalEntry {
    fn from(a: &Answer) -> Self {
        Self {
            content: a.content.clone(),
            usage: a.usage,
            model: a.model.clone(),
            finish_reason: a.finish_reason.clone(),
            attempts: a.attempts,
            latency_ms: a.latency.as_millis() as u64,
        }
    }
}

enum LlmOutcome {
    Answered(JournalEntry),
    Journaled(JournalEntry),
    OverBudget { key: String, used: u64, budget: u64 },
    Failed(CallError),
}

/// Runtime half of `llm`.
pub struct Llm {
    model: Arc<SharedModel>,
    client: Option<Arc<ModelClient>>,
    system: Option<Template>,
    prompt: Template,
    into: FieldPath,
    usage_into: FieldPath,
    order_by: Option<Expr>,
    budget: Option<(u64, Expr)>,
    journal: TableSpec,
    budget_table: TableSpec,
}

/// The journal key of a record: its input envelope's id, or the input's coordinates.
pub fn journal_key(record: &Record) -> String {
    let o = &record.origin;
    match &o.input_id {
        Some(id) => id.clone(),
        None => format!("{}/{}/{}", o.location, o.partition, o.offset),
    }
}

impl Llm {
    fn budget_key(&self, record: &Record) -> Result<Option<(u64, String)>, String> {
        match &self.budget {
            None => Ok(None),
            Some((b, e)) => Ok(Some((*b, eval_key(e, record)?.unwrap_or_default()))),
        }
    }

    fn used(&self, key: &str, state: &mut dyn StateAccess) -> Result<u64, String> {
        match state.get(&self.budget_table.name, key.as_bytes())? {
            None => Ok(0),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| format!("state `{}` for `{key}` is not a token count", self.budget_table.name)),
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
        });
        let mut record = record;
        if let Err(m) = self.usage_into.set(&mut record.envelope, usage) {
            return Err(Failure::new(record, m));
        }
        emit_set(out, 0, record, &self.into, Value::String(entry.content.clone()))
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
            self.client = Some(self.model.client()?);
        }
        Ok(())
    }

    fn start(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<Started, String> {
        if let Some(bytes) = state.get(&self.journal.name, journal_key(record).as_bytes())? {
            let entry: JournalEntry = serde_json::from_slice(&bytes)
                .map_err(|e| format!("state `{}`: not a journal entry: {e}", self.journal.name))?;
            return Ok(Started::Ready(Box::new(LlmOutcome::Journaled(entry))));
        }
        if let Some((budget, key)) = self.budget_key(record)? {
            let used = self.used(&key, state)?;
            if used >= budget {
                return Ok(Started::Ready(Box::new(LlmOutcome::OverBudget { key, used, budget })));
            }
        }
        self.open()?;
        let client = self.client.clone().expect("opened above");
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = &self.system {
            messages.push(Message { role: "system".into(), content: Some(s.render(record)?) });
        }
        messages.push(Message { role: "user".into(), content: Some(self.prompt.render(record)?) });
        Ok(Started::Pending(Box::pin(async move {
            let outcome = match client.chat(messages).await {
                Ok(a) => LlmOutcome::Answered(JournalEntry::from(&a)),
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
            LlmOutcome::Answered(entry) => {
                let key = journal_key(&record);
                let stored = match serde_json::to_vec(&entry) {
                    Ok(s) => s,
                    Err(e) => return Err(Failure::new(record, e.to_string())),
                };
                let budget = match self.budget_key(&record) {
                    Ok(b) => b,
                    Err(m) => return Err(Failure::new(record, m)),
                };
                let written = state.put(&self.journal.name, key.as_bytes(), &stored).and_then(|()| match budget {
                    Some((_, k)) => {
                        let used = self.used(&k, state)? + entry.usage.total_tokens;
                        state.put(&self.budget_table.name, k.as_bytes(), used.to_string().as_bytes())
                    }
                    None => Ok(()),
                });
                if let Err(m) = written {
                    return Err(Failure::new(record, m));
                }
                self.output(record, &entry, out)
            }
            LlmOutcome::OverBudget { key, used, budget } => {
                let mut r = record;
                r.envelope.kind = EnvelopeType::TaskStatus;
                r.envelope.payload = json!({
                    "task_id": r.envelope.correlation_id,
                    "status": "budget_exceeded",
                    "summary": format!("`{key}` has used {used} of its {budget} tokens; no model call was made"),
                    "model": self.model.name,
                });
                out.emit(1, r);
                Ok(())
            }
            LlmOutcome::Failed(e) => Err(Failure::new(record, e.to_string())),
        }
    }

    fn tables(&self) -> Vec<TableSpec> {
        let mut t = vec![self.journal.clone()];
        if self.budget.is_some() {
            t.push(self.budget_table.clone());
        }
        t
    }
}
