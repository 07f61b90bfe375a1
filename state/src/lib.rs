//! State stores for kafclaw.
//!
//! Every state table is partitioned like the input it is computed from: a key is stored as
//! `partition (u32, big-endian) ++ user key`, so one task's state can be scanned, dropped or
//! restored alone (docs/ARCHITECTURE.md, "State layout"). This crate owns the key layout and the [`StateStore`] trait;
//! the backends implement it: [`MemoryStore`] and [`RocksStore`] (one DB per instance, a column
//! family per table), checked by one suite
//! behind the same trait and the same conformance suite ([`conformance`]). Writes of the
//! open transaction are buffered in an [`Epoch`] and sealed into the store atomically with the
//! changelog checkpoints once the transaction commits.

#![warn(missing_docs)]

pub mod batch;
pub mod conformance;
pub mod epoch;
pub mod key;
pub mod load;
pub mod memory;
pub mod rocks;
pub mod ttl;
pub mod vector;

pub use batch::{Batch, Write};
pub use epoch::Epoch;
pub use key::{PartitionKey, decode_partition_key, encode_partition_key};
pub use load::Restored;
pub use memory::MemoryStore;
pub use rocks::RocksStore;
pub use ttl::{TtlError, decode_expiring, encode_expiring};
pub use vector::VectorIndex;

/// What can go wrong in a state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The RocksDB backend failed.
    #[error("rocksdb at {path}: {message}")]
    Rocks {
        /// The database folder.
        path: String,
        /// RocksDB's message.
        message: String,
    },
    /// The vector index failed.
    #[error("vector index: {0}")]
    Vector(String),
    /// The named table was never opened on this store.
    #[error("state table `{0}` is not open")]
    UnknownTable(String),
    /// A stored key does not follow the partition-prefixed layout.
    #[error("corrupt state key in table `{table}`: {reason}")]
    CorruptKey {
        /// Table the key was read from.
        table: String,
        /// Why the key could not be decoded.
        reason: String,
    },
}

/// One stored entry: user key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Size of one partition of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// The partition.
    pub partition: u32,
    /// How many keys it holds.
    pub keys: u64,
    /// Bytes of user keys and values (the partition prefix not counted).
    pub bytes: u64,
}

/// Accumulates [`PartitionStats`] from stored (partition-prefixed) keys seen in key order.
#[derive(Debug, Default)]
pub(crate) struct StatsBuilder(Vec<PartitionStats>);

impl StatsBuilder {
    /// Counts one stored entry.
    pub(crate) fn add(&mut self, stored: &[u8], value_len: usize) {
        let Some(pk) = decode_partition_key(stored) else { return };
        if self.0.last().is_none_or(|s| s.partition != pk.partition) {
            self.0.push(PartitionStats { partition: pk.partition, ..PartitionStats::default() });
        }
        if let Some(s) = self.0.last_mut() {
            s.keys += 1;
            s.bytes += (pk.key.len() + value_len) as u64;
        }
    }

    /// The stats, by partition.
    pub(crate) fn finish(self) -> Vec<PartitionStats> {
        self.0
    }
}

/// A partitioned key-value store with per-table namespaces.
///
/// Writes become visible to reads on the same store at once; durability and the
/// transactional epoch are the backend's concern.
pub trait StateStore: Send {
    /// Opens (creating when missing) a table. Opening an open table is a no-op.
    fn open_table(&mut self, table: &str) -> Result<(), StateError>;
    /// Reads one key of one partition.
    fn get(&self, table: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Writes one key of one partition.
    fn put(&mut self, table: &str, partition: u32, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    /// Deletes one key of one partition; deleting a missing key is a no-op.
    fn delete(&mut self, table: &str, partition: u32, key: &[u8]) -> Result<(), StateError>;
    /// The entries of one partition of a table whose keys are in `start..end` (`end = None`:
    /// to the partition's last key), in key order.
    fn scan_range(
        &self,
        table: &str,
        partition: u32,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StateError>;
    /// All entries of one partition of a table, in key order.
    fn scan_partition(&self, table: &str, partition: u32) -> Result<Vec<Entry>, StateError> {
        self.scan_range(table, partition, &[], None)
    }
    /// The partitions a table holds keys of, each with its key count and key+value bytes.
    fn table_stats(&self, table: &str) -> Result<Vec<PartitionStats>, StateError>;
    /// Drops every entry of one partition of a table (on revoke, before a restore), and its
    /// checkpoint.
    fn drop_partition(&mut self, table: &str, partition: u32) -> Result<(), StateError>;
    /// Empties a table (every partition, and its checkpoints); the table stays open.
    fn clear_table(&mut self, table: &str) -> Result<(), StateError>;
    /// Applies writes and checkpoints atomically (tables are opened as needed).
    fn apply(&mut self, batch: &Batch) -> Result<(), StateError>;
    /// The checkpoint of a table's changelog partition: the next changelog offset the store
    /// does not reflect yet. `None` when there is none (restore from the beginning).
    fn checkpoint(&self, table: &str, partition: u32) -> Result<Option<i64>, StateError>;
    /// The names of the open tables.
    fn tables(&self) -> Vec<String>;
    /// Writes restored changelog records, then each partition's [`Restored::checkpoint`], so
    /// that a crash at any point leaves a partition its old checkpoint, or the new one with
    /// every record it covers in the store (never a checkpoint ahead of its data). Backends may
    /// bulk-load (RocksDB ingests sorted SST files, bypassing the memtable and the WAL).
    fn load(&mut self, restored: &[Restored]) -> Result<(), StateError> {
        let batch = Restored::to_batch(restored);
        if batch.is_empty() { Ok(()) } else { self.apply(&batch) }
    }
}

impl StateStore for Box<dyn StateStore> {
    fn open_table(&mut self, table: &str) -> Result<(), StateError> {
        (**self).open_table(table)
    }
    fn get(&self, table: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(table, partition, key)
    }
    fn put(&mut self, table: &str, partition: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        (**self).put(table, partition, key, value)
    }
    fn delete(&mut self, table: &str, partition: u32, key: &[u8]) -> Result<(), StateError> {
        (**self).delete(table, partition, key)
    }
    fn scan_range(
        &self,
        table: &str,
        partition: u32,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StateError> {
        (**self).scan_range(table, partition, start, end)
    }
    fn table_stats(&self, table: &str) -> Result<Vec<PartitionStats>, StateError> {
        (**self).table_stats(table)
    }
    fn drop_partition(&mut self, table: &str, partition: u32) -> Result<(), StateError> {
        (**self).drop_partition(table, partition)
    }
    fn clear_table(&mut self, table: &str) -> Result<(), StateError> {
        (**self).clear_table(table)
    }
    fn apply(&mut self, batch: &Batch) -> Result<(), StateError> {
        (**self).apply(batch)
    }
    fn checkpoint(&self, table: &str, partition: u32) -> Result<Option<i64>, StateError> {
        (**self).checkpoint(table, partition)
    }
    fn tables(&self) -> Vec<String> {
        (**self).tables()
    }
    fn load(&mut self, restored: &[Restored]) -> Result<(), StateError> {
        (**self).load(restored)
    }
}
