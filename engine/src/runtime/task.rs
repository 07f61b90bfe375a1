//! A task: one sub-topology on one input partition. Its synchronous operators are fused: each
//! raw record is decoded once and pushed through the operators to the sinks by plain calls.
//! The task does no I/O; the runtime (local or Kafka) feeds it and drains its output, so both
//! runtimes run the same operator code.

use std::collections::HashMap;
use std::sync::Arc;

use kafclaw_operators::dedupe::Dedupe;
use kafclaw_operators::envelope::{ENVELOPE_VERSION, derive_span_id, derive_trace_id, deterministic_id};
use kafclaw_operators::{DeadLetter, Emit, Envelope, Origin, RawRecord, Record, StateAccess, SyncOperator};

use super::state::{ChangelogWrite, TaskState, TaskStore};
use crate::compiler::registry::{NodeConfig, Role};
use crate::compiler::{PhysicalPlan, plan::SubTopology};

enum Stage {
    Absent,
    Source,
    Operator(Box<dyn SyncOperator>),
    Sink,
}

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
}

impl TaskOutput {
    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dead_letters.is_empty() && self.changelog.is_empty()
    }
}

/// A runnable task.
pub struct Task {
    plan: Arc<PhysicalPlan>,
    stages: Vec<Stage>,
    emit: Emit,
    /// (node to run, node the record came from, record)
    stack: Vec<(usize, usize, Record)>,
    ordinals: Vec<u32>,
    scratch: Vec<u8>,
    partition: i32,
    /// The dedupe stage of each deduplicating source.
    dedup: HashMap<usize, Dedupe>,
    /// TTL (ms) of the task's tables that have one.
    ttls: HashMap<String, i64>,
    /// Highest event time seen (ms); drives TTL expiry. Tracked only with TTL tables.
    stream_time: i64,
    /// The input of the last record, which sweep tombstones are attributed to.
    last_origin: Option<Arc<Origin>>,
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
                Role::Source => Stage::Source,
                Role::Sink => Stage::Sink,
                Role::Operator => match node.config.build_operator(&node.name) {
                    Some(Ok(op)) => Stage::Operator(op),
                    Some(Err(errs)) => {
                        let message = errs.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
                        return Err(BuildError { operator: node.name.to_string(), message });
                    }
                    None => {
                        return Err(BuildError { operator: node.name.to_string(), message: "not an operator".into() });
                    }
                },
            };
        }
        let mut dedup = HashMap::new();
        for &s in &sub.sources {
            if let NodeConfig::KafkaSource(c) = &*plan.nodes[s].config {
                match c.dedupe(&plan.nodes[s].name) {
                    Ok(Some(d)) => {
                        dedup.insert(s, d);
                    }
                    Ok(None) => {}
                    Err(errs) => {
                        let message = errs.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
                        return Err(BuildError { operator: plan.nodes[s].name.to_string(), message });
                    }
                }
            }
        }
        let ttls = sub
            .nodes
            .iter()
            .flat_map(|&i| plan.nodes[i].config.state_tables(&plan.nodes[i].name))
            .filter_map(|t| t.ttl_ms.map(|ttl| (t.name, ttl)))
            .collect();
        let n = plan.nodes.len();
        Ok(Self {
            plan,
            stages,
            emit: Emit::default(),
            stack: Vec::new(),
            ordinals: vec![0; n],
            scratch: Vec::new(),
            partition,
            dedup,
            ttls,
            stream_time: i64::MIN,
            last_origin: None,
        })
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
        raw: RawRecord,
        store: &mut TaskStore,
        out: &mut TaskOutput,
    ) {
        let source_name = self.plan.nodes[source].name.clone();
        // simd-json decodes in place; decode a copy so a dead letter keeps the original bytes.
        self.scratch.clear();
        self.scratch.extend_from_slice(&raw.bytes);
        let envelope = match Envelope::decode(&mut self.scratch) {
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
                out.dead_letters.push(DeadLetter::at(&origin, "decode", e.to_string(), raw.bytes));
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
        if self.dedup.contains_key(&source) {
            self.advance_time(&record);
            let dedupe = &self.dedup[&source];
            let mut state = TaskState {
                store: &mut *store,
                partition: self.partition,
                origin: record.origin.clone(),
                changelog: &mut out.changelog,
                ttls: &self.ttls,
                now_ms: self.stream_time,
            };
            match dedupe.first(&record, &mut state) {
                Ok(true) => {}
                Ok(false) => {
                    out.deduplicated += 1;
                    return;
                }
                Err(m) => {
                    let stage = format!("source:{}", self.plan.nodes[source].name);
                    out.dead_letters.push(DeadLetter::at(&record.origin, stage, m, raw.bytes));
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

    /// Deletes the entries of the task's TTL tables that stream time has expired, recording a
    /// changelog tombstone for each (attributed to the task's last input). Returns how many.
    pub fn sweep(&mut self, store: &mut TaskStore, out: &mut TaskOutput) -> Result<usize, String> {
        let Some(origin) = self.last_origin.clone() else { return Ok(0) };
        let mut swept = 0;
        let mut tables: Vec<&String> = self.ttls.keys().collect();
        tables.sort();
        for table in tables {
            let mut state = TaskState {
                store: &mut *store,
                partition: self.partition,
                origin: origin.clone(),
                changelog: &mut out.changelog,
                ttls: &self.ttls,
                now_ms: self.stream_time,
            };
            for key in state.expired_keys(table)? {
                state.delete(table, &key)?;
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Pushes an already decoded record from `source` through the operators.
    pub fn process(&mut self, source: usize, record: Record, store: &mut TaskStore, out: &mut TaskOutput) {
        self.ordinals.iter_mut().for_each(|o| *o = 0);
        self.advance_time(&record);
        self.last_origin = Some(record.origin.clone());
        self.push_downstream(source, 0, record);
        while let Some((node, from, record)) = self.stack.pop() {
            match &mut self.stages[node] {
                Stage::Operator(op) => {
                    let mut state = TaskState {
                        store: &mut *store,
                        partition: self.partition,
                        origin: record.origin.clone(),
                        changelog: &mut out.changelog,
                        ttls: &self.ttls,
                        now_ms: self.stream_time,
                    };
                    match op.process_from(&self.plan.nodes[from].name, record, &mut state, &mut self.emit) {
                        Ok(()) => {
                            let mut emit = std::mem::take(&mut self.emit);
                            // Reverse so the stack pops outputs in emission order.
                            for (port, rec) in emit.drain().rev() {
                                self.push_downstream(node, port, rec);
                            }
                            self.emit = emit;
                        }
                        Err(failure) => {
                            let stage = format!("operator:{}", self.plan.nodes[node].name);
                            let raw = failure.record.envelope.encode();
                            out.dead_letters.push(DeadLetter::at(&failure.record.origin, stage, failure.message, raw));
                        }
                    }
                }
                Stage::Sink => {
                    let origin = record.origin.clone();
                    let envelope = self.finish(node, record);
                    out.records.push(Output { sink: node, envelope, origin });
                }
                Stage::Source | Stage::Absent => {
                    unreachable!("plan edges never lead into a source or out of the sub-topology")
                }
            }
        }
    }

    fn push_downstream(&mut self, node: usize, port: usize, record: Record) {
        let targets = &self.plan.nodes[node].downstream[port];
        let Some((first, rest)) = targets.split_first() else { return };
        // Pushed last, popped first: the first-listed target runs first.
        for &t in rest.iter().rev() {
            self.stack.push((t, node, record.clone()));
        }
        self.stack.push((*first, node, record));
    }

    /// Gives an output its engine-owned fields: a deterministic id, version, trace context and
    /// causation.
    fn finish(&mut self, sink: usize, record: Record) -> Envelope {
        let o = &record.origin;
        let ordinal = self.ordinals[sink];
        self.ordinals[sink] += 1;
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
}
