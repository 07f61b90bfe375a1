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
//! (or bill) the model again; the journal survives a replay's state wipe. `kafclaw journal
//! export` writes the journals out; a model whose `recorded` file is such an export answers
//! each record with the entry journalled for it, so a topology runs offline and reproduces a
//! recorded run's outputs exactly (`kafclaw diff`).
//!
//! **Tools.** With `tools = ["read-notes", "ls"]` (names under `[tools]`), the model may ask
//! for tool calls; kafclaw runs them, hands the results back, and asks again, for at most
//! `max_tool_steps` rounds. A refused or failed tool call is handed back as an error text.
//! Every step (each model call, each tool call) is a span: with the output `traces` read, one
//! `trace` envelope per step, ids derived from the input, so a replay repeats them exactly.
//! What the `memory` tool is asked to remember leaves on the output `memories` as `memory`
//! envelopes (journalled with the answer, so a replay emits the same items).
//!
//! **Policy.** With `internal_senders`, a sender not listed is external and is offered only
//! the tools up to `external_tool_tier` (tier 1: no side effects); each withholding is an
//! `audit` envelope on the output `audit`, as is each budget refusal.
//!
//! **Budgets.** With `budget_tokens`, the tokens used per `budget_by` key (default: the
//! sender) are kept in `<operator>.budget`; a record whose key has used its budget makes no
//! call and goes to the output `refused` as a `task_status` envelope with status
//! `budget_exceeded`. A call that fails for good (after the model's `max_attempts`) is
//! dead-lettered with the last error; other records keep flowing.

pub mod budget;
pub mod limiter;
pub mod model;
pub mod protocol;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;

use crate::api::asynchronous::{AsyncOperator, Outcome, Started};
use crate::api::config::ConfigError;
use crate::api::config::Errors;
use crate::api::operator::{Emit, Failure, Ports};
use crate::api::record::Record;
use crate::api::record::{format_time_ms, now_ms};
use crate::api::state::{StateAccess, TableSpec};
use crate::envelope::{EnvelopeType, TracePayload, derive_span_id};
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::key::eval_key;
use crate::lang::path::FieldPath;
use crate::lang::path::emit_set;
use crate::lang::template::Template;
use crate::tools::{CallContext, NamedTools, Tool};
use model::{CallError, ModelClient, ModelConfig};
use protocol::{FunctionSpec, Message, ToolSpec, Usage};

/// The model call and its tool loop: ask, run the tools it asks for, hand back the results,
/// ask again; at most `max_steps` rounds of tools.
async fn call_with_tools(
    client: &ModelClient,
    mut messages: Vec<Message>,
    tools: &[(String, Arc<dyn Tool>)],
    max_steps: u32,
    base: &CallContext,
) -> Result<JournalEntry, CallError> {
    let key = &base.idempotency_key;
    let specs: Vec<ToolSpec> = tools
        .iter()
        .map(|(name, t)| ToolSpec {
            kind: "function",
            function: FunctionSpec { name: name.clone(), description: t.description(), parameters: t.parameters() },
        })
        .collect();
    let started = std::time::Instant::now();
    let mut usage = Usage::default();
    let mut steps = Vec::new();
    let mut remembered = Vec::new();
    let mut attempts = 0;
    for round in 0..=max_steps {
        let t0 = now_ms();
        let answer = client.chat(messages.clone(), specs.clone()).await.inspect_err(|e| {
            steps.push(StepRecord {
                kind: "llm".into(),
                name: client.name().to_owned(),
                detail: short(&e.message),
                ok: false,
                started_ms: t0,
                duration_ms: (now_ms() - t0).max(0) as u64,
            });
        })?;
        usage += answer.usage;
        attempts += answer.attempts;
        steps.push(StepRecord {
            kind: "llm".into(),
            name: answer.model.clone(),
            detail: format!(
                "{} prompt + {} completion tokens; {} tool call(s)",
                answer.usage.prompt_tokens,
                answer.usage.completion_tokens,
                answer.tool_calls.len()
            ),
            ok: true,
            started_ms: t0,
            duration_ms: answer.latency.as_millis() as u64,
        });
        if answer.tool_calls.is_empty() {
            return Ok(JournalEntry {
                content: answer.content,
                usage,
                model: answer.model,
                finish_reason: answer.finish_reason,
                attempts,
                latency_ms: started.elapsed().as_millis() as u64,
                steps,
                remembered,
            });
        }
        if round == max_steps {
            break;
        }
        messages.push(Message {
            role: "assistant".into(),
            content: (!answer.content.is_empty()).then_some(answer.content.clone()),
            tool_calls: answer.tool_calls.clone(),
            tool_call_id: None,
        });
        for call in &answer.tool_calls {
            let t0 = now_ms();
            let name = &call.function.name;
            let result = match tools.iter().find(|(n, _)| n == name) {
                None => Err(format!("no tool `{name}` here")),
                Some((_, tool)) => match serde_json::from_str::<Value>(if call.function.arguments.is_empty() {
                    "{}"
                } else {
                    &call.function.arguments
                }) {
                    Ok(args) => {
                        let cx = CallContext { idempotency_key: format!("{key}/{round}/{}", call.id), ..base.clone() };
                        tool.call(args, cx).await
                    }
                    Err(e) => Err(format!("arguments are not JSON: {e}")),
                },
            };
            let (ok, text) = match result {
                Ok(t) => {
                    remembered.extend(t.remember);
                    (true, t.text)
                }
                Err(e) => (false, format!("error: {e}")),
            };
            steps.push(StepRecord {
                kind: "tool".into(),
                name: name.clone(),
                detail: short(&format!("{} -> {text}", call.function.arguments)),
                ok,
                started_ms: t0,
                duration_ms: (now_ms() - t0).max(0) as u64,
            });
            messages.push(Message {
                role: "tool".into(),
                content: Some(text),
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
            });
        }
    }
    Err(CallError {
        model: client.name().to_owned(),
        attempts,
        message: format!("the model still asked for tools after {max_steps} round(s) (max_tool_steps)"),
    })
}

