//! What `approve` keeps in its tables: a parked record ([`Parked`], `<node>.pending`), the
//! index of deadlines ([`timeout_key`], `<node>.timeouts`) and a decision ([`Decided`], the
//! journal `<node>.decisions`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::operator::Cause;
use crate::api::record::Origin;
use crate::api::state::StateError;

/// A parked record, as `<node>.pending` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Parked {
    /// The envelope, encoded.
    pub(crate) envelope: String,
    /// Where its input came from (a timeout releases it under this origin, so a rerun
    /// derives the same output ids).
    pub(crate) origin: StoredOrigin,
    /// When it was parked (wall clock, ms).
    pub(crate) requested_at_ms: i64,
    /// When a timeout decides it (wall clock, ms), if ever.
    pub(crate) deadline_ms: Option<i64>,
}

/// An [`Origin`], as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredOrigin {
    source: String,
    location: String,
    partition: i32,
    offset: i64,
    line: Option<u64>,
    input_id: Option<String>,
    input_span_id: Option<String>,
    pub(crate) trace_id: String,
}

impl From<&Origin> for StoredOrigin {
    fn from(o: &Origin) -> Self {
        Self {
            source: o.source.to_string(),
            location: o.location.to_string(),
            partition: o.partition,
            offset: o.offset,
            line: o.line,
            input_id: o.input_id.clone(),
            input_span_id: o.input_span_id.clone(),
            trace_id: o.trace_id.clone(),
        }
    }
}

impl StoredOrigin {
    pub(crate) fn origin(&self) -> Origin {
        Origin {
            source: Arc::from(self.source.as_str()),
            location: Arc::from(self.location.as_str()),
            partition: self.partition,
            offset: self.offset,
            line: self.line,
            input_id: self.input_id.clone(),
            input_span_id: self.input_span_id.clone(),
            trace_id: self.trace_id.clone(),
        }
    }
}

/// A decision, as the journal `<node>.decisions` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Decided {
    /// `approved`, `rejected` or `expired`.
    pub(crate) decision: String,
    pub(crate) approver: String,
    pub(crate) reason: String,
    /// When (wall clock, ms).
    pub(crate) at_ms: i64,
}

/// A stored value that does not decode: the store's fault.
pub(crate) fn corrupt(table: &str, key: &str, e: impl std::fmt::Display) -> Cause {
    Cause::State(StateError::new(table, format!("corrupt entry `{key}`: {e}")))
}

/// The key of `<node>.timeouts`: the deadline (big-endian, so keys sort by time) then the id.
pub(crate) fn timeout_key(deadline_ms: i64, id: &str) -> Vec<u8> {
    let mut k = (deadline_ms.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}
