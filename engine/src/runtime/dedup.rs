//! The dedup set of a Kafka source partition: the ids of envelopes already processed, bounded
//! (oldest forgotten first), transactional (ids seen in an aborted transaction are forgotten
//! again, so the rewound records are processed, not dropped). Kept in memory in this version;
//! the state issue moves it into a changelogged state table.

use std::collections::{HashSet, VecDeque};

/// Ids processed on one partition.
#[derive(Debug, Clone)]
pub struct SeenSet {
    capacity: usize,
    ids: HashSet<String>,
    order: VecDeque<String>,
    pending: Vec<String>,
}

impl SeenSet {
    /// A set remembering at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), ids: HashSet::new(), order: VecDeque::new(), pending: Vec::new() }
    }

    /// Records `id`; `false` when it was already seen (the record is a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        self.pending.push(id.to_owned());
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }

    /// The ids inserted since the last commit are now durable.
    pub fn commit(&mut self) {
        self.pending.clear();
    }

    /// Forgets the ids inserted since the last commit (their transaction aborted).
    pub fn rollback(&mut self) {
        for id in self.pending.drain(..) {
            if self.ids.remove(&id)
                && let Some(pos) = self.order.iter().rposition(|x| *x == id)
            {
                self.order.remove(pos);
            }
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_within_capacity() {
        let mut s = SeenSet::new(2);
        assert!(s.insert("a"));
        assert!(!s.insert("a"));
        assert!(s.insert("b"));
        assert!(s.insert("c"));
        assert!(s.insert("a"), "`a` was forgotten when `c` came in");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn rollback_forgets_only_the_open_transaction() {
        let mut s = SeenSet::new(10);
        s.insert("a");
        s.commit();
        s.insert("b");
        s.rollback();
        assert!(!s.insert("a"));
        assert!(s.insert("b"));
    }
}
