//! The in-memory backend: a sorted map per table. Used by unit tests and by local runs that
//! need no durability.

use std::collections::{BTreeMap, HashMap};

use crate::{
    Batch, Entry, PartitionStats, StateError, StateStore, StatsBuilder, decode_partition_key, encode_partition_key,
};

/// A [`StateStore`] kept in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: HashMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    checkpoints: HashMap<(String, u32), i64>,
}

impl MemoryStore {
    /// An empty store with no tables.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self, table: &str) -> Result<&BTreeMap<Vec<u8>, Vec<u8>>, StateError> {
        self.tables.get(table).ok_or_else(|| StateError::UnknownTable(table.to_owned()))
    }

    fn table_mut(&mut self, table: &str) -> Result<&mut BTreeMap<Vec<u8>, Vec<u8>>, StateError> {
        self.tables.get_mut(table).ok_or_else(|| StateError::UnknownTable(table.to_owned()))
    }
}

fn partition_range(partition: u32) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = encode_partition_key(partition, &[]);
    let end = partition.checked_add(1).map(|next| encode_partition_key(next, &[]));
    (start, end)
}

impl StateStore for MemoryStore {
    fn open_table(&mut self, table: &str) -> Result<(), StateError> {
        self.tables.entry(table.to_owned()).or_default();
        Ok(())
    }

    fn get(&self, table: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.table(table)?.get(&encode_partition_key(partition, key)).cloned())
    }

    fn put(&mut self, table: &str, partition: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.table_mut(table)?.insert(encode_partition_key(partition, key), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: &str, partition: u32, key: &[u8]) -> Result<(), StateError> {
        self.table_mut(table)?.remove(&encode_partition_key(partition, key));
        Ok(())
    }

    fn scan_range(
        &self,
        table: &str,
        partition: u32,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StateError> {
        let (part_start, part_end) = partition_range(partition);
        let from = encode_partition_key(partition, start);
        let to = match end {
            Some(e) => Some(encode_partition_key(partition, e)),
            None => part_end,
        };
        let map = self.table(table)?;
        if to.as_ref().is_some_and(|t| *t <= from) || from < part_start {
            return Ok(Vec::new());
        }
        let iter: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = match to {
            Some(to) => Box::new(map.range(from..to)),
            None => Box::new(map.range(from..)),
        };
        iter.map(|(stored, value)| {
            let decoded = decode_partition_key(stored).ok_or_else(|| StateError::CorruptKey {
                table: table.to_owned(),
                reason: format!("{} bytes, shorter than the partition prefix", stored.len()),
            })?;
            Ok((decoded.key.to_vec(), value.clone()))
        })
        .collect()
    }

    fn table_stats(&self, table: &str) -> Result<Vec<PartitionStats>, StateError> {
        let mut stats = StatsBuilder::default();
        for (k, v) in self.table(table)? {
            stats.add(k, v.len());
        }
        Ok(stats.finish())
    }

    fn drop_partition(&mut self, table: &str, partition: u32) -> Result<(), StateError> {
        let (start, end) = partition_range(partition);
        let map = self.table_mut(table)?;
        let doomed: Vec<Vec<u8>> = match end {
            Some(end) => map.range(start..end).map(|(k, _)| k.clone()).collect(),
            None => map.range(start..).map(|(k, _)| k.clone()).collect(),
        };
        for key in doomed {
            map.remove(&key);
        }
        self.checkpoints.remove(&(table.to_owned(), partition));
        Ok(())
    }

    fn clear_table(&mut self, table: &str) -> Result<(), StateError> {
        self.table_mut(table)?.clear();
        self.checkpoints.retain(|(t, _), _| t != table);
        Ok(())
    }

    fn apply(&mut self, batch: &Batch) -> Result<(), StateError> {
        for w in &batch.writes {
            let map = self.tables.entry(w.table.clone()).or_default();
            let key = encode_partition_key(w.partition, &w.key);
            match &w.value {
                Some(v) => map.insert(key, v.clone()),
                None => map.remove(&key),
            };
        }
        for (table, partition, offset) in &batch.checkpoints {
            self.tables.entry(table.clone()).or_default();
            self.checkpoints.insert((table.clone(), *partition), *offset);
        }
        Ok(())
    }

    fn checkpoint(&self, table: &str, partition: u32) -> Result<Option<i64>, StateError> {
        Ok(self.checkpoints.get(&(table.to_owned(), partition)).copied())
    }

    fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = self.tables.keys().cloned().collect();
        t.sort();
        t
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_passes_conformance() {
        crate::conformance::run_all(crate::MemoryStore::new);
    }
}
