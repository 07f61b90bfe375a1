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
//!
//! **Skills.** With `skills = ["skills/refunds"]`, folders holding a `SKILL.md` (the Agent
//! Skills format), only each skill's name and description go into the system prompt; the model
//! reads a skill's instructions and files through the built-in `read_skill` tool
//! ([`skills`], [`skills_tool`], docs/skills.md).

mod journal;
mod operator;
pub mod skills;
pub mod skills_tool;
mod spans;
pub mod structured;
mod tool_loop;

pub use journal::{JournalEntry, StepRecord};
pub use operator::Llm;

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use kafclaw_operators::api::config::{ConfigError, Errors};
use kafclaw_operators::api::kind::{Built, Kind, LintContext};
use kafclaw_operators::api::operator::{Port, Ports};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::api::state::TableSpec;
use kafclaw_operators::lang::expr::compile_expr;
use kafclaw_operators::lang::path::FieldPath;
use kafclaw_operators::lang::template::Template;
use tool_loop::ToolLimits;

use crate::model::undeclared_model;
use crate::resources::AgentResources;
use crate::tools::Tool;

/// The output of records refused before a call (over budget).
pub const REFUSED: &str = "refused";

/// The output of trace spans.
pub const TRACES: &str = "traces";

/// The output of items the `memory` tool was asked to remember.
pub const MEMORIES: &str = "memories";

/// The output of policy decisions (`audit` envelopes): tools withheld from an external
/// sender, budgets refused.
pub const AUDIT: &str = "audit";

/// The port of [`REFUSED`] (the outputs in [`LlmConfig::ports`] order).
pub const REFUSED_PORT: Port = Port(1);
/// The port of [`TRACES`].
pub const TRACES_PORT: Port = Port(2);
/// The port of [`MEMORIES`].
pub const MEMORIES_PORT: Port = Port(3);
/// The port of [`AUDIT`].
pub const AUDIT_PORT: Port = Port(4);
/// The output of streamed content deltas (`stream = true`).
pub const DELTAS: &str = "deltas";
/// The port of [`DELTAS`].
pub const DELTAS_PORT: Port = Port(5);

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
    /// Most rounds of tool calls before the answer must come (past it the record is
    /// dead-lettered, saying so).
    #[serde(default = "default_tool_steps")]
    pub max_tool_steps: u32,
    /// Where an answer without usable text goes (a refusal, an answer cut at the token limit
    /// or withheld by a content filter before any text, only reasoning): `"dead_letter"`
    /// (default), or `"refused"`: a `task_status` envelope (`status: "no_answer"`, the reason
    /// in `summary`) on the `refused` output, and an `audit` envelope (`no_answer`).
    #[serde(default)]
    pub no_answer: NoAnswer,
    /// Read answers as server-sent events (`stream: true`): the final answer's content deltas
    /// go to the `deltas` output (in order; journalled, so a replay emits the same ones
    /// without a call), the answer to the main output as usual.
    #[serde(default)]
    pub stream: bool,
    /// The JSON Schema the answer must match (`{ json_schema = "schemas/x.json" }` or inline):
    /// sent to the server and checked by kafclaw; a valid answer lands at `into` as JSON.
    #[serde(default)]
    pub response_format: Option<structured::ResponseFormatConfig>,
    /// Most tool calls run for one model answer (default 8); the calls past it are not run:
    /// each gets a refusal the model reads, and one `audit` envelope
    /// (`tool_calls_refused`) says how many were asked.
    #[serde(default = "default_tool_calls")]
    pub max_tool_calls: u32,
    /// Most bytes of one tool result handed to the model (default 64 KiB); a longer result is
    /// cut, with a line saying so.
    #[serde(default = "default_tool_output_bytes")]
    pub max_tool_output_bytes: u64,
    /// Senders counted as internal: exact ids, or prefixes ending in `*` (`"ops-*"`). With
    /// it, every other sender is external, and is offered only tools up to
    /// `external_tool_tier`; without it every sender is internal.
    #[serde(default)]
    pub internal_senders: Option<Vec<String>>,
    /// Highest tool tier offered to an external sender's request (tier 1: tools without side
    /// effects). Tools withheld are audited.
    #[serde(default = "default_external_tier")]
    pub external_tool_tier: u8,
    /// Lowest tool tier whose calls wait for a person's approval (docs/approvals.md): an
    /// `approval_request` goes to `group.<g>.approvals.requests` and the tool runs only once
    /// an `approval` says `approved`; rejected or timed out, the model is told and an `audit`
    /// says so. None (default): no call waits.
    #[serde(default)]
    pub approval_tool_tier: Option<u8>,
    /// How long an approval-gated call waits for a decision, counted from its first request
    /// (a restart does not restart it); default `"30m"`.
    #[serde(default)]
    pub approval_timeout: Option<Spanned<String>>,
    /// Agent Skills (agentskills.io `SKILL.md` format): folders, relative to the topology's
    /// folder, each holding a `SKILL.md` whose front matter names the skill (`name`, equal to
    /// the folder's name) and says when to use it (`description`). Only names and
    /// descriptions go into the system prompt (`<available_skills>`); the model reads a
    /// skill's instructions, and its files, through the built-in tool `read_skill`, offered
    /// to this operator only. Scripts are never run. Errors in a `SKILL.md` are diagnostics
    /// at the entry, naming the file and its line. See docs/skills.md.
    #[serde(default)]
    pub skills: Vec<Spanned<String>>,
    /// A `conversation` operator (docs/conversation.md) whose history of the record's
    /// conversation is put at `payload.conversation` (text) for `system` and `prompt`, read when
    /// the call starts: after the previous call of the same `order_by` key was answered and
    /// recorded. The output does not carry it.
    #[serde(default)]
    pub conversation: Option<Spanned<String>>,
}

