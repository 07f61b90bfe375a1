//! A task: one sub-topology on one input partition. Its synchronous operators are fused: each
//! raw record is decoded once and pushed through the operators to the sinks by plain calls.
//! The task does no I/O; the runtime (local or Kafka, through its [`super::Driver`]) feeds it
//! and drains its output, so every runtime runs the same operator code.
//!
//! A record's way through, in the order of this file: **decode** ([`Task::process_raw`]: the
//! envelope, the origin, the source's stage), the **fused walk** ([`Task::process`]: a stack of
//! steps, operator after operator; asynchronous operators park the record in their slots,
//! [`AsyncSlots`], and [`Task::complete`] resumes the walk with the outcome), **stamping** (at a
//! sink: the deterministic id, trace context and causation).

use std::collections::HashMap;
use std::sync::Arc;

use kafclaw_operators::api::asynchronous::{AsyncOperator, Outcome, Pending, Started};
use kafclaw_operators::api::kind::Built;

use kafclaw_operators::api::kind::SourceStage;
use kafclaw_operators::api::operator::{Cause, Failure};
use kafclaw_operators::api::state::StateError;
use kafclaw_operators::envelope::{ENVELOPE_VERSION, derive_span_id, derive_trace_id, deterministic_id};
use kafclaw_operators::{DeadLetter, Emit, Envelope, Origin, RawView, Record, StateAccess, SyncOperator};

use super::slots::{AsyncSlots, Input, Ordinals, Slot, async_ordinal_base, input_of};
use super::state::{ChangelogWrite, TaskState, TaskStore};
use crate::compiler::registry::Role;
use crate::compiler::{PhysicalPlan, plan::SubTopology};
use crate::metrics::OperatorCounters;

enum Stage {
    Absent,
    Source,
    Operator(Box<dyn SyncOperator>),
    Async(Box<dyn AsyncOperator>),
    Sink,
}

/// Asynchronous work the runtime must run: when `future` completes, hand its outcome to
/// [`Task::complete`] with the same `ticket`.
pub struct Spawn {
    /// Names the work within its task.
    pub ticket: u64,
    /// The work.
    pub future: Pending,
}

impl std::fmt::Debug for Spawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawn").field("ticket", &self.ticket).finish_non_exhaustive()
    }
}

/// A task's view of state for one record. A macro rather than a method, so the borrows stay
/// field by field (the operator being run is borrowed from `self.stages` meanwhile).
macro_rules! task_state {
    ($task:ident, $store:ident, $out:ident, $origin:expr) => {
        TaskState {
            store: &mut *$store,
            partition: $task.partition,
            origin: $origin,
            changelog: &mut $out.changelog,
            ttls: &$task.ttls,
            now_ms: $task.stream_time,
        }
    };
}

// Wall-clock punctuation: `Task::punctuates`, `Task::punctuation_due`, `Task::punctuate`.
mod punctuate;

/// Records the first state failure of the batch (later ones follow from it).
fn state_failed(out: &mut TaskOutput, stage: String, origin: &Arc<Origin>, error: StateError) {
    if out.state_failure.is_none() {
        out.state_failure = Some(StateFailure { stage, origin: origin.clone(), error });
    }
}

/// A stack entry: (node to run, node the record came from, record, ordinal base).
type Step = (usize, usize, Record, u32);

/// One output record, stamped, with the coordinates of the input it came from.
#[derive(Debug, Clone)]
pub struct Output {
    /// Plan index of the sink.
    pub sink: usize,
    /// The envelope.
    pub envelope: Envelope,
    /// The input it was derived from.
    pub origin: Arc<Origin>,
}

