//! Runs the asynchronous work tasks start (model calls, tools) on a tokio runtime of its own
//! thread, and hands each outcome back to the stream thread, which finishes it in its task.
//! The stream thread never blocks on the outside world; how many calls are in flight is
//! bounded by each model's limiter and by the runtimes' in-flight caps.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use kafclaw_operators::api::asynchronous::Outcome;
use tracing::Instrument;

use super::task::Spawn;

/// An outcome for the task named `task`.
pub struct Done<K> {
    /// Which task started the work.
    pub task: K,
    /// The work's ticket in that task.
    pub ticket: u64,
    /// Its outcome.
    pub outcome: Outcome,
    /// The trace span the work was started in (the record's consumer span), which its
    /// outcome is finished in too; disabled when no traces are exported.
    pub span: tracing::Span,
}

/// The executor of one stream thread.
pub struct Executor<K> {
    handle: tokio::runtime::Handle,
    done_tx: Sender<Done<K>>,
    done_rx: Receiver<Done<K>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<K: Send + 'static> Executor<K> {
    /// Starts the executor's thread.
    pub fn new() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("kafclaw-async".into()).spawn(move || {
            rt.block_on(async {
                let _ = stop_rx.await;
            });
        })?;
        let (done_tx, done_rx) = channel();
        Ok(Self { handle, done_tx, done_rx, stop: Some(stop_tx), thread: Some(thread) })
    }

    /// Runs the work of `task`, in the current trace span.
    pub fn spawn(&self, task: K, work: Spawn) {
        let tx = self.done_tx.clone();
        let span = tracing::Span::current();
        self.handle.spawn(async move {
            let outcome = work.future.instrument(span.clone()).await;
            let _ = tx.send(Done { task, ticket: work.ticket, outcome, span });
        });
    }

    /// An outcome, if one is ready.
    pub fn try_next(&self) -> Option<Done<K>> {
        self.done_rx.try_recv().ok()
    }

    /// The next outcome, waiting up to `timeout`.
    pub fn next_within(&self, timeout: Duration) -> Option<Done<K>> {
        self.done_rx.recv_timeout(timeout).ok()
    }
}

impl<K> Drop for Executor<K> {
    fn drop(&mut self) {
        // Work still in flight is dropped with the runtime: its tasks are gone or aborted.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
