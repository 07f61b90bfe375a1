//! What a stateful operator sees of state: tables of the task's partition, read through the
//! open epoch, written into it (and, in Kafka mode, to the table's changelog).

/// A state table an operator uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name (also names its changelog topic, `<topology>-<name>-changelog`).
    pub name: String,
    /// Time to live of an entry in event-time milliseconds after its last write; `None` keeps
    /// entries until deleted. Expired entries read as absent and are swept with a changelog
    /// tombstone.
    pub ttl_ms: Option<i64>,
    /// A journal of calls to the outside world (model answers): kept when `kafclaw replay`
    /// wipes state, so a replay reuses answers instead of calling again.
    pub journal: bool,
}

impl TableSpec {
    /// A table kept until its entries are deleted.
    pub fn kept(name: impl Into<String>) -> Self {
        Self { name: name.into(), ttl_ms: None, journal: false }
    }

    /// A table whose entries expire `ttl_ms` after their last write (`None`: kept).
    pub fn expiring(name: impl Into<String>, ttl_ms: Option<i64>) -> Self {
        Self { name: name.into(), ttl_ms, journal: false }
    }

    /// A journal table (kept across replays).
    pub fn journal(name: impl Into<String>) -> Self {
        Self { name: name.into(), ttl_ms: None, journal: true }
    }
}

/// A state table could not be read or written (the store failed, or the table is not
/// declared): the infrastructure's fault, never the record's (see
/// [`crate::api::operator::Cause::State`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state table `{table}`: {message}")]
pub struct StateError {
    /// The table.
    pub table: String,
    /// What failed (the store's own error text).
    pub message: String,
}

impl StateError {
    /// A failure on `table`.
    pub fn new(table: impl Into<String>, message: impl Into<String>) -> Self {
        Self { table: table.into(), message: message.into() }
    }
}

/// One entry of a scan: key and value.
pub type ScanEntry = (Vec<u8>, Vec<u8>);

/// State of one task (one partition), by table.
pub trait StateAccess {
    /// Reads a key.
    fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Writes a key.
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    /// Deletes a key.
    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StateError>;
    /// The live entries whose keys are in `start..end` (`None`: to the last key), in key
    /// order.
    fn scan(&mut self, table: &str, start: &[u8], end: Option<&[u8]>) -> Result<Vec<ScanEntry>, StateError>;
}

/// The state of a stateless context: every access is an error.
#[derive(Debug, Default)]
pub struct NoState;

impl StateAccess for NoState {
    fn get(&mut self, table: &str, _: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Err(StateError::new(table, "no state here (a stateless context)"))
    }

    fn put(&mut self, table: &str, _: &[u8], _: &[u8]) -> Result<(), StateError> {
        Err(StateError::new(table, "no state here (a stateless context)"))
    }

    fn delete(&mut self, table: &str, _: &[u8]) -> Result<(), StateError> {
        Err(StateError::new(table, "no state here (a stateless context)"))
    }

    fn scan(&mut self, table: &str, _: &[u8], _: Option<&[u8]>) -> Result<Vec<ScanEntry>, StateError> {
        Err(StateError::new(table, "no state here (a stateless context)"))
    }
}
