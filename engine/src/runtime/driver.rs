//! The loop that drives tasks, one for every runtime: a local run's sub-topology threads,
//! `kafclaw test` and the Kafka instance all feed records and finish asynchronous work through
//! a [`Driver`].
//!
//! The driver owns the [`Executor`] that runs the work tasks start (model calls), the
//! [`TaskOutput`] the tasks write into, and the cap on work in flight. What differs between
//! the runtimes is behind [`Tasks`]: how work names its task (a local thread has one task, a
//! test one per sub-topology, the Kafka instance one per (sub-topology, partition,
//! generation), so the outcomes of a dropped task are ignored), and what is done with a task's
//! output after each record or outcome ([`Tasks::deliver`]: the Kafka instance sends it into
//! the open transaction; local mode and tests keep it, and stop at a state failure).
//!
//! Order is the tasks' own: the driver finishes outcomes one at a time, delivering each
//! one's output before the next, and starts the work a record or an outcome began only
//! after its output was delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafclaw_operators::RawView;

use super::executor::{Done, Executor};
use super::state::TaskStore;
use super::task::{Task, TaskOutput};

/// Most asynchronous calls in flight per driver (a local sub-topology's thread, a Kafka
/// instance) before reading pauses. The models' own limits bound what is actually sent; this
/// bounds what waits in memory.
pub const MAX_IN_FLIGHT: usize = 10_000;

/// How long one wait lasts while the work in flight is at the cap (the wait is repeated).
const CAP_WAIT: Duration = Duration::from_millis(100);

/// The tasks a [`Driver`] works for, named by `K`, and where their output goes.
pub trait Tasks<K> {
    /// Why [`Tasks::deliver`] stops the driver.
    type Error;

    /// The task `key` names and the store it works on, when its work is to go on now; `None`
    /// drops an outcome (the task was dropped since it started the work, or the runtime is
    /// stopping).
    fn task(&mut self, key: &K) -> Option<(&mut Task, &mut TaskStore)>;

    /// Asynchronous work in flight over all the tasks.
    fn in_flight(&self) -> usize;

    /// Takes what the task `key` output for one record or one outcome (its records, dead
    /// letters, changelog writes, state failure; not the work it started, which the driver
    /// runs). What it leaves in `out` stays buffered for the runtime ([`Driver::output`]).
    /// `Err` stops the driver at once: the work the task started is not run.
    fn deliver(&mut self, key: &K, out: &mut TaskOutput) -> Result<(), Self::Error>;

    /// Whether the runtime is stopping: the driver stops waiting for work in flight.
    fn stopped(&self) -> bool {
        false
    }
}

/// How long [`Driver::drain`] waits for the work in flight.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// Until this instant, however the work progresses (a revoke or a shutdown must not hang).
    Until(Instant),
    /// As long as outcomes keep arriving, at most this long apart (a local run waits for its
    /// last model calls, however many there are).
    Idle(Duration),
}

/// Feeds tasks, runs the asynchronous work they start, and finishes it in them.
pub struct Driver<K> {
    executor: Executor<K>,
    out: TaskOutput,
    max_in_flight: usize,
}

