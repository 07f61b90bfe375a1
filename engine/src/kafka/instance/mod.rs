//! The Kafka instance runtime: one member of the topology's consumer group.
//!
//! - consumer group = topology name; cooperative-sticky assignment (range when a sub-topology
//!   reads several topics: [`checks::assignment_strategy`]); `read_committed`;
//! - one [`Task`] per (sub-topology, assigned partition), created on the partition's first
//!   record and dropped when the partition is revoked;
//! - `threads` stream threads ([`threads`]), each a member of the group with its own consumer,
//!   transactional producer and tasks, as Kafka Streams runs `num.stream.threads`; they share
//!   the instance's RocksDB store;
//! - exactly-once (KIP-447, docs/ARCHITECTURE.md "Kafka mode"): one transactional producer per
//!   stream thread (`transactional.id = <topology>-<instance id>` for thread 0,
//!   `<topology>-<instance id>-<k>` for thread k); each commit interval the outputs and
//!   dead letters of the open transaction are flushed, the processed positions are sent to the
//!   transaction with the consumer's group metadata, and the transaction is committed (when
//!   nothing was sent since the last commit, the consumer commits the positions alone). A
//!   failed commit aborts, forgets the transaction's dedup ids and rewinds every partition
//!   assigned to the thread to its committed offset;
//! - at-least-once: outputs are flushed, then offsets committed;
//! - on revoke, the open transaction is committed before the partitions are released, and
//!   their positions are forgotten (what was not committed is their next owner's);
//! - every output carries its input's coordinates in headers and a `traceparent`.
//!
//! Each stream thread runs [`poll_loop`], one named step after another: finish the asynchronous
//! work that completed ([`work`]), follow the global tables, poll the group, restore newly
//! assigned partitions and process what the poll brought ([`process`], sending through
//! [`emit`]), run the wall-clock punctuations due ([`punctuate`]), stop when a replay is done ([`until`]), commit when due ([`txn`]), stop on a
//! [`Fatal`] cause ([`fatal`]). Where each record goes is worked out once ([`routes`]); the
//! rebalance callbacks reach the thread's [`Instance`], the state queries the shared store
//! ([`context`]).
//!
//! Records and outcomes go through the runtimes' [`Driver`] (`runtime/driver.rs`), with the
//! [`Core`] as its [`Tasks`](crate::runtime::Tasks): it names work by (sub-topology,
//! partition, task generation) and sends each output into the open transaction
//! ([`Core::emit`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;

use super::producer::{CALL_TIMEOUT, DeliveryCounter, ProducerCtx, QuietEof};
use super::settings::ClientSettings;
use super::stats::Stats;
use super::tables::restore::RestoreJob;
use super::topics::ensure_topics;
use crate::compiler::{Compiled, PhysicalPlan};
use crate::runtime::TaskStore;
use crate::runtime::driver::Driver;
use crate::runtime::query::QuerySlot;
use crate::runtime::task::{BuildError, Task};
use kafclaw_agent::resources::AgentResources;
use kafclaw_state::{RocksStore, StateStore};

mod checks;
mod context;
mod emit;
mod fatal;
mod inject;
mod lag;
mod process;
mod punctuate;
mod routes;
mod threads;
mod txn;
mod until;
mod visible;
mod work;

use context::{InstanceContext, StoreQuery};
use fatal::Fatal;
use process::follow_globals;
use routes::Routes;
use until::Until;

/// The header names on outputs, at their path before [`crate::kafka::headers`] held them.
pub use super::headers;

/// How an instance runs.
#[derive(Debug, Clone)]
pub struct InstanceOptions {
    /// Stable id of this instance; with the topology name it forms the transactional ids.
    pub instance_id: String,
    /// Stream threads (at least 1; a replay runs 1): each a group member with its own consumer,
    /// transactional producer and tasks ([`threads`]).
    pub threads: usize,
    /// Client properties.
    pub settings: ClientSettings,
    /// Set to stop: the instance commits, leaves the group and returns.
    pub stop: Arc<AtomicBool>,
    /// Live counters.
    pub stats: Arc<Stats>,
    /// Folder of the instance's RocksDB (`<state dir>/<topology>/<instance id>`).
    pub state_dir: std::path::PathBuf,
    /// Stop once each of these source partitions has reported its end and what came before
    /// is committed (`kafclaw replay`); `None` runs until stopped.
    pub until: Option<HashSet<(String, i32)>>,
    /// Where the instance installs its interactive state queries (served over HTTP).
    pub state_query: QuerySlot,
}

