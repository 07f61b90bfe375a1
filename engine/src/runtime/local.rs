//! Local mode: runs a plan over files and the standard streams, with no Kafka at all. One
//! thread per sub-topology; each drives the same [`Task`] the Kafka runtime runs, through a
//! [`Driver`] of its own: round-robin over the sub-topology's sources, finishing asynchronous
//! work as it completes, writing outputs out every [`DRAIN_EVERY`] inputs. A sub-topology of
//! stateless operators reading files runs on several worker threads instead ([`parallel`]),
//! with the same outputs in the same order.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafclaw_operators::DeadLetter;
use kafclaw_operators::connectors::{LineSink, LineSource, RecordSink, RecordSource, open_file_sink, open_stdout_sink};

use super::driver::{Driver, MAX_IN_FLIGHT, Patience, Tasks};
use super::state::{TaskStore, memory_store};
use super::task::{BuildError, Task, TaskOutput};
use crate::compiler::registry::{NodeConfig, Role};
use crate::compiler::sections::DeadLetterKind;
use crate::compiler::{Compiled, PhysicalPlan};

mod parallel;

/// Overrides for a local run.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Source name → file to read instead of the configured one.
    pub inputs: HashMap<String, PathBuf>,
    /// Sink name → file to write instead of the configured one.
    pub outputs: HashMap<String, PathBuf>,
    /// Where dead letters go instead of the configured place.
    pub dead_letter: Option<PathBuf>,
    /// The file of the effect log of `at-most-once` and `reconcile` tools, kept across runs
    /// (docs/effects.md); `None`: in memory, for this run only.
    pub effect_log: Option<PathBuf>,
}

/// What a local run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from all sources.
    pub read: u64,
    /// Records written, per sink.
    pub written: BTreeMap<String, u64>,
    /// Records dead-lettered.
    pub dead_letters: u64,
    /// Where the dead letters went.
    pub dead_letter_target: String,
}

/// Why a local run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input, output or override is wrong (exit code 2).
    #[error("{0}")]
    Setup(String),
    /// An operator could not be built (exit code 2).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Reading or writing failed mid-run (exit code 1).
    #[error("{0}")]
    Io(String),
    /// A state table could not be read or written (exit code 1). The store is at fault, not
    /// a record: nothing is dead-lettered, the run stops.
    #[error("{0}")]
    State(String),
    /// This sub-topology stopped because another one failed (never returned by
    /// [`run_local`], which returns the failure itself).
    #[error("stopped: another sub-topology failed")]
    Stopped,
}

/// Stops the run at a state failure met while processing (see [`RunError::State`]); the
/// failing input's outputs are not written.
fn stop_at_state_failure(out: &mut TaskOutput) -> Result<(), RunError> {
    match out.state_failure.take() {
        Some(f) => Err(RunError::State(f.to_string())),
        None => Ok(()),
    }
}

/// How often (in input records) a task's buffered outputs are written out.
const DRAIN_EVERY: usize = 1024;

/// How long the end of a run waits for the next outcome of the work still in flight before it
/// gives up (`asynchronous work never finished`).
const FINAL_PATIENCE: Duration = Duration::from_secs(3600);

/// A sub-topology's task and its store (in memory for the run): what its thread's driver
/// drives. A state failure stops the run.
struct Local {
    task: Task,
    store: TaskStore,
}

impl Tasks<()> for Local {
    type Error = RunError;

    fn task(&mut self, _: &()) -> Option<(&mut Task, &mut TaskStore)> {
        Some((&mut self.task, &mut self.store))
    }

    fn in_flight(&self) -> usize {
        self.task.in_flight()
    }

    /// Outputs stay buffered until the next write-out.
    fn deliver(&mut self, _: &(), out: &mut TaskOutput) -> Result<(), RunError> {
        stop_at_state_failure(out)
    }
}

/// How many dead letters are logged one by one before only the summary counts them.
const WARN_DEAD_LETTERS: u64 = 10;

