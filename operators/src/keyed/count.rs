//! `count`: a running count per key, kept in a state table named after the operator.
//!
//! ```toml
//! [operators.per-sender]
//! type = "count"
//! inputs = ["requests"]
//! by = 'sender_id'
//! ```
//! Each record passes on with the key's new count written to `into` (default
//! `payload.count`) and the key to `payload.count_key`. The table is changelogged and restored
//! like any state (Kafka mode), so counts survive restarts and move with their partition.

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::{Errors, parse_optional_duration_ms};
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Emit, Failure, Port, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, StateError, TableSpec};
use crate::lang::exact::short_text;
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::key::{eval_state_key, shown_key};
use crate::lang::path::FieldPath;

/// Config half of `count`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountConfig {
    /// CEL expression giving the key to count by: equal values count together (numbers by
    /// value: `1` = `1.0`; a string as itself, so `"1"` = `1`); see
    /// [`crate::lang::key::state_key`].
    pub by: Spanned<String>,
    /// Field the new count is written to.
    #[serde(default = "default_into")]
    pub into: Spanned<String>,
    /// Forget a key this long (event time) after its last record, e.g. `"1h"`, so its count
    /// starts again from 1; default: never.
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
}

fn default_into() -> Spanned<String> {
    Spanned::new(0..0, "payload.count".to_owned())
}

impl CountConfig {
    /// The state table of node `node`: named after it, entries expiring after `ttl` (an
    /// invalid `ttl`, reported by `check`, reads as none).
    fn state_table(&self, node: &str) -> TableSpec {
        TableSpec::expiring(node, parse_optional_duration_ms(&self.ttl).ok().flatten())
    }
}

impl Kind for CountConfig {
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![self.state_table(node)]
    }

    /// Builds the runtime half; its state table is named after the node.
    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let by = errors.take(compile_expr(&self.by));
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        errors.take(parse_optional_duration_ms(&self.ttl));
        errors.finish(|| Some(Built::Sync(Box::new(Count { by: by?, into: into?, table: self.state_table(node) }))))
    }
}

/// Runtime half of `count`.
#[derive(Debug, Clone)]
pub struct Count {
    by: Expr,
    into: FieldPath,
    table: TableSpec,
}

impl SyncOperator for Count {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let key = match eval_state_key(&self.by, &record) {
            Ok(Some(k)) => k,
            Ok(None) => return Err(Failure::new(record, format!("`{}` gave null: no key", self.by.source()))),
            Err(m) => return Err(Failure::new(record, m)),
        };
        let table = &self.table.name;
        let named = short_text(&shown_key(&key));
        let current = match state.get(table, key.as_bytes()) {
            Ok(v) => v,
            Err(e) => return Err(Failure::because(record, e)),
        };
        let n = match current.as_deref().map(std::str::from_utf8) {
            None => 0,
            Some(Ok(text)) => match text.parse::<u64>() {
                Ok(n) => n,
                // A stored value that is not a count is the store's fault, not the record's.
                Err(_) => {
                    let why = format!("corrupt value for `{named}`: `{}` is not a count", short_text(text));
                    return Err(Failure::because(record, StateError::new(table, why)));
                }
            },
            Some(Err(_)) => {
                let why = format!("corrupt value for `{named}`: bytes, not a count");
                return Err(Failure::because(record, StateError::new(table, why)));
            }
        } + 1;
        // The output first: a record that cannot carry its count is dead-lettered and changes
        // no state (a dead-lettered record is as if it had not been read).
        let mut record = record;
        let set = self.into.set(&mut record.envelope, Value::from(n)).and_then(|()| {
            FieldPath::Payload(vec!["count_key".into()])
                .set(&mut record.envelope, Value::String(shown_key(&key).into_owned()))
        });
        if let Err(m) = set {
            return Err(Failure::new(record, m));
        }
        if let Err(m) = state.put(table, key.as_bytes(), n.to_string().as_bytes()) {
            return Err(Failure::because(record, m));
        }
        out.emit(Port::DEFAULT, record);
        Ok(())
    }
}
