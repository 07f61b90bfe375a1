//! Vector indexes (cosine): what memory search runs on. Keys are u64 ids chosen by the
//! caller; vectors are f32 of the index's dimensions. The index lives in memory and is
//! rebuilt from the items table it indexes (after a restore or a replay).
//!
//! Small indexes are an exact scan ([`flat`]: one contiguous array, SIMD dot products), which
//! is both exact and faster than a graph there; once an index holds more than
//! [`VectorOptions::exact_up_to`] vectors it moves, once, to a usearch HNSW graph, searched
//! with an `ef` that grows with its size ([`expansion_for`]). Vectors are stored as f32 or,
//! with [`Quantization::I8`], as i8 (4× less memory, slightly lower recall). Figures:
//! docs/benchmarks.md, "Vector search" (`bench/src/bin/vectors.rs`).

mod flat;
mod kernels;

use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::StateError;
use flat::{Flat, Row, normalized, quantized};

/// How an index stores its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    /// 32-bit floats: exact values.
    #[default]
    F32,
    /// 8-bit integers, each vector scaled so its largest component is ±127 (cosine ignores
    /// the scale): a quarter of the memory.
    I8,
}

/// How an index is built and searched.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorOptions {
    /// How vectors are stored.
    pub quantization: Quantization,
    /// Up to this many vectors, search is an exact scan; past it, an HNSW graph is built.
    pub exact_up_to: usize,
    /// The graph's connectivity (HNSW `M`: links per node).
    pub connectivity: usize,
    /// Candidates kept while inserting into the graph (HNSW `ef_construction`).
    pub expansion_add: usize,
    /// Candidates kept while searching the graph (HNSW `ef_search`); `None`: by size
    /// ([`expansion_for`]).
    pub expansion_search: Option<usize>,
    /// With [`Quantization::I8`]: also keep every vector as f32 (memory: 1.25× an f32
    /// index's instead of 0.25×), scan those while the index is exact, and re-rank the i8
    /// graph's best [`RESCORE_OVERSAMPLING`] × k candidates by their exact f32 cosine: the
    /// recall of f32, at close to the speed of the i8 graph (as Qdrant's and usearch's
    /// "rescore"). No effect with f32.
    pub rescore: bool,
}

/// How many graph candidates per result a rescored search re-ranks (at least
/// [`RESCORE_MIN_CANDIDATES`]): 4 × k keeps the true top 10 among an i8 graph's candidates
/// at recall@10 ≥ 0.99 on all-MiniLM-L6-v2 embeddings (docs/benchmarks.md, "Vector search").
pub const RESCORE_OVERSAMPLING: usize = 4;
/// The fewest candidates a rescored search re-ranks.
pub const RESCORE_MIN_CANDIDATES: usize = 40;

/// Up to how many vectors a search of `quantization` vectors scans exactly by default. The
/// scan is exact, and at these sizes no slower than the default graph (M = 32, ef_search =
/// 256), which near-random embeddings (the hashing embedder) need for recall: 384-d, one core,
/// f32 1,344 queries/s at 10,000 (about 670 at 20,000), i8 4,749 at 10,000 (about 1,200 at
/// 40,000), against 359 of that graph at 10,000 (docs/benchmarks.md). Real sentence
/// embeddings reach recall@10 0.99 on a lighter graph sooner: `exact_up_to`, `ef_search` and
/// the connectivity are options.
pub fn exact_up_to_for(quantization: Quantization) -> usize {
    match quantization {
        Quantization::F32 => 20_000,
        Quantization::I8 => 40_000,
    }
}

impl Default for VectorOptions {
    fn default() -> Self {
        Self {
            quantization: Quantization::F32,
            exact_up_to: exact_up_to_for(Quantization::F32),
            connectivity: 32,
            expansion_add: 256,
            expansion_search: None,
            rescore: false,
        }
    }
}

impl VectorOptions {
    /// Whether the index keeps f32 originals to re-rank an i8 graph's candidates.
    fn rescores(&self) -> bool {
        self.rescore && self.quantization == Quantization::I8
    }
}

