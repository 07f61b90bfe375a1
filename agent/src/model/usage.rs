//! What a model client has done in this process: counters kept by [`super::client`], read
//! as a [`UsageSnapshot`] (for `/stats` and run summaries).

use std::sync::atomic::{AtomicU64, Ordering};

/// What one model endpoint has done in this process (for `/stats` and run summaries).
#[derive(Debug, Default)]
pub struct ModelUsage {
    pub(super) calls: AtomicU64,
    pub(super) attempts: AtomicU64,
    pub(super) throttled: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) prompt_tokens: AtomicU64,
    pub(super) completion_tokens: AtomicU64,
    pub(super) retried_timeouts: AtomicU64,
    pub(super) retried_connections: AtomicU64,
    pub(super) retried_server_errors: AtomicU64,
    pub(super) retried_reported_errors: AtomicU64,
    pub(super) exhausted: AtomicU64,
    pub(super) duration_ms: AtomicU64,
    pub(super) first_chunk_ms: AtomicU64,
    pub(super) first_chunks: AtomicU64,
}

/// A copy of [`ModelUsage`], with the limiter's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageSnapshot {
    /// Calls answered.
    pub calls: u64,
    /// HTTP attempts (retries included).
    pub attempts: u64,
    /// 429 answers.
    pub throttled: u64,
    /// Calls that failed for good.
    pub failures: u64,
    /// Prompt tokens of the answered calls.
    pub prompt_tokens: u64,
    /// Completion tokens of the answered calls.
    pub completion_tokens: u64,
    /// Calls that may be in flight now (adaptive).
    pub concurrency_limit: u64,
    /// Most calls in flight at once.
    pub peak_in_flight: u64,
    /// Calls in flight now.
    pub in_flight: u64,
    /// Attempts retried because the endpoint did not answer in time.
    pub retried_timeouts: u64,
    /// Attempts retried because the connection failed.
    pub retried_connections: u64,
    /// Attempts retried on an HTTP 5xx or 408.
    pub retried_server_errors: u64,
    /// Attempts retried on an error reported inside a 200 answer.
    pub retried_reported_errors: u64,
    /// Calls whose attempts ran out on retryable failures (handed to a fallback, if any).
    pub exhausted: u64,
    /// Time spent in answered and failed calls, in milliseconds (retries and waits included).
    pub duration_ms: u64,
    /// Sum over successful attempts of the time from sending the request to the first chunk
    /// of the answer (for a streamed answer: the time to first token), in milliseconds.
    pub first_chunk_ms: u64,
    /// Successful attempts counted in `first_chunk_ms` (their mean is the ratio).
    pub first_chunks: u64,
}

impl ModelUsage {
    /// Counts one finished call: `Ok((attempts, prompt tokens, completion tokens))` when it
    /// was answered, `Err((attempts, exhausted))` when it failed for good.
    pub(super) fn count(&self, result: Result<(u32, u64, u64), (u32, bool)>) {
        let add = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        match result {
            Ok((attempts, prompt, completion)) => {
                add(&self.calls, 1);
                add(&self.attempts, u64::from(attempts));
                add(&self.prompt_tokens, prompt);
                add(&self.completion_tokens, completion);
            }
            Err((attempts, exhausted)) => {
                add(&self.failures, 1);
                add(&self.attempts, u64::from(attempts));
                add(&self.exhausted, u64::from(exhausted));
            }
        }
    }
}
