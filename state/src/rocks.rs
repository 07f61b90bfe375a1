//! The RocksDB backend: one database per instance, a column family per state table, keys
//! prefixed by partition, checkpoints of changelog offsets in their own column family, and
//! every sealed epoch applied as one atomic write batch (WAL on). Restores bulk-load
//! (`rocks/load.rs`).

mod load;

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch};

use crate::{
    Batch, Entry, PartitionStats, Restored, StateError, StateStore, StatsBuilder, decode_partition_key,
    encode_partition_key,
};

/// Column family holding `table \0 partition(BE u32)` → next changelog offset (BE i64).
pub(crate) const CHECKPOINTS: &str = "__kafclaw_checkpoints";

/// A [`StateStore`] in RocksDB.
pub struct RocksStore {
    /// Shared by the handles of one database ([`RocksStore::share`]).
    pub(crate) db: std::sync::Arc<DB>,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish()
    }
}

pub(crate) fn checkpoint_key(table: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(table.len() + 5);
    k.extend_from_slice(table.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The options of a state table's column family (and of the SST files loaded into it).
pub(crate) fn table_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

impl RocksStore {
    /// Opens (creating when missing) the database at `path`, with every column family it has.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let err = |e: rocksdb::Error| StateError::Rocks { path: path.display().to_string(), message: e.to_string() };
        std::fs::create_dir_all(path)
            .map_err(|e| StateError::Rocks { path: path.display().to_string(), message: e.to_string() })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let mut names = DB::list_cf(&opts, path).unwrap_or_default();
        for required in ["default", CHECKPOINTS] {
            if !names.iter().any(|n| n == required) {
                names.push(required.to_owned());
            }
        }
        let cfs = names.iter().map(|n| ColumnFamilyDescriptor::new(n, opts.clone()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(err)?;
        load::clean_load_dir(path)
            .map_err(|e| StateError::Rocks { path: path.display().to_string(), message: e.to_string() })?;
        Ok(Self { db: std::sync::Arc::new(db), path: path.to_path_buf() })
    }

    /// Another handle on the same open database (the stream threads of one instance each hold
    /// one). RocksDB is safe to use from several threads; each thread writes only the
    /// partitions of its own tasks. The database closes with its last handle.
    pub fn share(&self) -> Self {
        Self { db: self.db.clone(), path: self.path.clone() }
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, e: rocksdb::Error) -> StateError {
        StateError::Rocks { path: self.path.display().to_string(), message: e.to_string() }
    }

    pub(crate) fn cf(&self, table: &str) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>, StateError> {
        self.db.cf_handle(table).ok_or_else(|| StateError::UnknownTable(table.to_owned()))
    }

    fn ensure_table(&self, table: &str) -> Result<(), StateError> {
        if table == CHECKPOINTS || table == "default" {
            return Err(StateError::UnknownTable(format!("{table} (reserved)")));
        }
        if self.db.cf_handle(table).is_none() {
            let mut opts = Options::default();
            opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            // Another handle (stream thread) may have created it meanwhile: that is success.
            if let Err(e) = self.db.create_cf(table, &opts)
                && self.db.cf_handle(table).is_none()
            {
                return Err(self.err(e));
            }
        }
        Ok(())
    }

    /// The stored (partition-prefixed) keys and values of one partition in `start..end`.
    fn stored_range(
        &self,
        table: &str,
        partition: u32,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StateError> {
        let cf = self.cf(table)?;
        let from = encode_partition_key(partition, start);
        let to = end.map(|e| encode_partition_key(partition, e));
        let mut out = Vec::new();
        for item in self.db.iterator_cf(&cf, IteratorMode::From(&from, Direction::Forward)) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if to.as_deref().is_some_and(|t| *k >= *t) {
                break;
            }
            match decode_partition_key(&k) {
                Some(pk) if pk.partition == partition => out.push((k.to_vec(), v.to_vec())),
                _ => break,
            }
        }
        Ok(out)
    }
}

impl StateStore for RocksStore {
    fn open_table(&mut self, table: &str) -> Result<(), StateError> {
        self.ensure_table(table)
    }

    fn get(&self, table: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self.cf(table)?;
        self.db.get_cf(&cf, encode_partition_key(partition, key)).map_err(|e| self.err(e))
    }

    fn put(&mut self, table: &str, partition: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let cf = self.cf(table)?;
        self.db.put_cf(&cf, encode_partition_key(partition, key), value).map_err(|e| self.err(e))
    }

    fn delete(&mut self, table: &str, partition: u32, key: &[u8]) -> Result<(), StateError> {
        let cf = self.cf(table)?;
        self.db.delete_cf(&cf, encode_partition_key(partition, key)).map_err(|e| self.err(e))
    }

    fn scan_range(
        &self,
        table: &str,
        partition: u32,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StateError> {
        Ok(self
            .stored_range(table, partition, start, end)?
            .into_iter()
            .map(|(k, v)| (decode_partition_key(&k).map(|pk| pk.key.to_vec()).unwrap_or_default(), v))
            .collect())
    }

    fn table_stats(&self, table: &str) -> Result<Vec<PartitionStats>, StateError> {
        let cf = self.cf(table)?;
        let mut stats = StatsBuilder::default();
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            stats.add(&k, v.len());
        }
        Ok(stats.finish())
    }

    fn drop_partition(&mut self, table: &str, partition: u32) -> Result<(), StateError> {
        let cf = self.cf(table)?;
        let ck = self.cf(CHECKPOINTS)?;
        let mut batch = WriteBatch::default();
        for (k, _) in self.stored_range(table, partition, &[], None)? {
            batch.delete_cf(&cf, k);
        }
        batch.delete_cf(&ck, checkpoint_key(table, partition));
        self.db.write(batch).map_err(|e| self.err(e))
    }

    fn clear_table(&mut self, table: &str) -> Result<(), StateError> {
        self.cf(table)?;
        self.db.drop_cf(table).map_err(|e| self.err(e))?;
        self.ensure_table(table)?;
        let ck = self.cf(CHECKPOINTS)?;
        let prefix = checkpoint_key(table, 0);
        let prefix = &prefix[..prefix.len() - 4];
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(&ck, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            batch.delete_cf(&ck, k);
        }
        self.db.write(batch).map_err(|e| self.err(e))
    }

    fn apply(&mut self, b: &Batch) -> Result<(), StateError> {
        for w in &b.writes {
            self.ensure_table(&w.table)?;
        }
        for (table, _, _) in &b.checkpoints {
            self.ensure_table(table)?;
        }
        let mut batch = WriteBatch::default();
        for w in &b.writes {
            let cf = self.cf(&w.table)?;
            let key = encode_partition_key(w.partition, &w.key);
            match &w.value {
                Some(v) => batch.put_cf(&cf, key, v),
                None => batch.delete_cf(&cf, key),
            }
        }
        let ck = self.cf(CHECKPOINTS)?;
        for (table, partition, offset) in &b.checkpoints {
            batch.put_cf(&ck, checkpoint_key(table, *partition), offset.to_be_bytes());
        }
        self.db.write(batch).map_err(|e| self.err(e))
    }

    fn checkpoint(&self, table: &str, partition: u32) -> Result<Option<i64>, StateError> {
        let ck = self.cf(CHECKPOINTS)?;
        match self.db.get_cf(&ck, checkpoint_key(table, partition)).map_err(|e| self.err(e))? {
            Some(v) => {
                let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| StateError::CorruptKey {
                    table: CHECKPOINTS.to_owned(),
                    reason: format!("checkpoint of {table}/{partition} has {} bytes", v.len()),
                })?;
                Ok(Some(i64::from_be_bytes(bytes)))
            }
            None => Ok(None),
        }
    }

    fn load(&mut self, restored: &[Restored]) -> Result<(), StateError> {
        self.load_restored(restored)
    }

    fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = DB::list_cf(&Options::default(), &self.path)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n != "default" && n != CHECKPOINTS)
            .collect();
        t.sort();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocks_store_passes_conformance() {
        let dirs = std::cell::RefCell::new(Vec::new());
        crate::conformance::run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = RocksStore::open(dir.path()).unwrap();
            dirs.borrow_mut().push(dir);
            store
        });
    }

    #[test]
    fn state_and_checkpoints_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RocksStore::open(dir.path()).unwrap();
            let batch = Batch {
                writes: vec![crate::Write {
                    table: "counts".into(),
                    partition: 3,
                    key: b"k".to_vec(),
                    value: Some(b"7".to_vec()),
                }],
                checkpoints: vec![("counts".into(), 3, 99)],
            };
            s.apply(&batch).unwrap();
        }
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(s.get("counts", 3, b"k").unwrap().as_deref(), Some(&b"7"[..]));
        assert_eq!(s.checkpoint("counts", 3).unwrap(), Some(99));
        assert_eq!(s.tables(), vec!["counts".to_owned()]);
    }
}
