//! Conversation memory: `conversation` keeps each conversation's history (per correlation id,
//! or any key) in a changelogged state table, bounded by a token budget, turns and bytes, the
//! oldest turns summarised by a journalled model call; `conversation-context` puts a
//! conversation's history on a record, for an `llm` prompt. See docs/conversation.md.
//!
//! ```toml
//! [operators.context]             # before the model: the history so far
//! type = "conversation-context"
//! inputs = ["requests"]
//! conversation = "history"
//!
//! [operators.answer]
//! type = "llm"
//! inputs = ["context"]
//! model = "fast"
//! system = "The conversation so far:\n{{ payload.conversation }}"
//! prompt = "{{ payload.description }}"
//!
//! [operators.history]             # after the model: the exchange is recorded
//! type = "conversation"
//! inputs = ["answer"]
//! model = "fast"                  # summarises the oldest turns past max_tokens
//! max_tokens = 2000
//! ```
//! The two halves meet in the state table `history`, as `memory-search` meets
//! `memory-index` in its index, so the topology stays a graph without cycles: the writer sits
//! after the model and records the user's turn and the answer together, and the record goes
//! on only once they are recorded.

pub mod context;
pub mod history;
pub mod keep;

use serde::Deserialize;
use toml::Spanned;

use crate::model::{SharedModel, undeclared_model};
use kafclaw_operators::api::config::{ConfigError, Errors};
use kafclaw_operators::api::kind::{Built, Kind};
use kafclaw_operators::api::operator::{Port, Ports};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::api::state::TableSpec;
use kafclaw_operators::lang::expr::compile_expr;
use kafclaw_operators::lang::path::FieldPath;
use kafclaw_operators::lang::template::Template;

use history::Limits;

/// The output of policy decisions of `conversation` (`audit` envelopes): turns dropped
/// without a summary, summaries that failed.
pub const AUDIT: &str = "audit";
/// The port of [`AUDIT`].
pub const AUDIT_PORT: Port = Port(1);

/// What a `conversation` node offers the `conversation-context` nodes that name it: where its
/// histories are and how they are keyed.
#[derive(Debug)]
pub struct ConversationTable {
    /// The state table of the histories.
    pub table: String,
    /// The key expression, as written.
    pub key: String,
}

/// Config half of `conversation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationConfig {
    /// CEL key of the conversation a record belongs to (default: `correlation_id`). A key
    /// that fails, or gives null, dead-letters the record.
    #[serde(default = "default_key")]
    pub key: Spanned<String>,
    /// CEL expression giving the user's turn (text; other values are kept as JSON text).
    #[serde(default = "default_user")]
    pub user: Spanned<String>,
    /// CEL expression giving the assistant's turn: the `llm` operator's answer.
    #[serde(default = "default_assistant")]
    pub assistant: Spanned<String>,
    /// The model that summarises the oldest turns, by its name under `[models]`. Without it,
    /// turns past the budget are dropped (oldest first, audited).
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    /// Most estimated tokens (4 bytes a token) of the history as rendered: past it, the
    /// oldest turns are summarised.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: Spanned<u64>,
    /// Most turns kept verbatim (a user's message and an answer are two). A hard bound: past
    /// it the oldest are summarised, or dropped if no summary can be had.
    #[serde(default = "default_max_turns")]
    pub max_turns: Spanned<u64>,
    /// Most bytes of one conversation's stored value (compact JSON). A hard bound, like
    /// `max_turns`; each turn's text is cut to an eighth of it (and of `max_tokens`).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: Spanned<u64>,
    /// Most estimated tokens of the summary (default: a fifth of `max_tokens`; at most a
    /// quarter); a longer answer is cut.
    #[serde(default)]
    pub summary_tokens: Option<Spanned<u64>>,
    /// Newest turns never summarised while the hard bounds allow (default 4; at most
    /// `(max_turns - 2) / 2`).
    #[serde(default = "default_keep_turns")]
    pub keep_turns: Spanned<u64>,
    /// System prompt of the summary call, a template (Jinja) over the record whose exchange
    /// passed the budget; the turns to summarise follow as the user message. Default: an
    /// instruction to keep names, facts, decisions and open questions, in at most
    /// `summary_tokens * 3 / 4` words.
    #[serde(default)]
    pub summary_prompt: Option<Spanned<String>>,
}

fn spanned(s: &str) -> Spanned<String> {
    Spanned::new(0..0, s.to_owned())
}
fn default_key() -> Spanned<String> {
    spanned("correlation_id")
}
fn default_user() -> Spanned<String> {
    spanned("payload.description")
}
fn default_assistant() -> Spanned<String> {
    spanned("payload.answer")
}
fn default_max_tokens() -> Spanned<u64> {
    Spanned::new(0..0, 4000)
}
fn default_max_turns() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}
fn default_max_bytes() -> Spanned<u64> {
    Spanned::new(0..0, 64 * 1024)
}
fn default_keep_turns() -> Spanned<u64> {
    Spanned::new(0..0, 4)
}

impl ConversationConfig {
    /// The table of node `node`: one history per key.
    fn table(node: &str) -> TableSpec {
        TableSpec::kept(node)
    }

    /// The journal of node `node`: the summaries made (or failed), by input, kept across
    /// replays.
    fn journal(node: &str) -> TableSpec {
        TableSpec::journal(format!("{node}.journal"))
    }

