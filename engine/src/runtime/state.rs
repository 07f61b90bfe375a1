//! A task's view of state: its partition of every table, through the open epoch, with every
//! write also recorded for the table's changelog (Kafka mode produces them in the same
//! transaction as the outputs).

use std::sync::Arc;

use kafclaw_operators::{Origin, StateAccess};
use kafclaw_state::{Epoch, MemoryStore, StateError, StateStore};

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
}

impl StateAccess for TaskState<'_> {
    fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.store.get(table, self.partition as u32, key) {
            // Tables are opened on first use.
            Err(StateError::UnknownTable(_)) => {
                self.store.store_mut().open_table(table).map_err(|e| e.to_string())?;
                self.store.get(table, self.partition as u32, key).map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.store.put(table, self.partition as u32, key, value);
        self.changelog.push(ChangelogWrite {
            table: table.to_owned(),
            partition: self.partition,
            key: key.to_vec(),
            value: Some(value.to_vec()),
            origin: self.origin.clone(),
        });
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), String> {
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
