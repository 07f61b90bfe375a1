//! The open epoch over a store: writes are buffered (and readable) until the transaction that
//! made them commits, then sealed into the store in one atomic batch with the changelog
//! checkpoints. An aborted epoch is discarded, so the store never holds state ahead of the
//! committed transaction.

use std::collections::BTreeMap;

use crate::batch::{Batch, Write};
use crate::{Entry, StateError, StateStore};

type Slot = (String, u32, Vec<u8>);

/// A store with an open epoch.
#[derive(Debug)]
pub struct Epoch<S: StateStore> {
    store: S,
    pending: BTreeMap<Slot, Option<Vec<u8>>>,
}

impl<S: StateStore> Epoch<S> {
    /// Wraps a store; the epoch starts empty.
    pub fn new(store: S) -> Self {
        Self { store, pending: BTreeMap::new() }
    }

    /// The store under the epoch (committed state only).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store under the epoch, mutably (restores write to it directly).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Reads through the open epoch.
    pub fn get(&self, table: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.pending.get(&(table.to_owned(), partition, key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.store.get(table, partition, key),
        }
    }

    /// Scans a key range of one partition through the open epoch (buffered writes win).
    pub fn scan_range(
        &self,
        table: &str,
        partition: u32,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StateError> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = match self.store.scan_range(table, partition, start, end) {
            Ok(entries) => entries.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            Err(StateError::UnknownTable(_)) => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let from = (table.to_owned(), partition, start.to_vec());
        for ((t, p, k), v) in self.pending.range(from..) {
            if t != table || *p != partition || end.is_some_and(|e| k.as_slice() >= e) {
                break;
            }
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    /// Buffers a write.
    pub fn put(&mut self, table: &str, partition: u32, key: &[u8], value: &[u8]) {
        self.pending.insert((table.to_owned(), partition, key.to_vec()), Some(value.to_vec()));
    }

    /// Buffers a delete.
    pub fn delete(&mut self, table: &str, partition: u32, key: &[u8]) {
        self.pending.insert((table.to_owned(), partition, key.to_vec()), None);
    }

    /// How many writes are buffered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Seals the epoch: buffered writes and `checkpoints` go to the store atomically.
    pub fn seal(&mut self, checkpoints: Vec<(String, u32, i64)>) -> Result<(), StateError> {
        let writes = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((table, partition, key), value)| Write { table, partition, key, value })
            .collect();
        let batch = Batch { writes, checkpoints };
        if batch.is_empty() { Ok(()) } else { self.store.apply(&batch) }
    }

    /// Discards the buffered writes (their transaction aborted).
    pub fn abort(&mut self) {
        self.pending.clear();
    }

    /// Discards buffered writes of one partition (it was revoked).
    pub fn abort_partition(&mut self, partition: u32) {
        self.pending.retain(|(_, p, _), _| *p != partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn reads_see_the_epoch_and_aborts_forget_it() {
        let mut store = MemoryStore::new();
        store.open_table("t").unwrap();
        let mut e = Epoch::new(store);
        e.put("t", 0, b"k", b"1");
        assert_eq!(e.get("t", 0, b"k").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(e.store().get("t", 0, b"k").unwrap(), None, "nothing reaches the store before the seal");
        e.abort();
        assert_eq!(e.get("t", 0, b"k").unwrap(), None);
        e.put("t", 0, b"k", b"2");
        e.delete("t", 0, b"gone");
        e.seal(vec![("t".into(), 0, 42)]).unwrap();
        assert_eq!(e.store().get("t", 0, b"k").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(e.store().checkpoint("t", 0).unwrap(), Some(42));
        assert_eq!(e.pending(), 0);
    }

    #[test]
    fn scans_merge_the_epoch_over_the_store() {
        let mut store = MemoryStore::new();
        store.open_table("t").unwrap();
        for k in [b"a", b"b", b"c", b"d"] {
            store.put("t", 1, k, b"old").unwrap();
        }
        let mut e = Epoch::new(store);
        e.put("t", 1, b"b", b"new");
        e.delete("t", 1, b"c");
        e.put("t", 1, b"bb", b"added");
        e.put("t", 2, b"b", b"other partition");
        e.put("u", 1, b"b", b"other table");
        let got = e.scan_range("t", 1, b"b", Some(b"d")).unwrap();
        assert_eq!(got, vec![(b"b".to_vec(), b"new".to_vec()), (b"bb".to_vec(), b"added".to_vec())]);
        assert_eq!(e.scan_range("fresh", 0, b"", None).unwrap(), vec![], "an unopened table scans empty");
    }
}
