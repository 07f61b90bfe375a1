//! A small kit for testing one operator without compiling a topology (RisingWave's
//! `MockSource` + `StreamChunk::from_pretty`, in miniature): records from envelope text,
//! state tables in memory (with an injectable store failure), the runtime half a config half
//! builds ([`build_sync`], [`build_async`]), and runners that return what the operator emitted
//! per port ([`run_sync`]; [`run_async`] with the caller's executor).
//!
//! ```
//! use kafclaw_operators::testing::{Tables, record, run_sync};
//! use kafclaw_operators::api::operator::Port;
//! # use kafclaw_operators::{Emit, Failure, Record, StateAccess, SyncOperator};
//! # struct Pass;
//! # impl SyncOperator for Pass {
//! #     fn process(&mut self, r: Record, _: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
//! #         out.emit(Port::DEFAULT, r);
//! #         Ok(())
//! #     }
//! # }
//! let out = run_sync(&mut Pass, &mut Tables::default(), [record(r#"{"type":"request","payload":{"n":1}}"#)]);
//! assert_eq!(out.emitted.len(), 1);
//! assert_eq!(out.emitted[0].0, Port::DEFAULT);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::api::asynchronous::{AsyncOperator, Outcome, Pending, Started};
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Cause, Emit, Port, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::{ScanEntry, StateAccess, StateError, TableSpec};
use crate::envelope::Envelope;

/// A record from envelope JSON text. Missing envelope fields are filled in (`correlation_id`
/// `"c"`, `sender_id` `"tester"`, `timestamp` `2026-11-01T09:00:00Z`, `payload` `{}`), so a
/// test writes only what it is about. Panics on text that is not an envelope (a test bug).
pub fn record(json: &str) -> Record {
    let mut v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("test record {json}: {e}"));
    let o = v.as_object_mut().expect("a test record is a JSON object");
    o.entry("type").or_insert_with(|| "request".into());
    o.entry("correlation_id").or_insert_with(|| "c".into());
    o.entry("sender_id").or_insert_with(|| "tester".into());
    o.entry("timestamp").or_insert_with(|| "2026-11-01T09:00:00Z".into());
    o.entry("payload").or_insert_with(|| serde_json::json!({}));
    let text = serde_json::to_string(&v).unwrap();
    let mut record =
        Record::detached(Envelope::decode(text.as_bytes()).unwrap_or_else(|e| panic!("test record {text}: {e}")));
    // Records with ids are distinct inputs: each its own offset (stable, from the id), as
    // journals are keyed by the input's coordinates (`Record::journal_key`).
    if let Some(id) = &record.envelope.id {
        let offset =
            id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut origin = (*record.origin).clone();
        origin.offset = (offset >> 1) as i64;
        record.origin = std::sync::Arc::new(origin);
    }
    record
}

/// State tables in memory, keyed like the real store (table, key), scans in key order. Reads
/// of the tables in `failing` fail as a broken store would.
#[derive(Debug, Default)]
pub struct Tables {
    entries: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    /// Every table a `put` or `delete` reached.
    written: BTreeSet<String>,
    /// Tables whose every access fails with a [`StateError`].
    pub failing: BTreeSet<String>,
}

impl Tables {
    /// Tables whose accesses to `table` fail.
    pub fn failing_on(table: &str) -> Self {
        Self { failing: [table.to_owned()].into(), ..Self::default() }
    }

    /// How many entries `table` holds.
    pub fn len(&self, table: &str) -> usize {
        self.entries.keys().filter(|(t, _)| t == table).count()
    }

    /// Every `(table, key)` held, in order.
    pub fn keys(&self) -> Vec<(String, Vec<u8>)> {
        self.entries.keys().cloned().collect()
    }

    /// Whether no table holds anything.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tables that hold at least one entry now.
    pub fn held(&self) -> BTreeSet<String> {
        self.entries.keys().map(|(t, _)| t.clone()).collect()
    }

