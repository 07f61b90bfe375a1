//! The conformance suite every [`StateStore`] backend must pass. Backends call [`run_all`]
//! from their own tests with a constructor for a fresh, empty store.

use crate::{StateError, StateStore};

/// Runs every conformance check against fresh stores made by `make`. Panics on the first
/// violation, naming the check.
pub fn run_all<S: StateStore, F: Fn() -> S>(make: F) {
    put_get_delete(&mut make());
    partitions_are_isolated(&mut make());
    tables_are_isolated(&mut make());
    unknown_table_is_an_error(&mut make());
    scan_is_key_ordered(&mut make());
    extreme_partitions(&mut make());
    batches_apply_together(&mut make());
    checkpoints_follow_partitions(&mut make());
    ranges_are_half_open_and_partition_bound(&mut make());
    stats_count_keys_and_bytes(&mut make());
    clearing_a_table_spares_the_others(&mut make());
}

fn clearing_a_table_spares_the_others(s: &mut impl StateStore) {
    use crate::Batch;
    s.open_table("t").unwrap();
    s.open_table("tt").unwrap();
    s.put("t", 0, b"a", b"1").unwrap();
    s.put("t", 5, b"b", b"2").unwrap();
    s.put("tt", 0, b"a", b"kept").unwrap();
    s.apply(&Batch { writes: vec![], checkpoints: vec![("t".into(), 5, 9), ("tt".into(), 0, 3)] }).unwrap();
    s.clear_table("t").unwrap();
    assert!(
        s.scan_partition("t", 0).unwrap().is_empty() && s.scan_partition("t", 5).unwrap().is_empty(),
        "clear: emptied"
    );
    assert_eq!(s.checkpoint("t", 5).unwrap(), None, "clear: checkpoints go");
    s.put("t", 1, b"c", b"3").unwrap();
    assert_eq!(s.get("t", 1, b"c").unwrap().as_deref(), Some(&b"3"[..]), "clear: the table stays open");
    assert_eq!(s.get("tt", 0, b"a").unwrap().as_deref(), Some(&b"kept"[..]), "clear: other tables kept");
    assert_eq!(s.checkpoint("tt", 0).unwrap(), Some(3), "clear: other checkpoints kept");
}