fn resolve(base: &Path, configured: &str) -> PathBuf {
    let p = Path::new(configured);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn open_source(plan: &PhysicalPlan, node: usize, base: &Path, opts: &LocalOptions) -> Result<LineSource, RunError> {
    let n = &plan.nodes[node];
    let path = match (opts.inputs.get(&*n.name), &*n.config) {
        (Some(p), _) => p.clone(),
        (None, NodeConfig::FileSource(c)) => resolve(base, c.path.get_ref()),
        (None, NodeConfig::StdinSource(c)) => return Ok(c.open()),
        (None, _) => return Err(RunError::Setup(format!("source `{}` cannot run locally", n.name))),
    };
    LineSource::open(&path).map_err(|e| RunError::Setup(format!("source `{}`: {e}", n.name)))
}

fn open_sink(
    plan: &PhysicalPlan,
    node: usize,
    base: &Path,
    opts: &LocalOptions,
) -> Result<Box<dyn RecordSink>, RunError> {
    let n = &plan.nodes[node];
    let setup = |e: io::Error| RunError::Setup(format!("sink `{}`: {e}", n.name));
    Ok(match (opts.outputs.get(&*n.name), &*n.config) {
        (Some(p), NodeConfig::FileSink(c)) => Box::new(open_file_sink(p, c.append).map_err(setup)?),
        (Some(p), _) => Box::new(open_file_sink(p, false).map_err(setup)?),
        (None, NodeConfig::FileSink(c)) => {
            Box::new(open_file_sink(&resolve(base, c.path.get_ref()), c.append).map_err(setup)?)
        }
        (None, NodeConfig::StdoutSink(_)) => Box::new(open_stdout_sink()),
        (None, _) => return Err(RunError::Setup(format!("sink `{}` cannot run locally", n.name))),
    })
}

/// What one task thread did: records read, records written per sink node.
type TaskTally = (u64, HashMap<usize, u64>);

/// Dead-letter output shared by all tasks.
struct DeadLetterOut {
    sink: Box<dyn RecordSink>,
    count: u64,
}

fn open_dead_letter(compiled: &Compiled, opts: &LocalOptions) -> Result<(DeadLetterOut, String), RunError> {
    let dl = &compiled.plan.dead_letter;
    let path = match (&opts.dead_letter, dl.kind, &dl.path) {
        (Some(p), _, _) => p.clone(),
        (None, DeadLetterKind::Stderr, _) => {
            let sink = LineSink::new(io::stderr());
            return Ok((DeadLetterOut { sink: Box::new(sink), count: 0 }, "<stderr>".into()));
        }
        (None, DeadLetterKind::File, Some(p)) => PathBuf::from(p.get_ref()),
        (None, DeadLetterKind::File, None) => PathBuf::from(format!("{}.dlq.jsonl", compiled.plan.name)),
    };
    let sink = open_file_sink(&path, false).map_err(|e| RunError::Setup(format!("dead-letter output: {e}")))?;
    Ok((DeadLetterOut { sink: Box::new(sink), count: 0 }, path.display().to_string()))
}

/// Writes the buffered outputs to their sinks and the dead letters to the dead-letter output.
fn write_out(
    out: &mut TaskOutput,
    sinks: &mut HashMap<usize, Box<dyn RecordSink>>,
    written: &mut HashMap<usize, u64>,
    dead: &Mutex<DeadLetterOut>,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    for o in out.records.drain(..) {
        buf.clear();
        o.envelope.encode_into(buf);
        sinks.get_mut(&o.sink).expect("every sink of a sub-topology is opened").write(buf)?;
        *written.entry(o.sink).or_default() += 1;
    }
    write_dead_letters(std::mem::take(&mut out.dead_letters), dead)
}

/// Writes dead letters to the dead-letter output, in their order.
fn write_dead_letters(letters: Vec<DeadLetter>, dead: &Mutex<DeadLetterOut>) -> io::Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut d = dead.lock().unwrap_or_else(|p| p.into_inner());
    for letter in letters {
        // The first few are worth a warning each; after that the summary counts them.
        if d.count < WARN_DEAD_LETTERS {
            tracing::warn!(stage = %letter.stage, input = %letter.describe_input(), error = %letter.error, "record dead-lettered");
        } else {
            tracing::debug!(stage = %letter.stage, input = %letter.describe_input(), error = %letter.error, "record dead-lettered");
        }
        let line = serde_json::to_vec(&letter.to_json()).expect("dead letters encode");
        d.sink.write(&line)?;
        d.count += 1;
    }
    Ok(())
}

/// Installs the effect log: the file of `opts.effect_log` when a tool logs its calls, else
/// one in memory.
fn install_effect_log(compiled: &Compiled, opts: &LocalOptions) -> Result<(), RunError> {
    use kafclaw_agent::resources::AgentResources;
    use kafclaw_agent::tools::effect::{EffectLog, FileEffectLog, MemoryEffectLog};
    let Some(slot) = compiled.resources.effects() else { return Ok(()) };
    let log: Arc<dyn EffectLog> = match &opts.effect_log {
        Some(path) if compiled.resources.logs_effects() => {
            Arc::new(FileEffectLog::open(path).map_err(RunError::Setup)?)
        }
        _ => Arc::new(MemoryEffectLog::default()),
    };
    slot.set(log);
    Ok(())
}

