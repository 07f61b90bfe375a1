//! Injected state-store failures, for the tests that prove a broken store is never taken for a
//! bad record (`engine/tests`: local runs fail with exit 1, Kafka instances abort and rewind;
//! neither dead-letters). Debug builds only: a release build ignores the setting.
//!
//! `KAFCLAW_INJECT_STATE_FAILURE=<table>:<n>[@<skip>]` lets the first `skip` reads (`get` and
//! `scan`, default 0) of state table `<table>` in this process through, then fails the next
//! `n`, as a RocksDB read error would (`@<skip>` reaches a later read, such as a window's
//! close scan after its adds). A malformed value stops the command (exit 2) before it runs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable.
pub const ENV: &str = "KAFCLAW_INJECT_STATE_FAILURE";

#[derive(Debug)]
struct Plan {
    table: String,
    skip: u64,
    reads: u64,
    seen: AtomicU64,
}

fn parse(text: &str) -> Result<Plan, String> {
    let bad = || format!("{ENV}: `{text}` is not <table>:<n>[@<skip>] (n ≥ 1)");
    let (table, rest) = text.rsplit_once(':').ok_or_else(bad)?;
    let (n, skip) = rest.split_once('@').unwrap_or((rest, "0"));
    let reads: u64 = n.parse().map_err(|_| bad())?;
    let skip: u64 = skip.parse().map_err(|_| bad())?;
    if table.is_empty() || reads == 0 {
        return Err(bad());
    }
    Ok(Plan { table: table.to_owned(), skip, reads, seen: AtomicU64::new(0) })
}

/// Checks [`ENV`] when set; an error names what is wrong with its value. A release build
/// ignores the setting and says so.
pub fn check_env() -> Result<(), String> {
    match std::env::var(ENV) {
        Ok(v) if cfg!(debug_assertions) => parse(&v).map(|_| ()),
        Ok(_) => {
            tracing::warn!("{ENV} is set but this is a release build: no failure is injected");
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return None;
        }
        parse(&std::env::var(ENV).ok()?).ok()
    })
    .as_ref()
}

/// `Some(error text)` when this read of `table` is to fail.
pub(crate) fn read_failure(table: &str) -> Option<String> {
    let p = plan()?;
    if p.table != table {
        return None;
    }
    let n = p.seen.fetch_add(1, Ordering::Relaxed).checked_sub(p.skip)?;
    (n < p.reads).then(|| format!("injected read failure {} of {} ({ENV})", n + 1, p.reads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_are_refused() {
        let p = parse("in.dedup:3@2").unwrap();
        assert_eq!((p.table.as_str(), p.reads, p.skip), ("in.dedup", 3, 2));
        assert_eq!(parse("per-sender:1").unwrap().skip, 0);
        for bad in ["per-sender", "per-sender:x", "per-sender:0", ":1", "t:1@x", "t:-1"] {
            assert!(parse(bad).unwrap_err().contains("is not <table>"), "{bad}");
        }
    }
}