/// `no_answer` of an `llm` operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAnswer {
    /// The record is dead-lettered with the reason.
    #[default]
    DeadLetter,
    /// A `task_status` on the `refused` output, and an audit envelope.
    Refused,
}

pub(crate) fn default_tool_steps() -> u32 {
    4
}
pub(crate) fn default_tool_calls() -> u32 {
    8
}
pub(crate) fn default_tool_output_bytes() -> u64 {
    64 * 1024
}
pub(crate) fn default_external_tier() -> u8 {
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

pub(crate) fn template(t: &Spanned<String>) -> Result<Template, ConfigError> {
    Template::compile(t.get_ref())
        .map_err(|e| ConfigError::at(t.span(), format!("template line {}: {}", e.line, e.message)))
}

impl LlmConfig {
    /// The journal of node `node`: every answer, kept across replays.
    fn journal(node: &str) -> TableSpec {
        TableSpec::journal(format!("{node}.journal"))
    }

    /// The budget table of node `node`: the tokens used per `budget_by` key.
    fn budget_table(node: &str) -> TableSpec {
        TableSpec::kept(format!("{node}.budget"))
    }

    /// The tools listed in `tools` that were declared and built, in order, each with where its
    /// name is first listed (a tool declared with errors, reported, is left out).
    fn listed_tools<'a>(&'a self, resources: &Resources) -> Vec<(&'a Spanned<String>, Arc<dyn Tool>)> {
        let first = |name: &str| self.tools.iter().find(|t| t.get_ref() == name);
        self.tools.iter().filter_map(|t| Some((first(t.get_ref())?, resources.declared_tool(t.get_ref())??))).collect()
    }
}

impl Kind for LlmConfig {
    /// The outputs: answers, `refused` (over budget), `traces` (one span per step),
    /// `memories` (one `memory` envelope per item the `memory` tool remembered) and `audit`
    /// (policy decisions).
    fn ports(&self) -> Ports {
        Ports {
            default: true,
            named: [REFUSED, TRACES, MEMORIES, AUDIT]
                .into_iter()
                .chain(self.stream.then_some(DELTAS))
                .map(str::to_owned)
                .collect(),
        }
    }