/// The output of records refused before a call (over budget).
pub const REFUSED: &str = "refused";

/// The output of trace spans.
pub const TRACES: &str = "traces";

/// The output of items the `memory` tool was asked to remember.
pub const MEMORIES: &str = "memories";

/// The output of policy decisions (`audit` envelopes): tools withheld from an external
/// sender, budgets refused.
pub const AUDIT: &str = "audit";

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

    /// What the model has done in this process (`None` before its first use).
    pub fn usage(&self) -> Option<model::UsageSnapshot> {
        match self.client.get() {
            Some(Ok(c)) => Some(c.usage()),
            _ => None,
        }
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
    /// Tools the model may call, by name under `[tools]`.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// Most rounds of tool calls before the answer must come.
    #[serde(default = "default_tool_steps")]
    pub max_tool_steps: u32,
    /// Senders counted as internal: exact ids, or prefixes ending in `*` (`"ops-*"`). With
    /// it, every other sender is external, and is offered only tools up to
    /// `external_tool_tier`; without it every sender is internal.
    #[serde(default)]
    pub internal_senders: Option<Vec<String>>,
    /// Highest tool tier offered to an external sender's request (tier 1: tools without side
    /// effects). Tools withheld are audited.
    #[serde(default = "default_external_tier")]
    pub external_tool_tier: u8,
    /// The model, resolved by the compiler from `[models]`.
    #[serde(skip)]
    pub resolved: Option<Arc<SharedModel>>,
    /// The tools, resolved by the compiler from `[tools]`.
    #[serde(skip)]
    pub resolved_tools: Vec<(String, Arc<dyn Tool>)>,
}

