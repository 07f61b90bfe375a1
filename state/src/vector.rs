//! Vector indexes (usearch HNSW, cosine): what memory search runs on. Keys are u64 ids chosen
//! by the caller; vectors are f32 of the index's dimensions. The index lives in memory and is
//! rebuilt from the items table it indexes (after a restore or a replay), or saved to and
//! loaded from a file.

use std::sync::Mutex;

use crate::StateError;

/// An approximate nearest-neighbour index.
pub struct VectorIndex {
    index: usearch::Index,
    dimensions: usize,
    /// Serialises growth (usearch adds are thread-safe within capacity).
    grow: Mutex<()>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex").field("dimensions", &self.dimensions).field("len", &self.len()).finish()
    }
}

fn err(e: impl std::fmt::Display) -> StateError {
    StateError::Vector(e.to_string())
}

impl VectorIndex {
    /// An empty cosine index of `dimensions`.
    pub fn new(dimensions: usize) -> Result<Self, StateError> {
        let options = usearch::IndexOptions {
            dimensions,
            metric: usearch::MetricKind::Cos,
            quantization: usearch::ScalarKind::F32,
            connectivity: 32,
            expansion_add: 256,
            expansion_search: 256,
            multi: false,
        };
        let index = usearch::Index::new(&options).map_err(err)?;
        index.reserve(1024).map_err(err)?;
        Ok(Self { index, dimensions, grow: Mutex::new(()) })
    }

    /// The vectors' length.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds (or replaces) the vector of `key`.
    pub fn add(&self, key: u64, vector: &[f32]) -> Result<(), StateError> {
        if vector.len() != self.dimensions {
            return Err(StateError::Vector(format!("vector of {} values, index of {}", vector.len(), self.dimensions)));
        }
        {
            let _g = self.grow.lock().unwrap_or_else(|p| p.into_inner());
            if self.index.contains(key) {
                self.index.remove(key).map_err(err)?;
            }
            if self.index.size() + 1 > self.index.capacity() {
                self.index.reserve((self.index.capacity() * 2).max(1024)).map_err(err)?;
            }
        }
        self.index.add(key, vector).map_err(err)
    }

    /// Removes `key`, if present.
    pub fn remove(&self, key: u64) -> Result<(), StateError> {
        self.index.remove(key).map(|_| ()).map_err(err)
    }

    /// The `k` nearest keys with their cosine distances, nearest first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, StateError> {
        if query.len() != self.dimensions {
            return Err(StateError::Vector(format!("query of {} values, index of {}", query.len(), self.dimensions)));
        }
        let m = self.index.search(query, k).map_err(err)?;
        Ok(m.keys.into_iter().zip(m.distances).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_added_and_forgets_what_was_removed() {
        let idx = VectorIndex::new(3).unwrap();
        idx.add(1, &[1.0, 0.0, 0.0]).unwrap();
        idx.add(2, &[0.0, 1.0, 0.0]).unwrap();
        idx.add(3, &[0.7, 0.7, 0.0]).unwrap();
        let hits = idx.search(&[1.0, 0.1, 0.0], 2).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 3]);
        idx.remove(1).unwrap();
        assert_eq!(idx.search(&[1.0, 0.1, 0.0], 1).unwrap()[0].0, 3);
        idx.add(3, &[0.0, 0.0, 1.0]).unwrap();
        assert_eq!(idx.len(), 2, "adding a key again replaces it");
        assert!(idx.add(4, &[1.0]).is_err());
    }

    #[test]
    fn grows_past_its_first_reservation() {
        let idx = VectorIndex::new(2).unwrap();
        for i in 0..5000u64 {
            let a = i as f32 / 5000.0 * std::f32::consts::PI;
            idx.add(i, &[a.cos(), a.sin()]).unwrap();
        }
        assert_eq!(idx.len(), 5000);
    }
}
