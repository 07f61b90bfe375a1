//! Why an instance must stop: [`Fatal`], one variant per cause, kept by [`Core::fail`].
//!
//! The cause is a field of the core, not an error returned up the stack, because several of
//! the paths that hit it cannot return one: librdkafka's rebalance callbacks
//! (`InstanceContext::pre_rebalance`) reach [`Core::commit_or_abort`] and return nothing, the
//! producer's callbacks report through a shared `DeliveryCounter`, and a send
//! failing inside `emit` must stop the sends after it while the caller goes on. So the first
//! cause is kept, every step checks [`Core::stopping`] and does nothing more, and the poll loop
//! turns the cause into [`InstanceError::Fatal`](super::InstanceError) on its way out, after
//! aborting the open transaction: nothing is committed once the instance must stop.

use kafclaw_state::StateError;
use rdkafka::error::KafkaError;

use super::Core;
use crate::kafka::fault::RecordKind;
use crate::kafka::producer::ProducerFatal;
use crate::runtime::task::{BuildError, StateFailure};

/// Why the instance must stop. The messages are the instance's exit text (`kafka: <message>`).
#[derive(Debug, thiserror::Error)]
pub(super) enum Fatal {
    /// A transaction could not begin (e.g. fenced by a newer instance with the same
    /// transactional id).
    #[error("begin transaction: {0}")]
    Begin(KafkaError),
    /// A task's operators could not be built on its partition's first record.
    #[error(transparent)]
    Build(BuildError),
    /// The in-memory store of the global tables failed.
    #[error("global table: {0}")]
    GlobalTable(StateError),
    /// The in-memory store of the global tables failed while a record was processed.
    #[error("global table: {0}")]
    GlobalState(StateFailure),
    /// The committed offsets a restore starts from could not be read.
    #[error("reading committed offsets for a restore: {0}")]
    RestoreOffsets(KafkaError),
    /// Restoring state tables from their changelogs failed.
    #[error("restoring state: {0}")]
    Restore(String),
    /// The consumer reported an error retrying cannot mend (e.g. not authorized).
    #[error("consume: {0}")]
    Consume(KafkaError),
    /// A send failed for a cause retrying cannot mend (e.g. not authorized, fenced).
    #[error("sending a {kind:?} record to `{topic}` failed: {error}")]
    Send {
        /// What was sent.
        kind: RecordKind,
        /// Where to.
        topic: String,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// The producer's callbacks reported a failure retrying cannot mend: a fatal client error
    /// or a failed delivery (not authorized, fenced).
    #[error(transparent)]
    Producer(ProducerFatal),
    /// Deleting expired state (TTL tables) failed.
    #[error("sweeping expired state: {0}")]
    Sweep(String),
    /// Committing failed for a cause retrying cannot mend (e.g. fenced).
    #[error("commit: {0}")]
    Commit(KafkaError),
    /// The state store could not seal the epoch of a committed transaction.
    #[error("sealing state after a commit: {0}")]
    Seal(StateError),
    /// The open transaction could not be aborted.
    #[error("abort transaction: {0}")]
    Abort(KafkaError),
    /// The producer could not be created again after an abort.
    #[error("restarting the producer after an abort: {0}")]
    ProducerRestart(KafkaError),
    /// The assigned partitions could not be rewound to their committed offsets after an abort.
    #[error("rewinding after an abort failed: {0}")]
    Rewind(KafkaError),
    /// Too many aborts without a commit between them: a restart (by the orchestrator) starts
    /// from the last commit.
    #[error("{count} aborts in a row; the last: {last}")]
    TooManyAborts {
        /// Aborts since the last commit.
        count: u32,
        /// Why the last one happened.
        last: String,
    },
}

impl Core {
    /// The instance must stop: keeps the first cause (the only place that sets it). Nothing is
    /// committed from here on; the loop aborts the open transaction and returns the error.
    pub(super) fn fail(&mut self, why: Fatal) {
        match &self.fatal {
            None => {
                tracing::error!(error = %why, "the instance must stop; nothing more is committed");
                self.fatal = Some(why);
            }
            Some(first) => tracing::warn!(error = %why, first = %first, "a further failure while stopping"),
        }
    }

    /// Whether the instance must stop.
    pub(super) fn failed(&self) -> bool {
        self.fatal.is_some()
    }
}
