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
use crate::api::operator::{Emit, Failure, Ports, SyncOperator};
use crate::api::record::Record;
use crate::api::state::{StateAccess, TableSpec};
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::key::eval_key;

/// The output repeats go to.
pub const DUPLICATES: &str = "duplicates";

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
    /// Builds the runtime half; its state table is `table`.
    pub fn build(&self, table: &str) -> Result<Dedupe, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let by = match &self.by {
            Some(b) => errors.take(compile_expr(b)).map(Some),
            None => Some(None),
        };
        let within = errors.take(parse_duration_ms(&self.within));
        errors.finish(|| Some(Dedupe { by: by?, table: TableSpec::expiring(table, Some(within?)) }))
    }

    /// The outputs: the default (first records) and `duplicates`.
    pub fn ports() -> Ports {
        Ports { default: true, named: vec![DUPLICATES.to_owned()] }
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
    /// Dedupe by envelope `id` within `within_ms`, in `table` (the Kafka source's `dedup`).
    pub fn by_id(table: &str, within_ms: i64) -> Self {
        Self { by: None, table: TableSpec::expiring(table, Some(within_ms)) }
    }

    /// Whether the record is the first of its key within the window (and, if so, remembers
    /// its key). Records without a key are always first.
    pub fn first(&self, record: &Record, state: &mut dyn StateAccess) -> Result<bool, String> {
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

impl SyncOperator for Dedupe {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        match self.first(&record, state) {
            Ok(true) => out.emit(0, record),
            Ok(false) => out.emit(1, record),
            Err(m) => return Err(Failure::new(record, m)),
        }
        Ok(())
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.table.clone()]
    }
}
