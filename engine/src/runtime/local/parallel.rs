//! Local mode on several threads: a sub-topology whose operators keep nothing from one record
//! to the next (`filter`, `map`, `route`) and that reads files runs on worker threads, each
//! with a task of its own. The sub-topology's thread reads batches of lines (round-robin over
//! its sources, as the one-thread loop does), hands batch `n` to worker `n % workers`, and
//! writes the workers' results back in batch order: the outputs, their order, their ids (made
//! from the input's coordinates) and the dead letters are the same as on one thread.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use kafclaw_operators::DeadLetter;
use kafclaw_operators::api::record::RawRecord;
use kafclaw_operators::connectors::{LineSource, RecordSink, RecordSource};

use super::{DeadLetterOut, RunError, TaskTally, write_dead_letters};
use crate::compiler::PhysicalPlan;
use crate::compiler::plan::SubTopology;
use crate::compiler::registry::{NodeConfig, Role};
use crate::runtime::state::memory_store;
use crate::runtime::task::{Task, TaskOutput};

/// Input records per batch handed to a worker.
const BATCH: usize = 256;

/// Batches queued or being worked per worker: enough that a worker never waits for the reader.
const DEPTH: usize = 4;

/// Whether `sub` may run on several threads: its sources are files, its sinks files or
/// standard output, and its operators keep no state, start no asynchronous work and do not
/// punctuate (`filter`, `map`, `route`). Standard input keeps the one-thread loop.
pub(super) fn eligible(plan: &PhysicalPlan, sub: &SubTopology, inputs: &HashMap<String, std::path::PathBuf>) -> bool {
    sub.nodes.iter().all(|&n| {
        let node = &plan.nodes[n];
        match (node.role, &*node.config) {
            (Role::Source, _) if inputs.contains_key(&*node.name) => true,
            (Role::Source, NodeConfig::FileSource(_)) => true,
            (Role::Operator, NodeConfig::Filter(_) | NodeConfig::Map(_) | NodeConfig::Route(_)) => true,
            (Role::Sink, _) => true,
            _ => false,
        }
    })
}

/// A batch of input records: (source node, its location, the record).
type Batch = Vec<(usize, Arc<str>, RawRecord)>;

/// What a worker made of a batch: the encoded outputs (sink, byte range in `bytes`) in emission
/// order, and the dead letters.
#[derive(Default)]
struct Done {
    bytes: Vec<u8>,
    lines: Vec<(usize, std::ops::Range<usize>)>,
    dead_letters: Vec<DeadLetter>,
}

/// One worker: a task of its own, fed batch after batch until the reader hangs up.
fn work(mut task: Task, jobs: Receiver<Batch>, results: Sender<Result<Done, RunError>>) {
    let mut store = memory_store();
    let mut out = TaskOutput::default();
    for batch in jobs {
        let mut done = Done { bytes: Vec::with_capacity(batch.len() * 1024), ..Done::default() };
        let mut failed = None;
        for (node, location, raw) in &batch {
            let span = crate::telemetry::local_process_span(location, raw.line);
            let _in = span.enter();
            task.process_raw(*node, location, raw.view(), &mut store, &mut out);
            if let Some(f) = out.state_failure.take() {
                failed = Some(RunError::State(f.to_string()));
                break;
            }
        }
        for o in out.records.drain(..) {
            let start = done.bytes.len();
            o.envelope.encode_into(&mut done.bytes);
            done.lines.push((o.sink, start..done.bytes.len()));
        }
        done.dead_letters.append(&mut out.dead_letters);
        out.changelog.clear();
        // Nothing is kept from record to record; the (empty) epoch is sealed all the same.
        if failed.is_none()
            && let Err(e) = store.seal(Vec::new())
        {
            failed = Some(RunError::Io(e.to_string()));
        }
        let result = match failed {
            Some(e) => Err(e),
            None => Ok(done),
        };
        let stop = result.is_err();
        if results.send(result).is_err() || stop {
            return;
        }
    }
}

/// Reads the next batch, round-robin over `sources` (exhausted ones are removed).
fn read_batch(sources: &mut Vec<(usize, LineSource, Arc<str>)>) -> Result<Batch, RunError> {
    let mut batch = Vec::with_capacity(BATCH);
    while batch.len() < BATCH && !sources.is_empty() {
        let mut i = 0;
        while i < sources.len() && batch.len() < BATCH {
            let (node, src, location) = &mut sources[i];
            match src.next_raw().map_err(|e| RunError::Io(format!("{location}: {e}")))? {
                Some(raw) => {
                    batch.push((*node, location.clone(), raw));
                    i += 1;
                }
                None => {
                    sources.swap_remove(i);
                }
            }
        }
    }
    Ok(batch)
}

/// Runs one eligible sub-topology on `threads` workers (plus the calling thread, which reads
/// and writes). `make_task` builds each worker's task.
pub(super) fn run(
    threads: usize,
    mut make_task: impl FnMut() -> Result<Task, RunError>,
    mut sources: Vec<(usize, LineSource, Arc<str>)>,
    sinks: &mut HashMap<usize, Box<dyn RecordSink>>,
    dead: &Mutex<DeadLetterOut>,
    stop: &AtomicBool,
) -> Result<TaskTally, RunError> {
    let io_err = |e: io::Error| RunError::Io(e.to_string());
    let mut written: HashMap<usize, u64> = HashMap::new();
    let mut read = 0u64;
    std::thread::scope(|scope| -> Result<(), RunError> {
        let mut jobs: Vec<SyncSender<Batch>> = Vec::with_capacity(threads);
        let mut results: Vec<Receiver<Result<Done, RunError>>> = Vec::with_capacity(threads);
        for _ in 0..threads {
            let task = make_task()?;
            let (job_tx, job_rx) = sync_channel(DEPTH);
            let (result_tx, result_rx) = channel();
            std::thread::Builder::new()
                .name("kafclaw-local-worker".into())
                .spawn_scoped(scope, move || work(task, job_rx, result_tx))
                .map_err(io_err)?;
            jobs.push(job_tx);
            results.push(result_rx);
        }
        // Batch `n` goes to worker `n % threads`; each worker answers in its order, so the
        // results are taken back in batch order without reordering.
        let (mut sent, mut taken) = (0usize, 0usize);
        loop {
            while sent - taken < threads * DEPTH && !sources.is_empty() {
                if stop.load(Ordering::Relaxed) {
                    return Err(RunError::Stopped);
                }
                let batch = read_batch(&mut sources)?;
                if batch.is_empty() {
                    break;
                }
                read += batch.len() as u64;
                jobs[sent % threads].send(batch).map_err(|_| RunError::Io("a task panicked".into()))?;
                sent += 1;
            }
            if taken == sent {
                return Ok(());
            }
            let done = results[taken % threads].recv().map_err(|_| RunError::Io("a task panicked".into()))??;
            taken += 1;
            for (sink, range) in &done.lines {
                sinks
                    .get_mut(sink)
                    .expect("every sink of a sub-topology is opened")
                    .write(&done.bytes[range.clone()])
                    .map_err(io_err)?;
                *written.entry(*sink).or_default() += 1;
            }
            write_dead_letters(done.dead_letters, dead).map_err(io_err)?;
        }
        // Leaving the scope drops the senders: the workers stop at their next batch.
    })?;
    for sink in sinks.values_mut() {
        sink.flush().map_err(io_err)?;
    }
    Ok((read, written))
}
