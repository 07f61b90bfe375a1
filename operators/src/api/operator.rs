//! The synchronous operator tier: per-record operators (filter, map, route) that the runtime
//! fuses inside a task; their outputs ([`Ports`], [`Emit`]) and failures ([`Failure`]).

use crate::api::record::Record;
use crate::api::state::{StateAccess, StateError};

/// One output of an operator: an index into its [`Ports`] (the default output, when it has
/// one, is 0; named outputs follow in order). Operators name theirs as constants next to
/// their `ports()` (`pub const REFUSED_PORT: Port = Port(1)`), never as bare numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(pub usize);

impl Port {
    /// The default output (`inputs = ["<operator>"]`), or the first named one of an operator
    /// without a default.
    pub const DEFAULT: Port = Port(0);
}

/// The outputs of an operator: its default output and its named outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// Whether `inputs = ["<operator>"]` can read the operator (port 0).
    pub default: bool,
    /// Named outputs, read as `inputs = ["<operator>.<port>"]`; numbered after the default.
    pub named: Vec<String>,
}

impl Ports {
    /// One default output.
    pub fn single() -> Self {
        Self { default: true, named: Vec::new() }
    }

    /// The port index of `name` (`None` = the default output).
    pub fn index_of(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None => self.default.then_some(0),
            Some(n) => self.named.iter().position(|p| p == n).map(|i| i + usize::from(self.default)),
        }
    }

    /// The port called `name` (`None` = the default output), when the operator has it.
    pub fn port(&self, name: Option<&str>) -> Option<Port> {
        self.index_of(name).map(Port)
    }

    /// How many ports there are in all.
    pub fn count(&self) -> usize {
        usize::from(self.default) + self.named.len()
    }
}

/// Where an operator sends its outputs: `(port, record)` pairs, in order.
#[derive(Debug, Default)]
pub struct Emit {
    out: Vec<(Port, Record)>,
}

impl Emit {
    /// Sends `record` to `port`.
    pub fn emit(&mut self, port: Port, record: Record) {
        self.out.push((port, record));
    }

    /// Takes the emitted records, leaving the buffer empty for reuse.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (Port, Record)> {
        self.out.drain(..)
    }
}

/// Why a record could not be processed. The line Arroyo draws between `DataError` and
/// `StateError` (`arroyo-rpc/src/errors.rs`): the record's fault, or the infrastructure's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// The record is at fault (a missing field, a value of the wrong type, an expression
    /// that fails on it, a model call that failed for good): it is dead-lettered and the
    /// stream goes on.
    #[error("{0}")]
    Record(String),
    /// State could not be read or written: the record is not at fault and is **not**
    /// dead-lettered. In Kafka mode the open transaction aborts and the tasks rewind to
    /// the committed offsets; a local run fails with exit 1.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self::Record(message)
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Self::Record(message.to_owned())
    }
}

/// A record an operator could not process, and why ([`Cause`]). A record at fault goes to the
/// dead-letter output as it entered the operator; a state failure stops the task's batch.
#[derive(Debug)]
pub struct Failure {
    /// The record as it entered the operator (boxed: failures are rare, results stay small).
    pub record: Box<Record>,
    /// Why it failed.
    pub cause: Cause,
}

impl Failure {
    /// `record` is at fault, for `message`.
    pub fn new(record: Record, message: impl Into<String>) -> Self {
        Self { record: Box::new(record), cause: Cause::Record(message.into()) }
    }

    /// `record` failed for `cause` (a [`String`] is the record's fault, a [`StateError`] the
    /// store's).
    pub fn because(record: Record, cause: impl Into<Cause>) -> Self {
        Self { record: Box::new(record), cause: cause.into() }
    }

    /// What went wrong, as text.
    pub fn message(&self) -> String {
        self.cause.to_string()
    }
}

/// A synchronous per-record operator. Stateless operators ignore `state`; stateful ones
/// (count, …) read and write their tables through it (which tables, their config half says:
/// [`crate::api::kind::Kind::tables`]).
pub trait SyncOperator: Send {
    /// Processes one record; zero or more outputs go to `out`.
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure>;

    /// Processes one record that arrived from upstream node `input` (operators that treat
    /// their inputs differently, like `join`, override this; the rest ignore it).
    fn process_from(
        &mut self,
        input: &str,
        record: Record,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure> {
        let _ = input;
        self.process(record, state, out)
    }

    /// How often the runtime calls [`SyncOperator::punctuate`] on each task of this operator;
    /// `None` (the default): never.
    fn punctuation_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Wall-clock punctuation, as Kafka Streams' `PunctuationType.WALL_CLOCK_TIME`: called on
    /// the stream thread, for every task of the operator (one per assigned input partition,
    /// `partition`), about every [`SyncOperator::punctuation_interval`] while the task is
    /// assigned — also when no record arrives. `now_ms` is wall-clock time, milliseconds since
    /// the Unix epoch. State writes and emitted records belong to the open transaction, like a
    /// record's: they commit together or not at all. An emitted record keeps the [`Origin`]
    /// the operator gives it (the sinks derive its id from it), so a punctuation that emits
    /// must give one that a rerun reproduces.
    ///
    /// Errors: a [`Cause::State`] aborts the open transaction like a record's state failure;
    /// a [`Cause::Record`] is logged by the runtime (a warning naming the operator and the
    /// partition), never dead-lettered (there is no input record).
    ///
    /// [`Origin`]: crate::api::record::Origin
    fn punctuate(
        &mut self,
        now_ms: i64,
        partition: i32,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Cause> {
        let _ = (now_ms, partition, state, out);
        Ok(())
    }
}
