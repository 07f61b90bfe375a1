//! `join`: enriches a stream with a table built from another input (Kafka Streams' KStream–
//! KTable join), e.g. requests with the roster entry of their sender.
//!
//! ```toml
//! [operators.enrich]
//! type = "join"
//! inputs = ["requests", "roster"]
//! table = "roster"                  # the input that feeds the table
//! key = 'sender_id'                 # the stream record's key
//! table_key = 'payload.agent_id'    # the table record's key
//! table_value = 'payload'           # what the table keeps (default: the payload)
//! delete_when = 'payload.status == "left"'
//! into = "payload.member"
//! how = "left"
//! ```
//! A record from the `table` input upserts (or, when `delete_when` holds, deletes) its key
//! and produces no output. A record from any other input looks its key up: found, it passes
//! on with `into` set to the stored value; not found, `how = "left"` (default) passes it with
//! `into` set to `null`, `how = "inner"` sends it to the output `unmatched`. The table is a
//! changelogged state table named after the operator, partitioned like the inputs: both
//! inputs must be co-partitioned and keyed alike (the table topic keyed by the join key).
//! Keys match by value: numbers by their value (`1` finds `1.0`), a string as itself (so
//! `"1"` finds `1`, as it always has); see [`crate::lang::key::state_key`].

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::{Errors, parse_optional_duration_ms};
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Cause, Emit, Failure, Port, Ports, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, StateError, TableSpec};
use crate::lang::exact::short_text;
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::key::{eval_state_key, shown_key};
use crate::lang::path::FieldPath;
use crate::lang::path::emit_set;

/// The output of stream records with no table entry (`how = "inner"`).
pub const UNMATCHED: &str = "unmatched";
/// The port of [`UNMATCHED`] (after the default output).
pub const UNMATCHED_PORT: Port = Port(1);

/// What happens to a stream record whose key the table lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// It passes with `into` set to `null`.
    #[default]
    Left,
    /// It goes to the output `unmatched`.
    Inner,
}

/// Config half of `join`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// The input (one of `inputs`, by node name) whose records feed the table.
    pub table: Spanned<String>,
    /// CEL expression giving a stream record's key.
    pub key: Spanned<String>,
    /// CEL expression giving a table record's key (default: the same as `key`).
    #[serde(default)]
    pub table_key: Option<Spanned<String>>,
    /// CEL expression giving what the table keeps for a key (default: the payload).
    #[serde(default)]
    pub table_value: Option<Spanned<String>>,
    /// CEL condition under which a table record deletes its key instead.
    #[serde(default)]
    pub delete_when: Option<Spanned<String>>,
    /// Field of the stream record the table value is written to.
    pub into: Spanned<String>,
    /// `left` (default) or `inner`.
    #[serde(default)]
    pub how: JoinKind,
    /// Forget a table entry this long (event time) after its last update; default: never.
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
}

impl JoinConfig {
    /// The state table of node `node`: named after it, entries expiring after `ttl` (an
    /// invalid `ttl`, reported by `check`, reads as none).
    fn state_table(&self, node: &str) -> TableSpec {
        TableSpec::expiring(node, parse_optional_duration_ms(&self.ttl).ok().flatten())
    }

    /// Checks `table` names one of the operator's inputs (by node name).
    fn check_inputs(&self, inputs: &[&str]) -> Result<(), ConfigError> {
        let t = self.table.get_ref();
        if inputs.contains(&t.as_str()) && inputs.len() >= 2 {
            return Ok(());
        }
        let msg = if inputs.contains(&t.as_str()) {
            format!("`{t}` is the only input; a join needs a stream input besides the table")
        } else {
            format!("`table = \"{t}\"` is not one of the inputs")
        };
        Err(ConfigError::at(self.table.span(), msg).with_hint(Some(format!("inputs: {}", inputs.join(", ")))))
    }
}

impl Kind for JoinConfig {
    /// The outputs: the default (joined records) and `unmatched`.
    fn ports(&self) -> Ports {
        Ports { default: true, named: vec![UNMATCHED.to_owned()] }
    }

    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![self.state_table(node)]
    }

    /// The options' errors, and whether `table` names one of the inputs.
    fn check(&self, node: &str, inputs: &[&str], resources: &Resources) -> Vec<ConfigError> {
        let mut errors = self.build(node, resources).err().unwrap_or_default();
        errors.extend(self.check_inputs(inputs).err());
        errors
    }

    /// Builds the runtime half; its state table is named after the node.
    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let key = errors.take(compile_expr(&self.key));
        let table_key = match &self.table_key {
            Some(k) => errors.take(compile_expr(k)),
            None => key.clone(),
        };
        let value = match &self.table_value {
            Some(v) => errors.take(compile_expr(v)).map(Some),
            None => Some(None),
        };
        let delete_when = match &self.delete_when {
            Some(v) => errors.take(compile_expr(v)).map(Some),
            None => Some(None),
        };
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        errors.take(parse_optional_duration_ms(&self.ttl));
        errors.finish(|| {
            Some(Built::Sync(Box::new(Join {
                table_input: self.table.get_ref().clone(),
                key: key?,
                table_key: table_key?,
                value: value?,
                delete_when: delete_when?,
                into: into?,
                how: self.how,
                table: self.state_table(node),
            })))
        })
    }
}

/// Runtime half of `join`.
#[derive(Debug, Clone)]
pub struct Join {
    table_input: String,
    key: Expr,
    table_key: Expr,
    value: Option<Expr>,
    delete_when: Option<Expr>,
    into: FieldPath,
    how: JoinKind,
    table: TableSpec,
}

impl Join {
    fn update_table(&self, record: &Record, state: &mut dyn StateAccess) -> Result<(), Cause> {
        let key = eval_state_key(&self.table_key, record)?
            .ok_or_else(|| format!("`{}` gave null: no key", self.table_key.source()))?;
        if let Some(cond) = &self.delete_when
            && cond.eval_bool(record)?
        {
            return Ok(state.delete(&self.table.name, key.as_bytes())?);
        }
        let value = match &self.value {
            Some(e) => e.eval_json(record)?,
            None => (*record.envelope.payload).clone(),
        };
        let bytes = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        Ok(state.put(&self.table.name, key.as_bytes(), &bytes)?)
    }

    fn lookup(&self, record: &Record, state: &mut dyn StateAccess) -> Result<Option<Value>, Cause> {
        let Some(key) = eval_state_key(&self.key, record)? else { return Ok(None) };
        match state.get(&self.table.name, key.as_bytes())? {
            // A stored value that does not decode is the store's fault, not the record's.
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Cause::State(StateError::new(
                    &self.table.name,
                    format!("corrupt value for `{}`: not JSON: {e}", short_text(&shown_key(&key))),
                ))
            }),
            None => Ok(None),
        }
    }
}

impl SyncOperator for Join {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let found = match self.lookup(&record, state) {
            Ok(f) => f,
            Err(m) => return Err(Failure::because(record, m)),
        };
        match (found, self.how) {
            (None, JoinKind::Inner) => {
                out.emit(UNMATCHED_PORT, record);
                Ok(())
            }
            (found, _) => emit_set(out, Port::DEFAULT, record, &self.into, found.unwrap_or(Value::Null)),
        }
    }

    fn process_from(
        &mut self,
        input: &str,
        record: Record,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure> {
        if input != self.table_input {
            return self.process(record, state, out);
        }
        match self.update_table(&record, state) {
            Ok(()) => Ok(()),
            Err(m) => Err(Failure::because(record, m)),
        }
    }
}
