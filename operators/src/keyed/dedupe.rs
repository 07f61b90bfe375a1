//! `dedupe`: drops records whose key was already seen within a window of event time, keeping
//! the seen keys in a changelogged state table with a TTL (so a restart, a rebalance or a
//! replay dedupes exactly as an uninterrupted run would).
//!
//! ```toml
//! [operators.once]
//! type = "dedupe"
//! inputs = ["requests"]
//! by = 'id'          # the default
//! within = "1h"
//! ```
//! The first record of a key passes; repeats within `within` of it go to the output
//! `duplicates` (read as `inputs = ["once.duplicates"]`; when nothing reads it, they are
//! dropped). Records whose key is `null` (e.g. no `id`) always pass. The Kafka source's
//! `dedup = true` runs this operator on the envelope `id` before anything else.

use serde::Deserialize;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::{Errors, parse_duration_ms};
use crate::api::kind::{Built, Kind, SourceStage};
use crate::api::operator::{Cause, Emit, Failure, Port, Ports, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, TableSpec};
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::key::eval_key;

/// The output repeats go to.
pub const DUPLICATES: &str = "duplicates";
/// The port of [`DUPLICATES`] (after the default output).
pub const DUPLICATES_PORT: Port = Port(1);

/// Config half of `dedupe`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// CEL expression giving the key that identifies a record (default: the envelope `id`).
    #[serde(default)]
    pub by: Option<Spanned<String>>,
    /// How long after a key's first record (event time) repeats are dropped, e.g. `"1h"`.
    pub within: Spanned<String>,
}

impl DedupeConfig {
    /// The state table of node `node`: named after it, keys expiring `within` after their
    /// first record (an invalid `within`, reported by `check`, reads as none).
    fn state_table(&self, node: &str) -> TableSpec {
        TableSpec::expiring(node, parse_duration_ms(&self.within).ok())
    }
}

impl Kind for DedupeConfig {
    /// The outputs: the default (first records) and `duplicates`.
    fn ports(&self) -> Ports {
        Ports { default: true, named: vec![DUPLICATES.to_owned()] }
    }

    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![self.state_table(node)]
    }

    /// Builds the runtime half; its state table is named after the node.
    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let by = match &self.by {
            Some(b) => errors.take(compile_expr(b)).map(Some),
            None => Some(None),
        };
        errors.take(parse_duration_ms(&self.within));
        errors.finish(|| Some(Built::Sync(Box::new(Dedupe { by: by?, table: self.state_table(node) }))))
    }
}

/// Runtime half of `dedupe`.
#[derive(Debug, Clone)]
pub struct Dedupe {
    /// `None`: the envelope `id`.
    by: Option<Expr>,
    table: TableSpec,
}

impl Dedupe {
    /// Dedupe by envelope `id` in `table`, whose TTL is the window (the Kafka source's
    /// `dedup`).
    pub fn by_id(table: TableSpec) -> Self {
        Self { by: None, table }
    }

    /// Whether the record is the first of its key within the window (and, if so, remembers
    /// its key). Records without a key are always first.
    pub fn first(&self, record: &Record, state: &mut dyn StateAccess) -> Result<bool, Cause> {
        let key = match &self.by {
            None => record.envelope.id.clone(),
            Some(e) => eval_key(e, record)?,
        };
        let Some(key) = key else { return Ok(true) };
        if state.get(&self.table.name, key.as_bytes())?.is_some() {
            return Ok(false);
        }
        state.put(&self.table.name, key.as_bytes(), b"")?;
        Ok(true)
    }

    /// The table.
    pub fn table(&self) -> &TableSpec {
        &self.table
    }
}

impl SourceStage for Dedupe {
    fn admit(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<bool, Cause> {
        self.first(record, state)
    }
}

impl SyncOperator for Dedupe {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        match self.first(&record, state) {
            Ok(true) => out.emit(Port::DEFAULT, record),
            Ok(false) => out.emit(DUPLICATES_PORT, record),
            Err(m) => return Err(Failure::because(record, m)),
        }
        Ok(())
    }
}
