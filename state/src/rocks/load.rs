//! RocksDB's bulk load of restored changelog records ([`StateStore::load`]).
//!
//! A small load is one atomic write batch (WAL on) with the checkpoints, as an epoch's seal.
//! A large one skips the memtable and the write-ahead log: each table-partition's records are
//! sorted (the latest record of a key wins) into an SST file, the files are built in parallel
//! and ingested into their tables' column families, and only then are the checkpoints written.
//! Ingestion is durable when it returns (RocksDB syncs the files and the MANIFEST), so a crash
//! at any point leaves a partition either its old checkpoint or the new one with all the data it
//! covers on disk; files of an interrupted load are deleted when the store is opened again.
//!
//! [`StateStore::load`]: crate::StateStore::load

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rocksdb::{IngestExternalFileOptions, Options, SstFileWriter, WriteBatch};

use super::{RocksStore, checkpoint_key, table_options};
use crate::load::Restored;
use crate::{StateError, StateStore};

/// Below this many buffered bytes a load is one write batch: an SST file per partition and
/// its ingestion cost a few file syncs, more than writing a few MB through the WAL.
pub const BULK_MIN_BYTES: usize = 4 << 20;

/// The folder (inside the database's) holding SST files being built.
pub(crate) const LOAD_DIR: &str = "restore-load";

/// Bulk loads started by this process (names their SST files).
static LOADS: AtomicUsize = AtomicUsize::new(0);

/// Deletes the SST files an interrupted load left behind.
pub(crate) fn clean_load_dir(db: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(db.join(LOAD_DIR)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl RocksStore {
    /// [`StateStore::load`] for RocksDB.
    pub(crate) fn load_restored(&mut self, restored: &[Restored]) -> Result<(), StateError> {
        for r in restored {
            self.open_table(r.table())?;
        }
        let bytes: usize = restored.iter().map(Restored::bytes).sum();
        if bytes < BULK_MIN_BYTES {
            let mut batch = WriteBatch::default();
            for r in restored {
                let cf = self.cf(r.table())?;
                for (key, value) in r.records() {
                    match value {
                        Some(v) => batch.put_cf(&cf, key, v),
                        None => batch.delete_cf(&cf, key),
                    }
                }
            }
            self.put_checkpoints(&mut batch, restored)?;
            return self.db.write(batch).map_err(|e| self.err(e));
        }
        let files = self.build_files(restored)?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        let mut tables: Vec<&str> = restored.iter().map(Restored::table).collect();
        tables.sort_unstable();
        tables.dedup();
        for table in tables {
            // Partitions have disjoint key ranges: one table's files go in together.
            let paths: Vec<&PathBuf> = restored
                .iter()
                .zip(&files)
                .filter(|(r, _)| r.table() == table)
                .filter_map(|(_, f)| f.as_ref())
                .collect();
            if paths.is_empty() {
                continue;
            }
            let cf = self.cf(table)?;
            self.db.ingest_external_file_cf_opts(&cf, &ingest, paths).map_err(|e| self.err(e))?;
        }
        // Only now, with the data on disk, may the checkpoints covering it be written.
        let mut batch = WriteBatch::default();
        self.put_checkpoints(&mut batch, restored)?;
        self.db.write(batch).map_err(|e| self.err(e))
    }

    fn put_checkpoints(&self, batch: &mut WriteBatch, restored: &[Restored]) -> Result<(), StateError> {
        let ck = self.cf(super::CHECKPOINTS)?;
        for r in restored {
            if let Some(offset) = r.checkpoint {
                batch.put_cf(&ck, checkpoint_key(r.table(), r.partition()), offset.to_be_bytes());
            }
        }
        Ok(())
    }

    /// Writes one sorted SST file per non-empty buffer, on up to as many threads as cores.
    fn build_files(&self, restored: &[Restored]) -> Result<Vec<Option<PathBuf>>, StateError> {
        let dir = self.path().join(LOAD_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| self.io_err(&dir, e))?;
        let opts = table_options();
        // Unique among the handles of the database (stream threads may restore at once).
        let stamp = LOADS.fetch_add(1, Ordering::Relaxed);
        let next = AtomicUsize::new(0);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(restored.len()).max(1);
        let mut files: Vec<Option<PathBuf>> = vec![None; restored.len()];
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(r) = restored.get(i) else { return Ok(done) };
                            if !r.is_empty() {
                                let path = dir.join(format!("{stamp}-{i}.sst"));
                                self.write_file(&opts, r, &path)?;
                                done.push((i, path));
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                let done: Result<Vec<(usize, PathBuf)>, StateError> = w.join().unwrap_or_else(|_| {
                    Err(StateError::Rocks { path: dir.display().to_string(), message: "an SST writer panicked".into() })
                });
                for (i, path) in done? {
                    files[i] = Some(path);
                }
            }
            Ok(files)
        })
    }

    fn write_file(&self, opts: &Options, r: &Restored, path: &Path) -> Result<(), StateError> {
        let err = |e: rocksdb::Error| StateError::Rocks { path: path.display().to_string(), message: e.to_string() };
        let mut writer = SstFileWriter::create(opts);
        writer.open(path).map_err(err)?;
        for (key, value) in r.latest_sorted() {
            match value {
                Some(v) => writer.put(key, v),
                None => writer.delete(key),
            }
            .map_err(err)?;
        }
        writer.finish().map_err(err)
    }

    fn io_err(&self, path: &Path, e: std::io::Error) -> StateError {
        StateError::Rocks { path: path.display().to_string(), message: e.to_string() }
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
