//! `window`: tumbling event-time windows of aggregates per key.
//!
//! ```toml
//! [operators.per-minute]
//! type = "window"
//! inputs = ["usage"]
//! by = 'sender_id'
//! value = 'payload.tokens'
//! functions = ["count", "sum"]
//! size = "1m"
//! grace = "10s"
//! emit = "close"
//! ```
//! A record falls in the window `[start, start + size)` holding its `timestamp`. Each task
//! tracks its stream time (the highest timestamp seen); a window closes when stream time
//! reaches `end + grace`. With `emit = "close"` (the default) a closed window is emitted once:
//! a copy of the record that closed it, with `timestamp` set to the window end, an empty
//! `payload` and `into` (default `payload.window`) set to `{"key", "start", "end", …functions}`.
//! With `emit = "update"` every record passes on with its window's aggregates so far, and
//! closed windows are forgotten silently. A record for a window that is already closed is
//! dead-lettered as late (nothing is lost silently).
//!
//! State: one changelogged table named after the operator, keyed `window start ++ key`, so
//! closing windows is one ordered range scan.

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::{Errors, parse_duration_ms, parse_optional_duration_ms};
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Cause, Emit, Failure, Port, SyncOperator};
use crate::api::record::{Record, format_time_ms};
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, StateError, TableSpec};
use crate::keyed::aggregate::{Accumulator, AggregateSpec, Function};
use crate::lang::exact::short_text;
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::key::{eval_state_key, shown_key};
use crate::lang::path::FieldPath;
use crate::lang::path::emit_set;

/// When window results leave the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// Once per window, when it closes.
    #[default]
    Close,
    /// With every record, the window's aggregates so far.
    Update,
}

/// Config half of `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// CEL expression giving the key (numbers by value: [`crate::lang::key::state_key`]).
    pub by: Spanned<String>,
    /// CEL expression giving the number to aggregate; without it only `count` is available.
    #[serde(default)]
    pub value: Option<Spanned<String>>,
    /// Functions to report: `count`, `sum`, `min`, `max`, `avg`.
    #[serde(default)]
    pub functions: Option<Spanned<Vec<Function>>>,
    /// Window length, e.g. `"1m"`; windows are aligned to the Unix epoch.
    pub size: Spanned<String>,
    /// How long after a window's end (in stream time) records for it are still accepted.
    #[serde(default)]
    pub grace: Option<Spanned<String>>,
    /// `close` (default): one result per window when it closes; `update`: every record
    /// carries its window's aggregates so far.
    #[serde(default)]
    pub emit: EmitMode,
    /// Field the window report is written to.
    #[serde(default = "default_into")]
    pub into: Spanned<String>,
}

fn default_into() -> Spanned<String> {
    Spanned::new(0..0, "payload.window".to_owned())
}

impl WindowConfig {
    /// The state table of node `node`: named after it, kept (closed windows are deleted).
    fn state_table(node: &str) -> TableSpec {
        TableSpec::kept(node)
    }
}

impl Kind for WindowConfig {
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![Self::state_table(node)]
    }

    /// Builds the runtime half; its state table is named after the node.
    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let by = errors.take(compile_expr(&self.by));
        let spec = AggregateSpec::build(&self.value, &self.functions, &mut errors);
        let size = errors.take(parse_duration_ms(&self.size));
        let grace = errors.take(parse_optional_duration_ms(&self.grace));
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        errors.finish(|| {
            Some(Built::Sync(Box::new(Window {
                by: by?,
                spec: spec?,
                size_ms: size?,
                grace_ms: grace?.unwrap_or(0),
                emit: self.emit,
                into: into?,
                table: Self::state_table(node),
                stream_time: i64::MIN,
            })))
        })
    }
}

/// Runtime half of `window` (one per task: its stream time is the partition's).
#[derive(Debug, Clone)]
pub struct Window {
    by: Expr,
    spec: AggregateSpec,
    size_ms: i64,
    grace_ms: i64,
    emit: EmitMode,
    into: FieldPath,
    table: TableSpec,
    stream_time: i64,
}

