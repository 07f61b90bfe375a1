//! Reading a conversation's history onto a record: [`HistoryReader`], shared by the `llm`
//! operator's `conversation` option (read when its call starts) and the `conversation-context`
//! operator ([`ConversationContext`]), which journals what each input was given
//! (`<operator>.journal`, by input), so a replay gives every input the history the first run
//! gave it.

use serde_json::Value;
use toml::Spanned;

use super::keep::{conversation_key, read_history};
use super::{ConversationTable, Format};
use kafclaw_operators::api::config::ConfigError;
use kafclaw_operators::api::operator::{Cause, Emit, Failure, Port, SyncOperator};
use kafclaw_operators::api::record::Record;
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::api::state::{StateAccess, TableSpec};
use kafclaw_operators::lang::expr::{Expr, compile_expr};
use kafclaw_operators::lang::path::{FieldPath, emit_set};

/// Reads the history of a record's conversation from a `conversation` operator's table.
#[derive(Debug, Clone)]
pub struct HistoryReader {
    key: Expr,
    table: String,
    format: Format,
}

impl HistoryReader {
    /// The reader of the `conversation` operator `conversation` names (its key, its table).
    pub fn new(conversation: &Spanned<String>, format: Format, resources: &Resources) -> Result<Self, ConfigError> {
        let name = conversation.get_ref();
        let Some(found) = resources.get::<ConversationTable>(name) else {
            return Err(ConfigError::at(conversation.span(), format!("`{name}` is not a conversation operator"))
                .with_hint(Some("name an operator of type \"conversation\"".into())));
        };
        // The key's own errors are reported where it is written (the conversation operator).
        let key = compile_expr(&Spanned::new(conversation.span(), found.key.clone()))
            .map_err(|_| ConfigError::at(conversation.span(), format!("the `key` of `{name}` has errors")))?;
        Ok(Self { key, table: found.table.clone(), format })
    }

    /// The history of `record`'s conversation as it is stored now (text: empty when none).
    pub fn read(&self, record: &Record, state: &mut dyn StateAccess) -> Result<Value, Cause> {
        let key = conversation_key(&self.key, record)?;
        let history = read_history(state, &self.table, &key)?;
        Ok(match self.format {
            Format::Text => Value::String(history.text()),
            Format::Messages => history.messages(),
        })
    }

    /// A copy of `record` with its history at `into`.
    pub fn put_on(&self, record: &Record, into: &FieldPath, state: &mut dyn StateAccess) -> Result<Record, Cause> {
        let value = self.read(record, state)?;
        let mut r = record.clone();
        into.set(&mut r.envelope, value)?;
        Ok(r)
    }
}

/// Runtime half of `conversation-context`.
pub struct ConversationContext {
    pub(super) reader: HistoryReader,
    pub(super) into: FieldPath,
    pub(super) journal: TableSpec,
}

impl ConversationContext {
    /// The history `record` is given: journalled, or read now and journalled.
    fn context(&self, record: &Record, state: &mut dyn StateAccess) -> Result<Value, Cause> {
        // The input's coordinates, never the sender-chosen id: another input's entry is never read.
        let input = record.journal_key(0);
        if let Some(bytes) = state.get(&self.journal.name, input.as_bytes())? {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Cause::Record(format!("state `{}` for `{input}` is not JSON: {e}", self.journal.name)));
        }
        let value = self.reader.read(record, state)?;
        let bytes = serde_json::to_vec(&value).map_err(|e| Cause::Record(e.to_string()))?;
        state.put(&self.journal.name, input.as_bytes(), &bytes)?;
        Ok(value)
    }
}

impl SyncOperator for ConversationContext {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        match self.context(&record, state) {
            Ok(value) => emit_set(out, Port::DEFAULT, record, &self.into, value),
            Err(cause) => Err(Failure::because(record, cause)),
        }
    }
}
