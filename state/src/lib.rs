//! State stores for kafclaw.
//!
//! Every state table is partitioned like the input it is computed from: a key is stored as
//! `partition (u32, big-endian) ++ user key`, so one task's state can be scanned, dropped or
//! restored alone (DESIGN §6). This crate owns the key layout and the [`StateStore`] trait;
//! the backends implement it. The in-memory backend is here now; the RocksDB backend joins it
//! behind the same trait and the same conformance suite ([`conformance`]).

#![warn(missing_docs)]

pub mod conformance;
pub mod key;
pub mod memory;

pub use key::{PartitionKey, decode_partition_key, encode_partition_key};
pub use memory::MemoryStore;

/// What can go wrong in a state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
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
    /// All entries of one partition of a table, in key order.
    fn scan_partition(&self, table: &str, partition: u32) -> Result<Vec<Entry>, StateError>;
    /// Drops every entry of one partition of a table (on revoke, before a restore).
    fn drop_partition(&mut self, table: &str, partition: u32) -> Result<(), StateError>;
}