/// Why an instance stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The topology or the cluster is not set up for this run (exit code 2).
    #[error("{0}")]
    Setup(String),
    /// An operator could not be built (exit code 2).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A Kafka error the instance cannot recover from, e.g. fenced by a newer instance with the
    /// same transactional id (exit code 1).
    #[error("kafka: {0}")]
    Fatal(String),
}

/// Everything the poll loop and the rebalance callbacks share, behind one lock: the core and
/// the driver of the tasks' records and asynchronous work. Two parts, so that the driver can
/// hand each task's output to the core (it is the driver's [`Tasks`](crate::runtime::Tasks))
/// while it holds the output.
///
/// The lock rule: the stream thread locks the instance step by step and **never holds the
/// lock across `consumer.poll`**. librdkafka runs the rebalance callbacks inside that poll, and
/// they lock the instance (a revoke drains the work in flight and commits through it): holding
/// the lock there would deadlock.
struct Instance {
    core: Core,
    driver: Driver<TaskKey>,
}

/// The instance's state, which every step works on (see [`Instance`]).
struct Core {
    plan: Arc<PhysicalPlan>,
    /// The plan's topics and tables, by what the instance looks them up with.
    routes: Routes,
    producer: BaseProducer<ProducerCtx>,
    producer_config: rdkafka::ClientConfig,
    deliveries: Arc<DeliveryCounter>,
    delivery_failures_seen: u64,
    eos: bool,
    in_txn: bool,
    /// Whether a record was sent since the last commit or abort: without one, an exactly-once
    /// commit is the group consumer's offset commit alone (see `Core::commit`).
    sent_since_commit: bool,
    /// How often the open transaction is committed, and when next.
    commit_interval: Duration,
    next_commit: Instant,
    /// Next offset to process per source partition, until committed in full.
    positions: HashMap<(Arc<str>, i32), i64>,
    tasks: HashMap<(usize, i32), Task>,
    /// The generation of each task: outcomes of asynchronous work started by a task that has
    /// since been dropped (revoked, aborted) are ignored.
    task_gen: HashMap<(usize, i32), u64>,
    generation: u64,
    locations: HashMap<String, Arc<str>>,
    buf: Vec<u8>,
    stats: Arc<Stats>,
    /// Why the instance must stop (the first cause); the open transaction is aborted before
    /// anything else is done. Set only by [`Core::fail`], which says why it is a field.
    fatal: Option<Fatal>,
    /// Why the open transaction must be aborted and the inputs read again (a failed send).
    pending_abort: Option<String>,
    /// Aborts since the last successful commit.
    aborts_in_a_row: u32,
    /// How large records may be.
    limits: emit::Limits,
    /// Records the broker refused as their own fault, by input.
    refused: emit::RefusedRecords,
    /// Injected send failures (debug builds, `KAFCLAW_INJECT_SEND_FAILURE`).
    inject: inject::Injector,
    store: TaskStore,
    settings: ClientSettings,
    pending_restore: Vec<RestoreJob>,
    /// The (sub-topology, partition) pairs assigned to this instance: their tasks exist from
    /// the assignment on (after restore), so that their punctuations run without records.
    assigned: std::collections::BTreeSet<(usize, i32)>,
    /// Tasks whose punctuation produced something since the last commit: their partitions'
    /// offsets go into the commit, so a fenced (zombie) member's transaction fails.
    punctuated: HashSet<(usize, i32)>,
    /// When punctuations are next looked at.
    next_punctuation: Instant,
    /// When TTL tables are next swept.
    next_sweep: Instant,
    /// When the consumer lag metrics are next updated.
    next_lag: Instant,
    /// The global tables' state (in memory, rebuilt from their topics at every start).
    global_store: TaskStore,
    /// Where a replay ends (inert outside `kafclaw replay`).
    until: Until,
}

