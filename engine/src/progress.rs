//! Progress of long jobs (restoring state, replaying topics): a progress bar (indicatif) when
//! standard error is a terminal, a structured log line every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often progress is logged when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of one job.
pub struct Progress {
    what: &'static str,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    last_log: Instant,
}

impl Progress {
    /// Starts a job of `total` records.
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(what);
            bar
        });
        Self { what, bar, total, done: 0, last_log: Instant::now() }
    }

    /// Sets how many records are done.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if done > self.total {
            // The total was an estimate (broker watermarks); grow it rather than overflow.
            self.total = done;
            if let Some(bar) = &self.bar {
                bar.set_length(done);
            }
        }
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                tracing::info!(job = self.what, done, total = self.total, "progress");
                self.last_log = Instant::now();
            }
            None => {}
        }
    }

    /// Adds `n` done records.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// Ends the job.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
