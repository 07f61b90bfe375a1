//! Tokens per minute for one model endpoint: a token bucket refilled continuously. A call
//! takes its estimated tokens before it is sent (waiting while the bucket is short), and the
//! estimate is corrected with the usage the endpoint reports, so a provider's tokens-per-minute
//! limit is respected instead of answered with 429s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A tokens-per-minute limit.
#[derive(Debug)]
pub struct TokenRate {
    per_minute: f64,
    bucket: Mutex<Bucket>,
}

impl TokenRate {
    /// A full bucket of `per_minute` tokens.
    pub fn new(per_minute: u64) -> Self {
        let per_minute = per_minute.max(1) as f64;
        Self { per_minute, bucket: Mutex::new(Bucket { tokens: per_minute, at: Instant::now() }) }
    }

    fn refill(&self, b: &mut Bucket) {
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_minute / 60.0).min(self.per_minute);
        b.at = now;
    }

    /// How long until `tokens` can be taken (zero: taken now).
    fn try_take(&self, tokens: f64) -> Duration {
        let tokens = tokens.min(self.per_minute);
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut b);
        if b.tokens >= tokens {
            b.tokens -= tokens;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((tokens - b.tokens) * 60.0 / self.per_minute)
        }
    }

    /// Takes `tokens`, waiting for the bucket to hold them (a call bigger than the whole
    /// minute's allowance waits for a full bucket).
    pub async fn take(&self, tokens: u64) {
        loop {
            let wait = self.try_take(tokens as f64);
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Corrects a call's estimate with what it really used (`used - estimated` tokens more, or
    /// back into the bucket when it used fewer). The debt is at most one minute's allowance:
    /// `used` is what the endpoint reports, up to `u64::MAX`, and the wait it makes must stay
    /// a wait (not a panic converting it to a `Duration`, nor forever).
    pub fn settle(&self, estimated: u64, used: u64) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut b);
        b.tokens = (b.tokens + estimated as f64 - used as f64).clamp(-self.per_minute, self.per_minute);
    }
}

/// A call's token estimate before it is sent: about 4 characters per prompt token, plus the
/// completion cap (or 256).
pub fn estimate(prompt_chars: usize, max_tokens: Option<u32>) -> u64 {
    (prompt_chars / 4) as u64 + u64::from(max_tokens.unwrap_or(256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn waits_for_the_bucket_to_refill() {
        let r = TokenRate::new(600); // 10 tokens a second
        r.take(590).await;
        let started = Instant::now();
        r.take(20).await; // 10 short: about one second
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    }

    /// Found by fuzzing (operators/tests/fuzz/): an answer reporting `u64::MAX` total
    /// tokens made the next call's wait too big for a `Duration` (a panic).
    #[test]
    fn a_huge_reported_usage_makes_a_bounded_wait() {
        let r = TokenRate::new(1);
        r.settle(1, u64::MAX);
        let wait = r.try_take(1.0);
        assert!(wait > Duration::from_secs(60) && wait <= Duration::from_secs(120), "{wait:?}");
    }

    #[test]
    fn settling_corrects_the_estimate() {
        let r = TokenRate::new(1000);
        assert_eq!(r.try_take(800.0), Duration::ZERO);
        r.settle(800, 100); // it used 100: 700 come back
        assert_eq!(r.try_take(850.0), Duration::ZERO);
        assert!(r.try_take(200.0) > Duration::ZERO);
    }
}