/// A task, as asynchronous work names it: (sub-topology, partition, generation).
type TaskKey = (usize, i32, u64);

/// How long a rebalance or a shutdown waits for asynchronous work in flight to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the TTL tables of the assigned tasks are swept (reads hide expired entries in
/// between, so this only bounds how long they take space).
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Locks the instance; a panic elsewhere while it was held does not poison it for the rest.
fn lock(instance: &Mutex<Instance>) -> MutexGuard<'_, Instance> {
    instance.lock().unwrap_or_else(|p| p.into_inner())
}

fn setup(msg: impl Into<String>) -> InstanceError {
    InstanceError::Setup(msg.into())
}

/// Opens (and so locks) the instance's RocksDB `<state dir>/<topology>/<instance id>`; a
/// store another process holds open is a duplicate launch, said so.
fn open_store(opts: &InstanceOptions, topology: &str) -> Result<RocksStore, InstanceError> {
    let db_path = opts.state_dir.join(topology).join(&opts.instance_id);
    let rocks = RocksStore::open(&db_path).map_err(|e| {
        let e = e.to_string();
        if e.contains("LOCK") || e.to_ascii_lowercase().contains("lock hold") {
            setup(format!(
                "state store {}: locked by another running instance `{}` of topology `{topology}` over state dir {} \
                 (instance id and state dir are the same); this one stops before touching Kafka, and the running \
                 one is left as it is. Give this instance another --instance-id or --state-dir ({e})",
                db_path.display(),
                opts.instance_id,
                opts.state_dir.display(),
            ))
        } else {
            setup(format!("state store {}: {e}", db_path.display()))
        }
    })?;
    tracing::info!(path = %db_path.display(), tables = ?rocks.tables(), "state store open");
    Ok(rocks)
}

/// Runs one instance of a compiled topology until `opts.stop` is set or a fatal error.
pub fn run_instance(compiled: &Compiled, opts: InstanceOptions) -> Result<(), InstanceError> {
    let plan = Arc::new(compiled.plan.clone());
    let t = &compiled.spec.topology;
    let settings = &opts.settings;
    tracing::info!(topology = %plan.name, instance = %opts.instance_id, config = ?settings.redacted(), "starting instance");
    checks::check_plan(&plan, settings)?;
    // SASL/TLS settings librdkafka would accept silently or reject obscurely.
    let (fatal, warnings): (Vec<_>, Vec<_>) = settings.security_problems().into_iter().partition(|p| p.fatal);
    for w in warnings {
        tracing::warn!(problem = %w.message, "client security settings");
    }
    if !fatal.is_empty() {
        return Err(setup(fatal.into_iter().map(|p| p.message).collect::<Vec<_>>().join("; ")));
    }
    // The state store first: its lock is what tells a duplicate (same instance id and state
    // dir) apart, and it must stop before it touches Kafka. Initialising its transactional
    // producers (this instance's, the effect log's) would fence the running instance, and its
    // presence would announce (then leave) under the running one's name.
    let rocks = open_store(&opts, &plan.name)?;
    ensure_topics(settings, &plan, t.partitions, t.replication, CALL_TIMEOUT).map_err(|e| setup(e.to_string()))?;
    // `delegate` tools publish requests and await replies through this instance's bus.
    if let Some(slot) = compiled.resources.bus() {
        let bus = super::group::bus::KafkaBus::new(settings.clone(), &plan.name, opts.stop.clone());
        slot.set(Arc::new(bus.with_group(plan.group.as_deref())));
    }
    // `at-most-once` and `reconcile` tools log intents and results there (docs/effects.md).
    if let Some(slot) = compiled.resources.effects().filter(|_| compiled.resources.logs_effects()) {
        let (id, retention) = (&opts.instance_id, t.effects_retention());
        let log = super::effects::KafkaEffectLog::start(settings, &plan.name, id, t.replication, retention);
        slot.set(Arc::new(log.map_err(setup)?));
    }
    // Approval-gated tools ask and wait through the group's approvals topics (docs/approvals.md).
    super::approvals::channel::install(compiled, settings, &opts.stop);
    // An `[agent]` joins its group (not while replaying); dropped at return: the leave.
    let _presence = match opts.until {
        None => super::group::presence::join(compiled, settings, &opts.instance_id).map_err(setup)?,
        Some(_) => None,
    };
    // A group's instance says how it runs on `group.<g>.control.topologies` (the console's
    // Topologies page); dropped at return: its last status says it stopped. Only the console
    // reads it: an instance that cannot write it (say, no ACL to create the topic) runs on.
    let _status = match opts.until {
        None => {
            super::group::status::start(compiled, settings, &opts.instance_id, opts.stats.clone(), opts.stop.clone())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "no status for the group's console (the instance runs on)");
                    None
                })
        }
        Some(_) => None,
    };

    let threads = match opts.until {
        // A replay ends when each source partition reported its end: one thread sees them all.
        Some(_) => 1,
        None => opts.threads.max(1),
    };
    opts.state_query.set(Arc::new(StoreQuery { store: rocks.share(), ttls: Routes::from_plan(&plan)?.ttls }));
    let shared = threads::Shared {
        plan,
        opts: &opts,
        rocks: &rocks,
        commit_interval: Duration::from_millis(t.commit_interval_ms()),
        halt: AtomicBool::new(false),
        inject: inject::Injector::from_env().map_err(setup)?,
    };
    tracing::info!(threads, "starting stream threads");
    let results: Vec<Result<(), InstanceError>> = std::thread::scope(|scope| {
        let shared = &shared;
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                std::thread::Builder::new()
                    .name(format!("kafclaw-stream-{k}"))
                    .spawn_scoped(scope, move || threads::run_stream_thread(shared, k))
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(k, h)| match h {
                Err(e) => {
                    shared.halt.store(true, Ordering::Relaxed);
                    Err(setup(format!("stream thread {k}: {e}")))
                }
                Ok(h) => h.join().unwrap_or_else(|_| {
                    shared.halt.store(true, Ordering::Relaxed);
                    Err(InstanceError::Fatal(format!("stream thread {k} panicked")))
                }),
            })
            .collect()
    });
    tracing::info!(stats = ?opts.stats.snapshot(), "instance stopped");
    results.into_iter().collect()
}

