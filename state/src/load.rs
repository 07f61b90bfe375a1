//! Restored changelog records on their way into a store: one buffer per table-partition, in
//! changelog order, with the checkpoint they bring the partition to. The records share one
//! byte buffer (no allocation per record), so a restore can hold millions of them cheaply and a
//! backend can bulk-load them ([`StateStore::load`](crate::StateStore::load)).

use crate::batch::{Batch, Write};
use crate::key::decode_partition_key;

/// Where one record sits in the buffer.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Start of the stored (partition-prefixed) key.
    start: usize,
    /// Length of the stored key.
    key: u32,
    /// Length of the value; `None` for a delete.
    value: Option<u32>,
}

/// The restored records of one table-partition, in changelog order (a later record of a key
/// wins), and the changelog checkpoint they bring it to.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    table: String,
    partition: u32,
    data: Vec<u8>,
    slots: Vec<Slot>,
    /// The next changelog offset once these records are in the store (`None`: leave the
    /// partition's checkpoint as it is).
    pub checkpoint: Option<i64>,
}

impl Restored {
    /// An empty buffer for one table-partition.
    pub fn new(table: &str, partition: u32) -> Self {
        Self { table: table.to_owned(), partition, ..Self::default() }
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Adds one record: a value, or a delete (`None`).
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let start = self.data.len();
        // The stored layout of `encode_partition_key`, written in place.
        self.data.extend_from_slice(&self.partition.to_be_bytes());
        self.data.extend_from_slice(key);
        if let Some(v) = value {
            self.data.extend_from_slice(v);
        }
        self.slots.push(Slot { start, key: (key.len() + 4) as u32, value: value.map(|v| v.len() as u32) });
    }

    /// How many records are buffered.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no record is buffered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes buffered (stored keys and values).
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Forgets the records (keeping the memory) and the checkpoint.
    pub fn clear(&mut self) {
        self.data.clear();
        self.slots.clear();
        self.checkpoint = None;
    }

    fn record(&self, s: Slot) -> (&[u8], Option<&[u8]>) {
        let key_end = s.start + s.key as usize;
        let key = &self.data[s.start..key_end];
        (key, s.value.map(|v| &self.data[key_end..key_end + v as usize]))
    }

    /// The records as (stored key, value or `None` for a delete), in changelog order.
    pub fn records(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.slots.iter().map(|&s| self.record(s))
    }

    /// The latest record of every key, in stored-key order (what a sorted bulk load writes).
    pub fn latest_sorted(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut order: Vec<u32> = (0..self.slots.len() as u32).collect();
        // Stable: records of one key stay in changelog order, so the last of a run wins.
        order.sort_by(|&a, &b| self.record(self.slots[a as usize]).0.cmp(self.record(self.slots[b as usize]).0));
        let mut out: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(order.len());
        for i in order {
            let rec = self.record(self.slots[i as usize]);
            match out.last_mut() {
                Some(last) if last.0 == rec.0 => *last = rec,
                _ => out.push(rec),
            }
        }
        out
    }

    /// The records and checkpoints of `restored` as one [`Batch`] (for backends without a
    /// bulk path).
    pub fn to_batch(restored: &[Restored]) -> Batch {
        let mut batch = Batch::default();
        for r in restored {
            for (stored, value) in r.records() {
                let key = decode_partition_key(stored).map(|pk| pk.key.to_vec()).unwrap_or_default();
                batch.writes.push(Write {
                    table: r.table.clone(),
                    partition: r.partition,
                    key,
                    value: value.map(<[u8]>::to_vec),
                });
            }
            if let Some(c) = r.checkpoint {
                batch.checkpoints.push((r.table.clone(), r.partition, c));
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode_partition_key;

    #[test]
    fn records_keep_changelog_order_and_the_stored_layout() {
        let mut r = Restored::new("t", 7);
        r.push(b"b", Some(b"1"));
        r.push(b"a", None);
        r.push(b"b", Some(b"2"));
        let got: Vec<_> = r.records().collect();
        assert_eq!(got[0], (encode_partition_key(7, b"b").as_slice(), Some(&b"1"[..])));
        assert_eq!(got[1], (encode_partition_key(7, b"a").as_slice(), None));
        assert_eq!(r.len(), 3);
        let sorted = r.latest_sorted();
        assert_eq!(
            sorted,
            vec![
                (encode_partition_key(7, b"a").as_slice(), None),
                (encode_partition_key(7, b"b").as_slice(), Some(&b"2"[..]))
            ]
        );
        r.checkpoint = Some(10);
        let batch = Restored::to_batch(std::slice::from_ref(&r));
        assert_eq!(batch.writes.len(), 3);
        assert_eq!(batch.writes[2].key, b"b");
        assert_eq!(batch.checkpoints, vec![("t".to_owned(), 7, 10)]);
        r.clear();
        assert!(r.is_empty() && r.checkpoint.is_none() && r.bytes() == 0);
    }
}
