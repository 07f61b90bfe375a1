//! The instance's asynchronous work (model calls): handing what tasks start to the executor,
//! finishing outcomes on the stream thread inside the open transaction, and draining the work
//! in flight before a revoke or a shutdown.

use std::time::{Duration, Instant};

use super::{Core, TaskKey};
use crate::runtime::executor::Done;
use crate::runtime::task::{Task, TaskOutput};

/// Most asynchronous calls in flight per instance before polling pauses.
const MAX_IN_FLIGHT: usize = 10_000;

impl Core {
    /// The loop's first step: finishes the asynchronous work that completed (pausing for it
    /// while too much is in flight); returns how long the next poll may wait: until the commit
    /// is due, at most 100 ms, and 2 ms while work is in flight.
    pub(super) fn finish_ready(&mut self) -> Duration {
        let mut wait = self.next_commit.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        if self.in_flight() > 0 {
            // Outcomes arrive on the executor's channel: poll briefly, then finish them.
            wait = wait.min(Duration::from_millis(2));
            self.complete_ready(Duration::ZERO);
        }
        while self.in_flight() >= MAX_IN_FLIGHT && !self.failed() {
            self.complete_ready(Duration::from_millis(100));
        }
        wait
    }

    /// Hands the work a task started to the executor.
    pub(super) fn spawn(&mut self, out: &mut TaskOutput, sub: usize, partition: i32) {
        if out.spawned.is_empty() {
            return;
        }
        let generation = self.task_gen.get(&(sub, partition)).copied().unwrap_or_default();
        for work in out.spawned.drain(..) {
            self.executor.spawn((sub, partition, generation), work);
        }
    }

    /// Asynchronous work in flight over all tasks.
    pub(super) fn in_flight(&self) -> usize {
        self.tasks.values().map(Task::in_flight).sum()
    }

    /// Finishes one completed piece of asynchronous work in its task (if the task still exists).
    pub(super) fn complete(&mut self, done: Done<TaskKey>) {
        let (sub, partition, generation) = done.task;
        if self.stopping() || self.task_gen.get(&(sub, partition)) != Some(&generation) {
            return;
        }
        if !self.begin() {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        if let Some(task) = self.tasks.get_mut(&(sub, partition)) {
            task.complete(done.ticket, done.outcome, &mut self.store, &mut out);
        }
        self.spawn(&mut out, sub, partition);
        self.emit(&mut out);
        self.out = out;
    }

    /// Finishes what has completed, waiting up to `wait` for the first.
    pub(super) fn complete_ready(&mut self, wait: Duration) {
        let first = if wait.is_zero() { self.executor.try_next() } else { self.executor.next_within(wait) };
        let Some(first) = first else { return };
        self.complete(first);
        while let Some(done) = self.executor.try_next() {
            self.complete(done);
        }
    }

    /// Waits (up to `timeout`) for all asynchronous work in flight, finishing it.
    pub(super) fn drain_in_flight(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.in_flight() > 0 && !self.stopping() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    in_flight = self.in_flight(),
                    "asynchronous work still in flight; its inputs will be processed again"
                );
                return;
            }
            self.complete_ready(left.min(Duration::from_millis(100)));
        }
    }
}