/// The stream thread: one named step after another until stopped, done (a replay) or failed.
/// The instance is locked per step, never across `consumer.poll` (see [`Instance`]).
fn poll_loop(
    instance: &Mutex<Instance>,
    consumer: &BaseConsumer<InstanceContext>,
    global: Option<&BaseConsumer<QuietEof>>,
    shared: &threads::Shared<'_>,
) {
    while !shared.stopping() {
        let wait = lock(instance).finish_ready();
        if let Some(g) = global {
            follow_globals(g, instance);
        }
        // No lock held here: the rebalance callbacks run inside this poll and lock the instance.
        let polled_at = Instant::now();
        let polled = consumer.poll(wait);
        let mut i = lock(instance);
        crate::metrics::observe(&i.core.stats.metrics.poll_latency, polled_at.elapsed());
        // Partitions assigned during that poll are restored before their first record.
        i.core.restore_pending(consumer);
        i.on_polled(polled);
        i.punctuate_if_due();
        if i.core.replay_done() {
            break;
        }
        i.core.commit_if_due(consumer);
        i.core.update_lag(consumer);
        if i.core.failed() {
            break;
        }
    }
}

/// On the way out: a clean stop finishes the work in flight and commits; after a failure the
/// open transaction is aborted, so that nothing of it is ever committed, and the cause is the
/// instance's error.
fn shut_down(instance: &Mutex<Instance>, consumer: &BaseConsumer<InstanceContext>) -> Result<(), InstanceError> {
    let mut i = lock(instance);
    if !i.core.failed() {
        i.drain_in_flight(DRAIN_TIMEOUT);
        i.core.commit_or_abort(consumer);
    }
    let c = &mut i.core;
    match c.fatal.as_ref().map(ToString::to_string) {
        Some(why) => {
            c.abort_on_exit();
            Err(InstanceError::Fatal(why))
        }
        None => Ok(()),
    }
}