fn default_tool_steps() -> u32 {
    4
}
fn default_external_tier() -> u8 {
    1
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
    /// The outputs: answers, `refused` (over budget), `traces` (one span per step),
    /// `memories` (one `memory` envelope per item the `memory` tool remembered) and `audit`
    /// (policy decisions).
    pub fn ports() -> Ports {
        Ports {
            default: true,
            named: vec![REFUSED.to_owned(), TRACES.to_owned(), MEMORIES.to_owned(), AUDIT.to_owned()],
        }
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
        for t in &self.tools {
            if !self.resolved_tools.iter().any(|(n, _)| n == t.get_ref()) {
                errors.push(
                    ConfigError::at(t.span(), format!("tool `{}` is not declared", t.get_ref()))
                        .with_hint(Some(format!("add a [tools.{}] table", t.get_ref()))),
                );
            }
        }
        let model = self.resolved.clone();
        if model.is_none() {
            errors.push(model::undeclared_model(&self.model));
        }
        errors.finish(|| {
            Some(Llm {
                name: name.to_owned(),
                model: model?,
                client: None,
                system: system?,
                prompt: prompt?,
                into: into?,
                usage_into: usage_into?,
                order_by: order_by?,
                budget: self.budget_tokens.map(|b| (b, budget_by.clone())).and_then(|(b, e)| Some((b, e?))),
                tools: self.resolved_tools.iter().map(|(n, t)| (n.clone(), t.clone())).collect(),
                internal_senders: self.internal_senders.clone(),
                external_tool_tier: self.external_tool_tier,
                max_tool_steps: self.max_tool_steps,
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
    /// Latency of the call (all steps).
    pub latency_ms: u64,
    /// Every step: model calls and tool calls, for the trace.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// What the `memory` tool was asked to remember, in order (emitted on `memories`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remembered: Vec<String>,
}

/// One step of a call: a model call or a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// `llm` or `tool`.
    pub kind: String,
    /// The model or the tool.
    pub name: String,
    /// What happened, in short (tokens; tool arguments and result).
    pub detail: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Start, ms since the Unix epoch.
    pub started_ms: i64,
    /// Duration in ms.
    pub duration_ms: u64,
}

/// Cuts text for a trace span.
fn short(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_owned();
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

enum LlmOutcome {
    Answered(JournalEntry),
    Journaled(JournalEntry),
    OverBudget { key: String, used: u64, budget: u64 },
    Failed(CallError),
}

/// Runtime half of `llm`.
pub struct Llm {
    name: String,
    tools: Vec<(String, Arc<dyn Tool>)>,
    internal_senders: Option<Vec<String>>,
    external_tool_tier: u8,
    max_tool_steps: u32,
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

/// The trace envelope of step `i` of a record's call: span ids derived from the input, the
/// input's span as parent.
fn trace_of(record: &Record, i: usize, step: &StepRecord) -> Record {
    let o = &record.origin;
    let key = journal_key(record);
    let span_id = derive_span_id(&format!("{key}/step/{i}"));
    let parent = o.input_span_id.clone().unwrap_or_else(|| derive_span_id(&key));
    let payload = TracePayload {
        trace_id: o.trace_id.clone(),
        span_id,
        parent_span_id: parent,
        span_type: step.kind.clone(),
        title: format!("{} {}", step.kind, step.name),
        content: step.detail.clone(),
        started_at: format_time_ms(step.started_ms),
        ended_at: format_time_ms(step.started_ms + step.duration_ms as i64),
        duration_ms: step.duration_ms,
        extra: serde_json::Map::from_iter([("ok".to_owned(), Value::Bool(step.ok))]),
    };
    let mut r = record.clone();
    r.envelope.kind = EnvelopeType::Trace;
    r.envelope.timestamp = format_time_ms(step.started_ms);
    *r.envelope.payload = serde_json::to_value(payload).unwrap_or_default();
    r
}

/// The `memory` envelope of the `i`-th item a record's call remembered: its item id derived
/// from the input, so a replay emits the same item.
fn memory_of(record: &Record, i: usize, text: &str, operator: &str) -> Record {
    let key = journal_key(record);
    let mut r = record.clone();
    r.envelope.kind = EnvelopeType::Memory;
    *r.envelope.payload = json!({
        "item_id": derive_span_id(&format!("{key}/memory/{i}")),
        "content": text,
        "tags": [],
        "author_id": operator,
    });
    r
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
        for (i, step) in entry.steps.iter().enumerate() {
            out.emit(2, trace_of(&record, i, step));
        }
        for (i, text) in entry.remembered.iter().enumerate() {
            out.emit(3, memory_of(&record, i, text, &self.name));
        }
        let (_, withheld) = self.tools_for(&record);
        if !withheld.is_empty() {
            let details = json!({
                "sender_id": record.envelope.sender_id, "class": "external",
                "withheld": withheld, "max_tier": self.external_tool_tier,
            });
            out.emit(4, self.audit(&record, "tools_withheld", details));
        }
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
        self.open()?;
        let client = self.client.clone().expect("opened above");
        if let Some(found) = client.recorded_entry(&self.name, &journal_key(record)) {
            // A journal export: this record's answer as the recorded run journalled it.
            let outcome = match found.map(|v| serde_json::from_value::<JournalEntry>(v.clone())) {
                Ok(Ok(entry)) => LlmOutcome::Answered(entry),
                Ok(Err(e)) => LlmOutcome::Failed(CallError {
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
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = &self.system {
            messages.push(Message::text("system", s.render(record)?));
        }
        messages.push(Message::text("user", self.prompt.render(record)?));
        let (tools, _) = self.tools_for(record);
        let max_steps = self.max_tool_steps;
        // An unreadable task id or delegation depth fails the record (dead letter naming it).
        let base = CallContext::for_input(record, journal_key(record)).map_err(|e| e.to_string())?;
        Ok(Started::Pending(Box::pin(async move {
            let outcome = match call_with_tools(&client, messages, &tools, max_steps, &base).await {
                Ok(entry) => LlmOutcome::Answered(entry),
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
                        let used = self.used(&k, state)?.saturating_add(entry.usage.total_tokens);
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
                let details =
                    json!({"budget_key": key, "used": used, "budget": budget, "sender_id": record.envelope.sender_id});
                out.emit(4, self.audit(&record, "budget_exceeded", details));
                let mut r = record;
                r.envelope.kind = EnvelopeType::TaskStatus;
                *r.envelope.payload = json!({
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