/// What a task produced for the records fed to it since the last drain.
#[derive(Debug, Default)]
pub struct TaskOutput {
    /// Outputs in emission order.
    pub records: Vec<Output>,
    /// Inputs dropped as duplicates by a source's dedup set.
    pub deduplicated: u64,
    /// Records that failed.
    pub dead_letters: Vec<DeadLetter>,
    /// State writes, for the changelogs.
    pub changelog: Vec<ChangelogWrite>,
    /// Asynchronous work started, for the runtime to run.
    pub spawned: Vec<Spawn>,
    /// The first state-store failure met (the store's fault, not a record's): what was
    /// produced since the last commit must not be committed. Kafka mode aborts the
    /// transaction and rewinds; a local run stops with exit 1. Never dead-lettered.
    pub state_failure: Option<StateFailure>,
}

impl TaskOutput {
    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.dead_letters.is_empty()
            && self.changelog.is_empty()
            && self.spawned.is_empty()
            && self.state_failure.is_none()
    }
}

/// A state table could not be read or written while a stage processed an input.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{stage}: {error} (input {}:{}@{})", .origin.location, .origin.partition, .origin.offset)]
pub struct StateFailure {
    /// `operator:<name>` or `source:<name>`.
    pub stage: String,
    /// The input being processed.
    pub origin: Arc<Origin>,
    /// What the store said.
    pub error: StateError,
}

/// A runnable task.
pub struct Task {
    plan: Arc<PhysicalPlan>,
    stages: Vec<Stage>,
    emit: Emit,
    stack: Vec<Step>,
    /// Output ordinals of the inputs being stamped.
    ordinals: Ordinals,
    partition: i32,
    /// The stage of each source that has one (a deduplicating Kafka source's dedup set).
    source_stages: HashMap<usize, Box<dyn SourceStage>>,
    /// TTL (ms) of the task's tables that have one.
    ttls: HashMap<String, i64>,
    /// Highest event time seen (ms); drives TTL expiry. Tracked only with TTL tables.
    stream_time: i64,
    /// The input of the last record, which sweep tombstones are attributed to.
    last_origin: Option<Arc<Origin>>,
    /// Asynchronous work: in flight, queued, and the inputs it holds.
    slots: AsyncSlots,
    /// Records into and out of each operator, when the runtime keeps metrics.
    counters: Option<Arc<OperatorCounters>>,
    /// The operators that punctuate: (plan index, interval in ms, next due, ms since the epoch).
    punctuators: Vec<(usize, i64, i64)>,
}

/// A task could not be built (an operator's options failed to compile).
#[derive(Debug, thiserror::Error)]
#[error("operator `{operator}`: {message}")]
pub struct BuildError {
    /// The operator.
    pub operator: String,
    /// Why.
    pub message: String,
}

impl Task {
    /// Builds the task of sub-topology `sub` for `partition`.
    pub fn new(plan: Arc<PhysicalPlan>, sub: &SubTopology, partition: i32) -> Result<Self, BuildError> {
        let mut stages: Vec<Stage> = (0..plan.nodes.len()).map(|_| Stage::Absent).collect();
        for &i in &sub.nodes {
            let node = &plan.nodes[i];
            stages[i] = match node.role {
                // A source built as an operator (a `schedule`) makes its records by punctuation;
                // records read from its input still go straight downstream.
                Role::Source => match node.config.build(&node.name, &plan.resources) {
                    Ok(Built::Sync(op)) => Stage::Operator(op),
                    Ok(_) => Stage::Source,
                    Err(errs) => {
                        let message = errs.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
                        return Err(BuildError { operator: node.name.to_string(), message });
                    }
                },
                Role::Sink => Stage::Sink,
                Role::Operator => match node.config.build(&node.name, &plan.resources) {
                    Ok(Built::Sync(op)) => Stage::Operator(op),
                    Ok(Built::Async(mut op)) => {
                        op.open().map_err(|message| BuildError { operator: node.name.to_string(), message })?;
                        Stage::Async(op)
                    }
                    Err(errs) => {
                        let message = errs.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
                        return Err(BuildError { operator: node.name.to_string(), message });
                    }
                    Ok(Built::Edge) => {
                        return Err(BuildError { operator: node.name.to_string(), message: "not an operator".into() });
                    }
                },
            };
        }
        let mut source_stages = HashMap::new();
        for &s in &sub.sources {
            match plan.nodes[s].config.source_stage(&plan.nodes[s].name) {
                Ok(Some(stage)) => {
                    source_stages.insert(s, stage);
                }
                Ok(None) => {}
                Err(errs) => {
                    let message = errs.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
                    return Err(BuildError { operator: plan.nodes[s].name.to_string(), message });
                }
            }
        }
        let punctuators = sub
            .nodes
            .iter()
            .filter_map(|&i| match &stages[i] {
                Stage::Operator(op) => op.punctuation_interval().map(|d| (i, d.as_millis().max(1) as i64, i64::MIN)),
                _ => None,
            })
            .collect();
        let ttls = sub
            .nodes
            .iter()
            .flat_map(|&i| plan.nodes[i].config.tables(&plan.nodes[i].name))
            .filter_map(|t| t.ttl_ms.map(|ttl| (t.name, ttl)))
            .collect();
        Ok(Self {
            plan,
            stages,
            emit: Emit::default(),
            stack: Vec::new(),
            ordinals: Ordinals::default(),
            partition,
            source_stages,
            ttls,
            stream_time: i64::MIN,
            last_origin: None,
            slots: AsyncSlots::default(),
            counters: None,
            punctuators,
        })
    }