impl<K: Clone + Send + 'static> Driver<K> {
    /// A driver whose reading pauses while `max_in_flight` pieces of work are in flight; starts
    /// the executor's thread.
    pub fn new(max_in_flight: usize) -> std::io::Result<Self> {
        Ok(Self { executor: Executor::new()?, out: TaskOutput::default(), max_in_flight })
    }

    /// What the tasks output and [`Tasks::deliver`] left buffered.
    pub fn output(&mut self) -> &mut TaskOutput {
        &mut self.out
    }

    /// Runs one raw record read by `source` (plan index) from `location` through `task`,
    /// **without** running the work it starts: that stays in the output's `spawned`, for the
    /// caller to drop (the Kafka instance's global tables). Returns the output.
    pub fn process(
        &mut self,
        task: &mut Task,
        source: usize,
        location: &Arc<str>,
        raw: RawView<'_>,
        store: &mut TaskStore,
    ) -> &mut TaskOutput {
        task.process_raw(source, location, raw, store, &mut self.out);
        &mut self.out
    }

    /// Runs one raw record read by `source` from `location` through the task `key` names,
    /// delivers its output and starts the work it began. `Ok(false)`: `tasks` has no such task
    /// now, and nothing was done.
    pub fn feed<T: Tasks<K>>(
        &mut self,
        tasks: &mut T,
        key: K,
        source: usize,
        location: &Arc<str>,
        raw: RawView<'_>,
    ) -> Result<bool, T::Error> {
        let Some((task, store)) = tasks.task(&key) else { return Ok(false) };
        task.process_raw(source, location, raw, store, &mut self.out);
        tasks.deliver(&key, &mut self.out)?;
        self.spawn(&key);
        Ok(true)
    }

    /// Runs the punctuations of the task `key` names that are due at `now_ms` (wall clock, ms
    /// since the epoch), delivers their output and starts the work it began. `Ok(true)` when
    /// they produced something (records, dead letters, state writes or work); `Ok(false)`
    /// when not, when none was due, or when `tasks` has no such task now.
    pub fn punctuate<T: Tasks<K>>(&mut self, tasks: &mut T, key: K, now_ms: i64) -> Result<bool, T::Error> {
        let Some((task, store)) = tasks.task(&key) else { return Ok(false) };
        if !task.punctuation_due(now_ms) {
            return Ok(false);
        }
        let before = self.out.records.len() + self.out.dead_letters.len() + self.out.changelog.len();
        task.punctuate(now_ms, store, &mut self.out);
        let out = &self.out;
        let produced = out.records.len() + out.dead_letters.len() + out.changelog.len() > before
            || !out.spawned.is_empty()
            || out.state_failure.is_some();
        tasks.deliver(&key, &mut self.out)?;
        self.spawn(&key);
        Ok(produced)
    }

    /// Finishes the outcomes that have arrived, waiting up to `wait` for the first; then, while
    /// the work in flight is at the cap (and `tasks` is not stopping), waits for more: reading
    /// pauses. Outcomes of tasks `tasks` no longer has are dropped.
    pub fn finish_ready<T: Tasks<K>>(&mut self, wait: Duration, tasks: &mut T) -> Result<(), T::Error> {
        if tasks.in_flight() == 0 {
            return Ok(());
        }
        self.finish_arrived(wait, tasks)?;
        while tasks.in_flight() >= self.max_in_flight && !tasks.stopped() {
            self.finish_arrived(CAP_WAIT, tasks)?;
        }
        Ok(())
    }

    /// Waits for the work in flight, finishing it, until none is left, `tasks` stops, or the
    /// patience runs out. Returns how much is still in flight (0: all finished).
    pub fn drain<T: Tasks<K>>(&mut self, patience: Patience, tasks: &mut T) -> Result<usize, T::Error> {
        while tasks.in_flight() > 0 && !tasks.stopped() {
            let wait = match patience {
                Patience::Until(deadline) => deadline.saturating_duration_since(Instant::now()),
                Patience::Idle(idle) => idle,
            };
            if wait.is_zero() {
                break;
            }
            if self.finish_arrived(wait, tasks)? == 0 && matches!(patience, Patience::Idle(_)) {
                break;
            }
        }
        Ok(tasks.in_flight())
    }

    /// Finishes the outcomes that have arrived, waiting up to `wait` for the first. Returns how
    /// many arrived (finished or dropped).
    fn finish_arrived<T: Tasks<K>>(&mut self, wait: Duration, tasks: &mut T) -> Result<usize, T::Error> {
        let first = if wait.is_zero() { self.executor.try_next() } else { self.executor.next_within(wait) };
        let Some(first) = first else { return Ok(0) };
        self.finish(first, tasks)?;
        let mut arrived = 1;
        while let Some(done) = self.executor.try_next() {
            self.finish(done, tasks)?;
            arrived += 1;
        }
        Ok(arrived)
    }

    /// Finishes one outcome in its task (when the task still exists), delivers what that
    /// output and starts the work it began.
    fn finish<T: Tasks<K>>(&mut self, done: Done<K>, tasks: &mut T) -> Result<(), T::Error> {
        // In the span the work was started in: the work this outcome starts stays in its trace.
        let _in = done.span.clone().entered();
        let Some((task, store)) = tasks.task(&done.task) else { return Ok(()) };
        task.complete(done.ticket, done.outcome, store, &mut self.out);
        tasks.deliver(&done.task, &mut self.out)?;
        self.spawn(&done.task);
        Ok(())
    }

    /// Hands the work the task `key` started to the executor.
    fn spawn(&mut self, key: &K) {
        for work in self.out.spawned.drain(..) {
            self.executor.spawn(key.clone(), work);
        }
    }
}
