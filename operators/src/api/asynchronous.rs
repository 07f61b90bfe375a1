//! The asynchronous operator tier: operators whose work waits on the outside world (a model,
//! a tool). The task starts the work on the stream thread, the runtime's executor drives the
//! future, and the task finishes it on the stream thread when it completes, so state writes
//! (the response journal) and outputs stay in the transaction that is open at completion.
//!
//! Records with the same [`order_key`](AsyncOperator::order_key) are started one at a time, in
//! arrival order: a conversation's second message is sent to the model after the first one's
//! answer, while thousands of other keys are in flight.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use crate::api::operator::{Cause, Emit, Failure};
use crate::api::record::Record;
use crate::api::state::StateAccess;

/// The result of an asynchronous step, opaque to the runtime.
pub type Outcome = Box<dyn Any + Send>;

/// Work in flight.
pub type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What starting a record gave.
pub enum Started {
    /// Finished at once (a journal hit, a refused budget): finish it now.
    Ready(Outcome),
    /// Work to run; finish the record with its outcome.
    Pending(Pending),
}

/// An operator of the asynchronous tier.
pub trait AsyncOperator: Send {
    /// Records with equal keys are processed one at a time, in arrival order.
    fn order_key(&self, record: &Record) -> String {
        record.envelope.correlation_id.clone()
    }

    /// Prepares the operator to run (connects clients, reads secrets); called once when a
    /// runtime builds the task, never by `validate`.
    fn open(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Starts the work for `record` (state reads, e.g. a journal lookup, happen here).
    fn start(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<Started, Cause>;

    /// Starts the work for `record`, the record of **rank** `rank` among the records of its
    /// input that reached this operator: 0 for the first, 1 for the next (a `route` with
    /// `mode = "all"` joining back, a `window` closing several windows, two `inputs` sharing
    /// an upstream all bring several records of one input). The runtime counts ranks on
    /// arrival, in the task's deterministic walk, so a record has the same rank in every run
    /// and replay of its input. An operator that keys anything by its input (a journal, a tool
    /// call's idempotency key) must key it by the rank too, or two records of one input share
    /// an answer or an effect. Defaults to [`start`](Self::start), for operators that key
    /// nothing by input.
    fn start_ranked(&mut self, record: &Record, rank: u32, state: &mut dyn StateAccess) -> Result<Started, Cause> {
        let _ = rank;
        self.start(record, state)
    }

    /// Finishes `record` with its outcome: state writes and outputs.
    fn finish(
        &mut self,
        record: Record,
        outcome: Outcome,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure>;
}
