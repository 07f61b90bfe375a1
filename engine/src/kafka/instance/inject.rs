//! Injected send failures, for the tests that prove no error path commits an input without
//! its records (`faults` in `engine/tests/kafka/`). Debug builds only: a release build ignores
//! the setting (and says so).
//!
//! `KAFCLAW_INJECT_SEND_FAILURE=<kind>:<n>[:<error>][,…]` fails the `n`-th send (1-based,
//! counted per kind over the instance's life) of `kind` = `output` | `changelog` |
//! `dead_letter` (counted over all the instance's stream threads) with `error` = `fail` (a retriable failure, the default), `auth` (topic
//! authorization failed: the instance stops) or `too_large` (the record's fault).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::kafka::fault::RecordKind;

/// The environment variable.
pub const ENV: &str = "KAFCLAW_INJECT_SEND_FAILURE";

/// One planned failure.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    kind: RecordKind,
    nth: u64,
    code: RDKafkaErrorCode,
}

/// The planned failures and the sends counted so far; its clones (one per stream thread)
/// share the counts.
#[derive(Debug, Default, Clone)]
pub(super) struct Injector {
    planned: Arc<Vec<Planned>>,
    sent: Arc<[AtomicU64; 3]>,
}

fn index(kind: RecordKind) -> usize {
    match kind {
        RecordKind::Output => 0,
        RecordKind::Changelog => 1,
        RecordKind::DeadLetter => 2,
    }
}

impl Injector {
    /// Reads [`ENV`]; an error names what is wrong with its value.
    pub(super) fn from_env() -> Result<Self, String> {
        match std::env::var(ENV) {
            Ok(v) if cfg!(debug_assertions) => Self::parse(&v),
            Ok(_) => {
                tracing::warn!("{ENV} is set but this is a release build: no failure is injected");
                Ok(Self::default())
            }
            Err(_) => Ok(Self::default()),
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        let mut planned = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || format!("{ENV}: `{item}` is not <output|changelog|dead_letter>:<n>[:fail|auth|too_large]");
            let mut parts = item.split(':');
            let kind = match parts.next() {
                Some("output") => RecordKind::Output,
                Some("changelog") => RecordKind::Changelog,
                Some("dead_letter") => RecordKind::DeadLetter,
                _ => return Err(bad()),
            };
            let nth = parts.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0).ok_or_else(bad)?;
            let code = match parts.next() {
                None | Some("fail") => RDKafkaErrorCode::Fail,
                Some("auth") => RDKafkaErrorCode::TopicAuthorizationFailed,
                Some("too_large") => RDKafkaErrorCode::MessageSizeTooLarge,
                Some(_) => return Err(bad()),
            };
            if parts.next().is_some() {
                return Err(bad());
            }
            planned.push(Planned { kind, nth, code });
        }
        Ok(Self { planned: Arc::new(planned), sent: Arc::default() })
    }

    /// Counts a send of `kind`; the error to fail it with, when one is planned.
    pub(super) fn fail(&mut self, kind: RecordKind) -> Option<KafkaError> {
        if self.planned.is_empty() {
            return None;
        }
        let n = self.sent[index(kind)].fetch_add(1, Ordering::Relaxed) + 1;
        let hit = self.planned.iter().find(|p| p.kind == kind && p.nth == n)?;
        tracing::warn!(?kind, nth = n, code = ?hit.code, "injected send failure");
        Some(KafkaError::MessageProduction(hit.code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_the_nth_send_of_its_kind_only() {
        let mut i = Injector::parse("changelog:2, output:1:auth").unwrap();
        assert!(i.fail(RecordKind::Changelog).is_none());
        assert!(i.fail(RecordKind::DeadLetter).is_none());
        let e = i.fail(RecordKind::Changelog).expect("the second changelog send");
        assert_eq!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::Fail));
        assert!(i.fail(RecordKind::Changelog).is_none());
        let e = i.fail(RecordKind::Output).expect("the first output send");
        assert_eq!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::TopicAuthorizationFailed));
    }

    #[test]
    fn bad_settings_are_named() {
        for bad in ["outputs:1", "output", "output:0", "output:x", "output:1:boom", "output:1:fail:x"] {
            let e = Injector::parse(bad).unwrap_err();
            assert!(e.contains(ENV) && e.contains(bad), "{e}");
        }
    }
}
