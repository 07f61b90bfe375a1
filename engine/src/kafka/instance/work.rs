//! The instance's side of the [`Driver`](crate::runtime::Driver): the core as the driver's
//! [`Tasks`], and the two steps that wait for asynchronous work (model calls): finishing what
//! completed at the top of each turn of the loop, and draining the work in flight before a
//! revoke or a shutdown.
//!
//! Work is named by (sub-topology, partition, task generation): the outcome of work started
//! by a task that was dropped since (revoked, or cleared by an abort) is ignored, and so is
//! every outcome once the instance is stopping. An outcome is finished inside the open
//! transaction (begun for it if none is), and its output is sent at once ([`Core::emit`]).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::{Core, Instance, TaskKey};
use crate::kafka::stats::Stats;
use crate::runtime::TaskStore;
use crate::runtime::driver::{Patience, Tasks};
use crate::runtime::task::{Task, TaskOutput};

impl Tasks<TaskKey> for Core {
    type Error = Infallible;

    fn task(&mut self, &(sub, partition, generation): &TaskKey) -> Option<(&mut Task, &mut TaskStore)> {
        if self.stopping() || self.task_gen.get(&(sub, partition)) != Some(&generation) || !self.begin() {
            return None;
        }
        let task = self.tasks.get_mut(&(sub, partition))?;
        Some((task, &mut self.store))
    }

    fn in_flight(&self) -> usize {
        Core::in_flight(self)
    }

    /// Sends the output into the open transaction.
    fn deliver(&mut self, _: &TaskKey, out: &mut TaskOutput) -> Result<(), Infallible> {
        Stats::add(&self.stats.deduplicated, std::mem::take(&mut out.deduplicated));
        self.emit(out);
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stopping()
    }
}

impl Core {
    /// Asynchronous work in flight over all tasks.
    pub(super) fn in_flight(&self) -> usize {
        self.tasks.values().map(Task::in_flight).sum()
    }

    /// The generation of the task of (`sub`, `partition`), which names its work.
    pub(super) fn task_key(&self, sub: usize, partition: i32) -> TaskKey {
        (sub, partition, self.task_gen.get(&(sub, partition)).copied().unwrap_or_default())
    }
}

impl Instance {
    /// The loop's first step: finishes the asynchronous work that completed (pausing for it
    /// while too much is in flight); returns how long the next poll may wait: until the commit
    /// is due, at most 100 ms, and 2 ms while work is in flight.
    pub(super) fn finish_ready(&mut self) -> Duration {
        let core = &mut self.core;
        let mut wait = core.next_commit.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        if core.in_flight() > 0 {
            // Outcomes arrive on the executor's channel: poll briefly, then finish them.
            wait = wait.min(Duration::from_millis(2));
        }
        let Ok(()) = self.driver.finish_ready(Duration::ZERO, core);
        wait
    }

    /// Waits (up to `timeout`) for all asynchronous work in flight, finishing it.
    pub(super) fn drain_in_flight(&mut self, timeout: Duration) {
        let Ok(left) = self.driver.drain(Patience::Until(Instant::now() + timeout), &mut self.core);
        if left > 0 && !self.core.stopping() {
            tracing::warn!(in_flight = left, "asynchronous work still in flight; its inputs will be processed again");
        }
    }
}