    /// The bounds, or the errors of the options that set them.
    fn limits(&self) -> Result<Limits, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut at_least = |v: &Spanned<u64>, field: &str, min: u64| {
            if *v.get_ref() < min {
                errors.push(ConfigError::at(
                    v.span(),
                    format!("`{field}` is {}; it must be at least {min}", v.get_ref()),
                ));
            }
        };
        at_least(&self.max_tokens, "max_tokens", 64);
        at_least(&self.max_turns, "max_turns", 4);
        at_least(&self.max_bytes, "max_bytes", 1024);
        let max_tokens = *self.max_tokens.get_ref();
        let summary_tokens = self.summary_tokens.as_ref().map_or(max_tokens / 5, |s| *s.get_ref());
        if let Some(s) = &self.summary_tokens
            && (*s.get_ref() < 8 || *s.get_ref() > max_tokens / 4)
        {
            errors.push(ConfigError::at(
                s.span(),
                format!(
                    "`summary_tokens` is {}; it must be between 8 and a quarter of `max_tokens` ({})",
                    s.get_ref(),
                    max_tokens / 4
                ),
            ));
        }
        let max_keep = self.max_turns.get_ref().saturating_sub(2) / 2;
        if *self.keep_turns.get_ref() > max_keep {
            errors.push(ConfigError::at(
                self.keep_turns.span(),
                format!(
                    "`keep_turns` is {}; with `max_turns` = {} it must be at most {max_keep} ((max_turns - 2) / 2)",
                    self.keep_turns.get_ref(),
                    self.max_turns.get_ref()
                ),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let size = |v: &Spanned<u64>| usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        Ok(Limits {
            max_tokens,
            max_turns: size(&self.max_turns),
            max_bytes: size(&self.max_bytes),
            summary_tokens,
            keep_turns: size(&self.keep_turns),
        })
    }
}

/// A template option, compiled; an error names the line inside the template.
pub(crate) fn template(t: &Spanned<String>) -> Result<Template, ConfigError> {
    Template::compile(t.get_ref())
        .map_err(|e| ConfigError::at(t.span(), format!("template line {}: {}", e.line, e.message)))
}

impl Kind for ConversationConfig {
    /// The records, passed on once their exchange is recorded; `audit`.
    fn ports(&self) -> Ports {
        Ports { default: true, named: vec![AUDIT.to_owned()] }
    }

    /// `<node>` (the histories) and `<node>.journal` (the summaries).
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![Self::table(node), Self::journal(node)]
    }

    fn provides(&self, node: &str, resources: &mut Resources) {
        let table = ConversationTable { table: Self::table(node).name, key: self.key.get_ref().clone() };
        resources.insert(node, std::sync::Arc::new(table));
    }

    /// Builds the runtime half, with the declared model `model` names.
    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let key = errors.take(compile_expr(&self.key));
        let user = errors.take(compile_expr(&self.user));
        let assistant = errors.take(compile_expr(&self.assistant));
        let limits = errors.take(self.limits());
        let summary_prompt = match &self.summary_prompt {
            Some(t) => errors.take_one(template(t)).map(Some),
            None => Some(None),
        };
        let model = match &self.model {
            None => Some(None),
            Some(m) => match resources.get::<SharedModel>(m.get_ref()) {
                Some(model) => Some(Some(model)),
                None => {
                    errors.push(undeclared_model(m));
                    None
                }
            },
        };
        errors.finish(|| {
            Some(Built::Async(Box::new(keep::Conversation {
                name: node.to_owned(),
                key: key?,
                user: user?,
                assistant: assistant?,
                model: model?,
                client: None,
                summary_prompt: summary_prompt?,
                limits: limits?,
                table: Self::table(node),
                journal: Self::journal(node),
            })))
        })
    }
}

/// `format` of `conversation-context`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Text: the summary, then one `role: content` line per turn (empty when there is no
    /// history yet).
    #[default]
    Text,
    /// A list of chat messages `{"role", "content"}`: the summary as a `system` message, then
    /// the turns.
    Messages,
}

/// Config half of `conversation-context`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationContextConfig {
    /// The `conversation` operator whose histories are read (in the same sub-topology: wired
    /// through the `llm` operator between them). The key is that operator's `key`.
    pub conversation: Spanned<String>,
    /// Field the history is written to.
    #[serde(default = "default_into")]
    pub into: Spanned<String>,
    /// `"text"` (default) or `"messages"`.
    #[serde(default)]
    pub format: Format,
}

fn default_into() -> Spanned<String> {
    spanned("payload.conversation")
}

/// Where the `llm` operator's `conversation` option puts the history: `payload.conversation`.
pub fn history_field() -> FieldPath {
    FieldPath::Payload(vec!["conversation".to_owned()])
}

impl ConversationContextConfig {
    /// The journal of node `node`: the history each input was given, kept across replays.
    fn journal(node: &str) -> TableSpec {
        TableSpec::journal(format!("{node}.journal"))
    }
}

impl Kind for ConversationContextConfig {
    /// `<node>.journal`.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![Self::journal(node)]
    }

    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        let reader = errors.take_one(context::HistoryReader::new(&self.conversation, self.format, resources));
        errors.finish(|| {
            Some(Built::Sync(Box::new(context::ConversationContext {
                reader: reader?,
                into: into?,
                journal: Self::journal(node),
            })))
        })
    }
}