/// The plan a local run executes: a schedule fed from a file (`--input`) is that file's source,
/// so it does not also tick on the clock (docs/schedules.md).
fn local_plan(plan: &PhysicalPlan, opts: &LocalOptions) -> PhysicalPlan {
    let mut plan = plan.clone();
    for n in &mut plan.nodes {
        if let (NodeConfig::Schedule(_), Some(path)) = (&*n.config, opts.inputs.get(&*n.name)) {
            let path = toml::Spanned::new(0..0, path.display().to_string());
            let file = kafclaw_operators::connectors::FileSourceConfig { path, format: Default::default() };
            n.config = Arc::new(NodeConfig::FileSource(file));
        }
    }
    plan
}

/// One sub-topology on its thread: the task driven through a [`Driver`], round-robin over the
/// sources until all are exhausted, outputs written out every [`DRAIN_EVERY`] inputs.
fn run_one_thread(
    task: Task,
    mut sources: Vec<(usize, LineSource, Arc<str>)>,
    sinks: &mut HashMap<usize, Box<dyn RecordSink>>,
    dead: &Mutex<DeadLetterOut>,
    stop: &AtomicBool,
) -> Result<TaskTally, RunError> {
    let io_err = |e: io::Error| RunError::Io(e.to_string());
    let mut local = Local { task, store: memory_store() };
    let mut driver: Driver<()> = Driver::new(MAX_IN_FLIGHT).map_err(io_err)?;
    let mut written = HashMap::new();
    let mut buf = Vec::new();
    let mut read = 0u64;
    let mut since_drain = 0;
    // Round-robin over the sub-topology's sources until all are exhausted.
    while !sources.is_empty() {
        let mut i = 0;
        while i < sources.len() {
            if stop.load(Ordering::Relaxed) {
                return Err(RunError::Stopped);
            }
            let (node, src, location) = &mut sources[i];
            match src.next_raw().map_err(|e| RunError::Io(format!("{location}: {e}")))? {
                Some(raw) => {
                    let span = crate::telemetry::local_process_span(location, raw.line);
                    let _in = span.enter();
                    driver.feed(&mut local, (), *node, location, raw.view())?;
                    read += 1;
                    since_drain += 1;
                    i += 1;
                }
                None => {
                    sources.swap_remove(i);
                }
            }
        }
        // Finish what completed; wait when too much is in flight.
        driver.finish_ready(Duration::ZERO, &mut local)?;
        // Wall-clock punctuations due now (between rounds of reading; no clock read without).
        if local.task.punctuates() {
            driver.punctuate(&mut local, (), kafclaw_operators::api::record::now_ms())?;
        }
        if since_drain >= DRAIN_EVERY {
            let out = driver.output();
            write_out(out, sinks, &mut written, dead, &mut buf).map_err(io_err)?;
            // Local state lives in memory for the run; no changelog.
            local.store.seal(Vec::new()).map_err(|e| RunError::Io(e.to_string()))?;
            out.changelog.clear();
            since_drain = 0;
        }
    }
    // The inputs are read: wait for the work still in flight.
    if driver.drain(Patience::Idle(FINAL_PATIENCE), &mut local)? > 0 {
        return Err(RunError::Io("asynchronous work never finished".into()));
    }
    write_out(driver.output(), sinks, &mut written, dead, &mut buf).map_err(io_err)?;
    for sink in sinks.values_mut() {
        sink.flush().map_err(io_err)?;
    }
    Ok((read, written))
}

/// Runs a compiled topology locally until every source is exhausted, a sub-topology of
/// stateless operators reading files on as many threads as the machine has cores.
pub fn run_local(compiled: &Compiled, opts: &LocalOptions) -> Result<RunSummary, RunError> {
    run_local_on(compiled, opts, compiled.spec.topology.local_threads(None))
}

