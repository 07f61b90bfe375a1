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

    /// Finishes `record` with its outcome: state writes and outputs.
    fn finish(
        &mut self,
        record: Record,
        outcome: Outcome,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure>;
}
