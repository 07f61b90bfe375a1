//! `embed`: puts a vector on each record (the asynchronous tier), from a declared model's
//! OpenAI-compatible `/v1/embeddings` endpoint or from the built-in local embedder.
//!
//! ```toml
//! [models.embedder]
//! base_url = "https://api.openai.com/v1"
//! model = "text-embedding-3-small"
//! api_key_env = "OPENAI_API_KEY"
//!
//! [operators.vectors]
//! type = "embed"
//! inputs = ["memories"]
//! model = "embedder"            # omit for the built-in local embedder
//! text = 'payload.content'
//! into = "payload.embedding"
//!
//! [operators.remember]
//! type = "memory-index"
//! inputs = ["vectors"]
//! vector = 'payload.embedding'
//! ```
//! Embed where memory is **written**, not where it is read: the vector travels in the
//! envelope, so every instance that indexes a shared memory topic (a global table) uses it
//! as it is and calls no model. Vectors are journalled in `<operator>.journal` in the same
//! transaction as the output, so a restart or a replay does not call (or bill) the model
//! again. A call that fails for good is dead-lettered; other records keep flowing. Records are
//! independent unless `order_by` says otherwise: each is its own order key, so calls run as
//! concurrently as the model's `max_concurrency` allows, and records may pass each other.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;

use crate::model::SharedModel;
use crate::model::embed::{Embedder, Embedding, LocalEmbedder, ModelEmbedder};
use crate::model::undeclared_model;
use kafclaw_operators::api::asynchronous::{AsyncOperator, Outcome, Started};
use kafclaw_operators::api::config::ConfigError;
use kafclaw_operators::api::config::Errors;
use kafclaw_operators::api::kind::{Built, Kind};
use kafclaw_operators::api::operator::{Cause, Emit, Failure, Port};
use kafclaw_operators::api::record::Record;
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::api::state::{StateAccess, TableSpec};
use kafclaw_operators::lang::expr::Expr;
use kafclaw_operators::lang::expr::compile_expr;
use kafclaw_operators::lang::key::eval_key;
use kafclaw_operators::lang::path::FieldPath;
use kafclaw_operators::lang::path::emit_set;

/// Config half of `embed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// The model whose `/v1/embeddings` endpoint makes the vectors, by its name under
    /// `[models]`; without it, the built-in local embedder (384 dimensions, no network).
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    /// CEL expression giving the text to embed.
    #[serde(default = "default_text")]
    pub text: Spanned<String>,
    /// Field the vector (a list of numbers) is written to.
    #[serde(default = "default_into")]
    pub into: Spanned<String>,
    /// CEL key whose records are embedded one at a time and leave in arrival order (e.g.
    /// `correlation_id`); default: every record on its own, in any order.
    #[serde(default)]
    pub order_by: Option<Spanned<String>>,
}

fn default_text() -> Spanned<String> {
    Spanned::new(0..0, "payload.content".to_owned())
}
fn default_into() -> Spanned<String> {
    Spanned::new(0..0, "payload.embedding".to_owned())
}

impl EmbedConfig {
    /// The state table of node `node`: its journal of vectors.
    fn state_table(node: &str) -> TableSpec {
        TableSpec::journal(format!("{node}.journal"))
    }
}

impl Kind for EmbedConfig {
    /// `<node>.journal`.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![Self::state_table(node)]
    }

    /// Builds the runtime half, with the declared model `model` names.
    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let text = errors.take(compile_expr(&self.text));
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        let order_by = match &self.order_by {
            Some(e) => errors.take(compile_expr(e)).map(Some),
            None => Some(None),
        };
        let embedder: Option<Arc<dyn Embedder>> = match &self.model {
            None => Some(Arc::new(LocalEmbedder::default())),
            Some(m) => match resources.get::<SharedModel>(m.get_ref()) {
                Some(model) => Some(Arc::new(ModelEmbedder::new(model))),
                None => {
                    errors.push(undeclared_model(m));
                    None
                }
            },
        };
        errors.finish(|| {
            Some(Built::Async(Box::new(Embed {
                name: node.to_owned(),
                embedder: embedder?,
                text: text?,
                into: into?,
                order_by: order_by?,
                journal: Self::state_table(node),
            })))
        })
    }
}