/// A window start as 8 bytes that sort like the number (sign bit flipped, big-endian).
pub fn encode_start(start_ms: i64) -> [u8; 8] {
    ((start_ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// Reads a stored window key: its start and the key.
pub fn decode_window_key(stored: &[u8]) -> Option<(i64, &str)> {
    let (head, key) = stored.split_at_checked(8)?;
    let start = (u64::from_be_bytes(head.try_into().ok()?) ^ (1 << 63)) as i64;
    Some((start, std::str::from_utf8(key).ok()?))
}

fn window_key(start_ms: i64, key: &str) -> Vec<u8> {
    let mut k = encode_start(start_ms).to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

impl Window {
    fn report(&self, acc: &Accumulator, key: &str, start: i64) -> Result<Value, String> {
        let mut r = serde_json::Map::new();
        r.insert("key".into(), Value::from(shown_key(key).into_owned()));
        r.insert("start".into(), Value::from(format_time_ms(start)));
        r.insert("end".into(), Value::from(format_time_ms(start.saturating_add(self.size_ms))));
        r.extend(acc.report(&self.spec.functions, None)?);
        Ok(Value::Object(r))
    }

    /// Adds the record to its window; returns the window's report.
    fn add(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<Value, Cause> {
        let t = record.event_time_ms()?;
        let key =
            eval_state_key(&self.by, record)?.ok_or_else(|| format!("`{}` gave null: no key", self.by.source()))?;
        let start = t.div_euclid(self.size_ms) * self.size_ms;
        self.stream_time = self.stream_time.max(t);
        let closes_at = start.saturating_add(self.size_ms).saturating_add(self.grace_ms);
        if closes_at <= self.stream_time {
            return Err(Cause::Record(format!(
                "late: window [{}, {}) of `{}` closed at stream time {} (grace {} ms)",
                format_time_ms(start),
                format_time_ms(start.saturating_add(self.size_ms)),
                short_text(&shown_key(&key)),
                format_time_ms(self.stream_time),
                self.grace_ms
            )));
        }
        let value = self.spec.value_of(record)?;
        let stored = window_key(start, &key);
        let table = &self.table.name;
        let mut acc = match state.get(table, &stored)? {
            // A stored value that does not decode is the store's fault, not the record's.
            Some(b) => Accumulator::decode(&b).map_err(|m| {
                StateError::new(table, format!("corrupt value for `{}`: {m}", short_text(&shown_key(&key))))
            })?,
            None => Accumulator::default(),
        };
        acc.add(value.as_ref())?;
        let report = self.report(&acc, &key, start)?;
        state.put(table, &stored, &acc.encode())?;
        Ok(report)
    }

    /// Removes the windows stream time has closed; returns their reports in window order.
    fn close(&mut self, state: &mut dyn StateAccess) -> Result<Vec<(i64, Value)>, Cause> {
        // end + grace <= stream time  ⇔  start < stream time - grace - size + 1
        let bound = self.stream_time.saturating_sub(self.grace_ms).saturating_sub(self.size_ms).saturating_add(1);
        let table = self.table.name.clone();
        let mut closed = Vec::new();
        for (stored, value) in state.scan(&table, &[], Some(&encode_start(bound)))? {
            let (start, key) =
                decode_window_key(&stored).ok_or_else(|| StateError::new(&table, "corrupt window key"))?;
            let acc = Accumulator::decode(&value).map_err(|m| {
                StateError::new(&table, format!("corrupt value for `{}`: {m}", short_text(&shown_key(key))))
            })?;
            closed.push((start, self.report(&acc, key, start)?));
            state.delete(&table, &stored)?;
        }
        Ok(closed)
    }
}

impl SyncOperator for Window {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let update = match self.add(&record, state) {
            Ok(r) => r,
            Err(m) => return Err(Failure::because(record, m)),
        };
        let closed = match self.close(state) {
            Ok(c) => c,
            Err(m) => return Err(Failure::because(record, m)),
        };
        if self.emit == EmitMode::Close {
            for (start, report) in closed {
                let mut r = record.clone();
                r.envelope.timestamp = format_time_ms(start.saturating_add(self.size_ms));
                *r.envelope.payload = Value::Object(serde_json::Map::new());
                if let Err(m) = self.into.set(&mut r.envelope, report) {
                    return Err(Failure::because(record, m));
                }
                out.emit(Port::DEFAULT, r);
            }
            return Ok(());
        }
        emit_set(out, Port::DEFAULT, record, &self.into, update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn window_keys_round_trip_and_sort_by_start(a in any::<i64>(), b in any::<i64>(), key in "[a-z0-9]{0,12}") {
            let ka = window_key(a, &key);
            prop_assert_eq!(decode_window_key(&ka), Some((a, key.as_str())));
            prop_assert_eq!(encode_start(a).cmp(&encode_start(b)), a.cmp(&b));
        }
    }
}
