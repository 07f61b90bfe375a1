//! Read-mostly clients for `kafclaw doctor` and `kafclaw tap`, built from the runtime's own
//! [`ClientSettings`] so they connect exactly as an instance does:
//!
//! - [`cluster`]: the metadata handshake (with librdkafka's own reasons for a failed TLS or
//!   SASL handshake), topic partition counts and `cleanup.policy`;
//! - [`probe`]: the broker's features measured on a probe topic of its own (transactions,
//!   idempotence, aborted records under `read_committed`, transactional offset commits,
//!   compaction settings, group protocols), deleted afterwards;
//! - [`groups`]: a consumer group's state, members, committed offsets and high watermarks;
//! - [`follow`]: follow a topic's records (no consumer group, no commits).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};

pub mod cluster;
pub mod follow;
pub mod groups;
pub mod probe;

pub use super::settings::ClientSettings;

/// How long one broker call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A client context that keeps what librdkafka reports (errors and warnings, with their
/// reasons): a failed TLS or SASL handshake shows there, not in the call that timed out.
#[derive(Clone, Default)]
pub struct Capture {
    seen: Arc<Mutex<Vec<String>>>,
    delivered: Arc<AtomicUsize>,
}

impl Capture {
    /// What librdkafka reported so far, oldest first, duplicates removed.
    pub fn reasons(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<String> = Vec::new();
        for s in seen.iter() {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// How many records a producer with this context has had acknowledged.
    pub fn delivered(&self) -> usize {
        self.delivered.load(Ordering::Relaxed)
    }

    fn push(&self, s: String) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() < 64 {
            seen.push(kafclaw_operators::api::secrets::redact(&s).into_owned());
        }
    }
}

impl ClientContext for Capture {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", level = level as i32, fac, "{log_message}");
        // A debug line is kept when it says what the broker lacks (`debug = cgrp` on a
        // KIP-848 consumer logs "ConsumerGroupHeartbeatRequest not supported by broker").
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) || log_message.contains("not supported by broker") {
            self.push(format!("{fac}: {log_message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Capture {}

impl ProducerContext for Capture {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => self.push(format!("delivery failed: {e}")),
        }
    }
}

/// Inspection errors.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// librdkafka refused the configuration or a call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A call did not complete; librdkafka's reasons, when it gave any.
    #[error("{0}")]
    Failed(String),
}

/// Runs an admin future on a throw-away current-thread runtime (the admin client's API is
/// async; everything else here is blocking).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, InspectError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InspectError::Failed(format!("runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// A name no other probe uses: `<prefix>-<pid>-<nanoseconds>`.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}
