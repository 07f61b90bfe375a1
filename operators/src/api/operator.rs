//! The synchronous operator tier: per-record operators (filter, map, route) that the runtime
//! fuses inside a task; their outputs ([`Ports`], [`Emit`]) and failures ([`Failure`]).

use crate::api::record::Record;
use crate::api::state::{StateAccess, TableSpec};

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

    /// How many ports there are in all.
    pub fn count(&self) -> usize {
        usize::from(self.default) + self.named.len()
    }
}

/// Where an operator sends its outputs: `(port, record)` pairs, in order.
#[derive(Debug, Default)]
pub struct Emit {
    out: Vec<(usize, Record)>,
}

impl Emit {
    /// Sends `record` to `port`.
    pub fn emit(&mut self, port: usize, record: Record) {
        self.out.push((port, record));
    }

    /// Takes the emitted records, leaving the buffer empty for reuse.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (usize, Record)> {
        self.out.drain(..)
    }
}

/// A record an operator could not process, and why. The record goes to the dead-letter output
/// as it entered the operator.
#[derive(Debug)]
pub struct Failure {
    /// The record as it entered the operator (boxed: failures are rare, results stay small).
    pub record: Box<Record>,
    /// Why it failed.
    pub message: String,
}

impl Failure {
    /// A failure of `record` for `message`.
    pub fn new(record: Record, message: impl Into<String>) -> Self {
        Self { record: Box::new(record), message: message.into() }
    }
}

/// A synchronous per-record operator. Stateless operators ignore `state`; stateful ones
/// (count, …) read and write their tables through it.
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

    /// The state tables the operator uses.
    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }
}