fn ranges_are_half_open_and_partition_bound(s: &mut impl StateStore) {
    s.open_table("t").unwrap();
    for key in [&b"a"[..], b"b", b"ba", b"c", b"d"] {
        s.put("t", 3, key, b"v").unwrap();
    }
    s.put("t", 4, b"a", b"next partition").unwrap();
    s.put("t", u32::MAX, b"z", b"last partition").unwrap();
    let keys = |start: &[u8], end: Option<&[u8]>, p: u32| -> Vec<Vec<u8>> {
        s.scan_range("t", p, start, end).unwrap().into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(keys(b"b", Some(b"c"), 3), vec![b"b".to_vec(), b"ba".to_vec()], "ranges: half open");
    assert_eq!(keys(b"c", None, 3), vec![b"c".to_vec(), b"d".to_vec()], "ranges: open end stays in the partition");
    assert_eq!(keys(b"c", Some(b"b"), 3), Vec::<Vec<u8>>::new(), "ranges: empty when end <= start");
    assert_eq!(keys(b"", None, u32::MAX), vec![b"z".to_vec()], "ranges: last partition");
}

fn stats_count_keys_and_bytes(s: &mut impl StateStore) {
    use crate::PartitionStats;
    s.open_table("t").unwrap();
    s.put("t", 2, b"ab", b"123").unwrap();
    s.put("t", 2, b"c", b"").unwrap();
    s.put("t", 9, b"k", b"v").unwrap();
    assert_eq!(
        s.table_stats("t").unwrap(),
        vec![PartitionStats { partition: 2, keys: 2, bytes: 6 }, PartitionStats { partition: 9, keys: 1, bytes: 2 }],
        "stats_count_keys_and_bytes"
    );
}

fn batches_apply_together(s: &mut impl StateStore) {
    use crate::{Batch, Write};
    s.open_table("t").unwrap();
    s.put("t", 0, b"gone", b"x").unwrap();
    let w = |key: &[u8], value: Option<&[u8]>| Write {
        table: "t".into(),
        partition: 0,
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
    };
    let batch = Batch {
        writes: vec![w(b"a", Some(b"1")), w(b"a", Some(b"2")), w(b"gone", None), w(b"new-table-key", Some(b"v"))],
        checkpoints: vec![("t".into(), 0, 10), ("fresh".into(), 1, 5)],
    };
    s.apply(&batch).unwrap();
    assert_eq!(s.get("t", 0, b"a").unwrap().as_deref(), Some(&b"2"[..]), "batches_apply_together: last write wins");
    assert_eq!(s.get("t", 0, b"gone").unwrap(), None, "batches_apply_together: delete");
    assert_eq!(s.checkpoint("t", 0).unwrap(), Some(10));
    assert_eq!(s.checkpoint("fresh", 1).unwrap(), Some(5), "batches_apply_together: tables open as needed");
    assert!(s.tables().contains(&"fresh".to_owned()));
}

fn checkpoints_follow_partitions(s: &mut impl StateStore) {
    use crate::Batch;
    s.open_table("t").unwrap();
    assert_eq!(s.checkpoint("t", 4).unwrap(), None);
    s.apply(&Batch { writes: vec![], checkpoints: vec![("t".into(), 4, 1), ("t".into(), 5, 2)] }).unwrap();
    s.drop_partition("t", 4).unwrap();
    assert_eq!(s.checkpoint("t", 4).unwrap(), None, "checkpoints_follow_partitions: dropped");
    assert_eq!(s.checkpoint("t", 5).unwrap(), Some(2), "checkpoints_follow_partitions: kept");
}

fn put_get_delete(s: &mut impl StateStore) {
    s.open_table("t").unwrap();
    assert_eq!(s.get("t", 0, b"k").unwrap(), None, "put_get_delete: empty read");
    s.put("t", 0, b"k", b"v1").unwrap();
    s.put("t", 0, b"k", b"v2").unwrap();
    assert_eq!(s.get("t", 0, b"k").unwrap().as_deref(), Some(&b"v2"[..]), "put_get_delete: overwrite");
    s.delete("t", 0, b"k").unwrap();
    s.delete("t", 0, b"k").unwrap();
    assert_eq!(s.get("t", 0, b"k").unwrap(), None, "put_get_delete: deleted");
}

fn partitions_are_isolated(s: &mut impl StateStore) {
    s.open_table("t").unwrap();
    s.put("t", 1, b"k", b"one").unwrap();
    s.put("t", 2, b"k", b"two").unwrap();
    assert_eq!(s.get("t", 1, b"k").unwrap().as_deref(), Some(&b"one"[..]));
    s.drop_partition("t", 1).unwrap();
    assert_eq!(s.get("t", 1, b"k").unwrap(), None, "partitions_are_isolated: dropped");
    assert_eq!(s.get("t", 2, b"k").unwrap().as_deref(), Some(&b"two"[..]), "partitions_are_isolated: kept");
}

fn tables_are_isolated(s: &mut impl StateStore) {
    s.open_table("a").unwrap();
    s.open_table("b").unwrap();
    s.put("a", 0, b"k", b"a").unwrap();
    assert_eq!(s.get("b", 0, b"k").unwrap(), None, "tables_are_isolated");
}

fn unknown_table_is_an_error(s: &mut impl StateStore) {
    assert!(matches!(s.get("nope", 0, b"k"), Err(StateError::UnknownTable(t)) if t == "nope"));
    assert!(s.put("nope", 0, b"k", b"v").is_err());
}

fn scan_is_key_ordered(s: &mut impl StateStore) {
    s.open_table("t").unwrap();
    for key in [&b"b"[..], b"a", b"c", b""] {
        s.put("t", 7, key, key).unwrap();
    }
    s.put("t", 8, b"z", b"other partition").unwrap();
    let keys: Vec<Vec<u8>> = s.scan_partition("t", 7).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![b"".to_vec(), b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], "scan_is_key_ordered");
}

fn extreme_partitions(s: &mut impl StateStore) {
    s.open_table("t").unwrap();
    s.put("t", u32::MAX, b"k", b"max").unwrap();
    s.put("t", 0, b"k", b"min").unwrap();
    assert_eq!(s.scan_partition("t", u32::MAX).unwrap().len(), 1, "extreme_partitions: max");
    s.drop_partition("t", u32::MAX).unwrap();
    assert_eq!(s.get("t", 0, b"k").unwrap().as_deref(), Some(&b"min"[..]), "extreme_partitions: min kept");
}
