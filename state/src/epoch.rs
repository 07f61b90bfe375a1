//! The open epoch over a store: writes are buffered (and readable) until the transaction that
//! made them commits, then sealed into the store in one atomic batch with the changelog
//! checkpoints. An aborted epoch is discarded, so the store never holds state ahead of the
//! committed transaction.

use std::collections::BTreeMap;

use crate::batch::{Batch, Write};
use crate::{StateError, StateStore};

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
}
