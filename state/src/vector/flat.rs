//! The exact scan: every vector in one contiguous array, each query compared with all of
//! them. Below a few thousand vectors it beats the HNSW graph (no pointer chasing, one
//! streaming pass), and it is exact.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::Quantization;
use super::kernels::{self, DotF32, DotI8};

/// Vectors stored as rows (unit length for f32; for i8, scaled so the largest component is
/// ±127, with the row's norm kept beside it).
pub(crate) struct Flat {
    dimensions: usize,
    quantization: Quantization,
    keys: Vec<u64>,
    slots: HashMap<u64, usize>,
    f32s: Vec<f32>,
    i8s: Vec<i8>,
    /// For i8 rows: each row's Euclidean norm.
    norms: Vec<f32>,
    dot_f32: DotF32,
    dot_i8: DotI8,
}

/// A vector scaled to unit length (a zero vector stays zero).
pub(crate) fn normalized(vector: &[f32]) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 { vector.iter().map(|x| x / norm).collect() } else { vector.to_vec() }
}

/// A vector as i8, scaled so its largest component is ±127 (cosine ignores the scale).
pub(crate) fn quantized(vector: &[f32]) -> Vec<i8> {
    let max = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { 127.0 / max } else { 0.0 };
    vector.iter().map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8).collect()
}

fn norm_i8(row: &[i8]) -> f32 {
    (row.iter().map(|x| i32::from(*x) * i32::from(*x)).sum::<i32>() as f32).sqrt()
}

/// A hit ordered by score, the worst on top of the heap.
struct Hit(f32, u64);

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl Flat {
    pub(crate) fn new(dimensions: usize, quantization: Quantization) -> Self {
        Self {
            dimensions,
            quantization,
            keys: Vec::new(),
            slots: HashMap::new(),
            f32s: Vec::new(),
            i8s: Vec::new(),
            norms: Vec::new(),
            dot_f32: kernels::dot_f32(),
            dot_i8: kernels::dot_i8(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The stored keys with their vectors as the graph takes them (unit f32 or scaled i8).
    pub(crate) fn rows(&self) -> impl Iterator<Item = (u64, Row<'_>)> {
        let d = self.dimensions;
        self.keys.iter().enumerate().map(move |(slot, key)| {
            let row = match self.quantization {
                Quantization::F32 => Row::F32(&self.f32s[slot * d..(slot + 1) * d]),
                Quantization::I8 => Row::I8(&self.i8s[slot * d..(slot + 1) * d]),
            };
            (*key, row)
        })
    }

    /// Adds or replaces `key`'s vector.
    pub(crate) fn add(&mut self, key: u64, vector: &[f32]) {
        let d = self.dimensions;
        let slot = match self.slots.get(&key) {
            Some(s) => *s,
            None => {
                let s = self.keys.len();
                self.keys.push(key);
                self.slots.insert(key, s);
                match self.quantization {
                    Quantization::F32 => self.f32s.resize((s + 1) * d, 0.0),
                    Quantization::I8 => {
                        self.i8s.resize((s + 1) * d, 0);
                        self.norms.push(0.0);
                    }
                }
                s
            }
        };
        match self.quantization {
            Quantization::F32 => self.f32s[slot * d..(slot + 1) * d].copy_from_slice(&normalized(vector)),
            Quantization::I8 => {
                let q = quantized(vector);
                self.norms[slot] = norm_i8(&q);
                self.i8s[slot * d..(slot + 1) * d].copy_from_slice(&q);
            }
        }
    }

    /// Removes `key`, moving the last row into its place.
    pub(crate) fn remove(&mut self, key: u64) {
        let Some(slot) = self.slots.remove(&key) else { return };
        let d = self.dimensions;
        let last = self.keys.len() - 1;
        if slot != last {
            let moved = self.keys[last];
            self.keys[slot] = moved;
            self.slots.insert(moved, slot);
            match self.quantization {
                Quantization::F32 => self.f32s.copy_within(last * d..(last + 1) * d, slot * d),
                Quantization::I8 => {
                    self.i8s.copy_within(last * d..(last + 1) * d, slot * d);
                    self.norms[slot] = self.norms[last];
                }
            }
        }
        self.keys.pop();
        self.f32s.truncate(last * d);
        self.i8s.truncate(if self.quantization == Quantization::I8 { last * d } else { 0 });
        self.norms.truncate(if self.quantization == Quantization::I8 { last } else { 0 });
    }

    /// The `k` nearest keys with their cosine distances (1 − cosine), nearest first.
    pub(crate) fn search(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if k == 0 {
            return Vec::new();
        }
        let d = self.dimensions;
        let mut heap: BinaryHeap<Hit> = BinaryHeap::with_capacity(k + 1);
        let mut offer = |score: f32, key: u64| {
            if heap.len() < k {
                heap.push(Hit(score, key));
            } else if heap.peek().is_some_and(|worst| score > worst.0) {
                heap.pop();
                heap.push(Hit(score, key));
            }
        };
        match self.quantization {
            Quantization::F32 => {
                let q = normalized(query);
                for (row, key) in self.f32s.chunks_exact(d).zip(&self.keys) {
                    offer((self.dot_f32)(row, &q), *key);
                }
            }
            Quantization::I8 => {
                let q = quantized(query);
                let qn = norm_i8(&q);
                for ((row, key), norm) in self.i8s.chunks_exact(d).zip(&self.keys).zip(&self.norms) {
                    let denom = qn * norm;
                    let score = if denom > 0.0 { (self.dot_i8)(row, &q) as f32 / denom } else { 0.0 };
                    offer(score, *key);
                }
            }
        }
        let mut hits: Vec<(u64, f32)> = heap.into_iter().map(|Hit(score, key)| (key, 1.0 - score)).collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits
    }
}

impl Flat {
    /// `keys` (those stored; others are skipped) re-ranked by their exact cosine to `query`:
    /// the best `k` with their distances (1 − cosine), nearest first. For rescoring a graph's
    /// candidates against the f32 originals (an f32 scan: its rows are those).
    pub(crate) fn rescore(&self, query: &[f32], keys: &[u64], k: usize) -> Vec<(u64, f32)> {
        debug_assert_eq!(self.quantization, Quantization::F32, "originals are f32 rows");
        let d = self.dimensions;
        let q = normalized(query);
        let mut hits: Vec<(u64, f32)> = keys
            .iter()
            .filter_map(|key| self.slots.get(key).map(|slot| (*key, *slot)))
            .map(|(key, slot)| {
                let score = (self.dot_f32)(&self.f32s[slot * d..(slot + 1) * d], &q);
                (key, 1.0 - score)
            })
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        hits
    }
}

/// One stored row.
pub(crate) enum Row<'a> {
    /// Unit length.
    F32(&'a [f32]),
    /// Scaled to ±127.
    I8(&'a [i8]),
}