    /// Every table written to (a `put` or a `delete` that did not fail), whether or not it
    /// holds anything now: compare with the operator's [`Kind::tables`] ([`table_names`]).
    pub fn written(&self) -> BTreeSet<String> {
        self.written.clone()
    }

    /// The keys `table` holds, as text (lossy), in order.
    pub fn keys_of(&self, table: &str) -> Vec<String> {
        self.entries.keys().filter(|(t, _)| t == table).map(|(_, k)| String::from_utf8_lossy(k).into_owned()).collect()
    }

    /// The value of `key` in `table`, as text (lossy).
    pub fn text(&self, table: &str, key: &[u8]) -> Option<String> {
        self.entries.get(&(table.to_owned(), key.to_vec())).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn check(&self, table: &str) -> Result<(), StateError> {
        match self.failing.contains(table) {
            true => Err(StateError::new(table, "injected store failure")),
            false => Ok(()),
        }
    }
}

impl StateAccess for Tables {
    fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.check(table)?;
        Ok(self.entries.get(&(table.to_owned(), key.to_vec())).cloned())
    }

    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.check(table)?;
        self.written.insert(table.to_owned());
        self.entries.insert((table.to_owned(), key.to_vec()), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StateError> {
        self.check(table)?;
        self.written.insert(table.to_owned());
        self.entries.remove(&(table.to_owned(), key.to_vec()));
        Ok(())
    }

    fn scan(&mut self, table: &str, start: &[u8], end: Option<&[u8]>) -> Result<Vec<ScanEntry>, StateError> {
        self.check(table)?;
        Ok(self
            .entries
            .range((table.to_owned(), start.to_vec())..)
            .take_while(|((t, k), _)| t == table && end.is_none_or(|e| k.as_slice() < e))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// What an operator did with the records it was given.
#[derive(Debug, Default)]
pub struct Run {
    /// What it emitted, `(port, record)` in order.
    pub emitted: Vec<(Port, Record)>,
    /// The records it failed, with why, in order.
    pub failed: Vec<(Record, Cause)>,
}

impl Run {
    /// The payloads emitted on `port`.
    pub fn on(&self, port: Port) -> Vec<&Value> {
        self.emitted.iter().filter(|(p, _)| *p == port).map(|(_, r)| &*r.envelope.payload).collect()
    }

    /// The ports emitted to, in order (one per emitted record).
    pub fn ports(&self) -> Vec<Port> {
        self.emitted.iter().map(|(p, _)| *p).collect()
    }

    /// The records emitted on `port`.
    pub fn records(&self, port: Port) -> Vec<&Record> {
        self.emitted.iter().filter(|(p, _)| *p == port).map(|(_, r)| r).collect()
    }

    /// The messages of the records failed for the record's fault.
    pub fn dead_lettered(&self) -> Vec<String> {
        self.failed
            .iter()
            .filter_map(|(_, c)| match c {
                Cause::Record(m) => Some(m.clone()),
                Cause::State(_) => None,
            })
            .collect()
    }

    /// The state failures met.
    pub fn state_failures(&self) -> Vec<&StateError> {
        self.failed
            .iter()
            .filter_map(|(_, c)| match c {
                Cause::State(e) => Some(e),
                Cause::Record(_) => None,
            })
            .collect()
    }
}

/// Feeds `inputs` to `op` in order with `state`, as a task would (from its first input),
/// collecting outputs per port and failures with their cause.
pub fn run_sync(
    op: &mut dyn SyncOperator,
    state: &mut dyn StateAccess,
    inputs: impl IntoIterator<Item = Record>,
) -> Run {
    run_sync_from(op, state, inputs.into_iter().map(|r| ("input", r)))
}

/// [`run_sync`] with the upstream node of each record named (for operators such as `join`
/// that treat their inputs differently).
pub fn run_sync_from<'a>(
    op: &mut dyn SyncOperator,
    state: &mut dyn StateAccess,
    inputs: impl IntoIterator<Item = (&'a str, Record)>,
) -> Run {
    let mut run = Run::default();
    let mut emit = Emit::default();
    for (from, r) in inputs {
        match op.process_from(from, r, state, &mut emit) {
            Ok(()) => run.emitted.extend(emit.drain()),
            Err(f) => {
                emit.drain().for_each(drop);
                run.failed.push((*f.record, f.cause));
            }
        }
    }
    run
}

/// The names of `specs` (a config half's [`Kind::tables`]), to compare with
/// [`Tables::written`].
pub fn table_names(specs: &[TableSpec]) -> BTreeSet<String> {
    specs.iter().map(|t| t.name.clone()).collect()
}

/// The synchronous runtime half `kind` builds for node `node`. Panics (a test bug) when the
/// options have errors or the kind is of another tier.
pub fn build_sync(kind: &(impl Kind + ?Sized), node: &str, resources: &Resources) -> Box<dyn SyncOperator> {
    match kind.build(node, resources) {
        Ok(Built::Sync(op)) => op,
        Ok(other) => panic!("node `{node}` built {other:?}, not a synchronous operator"),
        Err(errors) => panic!("node `{node}`: {errors:?}"),
    }
}

/// The asynchronous runtime half `kind` builds for node `node` (panics like [`build_sync`]).
pub fn build_async(kind: &(impl Kind + ?Sized), node: &str, resources: &Resources) -> Box<dyn AsyncOperator> {
    match kind.build(node, resources) {
        Ok(Built::Async(op)) => op,
        Ok(other) => panic!("node `{node}` built {other:?}, not an asynchronous operator"),
        Err(errors) => panic!("node `{node}`: {errors:?}"),
    }
}

/// Feeds `inputs` to an asynchronous operator one at a time, as a task would for records of
/// one order key: [`AsyncOperator::start`], then, for pending work, `block_on` (the caller's
/// executor: this crate has no async runtime), then [`AsyncOperator::finish`]. A record whose
/// start fails is in [`Run::failed`] with its cause, like one whose finish fails.
pub fn run_async(
    op: &mut dyn AsyncOperator,
    state: &mut dyn StateAccess,
    inputs: impl IntoIterator<Item = Record>,
    mut block_on: impl FnMut(Pending) -> Outcome,
) -> Run {
    let mut run = Run::default();
    let mut emit = Emit::default();
    for r in inputs {
        let outcome = match op.start(&r, state) {
            Ok(Started::Ready(outcome)) => outcome,
            Ok(Started::Pending(work)) => block_on(work),
            Err(cause) => {
                run.failed.push((r, cause));
                continue;
            }
        };
        match op.finish(r, outcome, state, &mut emit) {
            Ok(()) => run.emitted.extend(emit.drain()),
            Err(f) => {
                emit.drain().for_each(drop);
                run.failed.push((*f.record, f.cause));
            }
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_get_the_fields_a_test_leaves_out() {
        let r = record(r#"{"payload":{"n":1}}"#);
        assert_eq!(r.envelope.correlation_id, "c");
        assert_eq!(r.envelope.payload["n"], 1);
    }

    #[test]
    fn tables_scan_in_key_order_within_a_table_and_fail_when_told() {
        let mut t = Tables::default();
        for k in [b"b", b"a", b"c"] {
            t.put("x", k, b"1").unwrap();
        }
        t.put("y", b"a", b"2").unwrap();
        let keys: Vec<Vec<u8>> = t.scan("x", b"", Some(b"c")).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        t.delete("z", b"a").unwrap();
        assert_eq!(t.written(), ["x", "y", "z"].map(String::from).into());
        assert_eq!(t.held(), ["x", "y"].map(String::from).into());
        assert_eq!(t.keys_of("x"), ["a", "b", "c"]);
        t.failing.insert("x".into());
        assert_eq!(t.get("x", b"a").unwrap_err().table, "x");
        assert!(t.put("x", b"d", b"1").is_err());
        assert!(t.get("y", b"a").unwrap().is_some());
    }
}