/// A journalled vector (the value of `<operator>.journal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorEntry {
    /// The vector.
    pub vector: Vec<f32>,
    /// The model that made it.
    pub model: String,
    /// Tokens billed for it.
    pub tokens: u64,
    /// The key of the embedded record in a journal export (`Record::recording_key`); the
    /// state journal is keyed by the input's coordinates and the record's rank
    /// (`Record::journal_key`). Absent from entries journalled before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

enum EmbedOutcome {
    /// A fresh vector, to journal under the state key it carries.
    Made(VectorEntry, String),
    Journaled(VectorEntry),
    Failed(String),
}

/// Runtime half of `embed`.
pub struct Embed {
    name: String,
    embedder: Arc<dyn Embedder>,
    text: Expr,
    into: FieldPath,
    order_by: Option<Expr>,
    journal: TableSpec,
}

impl AsyncOperator for Embed {
    fn order_key(&self, record: &Record) -> String {
        match &self.order_by {
            Some(e) => eval_key(e, record).ok().flatten().unwrap_or_default(),
            None => record.input_key(),
        }
    }

    fn open(&mut self) -> Result<(), String> {
        self.embedder.open()
    }

    fn start(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<Started, Cause> {
        self.start_ranked(record, 0, state)
    }

    /// The journal is keyed by the input's coordinates and the record's rank, never by the
    /// sender-chosen id (rank 0 keeps the coordinates key of before ranks).
    fn start_ranked(&mut self, record: &Record, rank: u32, state: &mut dyn StateAccess) -> Result<Started, Cause> {
        let key = record.journal_key(rank);
        let input = record.recording_key(rank);
        if let Some(bytes) = state.get(&self.journal.name, key.as_bytes())? {
            let entry: VectorEntry = serde_json::from_slice(&bytes)
                .map_err(|e| format!("state `{}`: not a vector entry: {e}", self.journal.name))?;
            return Ok(Started::Ready(Box::new(EmbedOutcome::Journaled(entry))));
        }
        if let Some(found) = self.embedder.recorded(&self.name, &input) {
            let outcome = match found.and_then(|v| {
                serde_json::from_value::<VectorEntry>(v)
                    .map_err(|e| format!("the recording's entry is not a vector: {e}"))
            }) {
                Ok(entry) => EmbedOutcome::Made(VectorEntry { input: Some(input), ..entry }, key),
                Err(m) => EmbedOutcome::Failed(m),
            };
            return Ok(Started::Ready(Box::new(outcome)));
        }
        let text = match self.text.eval_json(record)? {
            Value::String(s) => s,
            other => return Err(Cause::Record(format!("`{}` gave {other}, not text", self.text.source()))),
        };
        let call = self.embedder.embed_texts(vec![text]);
        Ok(Started::Pending(Box::pin(async move {
            let outcome = match call.await {
                Ok(Embedding { mut vectors, model, tokens }) if vectors.len() == 1 => EmbedOutcome::Made(
                    VectorEntry { vector: vectors.remove(0), model, tokens, input: Some(input) },
                    key,
                ),
                Ok(e) => EmbedOutcome::Failed(format!("asked for 1 vector, got {}", e.vectors.len())),
                Err(e) => EmbedOutcome::Failed(e),
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
        let entry = match outcome.downcast::<EmbedOutcome>().map(|o| *o) {
            Ok(EmbedOutcome::Journaled(entry)) => entry,
            Ok(EmbedOutcome::Made(entry, key)) => {
                let written = serde_json::to_vec(&entry)
                    .map_err(|e| Cause::Record(e.to_string()))
                    .and_then(|v| Ok(state.put(&self.journal.name, key.as_bytes(), &v)?));
                if let Err(cause) = written {
                    return Err(Failure::because(record, cause));
                }
                entry
            }
            Ok(EmbedOutcome::Failed(m)) => return Err(Failure::new(record, m)),
            Err(_) => return Err(Failure::new(record, "internal: not an embed outcome")),
        };
        let vector = Value::Array(entry.vector.iter().map(|x| Value::from(f64::from(*x))).collect());
        emit_set(out, Port::DEFAULT, record, &self.into, vector)
    }
}
