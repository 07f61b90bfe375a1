//! Interactive queries over a store's committed state: what `kafclaw state inspect` and
//! `kafclaw state get` show, served by the instance's HTTP endpoint. Reads go to the store
//! under the open epoch, so nothing of an uncommitted transaction is ever served.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use kafclaw_state::{StateStore, decode_expiring};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One table, as `state inspect` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableReport {
    /// Table name.
    pub table: String,
    /// Keys over all local partitions.
    pub keys: u64,
    /// Bytes of keys and values over all local partitions.
    pub bytes: u64,
    /// Entry time to live (ms), when the table has one.
    pub ttl_ms: Option<i64>,
    /// Per partition.
    pub partitions: Vec<PartitionReport>,
    /// A few keys, from the first partitions.
    pub sample_keys: Vec<String>,
}

/// One partition of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Partition.
    pub partition: u32,
    /// Keys.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// One value of a key, as `state get` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The partition holding it.
    pub partition: u32,
    /// The value: JSON when it is JSON, text when it is UTF-8, hex otherwise.
    pub value: Value,
    /// When the entry expires (ms since the Unix epoch, event time), for TTL tables.
    pub expires_at_ms: Option<i64>,
}

/// What can go wrong with a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No such table in this instance's store.
    #[error("no state table `{0}` here (tables: {1})")]
    UnknownTable(String, String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

/// Answers queries; the instance implements it over its store.
pub trait StateQuery: Send + Sync {
    /// Every table, with up to `samples` sample keys each.
    fn inspect(&self, samples: usize) -> Result<Vec<TableReport>, QueryError>;
    /// The committed values of `key` in `table`, one per local partition holding it.
    fn get(&self, table: &str, key: &[u8]) -> Result<Vec<KeyValue>, QueryError>;
}

/// Where a running instance puts its [`StateQuery`] once its store is open; the HTTP endpoint
/// (started before) reads it from here.
#[derive(Clone, Default)]
pub struct QuerySlot(Arc<OnceLock<Arc<dyn StateQuery>>>);

impl std::fmt::Debug for QuerySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "QuerySlot(set)" } else { "QuerySlot(empty)" })
    }
}

impl QuerySlot {
    /// Installs the query (the first call wins).
    pub fn set(&self, q: Arc<dyn StateQuery>) {
        let _ = self.0.set(q);
    }

    /// The query, once installed.
    pub fn get(&self) -> Option<&Arc<dyn StateQuery>> {
        self.0.get()
    }
}

fn show(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
        Err(_) => Value::String(format!("0x{}", hex_of(bytes))),
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn known(store: &dyn StateStore, table: &str) -> Result<(), QueryError> {
    let tables = store.tables();
    if tables.iter().any(|t| t == table) {
        Ok(())
    } else {
        Err(QueryError::UnknownTable(table.to_owned(), tables.join(", ")))
    }
}

/// `state inspect` over a store; `ttls` names the tables with a TTL.
pub fn inspect(
    store: &dyn StateStore,
    ttls: &HashMap<String, i64>,
    samples: usize,
) -> Result<Vec<TableReport>, QueryError> {
    let err = |e: kafclaw_state::StateError| QueryError::Store(e.to_string());
    let mut out = Vec::new();
    for table in store.tables() {
        let stats = store.table_stats(&table).map_err(err)?;
        let mut sample_keys = Vec::new();
        for s in &stats {
            if sample_keys.len() >= samples {
                break;
            }
            for (k, _) in
                store.scan_partition(&table, s.partition).map_err(err)?.into_iter().take(samples - sample_keys.len())
            {
                sample_keys.push(match std::str::from_utf8(&k) {
                    Ok(t) => t.to_owned(),
                    Err(_) => format!("0x{}", hex_of(&k)),
                });
            }
        }
        out.push(TableReport {
            keys: stats.iter().map(|s| s.keys).sum(),
            bytes: stats.iter().map(|s| s.bytes).sum(),
            ttl_ms: ttls.get(&table).copied(),
            partitions: stats
                .iter()
                .map(|s| PartitionReport { partition: s.partition, keys: s.keys, bytes: s.bytes })
                .collect(),
            sample_keys,
            table,
        });
    }
    Ok(out)
}

/// `state get` over a store.
pub fn get(
    store: &dyn StateStore,
    ttls: &HashMap<String, i64>,
    table: &str,
    key: &[u8],
) -> Result<Vec<KeyValue>, QueryError> {
    known(store, table)?;
    let err = |e: kafclaw_state::StateError| QueryError::Store(e.to_string());
    let mut out = Vec::new();
    for s in store.table_stats(table).map_err(err)? {
        let Some(stored) = store.get(table, s.partition, key).map_err(err)? else { continue };
        let (value, expires_at_ms) = if ttls.contains_key(table) {
            let (at, v) = decode_expiring(&stored).map_err(|e| QueryError::Store(e.to_string()))?;
            (show(v), Some(at))
        } else {
            (show(&stored), None)
        };
        out.push(KeyValue { partition: s.partition, value, expires_at_ms });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafclaw_state::{MemoryStore, encode_expiring};

    #[test]
    fn reports_tables_and_values_as_they_are_stored() {
        let mut s = MemoryStore::new();
        s.open_table("counts").unwrap();
        s.open_table("seen").unwrap();
        s.put("counts", 1, b"alice", b"3").unwrap();
        s.put("counts", 2, b"bob", b"{\"sum\":2}").unwrap();
        s.put("seen", 0, b"id-1", &encode_expiring(99, b"")).unwrap();
        let ttls = HashMap::from([("seen".to_owned(), 10)]);
        let r = inspect(&s, &ttls, 5).unwrap();
        assert_eq!(r[0].table, "counts");
        assert_eq!((r[0].keys, r[0].bytes, r[0].ttl_ms), (2, 6 + 12, None));
        assert_eq!(r[0].sample_keys, vec!["alice", "bob"]);
        assert_eq!(r[1].ttl_ms, Some(10));
        let v = get(&s, &ttls, "counts", b"bob").unwrap();
        assert_eq!(v, vec![KeyValue { partition: 2, value: serde_json::json!({"sum": 2}), expires_at_ms: None }]);
        let v = get(&s, &ttls, "seen", b"id-1").unwrap();
        assert_eq!(v[0].expires_at_ms, Some(99));
        assert!(get(&s, &ttls, "counts", b"carol").unwrap().is_empty());
        assert!(matches!(get(&s, &ttls, "nope", b"k"), Err(QueryError::UnknownTable(..))));
    }
}