    /// `<node>.journal`, and `<node>.budget` with `budget_tokens`.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        let mut tables = vec![Self::journal(node)];
        if self.budget_tokens.is_some() {
            tables.push(Self::budget_table(node));
        }
        tables
    }

    /// Tools whose remembered items no node reads; tools with side effects declared
    /// `effect = "none"` under exactly-once. Each is reported where the tool is first listed.
    fn lint(&self, node: &str, cx: &LintContext<'_>) -> Vec<ConfigError> {
        let mut warnings = skills::load(&self.skills, cx.resources.base_dir()).warnings;
        let tools = self.listed_tools(cx.resources);
        if let Some((name, _)) = tools.iter().find(|(_, t)| t.remembers())
            && !cx.reads(node, MEMORIES)
        {
            warnings.push(
                ConfigError::at(
                    name.span(),
                    format!("tool `{}` remembers, but no node reads `{node}.{MEMORIES}`", name.get_ref()),
                )
                .with_hint(Some("wire it to a kafka sink on the shared memory topic, or to a memory-index".into())),
            );
        }
        for (name, tool) in &tools {
            if cx.exactly_once && tool.side_effects() && tool.effect() == crate::tools::effect::Effect::None {
                warnings.push(
                    ConfigError::at(
                        name.span(),
                        format!(
                            "tool `{}` has side effects and `effect = \"none\"`; under exactly-once a call may run again after a crash",
                            name.get_ref()
                        ),
                    )
                    .with_hint(Some(
                        "leave out `effect` (its kind's default), or choose \"idempotent\", \"at-most-once\" or \"reconcile\" (docs/effects.md)".into(),
                    )),
                );
            }
        }
        warnings
    }

    /// Builds the runtime half, with the declared model and tools it names.
    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
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
        for t in self.tools.iter().filter(|t| resources.declared_tool(t.get_ref()).is_none()) {
            errors.push(
                ConfigError::at(t.span(), format!("tool `{}` is not declared", t.get_ref()))
                    .with_hint(Some(format!("add a [tools.{}] table", t.get_ref()))),
            );
        }
        let model = resources.model(self.model.get_ref());
        if model.is_none() {
            errors.push(undeclared_model(&self.model));
        }
        // The model's fallbacks, each a declared model other than itself.
        let mut fallbacks = Vec::new();
        if let Some(m) = &model {
            for name in &m.config.fallbacks {
                match resources.model(name) {
                    Some(f) if f.name != m.name => fallbacks.push(f),
                    Some(_) => errors.push(ConfigError::at(
                        self.model.span(),
                        format!("model `{}` names itself among its fallbacks", m.name),
                    )),
                    None => errors.push(ConfigError::at(
                        self.model.span(),
                        format!("model `{}`: fallback `{name}` is not declared (add a [models.{name}] table)", m.name),
                    )),
                }
            }
        }
        let mut tools: Vec<(String, Arc<dyn Tool>)> =
            self.listed_tools(resources).into_iter().map(|(n, t)| (n.get_ref().clone(), t)).collect();
        // Tools of `approval_tool_tier` and above wait for a person (docs/approvals.md).
        let approval_timeout =
            errors.take(kafclaw_operators::api::config::parse_optional_duration_ms(&self.approval_timeout));
        if let (Some(min_tier), Some(timeout_ms)) = (self.approval_tool_tier, approval_timeout) {
            let gate = crate::tools::approval::Gate {
                agent: resources.topology().to_owned(),
                requester: format!("{}/{node}", resources.topology()),
                timeout: std::time::Duration::from_millis(timeout_ms.unwrap_or(30 * 60 * 1000) as u64),
                slot: crate::tools::approval::slot(resources),
            };
            tools = crate::tools::approval::gate(tools, min_tier, &gate);
        }
        let loaded = skills::load(&self.skills, resources.base_dir());
        loaded.errors.into_iter().for_each(|e| errors.push(e));
        if let Some(t) = self.tools.iter().find(|t| !self.skills.is_empty() && t.get_ref() == skills_tool::READ_SKILL) {
            errors.push(ConfigError::at(
                t.span(),
                format!("`{}` is the built-in tool of `skills`; a [tools] entry cannot take its name", t.get_ref()),
            ));
        }
        let skills_prompt = (!loaded.skills.is_empty()).then(|| skills::catalog(&loaded.skills));
        if !loaded.skills.is_empty() {
            tools.push((skills_tool::READ_SKILL.to_owned(), Arc::new(skills_tool::ReadSkill::new(&loaded.skills))));
        }
        let structured = match &self.response_format {
            None => Some(None),
            Some(f) => match f.compile(resources.base_dir()) {
                Ok(s) => Some(Some(s)),
                Err(m) => {
                    errors.push(ConfigError::at(self.model.span(), format!("response_format: {m}")));
                    None
                }
            },
        };
        let conversation = match &self.conversation {
            None => Some(None),
            Some(c) => errors
                .take_one(crate::memory::conversation::context::HistoryReader::new(c, Default::default(), resources))
                .map(Some),
        };
        errors.finish(|| {
            Some(Built::Async(Box::new(Llm {
                name: node.to_owned(),
                topology: resources.topology().to_owned(),
                model: model?,
                client: None,
                fallbacks,
                clients: Vec::new(),
                structured: structured?,
                stream: self.stream,
                no_answer: self.no_answer,
                system: system?,
                prompt: prompt?,
                conversation: conversation?,
                into: into?,
                usage_into: usage_into?,
                order_by: order_by?,
                budget: self.budget_tokens.map(|b| (b, budget_by.clone())).and_then(|(b, e)| Some((b, e?))),
                tools,
                effects: resources.effects(),
                skills_prompt,
                internal_senders: self.internal_senders.clone(),
                external_tool_tier: self.external_tool_tier,
                limits: ToolLimits {
                    max_steps: self.max_tool_steps,
                    max_calls: self.max_tool_calls,
                    max_output_bytes: self.max_tool_output_bytes,
                },
                journal: Self::journal(node),
                budget_table: Self::budget_table(node),
            })))
        })
    }
}