/// The graph's default `ef_search` for an index of `len` vectors: 256 (512 past 200,000),
/// which keeps recall@10 near 0.997 even on near-random vectors (the hashing embedder;
/// at 64 it fell to 0.41 on random vectors at 10,000). On all-MiniLM-L6-v2 sentence
/// embeddings, recall@10 ≥ 0.99 needs only 64 up to 12,000 vectors, 96 up to 50,000 and 128
/// up to 200,000 (M = 16; docs/benchmarks.md): set `ef_search` for that speed.
pub fn expansion_for(len: usize) -> usize {
    if len <= 200_000 { 256 } else { 512 }
}

/// Where the vectors are.
enum Store {
    /// The exact scan (f32 rows when rescoring).
    Flat(Flat),
    /// The HNSW graph, with the f32 originals its candidates are re-ranked by, when rescoring.
    Graph(usearch::Index, Option<Flat>),
}

/// A nearest-neighbour index: exact while small, HNSW when large.
pub struct VectorIndex {
    dimensions: usize,
    options: VectorOptions,
    /// The graph's `ef_search` when set by [`VectorIndex::set_expansion_search`] (0: from
    /// the options).
    expansion_search: AtomicUsize,
    store: RwLock<Store>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dimensions", &self.dimensions)
            .field("len", &self.len())
            .field("exact", &self.is_exact())
            .field("options", &self.options)
            .finish()
    }
}

fn err(e: impl std::fmt::Display) -> StateError {
    StateError::Vector(e.to_string())
}

impl VectorIndex {
    /// An empty cosine index of `dimensions`, with the default options.
    pub fn new(dimensions: usize) -> Result<Self, StateError> {
        Self::with_options(dimensions, VectorOptions::default())
    }

    /// An empty cosine index of `dimensions`.
    pub fn with_options(dimensions: usize, options: VectorOptions) -> Result<Self, StateError> {
        if dimensions == 0 {
            return Err(StateError::Vector("an index of 0 dimensions".into()));
        }
        let store = if options.exact_up_to == 0 {
            Store::Graph(
                new_graph(dimensions, &options, 0)?,
                options.rescores().then(|| Flat::new(dimensions, Quantization::F32)),
            )
        } else {
            Store::Flat(Flat::new(dimensions, flat_quantization(&options)))
        };
        Ok(Self { dimensions, options, expansion_search: AtomicUsize::new(0), store: RwLock::new(store) })
    }

