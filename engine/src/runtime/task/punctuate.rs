//! Wall-clock punctuation of a task (Kafka Streams' `PunctuationType.WALL_CLOCK_TIME`): the
//! operators that ask for it ([`punctuation_interval`]) are called about every
//! interval while the task exists, whether records arrive or not, and what they emit goes
//! downstream like a record's outputs, in the same transaction as their state writes.
//!
//! [`punctuation_interval`]: kafclaw_operators::SyncOperator::punctuation_interval

use std::sync::Arc;

use kafclaw_operators::Origin;
use kafclaw_operators::api::operator::Cause;
use kafclaw_operators::envelope::derive_trace_id;

use super::super::slots::{Input, async_ordinal_base, input_of};
use super::super::state::{TaskState, TaskStore};
use super::{Stage, Task, TaskOutput, state_failed};

impl Task {
    /// Whether an operator of this task punctuates ([`kafclaw_operators::SyncOperator::punctuate`]).
    pub fn punctuates(&self) -> bool {
        !self.punctuators.is_empty()
    }

    /// Whether a punctuation is due at `now_ms` (wall clock, ms since the epoch).
    pub fn punctuation_due(&self, now_ms: i64) -> bool {
        self.punctuators.iter().any(|&(_, _, due)| due <= now_ms)
    }

    /// Runs the punctuations due at `now_ms`, in plan order, and pushes what they emit
    /// downstream like a record's outputs (outputs of the operator at plan index `n` count
    /// their ordinals from `async_ordinal_base(n)`, a range a synchronous operator's records
    /// never use). State writes are attributed to a synthetic input,
    /// `punctuate:<operator>` at offset `now_ms`, for the changelog's headers.
    pub fn punctuate(&mut self, now_ms: i64, store: &mut TaskStore, out: &mut TaskOutput) {
        for k in 0..self.punctuators.len() {
            let (node, interval, due) = self.punctuators[k];
            if due > now_ms {
                continue;
            }
            self.punctuators[k].2 = now_ms.saturating_add(interval);
            let name = self.plan.nodes[node].name.clone();
            let location: Arc<str> = format!("punctuate:{name}").into();
            let origin = Arc::new(Origin {
                trace_id: derive_trace_id(&location, self.partition, now_ms),
                source: name,
                location,
                partition: self.partition,
                offset: now_ms,
                line: None,
                input_id: None,
                input_span_id: None,
            });
            let Stage::Operator(op) = &mut self.stages[node] else { unreachable!("punctuators are operators") };
            let mut state = task_state!(self, store, out, origin.clone());
            match op.punctuate(now_ms, self.partition, &mut state, &mut self.emit) {
                Ok(()) => {
                    let inputs = self.emit_inputs();
                    self.push_emitted(node, async_ordinal_base(node));
                    self.run(store, out);
                    for input in inputs {
                        if !self.slots.holds(&input) {
                            self.ordinals.forget(&input);
                        }
                    }
                }
                Err(Cause::State(error)) => {
                    let _ = self.emit.drain().count();
                    state_failed(out, format!("operator:{}", self.plan.nodes[node].name), &origin, error);
                    return;
                }
                Err(Cause::Record(message)) => {
                    let _ = self.emit.drain().count();
                    tracing::warn!(operator = %self.plan.nodes[node].name, partition = self.partition, error = %message, "punctuation failed");
                }
            }
        }
    }

    /// The inputs of the records emitted and not yet pushed downstream.
    fn emit_inputs(&mut self) -> Vec<Input> {
        let emitted: Vec<_> = self.emit.drain().collect();
        let mut inputs = Vec::with_capacity(emitted.len());
        for (port, record) in emitted {
            let input = input_of(&record);
            if !inputs.contains(&input) {
                inputs.push(input);
            }
            self.emit.emit(port, record);
        }
        inputs
    }
}
