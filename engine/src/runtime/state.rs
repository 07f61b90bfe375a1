//! A task's view of state: its partition of every table, through the open epoch, with every
//! write also recorded for the table's changelog (Kafka mode produces them in the same
//! transaction as the outputs). Tables with a TTL store `expiry ++ value`
//! ([`kafclaw_state::ttl`]); this layer adds and strips the expiry and hides expired entries,
//! so operators see plain values.

use std::collections::HashMap;
use std::sync::Arc;

use kafclaw_operators::api::state::StateError as AccessError;
use kafclaw_operators::{Origin, ScanEntry, StateAccess};
use kafclaw_state::{Epoch, MemoryStore, StateError, StateStore, decode_expiring, encode_expiring};

/// The store tasks write through: a backend under an open epoch.
pub type TaskStore = Epoch<Box<dyn StateStore>>;

/// A task store in memory (local runs, tests).
pub fn memory_store() -> TaskStore {
    Epoch::new(Box::new(MemoryStore::new()))
}

/// One state write, for the changelog.
#[derive(Debug, Clone)]
pub struct ChangelogWrite {
    /// Table.
    pub table: String,
    /// Partition (the task's).
    pub partition: i32,
    /// Key.
    pub key: Vec<u8>,
    /// Value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// The input whose processing made the write.
    pub origin: Arc<Origin>,
}

/// [`StateAccess`] for one record of one task.
pub struct TaskState<'a> {
    /// The store.
    pub store: &'a mut TaskStore,
    /// The task's partition.
    pub partition: i32,
    /// The input being processed.
    pub origin: Arc<Origin>,
    /// Where writes are recorded.
    pub changelog: &'a mut Vec<ChangelogWrite>,
    /// TTL (ms) of the tables that have one.
    pub ttls: &'a HashMap<String, i64>,
    /// The task's stream time (ms): entries expiring at or before it read as absent.
    pub now_ms: i64,
}

impl TaskState<'_> {
    /// A stored value as the operator sees it: `None` when expired.
    fn live<'v>(&self, table: &str, stored: &'v [u8]) -> Result<Option<&'v [u8]>, AccessError> {
        if !self.ttls.contains_key(table) {
            return Ok(Some(stored));
        }
        let (expires, value) = decode_expiring(stored).map_err(|e| AccessError::new(table, e.to_string()))?;
        Ok((expires > self.now_ms).then_some(value))
    }

    /// Keys of `table` that have expired by stream time (for the sweep).
    pub fn expired_keys(&mut self, table: &str) -> Result<Vec<Vec<u8>>, AccessError> {
        let entries = self.store.scan_range(table, self.partition as u32, &[], None).map_err(|e| failed(table, e))?;
        let mut out = Vec::new();
        for (k, v) in entries {
            if self.live(table, &v)?.is_none() {
                out.push(k);
            }
        }
        Ok(out)
    }
}

/// A store error, as the operator API names it (the store's fault, never the record's).
fn failed(table: &str, e: StateError) -> AccessError {
    AccessError::new(table, e.to_string())
}

/// A read failure injected by a test ([`super::inject`]).
fn injected(table: &str) -> Result<(), AccessError> {
    match super::inject::read_failure(table) {
        Some(m) => Err(AccessError::new(table, m)),
        None => Ok(()),
    }
}

impl StateAccess for TaskState<'_> {
    fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, AccessError> {
        injected(table)?;
        let stored = match self.store.get(table, self.partition as u32, key) {
            // Tables are opened on first use.
            Err(StateError::UnknownTable(_)) => {
                self.store.store_mut().open_table(table).map_err(|e| failed(table, e))?;
                self.store.get(table, self.partition as u32, key).map_err(|e| failed(table, e))?
            }
            other => other.map_err(|e| failed(table, e))?,
        };
        match stored {
            Some(s) => Ok(self.live(table, &s)?.map(<[u8]>::to_vec)),
            None => Ok(None),
        }
    }

    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), AccessError> {
        let stored = match self.ttls.get(table) {
            Some(ttl) => encode_expiring(self.now_ms.saturating_add(*ttl), value),
            None => value.to_vec(),
        };
        self.store.put(table, self.partition as u32, key, &stored);
        self.changelog.push(ChangelogWrite {
            table: table.to_owned(),
            partition: self.partition,
            key: key.to_vec(),
            value: Some(stored),
            origin: self.origin.clone(),
        });
        Ok(())
    }

    fn scan(&mut self, table: &str, start: &[u8], end: Option<&[u8]>) -> Result<Vec<ScanEntry>, AccessError> {
        injected(table)?;
        let entries = self.store.scan_range(table, self.partition as u32, start, end).map_err(|e| failed(table, e))?;
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            if let Some(live) = self.live(table, &v)? {
                out.push((k, live.to_vec()));
            }
        }
        Ok(out)
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), AccessError> {
        self.store.delete(table, self.partition as u32, key);
        self.changelog.push(ChangelogWrite {
            table: table.to_owned(),
            partition: self.partition,
            key: key.to_vec(),
            value: None,
            origin: self.origin.clone(),
        });
        Ok(())
    }
}