    /// The vectors' length.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The options it was made with.
    pub fn options(&self) -> &VectorOptions {
        &self.options
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        match &*self.store.read().unwrap_or_else(|p| p.into_inner()) {
            Store::Flat(f) => f.len(),
            Store::Graph(g, _) => g.size(),
        }
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether searches are an exact scan (else the HNSW graph).
    pub fn is_exact(&self) -> bool {
        matches!(&*self.store.read().unwrap_or_else(|p| p.into_inner()), Store::Flat(_))
    }

    /// Adds (or replaces) the vector of `key`.
    pub fn add(&self, key: u64, vector: &[f32]) -> Result<(), StateError> {
        if vector.len() != self.dimensions {
            return Err(StateError::Vector(format!("vector of {} values, index of {}", vector.len(), self.dimensions)));
        }
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        match &mut *store {
            Store::Flat(f) => {
                f.add(key, vector);
                if f.len() > self.options.exact_up_to {
                    let graph = new_graph(self.dimensions, &self.options, f.len())?;
                    for (k, row) in f.rows() {
                        match (row, self.options.quantization) {
                            // Rescoring: the flat rows are the f32 originals; the graph is i8.
                            (Row::F32(v), Quantization::I8) => graph_add(&graph, k, Row::I8(&quantized(v)))?,
                            (row, _) => graph_add(&graph, k, row)?,
                        }
                    }
                    graph.change_expansion_search(self.expansion(graph.size()));
                    let originals = self
                        .options
                        .rescores()
                        .then(|| std::mem::replace(f, Flat::new(self.dimensions, Quantization::F32)));
                    *store = Store::Graph(graph, originals);
                }
                Ok(())
            }
            Store::Graph(g, originals) => {
                if g.contains(key) {
                    g.remove(key).map_err(err)?;
                }
                if g.size() + 1 > g.capacity() {
                    g.reserve((g.capacity() * 2).max(1024)).map_err(err)?;
                }
                let before = self.expansion(g.size());
                let unit = normalized(vector);
                match self.options.quantization {
                    Quantization::F32 => graph_add(g, key, Row::F32(&unit))?,
                    Quantization::I8 => graph_add(g, key, Row::I8(&quantized(&unit)))?,
                }
                let after = self.expansion(g.size());
                if after != before {
                    g.change_expansion_search(after);
                }
                // The originals follow the graph only once it took the vector (no drift on failure).
                if let Some(o) = originals {
                    o.add(key, vector);
                }
                Ok(())
            }
        }
    }

    /// Removes `key`, if present.
    pub fn remove(&self, key: u64) -> Result<(), StateError> {
        match &mut *self.store.write().unwrap_or_else(|p| p.into_inner()) {
            Store::Flat(f) => {
                f.remove(key);
                Ok(())
            }
            Store::Graph(g, originals) => {
                g.remove(key).map_err(err)?;
                if let Some(o) = originals {
                    o.remove(key);
                }
                Ok(())
            }
        }
    }

    /// The `k` nearest keys with their cosine distances (1 − cosine), nearest first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, StateError> {
        if query.len() != self.dimensions {
            return Err(StateError::Vector(format!("query of {} values, index of {}", query.len(), self.dimensions)));
        }
        match &*self.store.read().unwrap_or_else(|p| p.into_inner()) {
            Store::Flat(f) => Ok(f.search(query, k)),
            Store::Graph(g, originals) => {
                let candidates = match originals {
                    // Bounded by the graph's size: usearch allocates a result slot per candidate.
                    Some(_) => k.saturating_mul(RESCORE_OVERSAMPLING).max(RESCORE_MIN_CANDIDATES).min(g.size()),
                    None => k,
                };
                let m = match self.options.quantization {
                    Quantization::F32 => g.search(query, candidates),
                    Quantization::I8 => g.search(&quantized(query), candidates),
                }
                .map_err(err)?;
                match originals {
                    Some(o) => Ok(o.rescore(query, &m.keys, k)),
                    None => Ok(m.keys.into_iter().zip(m.distances).collect()),
                }
            }
        }
    }

    /// Sets the graph's `ef_search` from now on, in place of the options' (for tuning: the
    /// vector benchmark sweeps it over one built graph).
    pub fn set_expansion_search(&self, ef: usize) {
        self.expansion_search.store(ef.max(1), Ordering::Relaxed);
        if let Store::Graph(g, _) = &*self.store.write().unwrap_or_else(|p| p.into_inner()) {
            g.change_expansion_search(ef.max(1));
        }
    }

    fn expansion(&self, len: usize) -> usize {
        match self.expansion_search.load(Ordering::Relaxed) {
            0 => self.options.expansion_search.unwrap_or_else(|| expansion_for(len)),
            set => set,
        }
    }
}

/// How the exact scan stores rows: f32 when they are the originals of a rescored index.
fn flat_quantization(options: &VectorOptions) -> Quantization {
    if options.rescores() { Quantization::F32 } else { options.quantization }
}

fn new_graph(dimensions: usize, options: &VectorOptions, capacity: usize) -> Result<usearch::Index, StateError> {
    let index = usearch::Index::new(&usearch::IndexOptions {
        dimensions,
        metric: usearch::MetricKind::Cos,
        quantization: match options.quantization {
            Quantization::F32 => usearch::ScalarKind::F32,
            Quantization::I8 => usearch::ScalarKind::I8,
        },
        connectivity: options.connectivity,
        expansion_add: options.expansion_add,
        expansion_search: options.expansion_search.unwrap_or_else(|| expansion_for(capacity)),
        multi: false,
    })
    .map_err(err)?;
    index.reserve(capacity.next_power_of_two().max(1024)).map_err(err)?;
    Ok(index)
}

fn graph_add(graph: &usearch::Index, key: u64, row: Row<'_>) -> Result<(), StateError> {
    match row {
        Row::F32(v) => graph.add(key, v),
        Row::I8(v) => graph.add(key, v),
    }
    .map_err(err)
}

#[cfg(test)]
mod tests;