/// [`run_local`] with `threads` worker threads for each sub-topology that can use several
/// (`1`: every sub-topology on one thread). Outputs are the same whatever `threads` is.
pub fn run_local_on(compiled: &Compiled, opts: &LocalOptions, threads: usize) -> Result<RunSummary, RunError> {
    let plan = Arc::new(local_plan(&compiled.plan, opts));
    let base = compiled.file.base_dir().to_path_buf();
    for name in opts.inputs.keys() {
        if plan.index(name).is_none_or(|i| plan.nodes[i].role != Role::Source) {
            return Err(RunError::Setup(format!("--input {name}=…: `{name}` is not a source of {}", plan.name)));
        }
    }
    let overridden = |name: &str| opts.inputs.contains_key(name) || opts.outputs.contains_key(name);
    if let Some(n) = plan.nodes.iter().find(|n| n.config.is_kafka() && !overridden(&n.name)) {
        return Err(RunError::Setup(format!(
            "{} `{}` reads or writes Kafka; run without --local, or override it with --input/--output",
            n.role.noun(),
            n.name
        )));
    }
    // A schedule's promise (one tick per due time, across restarts) rests on state committed
    // with its ticks; a local run keeps state in memory only (docs/schedules.md).
    if let Some(n) = plan.nodes.iter().find(|n| matches!(&*n.config, NodeConfig::Schedule(_)) && !overridden(&n.name)) {
        return Err(RunError::Setup(format!(
            "schedule `{0}` runs only in Kafka mode (its due times are state committed with its ticks); run without --local, or feed ticks from a file with --input {0}=<ticks.jsonl>",
            n.name
        )));
    }
    for name in opts.outputs.keys() {
        if plan.index(name).is_none_or(|i| plan.nodes[i].role != Role::Sink) {
            return Err(RunError::Setup(format!("--output {name}=…: `{name}` is not a sink of {}", plan.name)));
        }
    }
    install_effect_log(compiled, opts)?;
    let (dead, dead_target) = open_dead_letter(compiled, opts)?;
    let dead = Mutex::new(dead);

    // Open everything before starting, so a setup error runs nothing.
    let mut work = Vec::new();
    for sub in &plan.subtopologies {
        let task = Task::new(plan.clone(), sub, 0)?;
        let workers = match threads > 1 && parallel::eligible(&plan, sub, &opts.inputs) {
            true => threads,
            false => 1,
        };
        tracing::debug!(subtopology = sub.id, threads = workers, "local sub-topology");
        let mut sources = Vec::new();
        for &s in &sub.sources {
            let src = open_source(&plan, s, &base, opts)?;
            let location: Arc<str> = src.location().into();
            sources.push((s, src, location));
        }
        let mut sinks = HashMap::new();
        for &n in sub.nodes.iter().filter(|&&n| plan.nodes[n].role == Role::Sink) {
            sinks.insert(n, open_sink(&plan, n, &base, opts)?);
        }
        work.push((task, sub.clone(), workers, sources, sinks));
    }

    // One thread per sub-topology. The first failure ends the run at once: the others stop
    // at their next record (one blocked on a read, say of a terminal, is left to the
    // process's exit), so a broken store is not hidden behind an input that never ends.
    let dead = Arc::new(dead);
    let stop = Arc::new(AtomicBool::new(false));
    let (done, results) = std::sync::mpsc::channel::<Result<TaskTally, RunError>>();
    let threads = work.len();
    for (task, sub, workers, sources, mut sinks) in work {
        let (dead, stop, done, plan) = (Arc::clone(&dead), Arc::clone(&stop), done.clone(), plan.clone());
        std::thread::spawn(move || {
            let result = match workers {
                1 => run_one_thread(task, sources, &mut sinks, &dead, &stop),
                n => {
                    // The first worker reuses the task built (and checked) above.
                    let mut first = Some(task);
                    let make = || match first.take() {
                        Some(t) => Ok(t),
                        None => Ok(Task::new(plan.clone(), &sub, 0)?),
                    };
                    parallel::run(n, make, sources, &mut sinks, &dead, &stop)
                }
            };
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            let _ = done.send(result);
        });
    }
    drop(done);
    let mut tallies = Vec::with_capacity(threads);
    for _ in 0..threads {
        // A thread that panicked drops its sender without a result.
        match results.recv() {
            Ok(Ok(tally)) => tallies.push(tally),
            Ok(Err(RunError::Stopped)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RunError::Io("a task panicked".into())),
        }
    }

    let mut summary = RunSummary { dead_letter_target: dead_target, ..Default::default() };
    for (read, written) in tallies {
        summary.read += read;
        for (node, count) in written {
            *summary.written.entry(plan.nodes[node].name.to_string()).or_default() += count;
        }
    }
    let mut d = dead.lock().unwrap_or_else(|p| p.into_inner());
    d.sink.flush().map_err(|e| RunError::Io(format!("dead-letter output: {e}")))?;
    summary.dead_letters = d.count;
    Ok(summary)
}
