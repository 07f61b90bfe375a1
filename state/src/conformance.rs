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