    /// Counts the records into and out of each operator with `counters`.
    pub fn count_with(&mut self, counters: Arc<OperatorCounters>) {
        self.counters = Some(counters);
    }

    /// Asynchronous work in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.in_flight()
    }

    /// The lowest offset of `location` whose processing is not finished (in flight or queued
    /// behind a busy key): offsets may be committed only below it.
    pub fn first_unfinished(&self, location: &str) -> Option<i64> {
        self.slots.first_unfinished(location)
    }

    /// The partition this task works.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Decodes one raw record read by `source` (plan index) from `location` and pushes it
    /// through the operators. Outputs and dead letters are appended to `out`.
    pub fn process_raw(
        &mut self,
        source: usize,
        location: &Arc<str>,
        raw: RawView<'_>,
        store: &mut TaskStore,
        out: &mut TaskOutput,
    ) {
        let source_name = self.plan.nodes[source].name.clone();
        let envelope = match Envelope::decode(raw.bytes) {
            Ok(e) => e,
            Err(e) => {
                let origin = Origin {
                    source: source_name,
                    location: location.clone(),
                    partition: raw.partition,
                    offset: raw.offset,
                    line: raw.line,
                    input_id: None,
                    input_span_id: None,
                    trace_id: String::new(),
                };
                out.dead_letters.push(DeadLetter::at(&origin, "decode", e.to_string(), raw.bytes.to_vec()));
                return;
            }
        };
        let trace_id =
            envelope.trace_id.clone().unwrap_or_else(|| derive_trace_id(location, raw.partition, raw.offset));
        let origin = Arc::new(Origin {
            source: source_name,
            location: location.clone(),
            partition: raw.partition,
            offset: raw.offset,
            line: raw.line,
            input_id: envelope.id.clone(),
            input_span_id: envelope.span_id.clone(),
            trace_id,
        });
        let record = Record { envelope, origin };
        if !self.source_stages.is_empty() && self.source_stages.contains_key(&source) {
            self.advance_time(&record);
            let stage = self.source_stages.get_mut(&source).expect("checked");
            let mut state = task_state!(self, store, out, record.origin.clone());
            match stage.admit(&record, &mut state) {
                Ok(true) => {}
                Ok(false) => {
                    out.deduplicated += 1;
                    return;
                }
                Err(cause) => {
                    let stage = format!("source:{}", self.plan.nodes[source].name);
                    match cause {
                        Cause::Record(m) => {
                            out.dead_letters.push(DeadLetter::at(&record.origin, stage, m, raw.bytes.to_vec()))
                        }
                        Cause::State(error) => state_failed(out, stage, &record.origin, error),
                    }
                    return;
                }
            }
        }
        self.process(source, record, store, out);
    }

    /// Moves stream time to the record's event time when it is later (only tasks with TTL
    /// tables track it; a record whose `timestamp` was made unreadable by a `map` is ignored).
    fn advance_time(&mut self, record: &Record) {
        if !self.ttls.is_empty()
            && let Ok(t) = record.event_time_ms()
        {
            self.stream_time = self.stream_time.max(t);
        }
    }

    /// Pushes an already decoded record from `source` through the operators.
    pub fn process(&mut self, source: usize, record: Record, store: &mut TaskStore, out: &mut TaskOutput) {
        self.advance_time(&record);
        self.last_origin = Some(record.origin.clone());
        let input = input_of(&record);
        self.push_downstream(source, 0, record, 0);
        self.run(store, out);
        if !self.slots.holds(&input) {
            self.ordinals.forget(&input);
        }
    }

    /// Finishes the asynchronous work `ticket` with its outcome and pushes what it emits
    /// downstream. A ticket the task does not know (work of an aborted transaction) is ignored.
    pub fn complete(&mut self, ticket: u64, outcome: Outcome, store: &mut TaskStore, out: &mut TaskOutput) {
        let Some((node, slot, record, _rank)) = self.slots.take(ticket) else { return };
        let input = input_of(&record);
        self.finish_async(node, slot, record, outcome, store, out);
        self.run(store, out);
        self.release(&input);
    }

    /// Releases one hold of `input` (a record of it started or finished); its ordinals go with
    /// its last.
    fn release(&mut self, input: &Input) {
        if self.slots.release(input) {
            self.ordinals.forget(input);
        }
    }

    /// A record the operator at `node` failed: dead-lettered when the record is at fault; a
    /// state failure is handed to the runtime instead ([`TaskOutput::state_failure`]).
    fn failed(&self, node: usize, record: &Record, cause: Cause, out: &mut TaskOutput) {
        let stage = format!("operator:{}", self.plan.nodes[node].name);
        match cause {
            Cause::Record(message) => {
                out.dead_letters.push(DeadLetter::at(&record.origin, stage, message, record.envelope.encode()))
            }
            Cause::State(error) => state_failed(out, stage, &record.origin, error),
        }
    }

    fn failure(&self, node: usize, failure: Failure, out: &mut TaskOutput) {
        self.failed(node, &failure.record, failure.cause, out);
    }

    /// Runs the stack to empty, then starts the records queued behind finished ones.
    fn run(&mut self, store: &mut TaskStore, out: &mut TaskOutput) {
        loop {
            while let Some((node, from, record, base)) = self.stack.pop() {
                self.step(node, from, record, base, store, out);
            }
            let Some((slot, record, rank)) = self.slots.next_queued() else { break };
            let input = input_of(&record);
            self.start_async(slot.0, slot, record, rank, store, out);
            self.release(&input);
        }
    }

    fn step(
        &mut self,
        node: usize,
        from: usize,
        record: Record,
        base: u32,
        store: &mut TaskStore,
        out: &mut TaskOutput,
    ) {
        if let (Some(c), Stage::Operator(_) | Stage::Async(_)) = (&self.counters, &self.stages[node]) {
            c.record_in(node);
        }
        match &mut self.stages[node] {
            Stage::Operator(op) => {
                let mut state = task_state!(self, store, out, record.origin.clone());
                match op.process_from(&self.plan.nodes[from].name, record, &mut state, &mut self.emit) {
                    Ok(()) => self.push_emitted(node, base),
                    Err(failure) => self.failure(node, failure, out),
                }
            }
            Stage::Async(op) => {
                let slot = (node, op.order_key(&record));
                // Ranked on arrival, in the walk's order (not at start, which busy slots reorder).
                let rank = self.ordinals.rank(input_of(&record), node);
                if let Some((slot, record, rank)) = self.slots.enter(slot, record, rank) {
                    self.start_async(node, slot, record, rank, store, out);
                }
            }
            Stage::Sink => {
                let origin = record.origin.clone();
                let envelope = self.stamp(node, record, base);
                out.records.push(Output { sink: node, envelope, origin });
            }
            Stage::Source | Stage::Absent => {
                unreachable!("plan edges never lead into a source or out of the sub-topology")
            }
        }
    }

    /// Pushes what the operator at `node` emitted downstream, in emission order.
    fn push_emitted(&mut self, node: usize, base: u32) {
        let mut emit = std::mem::take(&mut self.emit);
        // Reverse so the stack pops outputs in emission order.
        for (port, rec) in emit.drain().rev() {
            self.push_downstream(node, port.0, rec, base);
        }
        self.emit = emit;
    }

    fn start_async(
        &mut self,
        node: usize,
        slot: Slot,
        record: Record,
        rank: u32,
        store: &mut TaskStore,
        out: &mut TaskOutput,
    ) {
        let Stage::Async(op) = &mut self.stages[node] else { unreachable!("slots belong to async nodes") };
        let mut state = task_state!(self, store, out, record.origin.clone());
        match op.start_ranked(&record, rank, &mut state) {
            Ok(Started::Ready(outcome)) => self.finish_async(node, slot, record, outcome, store, out),
            Ok(Started::Pending(future)) => {
                let ticket = self.slots.wait(node, slot, record, rank);
                out.spawned.push(Spawn { ticket, future });
            }
            Err(cause) => {
                self.failed(node, &record, cause, out);
                self.slots.done(slot);
            }
        }
    }

    fn finish_async(
        &mut self,
        node: usize,
        slot: Slot,
        record: Record,
        outcome: Outcome,
        store: &mut TaskStore,
        out: &mut TaskOutput,
    ) {
        let Stage::Async(op) = &mut self.stages[node] else { unreachable!("slots belong to async nodes") };
        let mut state = task_state!(self, store, out, record.origin.clone());
        match op.finish(record, outcome, &mut state, &mut self.emit) {
            // Outputs of asynchronous work get ordinals of their own, so their ids do not
            // depend on what else completed in the same call.
            Ok(()) => self.push_emitted(node, async_ordinal_base(node)),
            Err(failure) => self.failure(node, failure, out),
        }
        self.slots.done(slot);
    }

    fn push_downstream(&mut self, node: usize, port: usize, record: Record, base: u32) {
        let targets = &self.plan.nodes[node].downstream[port];
        let Some((first, rest)) = targets.split_first() else { return };
        if let Some(c) = &self.counters {
            c.records_out(node, 1);
        }
        // Pushed last, popped first: the first-listed target runs first.
        for &t in rest.iter().rev() {
            self.stack.push((t, node, record.clone(), base));
        }
        self.stack.push((*first, node, record, base));
    }

    /// Gives an output its engine-owned fields: a deterministic id, version, trace context and
    /// causation.
    fn stamp(&mut self, sink: usize, record: Record, base: u32) -> Envelope {
        let o = &record.origin;
        let ordinal = self.ordinals.next(input_of(&record), base, sink);
        let mut env = record.envelope;
        let id = deterministic_id(&o.location, o.partition, o.offset, &self.plan.nodes[sink].name, ordinal);
        env.span_id = Some(derive_span_id(&id));
        env.parent_span_id = o.input_span_id.clone();
        env.trace_id = Some(o.trace_id.clone());
        env.causation_id = o.input_id.clone();
        env.v = Some(ENVELOPE_VERSION);
        env.id = Some(id);
        env
    }

    /// Deletes the entries of the task's TTL tables that stream time has expired, recording a
    /// changelog tombstone for each (attributed to the task's last input). Returns how many.
    pub fn sweep(&mut self, store: &mut TaskStore, out: &mut TaskOutput) -> Result<usize, StateError> {
        let Some(origin) = self.last_origin.clone() else { return Ok(0) };
        let mut swept = 0;
        let mut tables: Vec<&String> = self.ttls.keys().collect();
        tables.sort();
        for table in tables {
            let mut state = task_state!(self, store, out, origin.clone());
            for key in state.expired_keys(table)? {
                state.delete(table, &key)?;
                swept += 1;
            }
        }
        Ok(swept)
    }
}
