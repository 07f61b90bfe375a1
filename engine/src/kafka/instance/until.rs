//! The end of a replay (`kafclaw replay`, [`InstanceOptions::until`](super::InstanceOptions)):
//! the source partitions still to finish, the end-of-partition events seen since the last
//! commit, and the quiet checks.
//!
//! A partition is done once it reported its end **and** a commit followed ([`Until::settle`]),
//! so a replay stops with everything it read committed. An end-of-partition event names only
//! the partition number: with several source topics it marks that partition of each, and the
//! replay also waits for the sources to be quiet for a moment. A broker that never reports a
//! partition's end (seen on Tansu now and then) is handled by a long quiet with every
//! partition assigned and nothing in flight.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Core;
use crate::kafka::tables::global::MULTI_TOPIC_QUIET;

/// Replay: how long no record may arrive before the sources count as read to their end even
/// without end-of-partition events.
const REPLAY_QUIET: Duration = Duration::from_secs(10);

/// Where a replay ends; inert for an instance that runs until stopped.
pub(super) struct Until {
    /// Source partitions still to finish; `None` runs until stopped.
    left: Option<HashSet<(String, i32)>>,
    /// Source partitions that reported their end since the last commit.
    at_end: Vec<(String, i32)>,
    /// The source topics read through the group (an end event marks a partition of each).
    topics: Vec<String>,
    /// When the last record arrived.
    last_record: Instant,
}

impl Until {
    /// Waits for the ends of `left` (of `topics`), or for nothing with `None`.
    pub(super) fn new(left: Option<HashSet<(String, i32)>>, topics: Vec<String>) -> Self {
        Until { left, at_end: Vec::new(), topics, last_record: Instant::now() }
    }

    /// A record arrived.
    pub(super) fn record_seen(&mut self) {
        self.last_record = Instant::now();
    }

    /// Partition `partition` reported its end (of whichever source topic: see the module doc).
    pub(super) fn partition_end(&mut self, partition: i32) {
        for t in &self.topics {
            self.at_end.push((t.clone(), partition));
        }
    }

    /// A commit went through (or there was nothing to commit): the partitions that reported
    /// their end before it are done.
    pub(super) fn settle(&mut self) {
        if let Some(left) = &mut self.left {
            for tp in self.at_end.drain(..) {
                left.remove(&tp);
            }
        }
    }

    /// Whether the replay is done. `idle` (asked only after a long quiet): every partition is
    /// assigned and nothing is in flight.
    pub(super) fn done(&self, idle: impl FnOnce() -> bool) -> bool {
        let Some(left) = &self.left else { return false };
        if left.is_empty() {
            return self.topics.len() == 1 || self.last_record.elapsed() >= MULTI_TOPIC_QUIET;
        }
        if self.last_record.elapsed() >= REPLAY_QUIET && idle() {
            tracing::warn!(
                waiting = ?self.left,
                "no end-of-partition seen for {REPLAY_QUIET:?} with nothing arriving; treating the sources as fully read"
            );
            return true;
        }
        false
    }
}

impl Core {
    /// Whether a replay is done: every source partition finished (see [`Until::done`]).
    pub(super) fn replay_done(&self) -> bool {
        self.until.done(|| self.stats.assigned.load(Ordering::Relaxed) > 0 && self.in_flight() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_done_after_its_end_and_a_commit() {
        let left = HashSet::from([("in".to_owned(), 0), ("in".to_owned(), 1)]);
        let mut u = Until::new(Some(left), vec!["in".to_owned()]);
        u.partition_end(0);
        assert!(!u.done(|| false));
        u.settle();
        assert!(!u.done(|| false), "partition 1 is still to finish");
        u.partition_end(1);
        u.settle();
        assert!(u.done(|| false));
    }

    #[test]
    fn an_instance_that_runs_until_stopped_is_never_done() {
        let mut u = Until::new(None, vec!["in".to_owned()]);
        u.partition_end(0);
        u.settle();
        assert!(!u.done(|| true));
    }
}
