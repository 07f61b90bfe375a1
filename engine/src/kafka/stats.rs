//! Counters of a running instance, read by the health endpoint and the exit summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Live counters (relaxed atomics: monotonic figures for people, not for synchronisation).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records consumed.
    pub consumed: AtomicU64,
    /// Records produced to sinks.
    pub produced: AtomicU64,
    /// Records dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Inputs dropped as duplicates by dedup.
    pub deduplicated: AtomicU64,
    /// Transactions (or offset commits) completed.
    pub commits: AtomicU64,
    /// Transactions aborted.
    pub aborts: AtomicU64,
    /// Partitions currently assigned.
    pub assigned: AtomicU64,
    /// Set once the producer is initialised and the first assignment arrived.
    pub ready: AtomicBool,
    /// The Prometheus metrics (`/metrics`).
    pub metrics: crate::metrics::InstanceMetrics,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Records consumed.
    pub consumed: u64,
    /// Records produced to sinks.
    pub produced: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Inputs dropped as duplicates.
    pub deduplicated: u64,
    /// Commits.
    pub commits: u64,
    /// Aborts.
    pub aborts: u64,
    /// Partitions assigned now.
    pub assigned: u64,
    /// Ready to process.
    pub ready: bool,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> Snapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            consumed: l(&self.consumed),
            produced: l(&self.produced),
            dead_lettered: l(&self.dead_lettered),
            deduplicated: l(&self.deduplicated),
            commits: l(&self.commits),
            aborts: l(&self.aborts),
            assigned: l(&self.assigned),
            ready: self.ready.load(Ordering::Relaxed),
        }
    }
}
