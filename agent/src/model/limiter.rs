//! Adaptive concurrency for one model endpoint (additive increase, multiplicative decrease):
//! a 429 halves how many calls may be in flight, each success raises it by about one per
//! window, up to the configured maximum. So a rate-limited provider slows one operator down
//! instead of failing records or restarting anything.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
struct Window {
    limit: f64,
    in_flight: usize,
}

/// Bounds the calls in flight to one endpoint.
#[derive(Debug)]
pub struct Limiter {
    max: usize,
    window: Mutex<Window>,
    freed: Notify,
    peak: AtomicUsize,
}

/// One call's slot; freed when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.window.lock().unwrap_or_else(|p| p.into_inner()).in_flight -= 1;
        self.limiter.freed.notify_waiters();
    }
}

impl Limiter {
    /// A limiter allowing up to `max` calls in flight (at least 1), starting at `max`.
    pub fn new(max: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            max,
            window: Mutex::new(Window { limit: max as f64, in_flight: 0 }),
            freed: Notify::new(),
            peak: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            // Created before the check: `notify_waiters` reaches it even before it is polled.
            let freed = self.freed.notified();
            {
                let mut w = self.lock();
                if (w.in_flight as f64) < w.limit.floor().max(1.0) {
                    w.in_flight += 1;
                    self.peak.fetch_max(w.in_flight, Ordering::Relaxed);
                    return Permit { limiter: self.clone() };
                }
            }
            freed.await;
        }
    }

    /// A call succeeded: allow a little more.
    pub fn succeeded(&self) {
        let mut w = self.lock();
        w.limit = (w.limit + 1.0 / w.limit.max(1.0)).min(self.max as f64);
        drop(w);
        self.freed.notify_waiters();
    }

    /// The endpoint throttled (429): halve what may be in flight.
    pub fn throttled(&self) {
        let mut w = self.lock();
        w.limit = (w.limit / 2.0).max(1.0);
    }

    /// How many calls may be in flight now.
    pub fn limit(&self) -> usize {
        self.lock().limit.floor() as usize
    }

    /// The most calls ever in flight at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn halves_on_throttle_and_recovers_on_success() {
        let l = Limiter::new(8);
        l.throttled();
        assert_eq!(l.limit(), 4);
        l.throttled();
        l.throttled();
        l.throttled();
        assert_eq!(l.limit(), 1, "never below one");
        for _ in 0..40 {
            l.succeeded();
        }
        assert_eq!(l.limit(), 8, "back to the maximum, not past it");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waits_for_a_free_slot() {
        let l = Limiter::new(1);
        let first = l.acquire().await;
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the second call waits");
        drop(first);
        let _second = waiter.await.unwrap();
        assert_eq!(l.peak(), 1);
    }
}
