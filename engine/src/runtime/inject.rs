//! Injected state-store failures, for the tests that prove a broken store is never taken for a
//! bad record (`engine/tests`: local runs fail with exit 1, Kafka instances abort and rewind;
//! neither dead-letters). Debug builds only: a release build ignores the setting.
//!
//! `KAFCLAW_INJECT_STATE_FAILURE=<table>:<n>` fails the first `n` reads (`get` and `scan`) of
//! state table `<table>` in this process, as a RocksDB read error would.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable.
pub const ENV: &str = "KAFCLAW_INJECT_STATE_FAILURE";

struct Plan {
    table: String,
    reads: u64,
    failed: AtomicU64,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return None;
        }
        let text = std::env::var(ENV).ok()?;
        let (table, n) = text.rsplit_once(':')?;
        Some(Plan { table: table.to_owned(), reads: n.parse().ok()?, failed: AtomicU64::new(0) })
    })
    .as_ref()
}

/// `Some(error text)` when this read of `table` is to fail.
pub(crate) fn read_failure(table: &str) -> Option<String> {
    let p = plan()?;
    if p.table != table {
        return None;
    }
    let n = p.failed.fetch_add(1, Ordering::Relaxed);
    (n < p.reads).then(|| format!("injected read failure {} of {} ({ENV})", n + 1, p.reads))
}
