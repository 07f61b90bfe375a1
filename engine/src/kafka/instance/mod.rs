//! The Kafka instance runtime: one member of the topology's consumer group.
//!
//! - consumer group = topology name; cooperative-sticky assignment; `read_committed`;
//! - one [`Task`] per (sub-topology, assigned partition), created on the partition's first
//!   record and dropped when the partition is revoked;
//! - exactly-once (DESIGN §5, KIP-447): one transactional producer per instance
//!   (`transactional.id = <topology>-<instance id>`); each commit interval the outputs and
//!   dead letters of the open transaction are flushed, the processed positions are sent to the
//!   transaction with the consumer's group metadata, and the transaction is committed. A
//!   failed commit aborts, forgets the transaction's dedup ids and rewinds every assigned
//!   partition to its committed offset;
//! - at-least-once: outputs are flushed, then offsets committed;
//! - on revoke, the open transaction is committed before the partitions are released;
//! - every output carries its input's coordinates in headers and a `traceparent`.
//!
//! One stream thread per instance in this version: tasks share it, as Kafka Streams tasks
//! share a stream thread; scale out by adding instances.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafclaw_operators::RawView;
use kafclaw_operators::connectors::kafka::KeyField;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::client::ClientSettings;
use super::clients::{CALL_TIMEOUT, DeliveryCounter, ProducerCtx, new_producer};
use super::fault::{Fault, classify};
use super::global::{MULTI_TOPIC_QUIET, bootstrap_global};
use super::restore::{RestoreJob, restore};
use super::stats::Stats;
use super::topics::{changelog_topic, dead_letter_topic, ensure_topics};
use crate::compiler::registry::NodeConfig;
use crate::compiler::spec::Guarantee;
use crate::compiler::{Compiled, PhysicalPlan};
use crate::runtime::TaskStore;
use crate::runtime::executor::Executor;
use crate::runtime::query::QuerySlot;
use crate::runtime::task::{BuildError, Task, TaskOutput};
use kafclaw_state::{Epoch, RocksStore, StateStore};

mod checks;
mod context;
mod emit;
mod inject;
mod txn;
mod visible;
mod work;

use context::{CoreQuery, InstanceContext};

/// Header names on every output.
pub mod headers {
    /// Input topic.
    pub const INPUT_TOPIC: &str = "kafclaw.input.topic";
    /// Input partition.
    pub const INPUT_PARTITION: &str = "kafclaw.input.partition";
    /// Input offset.
    pub const INPUT_OFFSET: &str = "kafclaw.input.offset";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// On a changelog record: a reset marker written by `kafclaw replay` (value: the replay's
    /// start, for people reading the topic).
    pub const RESET: &str = "kafclaw.reset";
}

/// How an instance runs.
#[derive(Debug, Clone)]
pub struct InstanceOptions {
    /// Stable id of this instance; with the topology name it forms the transactional id.
    pub instance_id: String,
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

struct SinkTarget {
    /// Shared, so that sending an output clones a pointer, not the name.
    topic: Arc<str>,
    key: KeyField,
}

/// Everything the poll loop and the rebalance callbacks share.
struct Core {
    plan: Arc<PhysicalPlan>,
    producer: BaseProducer<ProducerCtx>,
    producer_config: rdkafka::ClientConfig,
    deliveries: Arc<DeliveryCounter>,
    delivery_failures_seen: u64,
    eos: bool,
    in_txn: bool,
    /// Next offset to process per source partition, until committed in full.
    positions: HashMap<(Arc<str>, i32), i64>,
    tasks: HashMap<(usize, i32), Task>,
    /// The generation of each task: outcomes of asynchronous work started by a task that has
    /// since been dropped (revoked, aborted) are ignored.
    task_gen: HashMap<(usize, i32), u64>,
    generation: u64,
    /// Runs the tasks' asynchronous work (model calls).
    executor: Executor<TaskKey>,
    source_of_topic: HashMap<String, usize>,
    sub_of_node: Vec<usize>,
    sinks: HashMap<usize, SinkTarget>,
    locations: HashMap<String, Arc<str>>,
    dlq_topic: String,
    out: TaskOutput,
    buf: Vec<u8>,
    stats: Arc<Stats>,
    /// Why the instance must stop (the first cause); the open transaction is aborted before
    /// anything else is done (see [`Core::fail`]).
    fatal: Option<String>,
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
    /// changelog topic → table
    changelog_tables: HashMap<String, String>,
    /// sub-topology → its state tables (and whether each is a journal)
    sub_tables: Vec<Vec<(String, bool)>>,
    settings: ClientSettings,
    pending_restore: Vec<RestoreJob>,
    /// When TTL tables are next swept.
    next_sweep: Instant,
    /// Topics read as global tables.
    global_topics: HashSet<String>,
    /// The global tables' state (in memory, rebuilt from their topics at every start).
    global_store: TaskStore,
    /// Source partitions still to finish (replay).
    until: Option<HashSet<(String, i32)>>,
    /// Source partitions that reported their end since the last commit (replay).
    at_end: Vec<(String, i32)>,
}

/// A task, as asynchronous work names it: (sub-topology, partition, generation).
type TaskKey = (usize, i32, u64);

/// Most asynchronous calls in flight per instance before polling pauses.
const MAX_IN_FLIGHT: usize = 10_000;

/// How long a rebalance or a shutdown waits for asynchronous work in flight to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Replay: how long no record may arrive before the sources count as read to their end even
/// without end-of-partition events.
const REPLAY_QUIET: Duration = Duration::from_secs(10);

/// How often the TTL tables of the assigned tasks are swept (reads hide expired entries in
/// between, so this only bounds how long they take space).
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

impl Core {
    fn ensure_task(&mut self, sub: usize, partition: i32) -> Result<(), BuildError> {
        if !self.tasks.contains_key(&(sub, partition)) {
            let task = Task::new(self.plan.clone(), &self.plan.subtopologies[sub], partition)?;
            tracing::debug!(subtopology = sub, partition, "task started");
            self.generation += 1;
            self.task_gen.insert((sub, partition), self.generation);
            self.tasks.insert((sub, partition), task);
        }
        Ok(())
    }

    fn drop_task(&mut self, sub: usize, partition: i32) {
        self.tasks.remove(&(sub, partition));
        self.task_gen.remove(&(sub, partition));
    }

    /// Begins the transaction if none is open (exactly-once); `false` on a fatal error.
    fn begin(&mut self) -> bool {
        if self.eos && !self.in_txn {
            if let Err(e) = self.producer.begin_transaction() {
                self.fail(format!("begin transaction: {e}"));
                return false;
            }
            self.in_txn = true;
        }
        true
    }

    fn process(&mut self, m: &BorrowedMessage<'_>) {
        if self.global_topics.contains(m.topic()) {
            return self.process_global(m);
        }
        // After a failure nothing more is processed: the record is read again after the abort
        // (or the restart), from the last committed offset.
        if self.stopping() || !self.begin() {
            return;
        }
        let Some((sub, mut out)) = self.run_record(m, false) else { return };
        self.spawn(&mut out, sub, m.partition());
        Stats::add(&self.stats.consumed, 1);
        Stats::add(&self.stats.deduplicated, std::mem::take(&mut out.deduplicated));
        self.emit(&mut out);
        self.out = out;
        let location = self.location(m.topic());
        self.positions.insert((location, m.partition()), m.offset() + 1);
    }

    /// The topic's name as the records read from it share it (allocated once per topic).
    fn location(&mut self, topic: &str) -> Arc<str> {
        if let Some(l) = self.locations.get(topic) {
            return l.clone();
        }
        let l: Arc<str> = topic.into();
        self.locations.insert(topic.to_owned(), l.clone());
        l
    }

    /// Decodes `m` and runs it through its task (created on its partition's first record),
    /// on the global store for a global table; the task's outputs, to be handled by the caller.
    fn run_record(&mut self, m: &BorrowedMessage<'_>, global: bool) -> Option<(usize, TaskOutput)> {
        let topic = m.topic();
        let source = *self.source_of_topic.get(topic)?;
        let sub = self.sub_of_node[source];
        let location = self.location(topic);
        let raw = RawView {
            bytes: m.payload().unwrap_or_default(),
            partition: m.partition(),
            offset: m.offset(),
            line: None,
        };
        if let Err(e) = self.ensure_task(sub, m.partition()) {
            self.fail(e.to_string());
            return None;
        }
        let mut out = std::mem::take(&mut self.out);
        let task = self.tasks.get_mut(&(sub, m.partition())).expect("ensured above");
        let store = if global { &mut self.global_store } else { &mut self.store };
        task.process_raw(source, &location, raw, store, &mut out);
        Some((sub, out))
    }

    /// A record of a global table: into the in-memory global store, no changelog, no offsets;
    /// only dead letters leave the instance.
    fn process_global(&mut self, m: &BorrowedMessage<'_>) {
        if self.stopping() {
            return;
        }
        let Some((_, mut out)) = self.run_record(m, true) else { return };
        out.changelog.clear();
        if !out.spawned.is_empty() {
            tracing::warn!(
                topic = m.topic(),
                "asynchronous operators do not run on global tables; their work is dropped"
            );
            out.spawned.clear();
        }
        if let Err(e) = self.global_store.seal(Vec::new()) {
            self.fail(format!("global table: {e}"));
        }
        if !out.dead_letters.is_empty() && self.begin() {
            self.emit(&mut out);
        }
        out.dead_letters.clear();
        self.out = out;
    }
}

impl Core {
    /// Restores the state of newly assigned partitions (queued by the assign callback) before
    /// any of their records is processed.
    fn restore_pending(&mut self, consumer: &BaseConsumer<InstanceContext>) {
        if self.pending_restore.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.pending_restore);
        let mut tpl = TopicPartitionList::new();
        for job in &jobs {
            for &s in &self.plan.subtopologies[job.sub].sources {
                if let Some(t) = self.plan.nodes[s].config.kafka_topic() {
                    tpl.add_partition(t, job.partition);
                }
            }
        }
        let committed = match consumer.committed_offsets(tpl, CALL_TIMEOUT) {
            Ok(c) => c
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                self.fail(format!("reading committed offsets for a restore: {e}"));
                return;
            }
        };
        if let Err(e) = restore(&self.plan, &mut self.store, &self.settings, &committed, &jobs) {
            self.fail(format!("restoring state: {e}"));
        }
    }
}

fn setup(msg: impl Into<String>) -> InstanceError {
    InstanceError::Setup(msg.into())
}

/// Runs one instance of a compiled topology until `opts.stop` is set or a fatal error.
pub fn run_instance(compiled: &Compiled, opts: InstanceOptions) -> Result<(), InstanceError> {
    let plan = Arc::new(compiled.plan.clone());
    let t = &compiled.spec.topology;
    let settings = &opts.settings;
    tracing::info!(topology = %plan.name, instance = %opts.instance_id, config = ?settings.redacted(), "starting instance");
    checks::check_plan(&plan, settings)?;
    ensure_topics(settings, &plan, t.partitions, t.replication, CALL_TIMEOUT).map_err(|e| setup(e.to_string()))?;
    // `delegate` tools publish requests and await replies through this instance's bus.
    compiled.spec.bus.set(Arc::new(super::bus::KafkaBus::new(settings.clone(), &plan.name, opts.stop.clone())));
    // An `[agent]` joins its group (not while replaying); dropped at return: the leave.
    let _presence = match opts.until {
        None => super::presence::join(compiled, settings, &opts.instance_id).map_err(setup)?,
        Some(_) => None,
    };

    let eos = plan.guarantee == Guarantee::ExactlyOnce;
    let client_id = format!("{}-{}", plan.name, opts.instance_id);
    let deliveries = Arc::new(DeliveryCounter::default());
    let mut producer_forced = vec![("enable.idempotence", "true"), ("client.id", client_id.as_str())];
    if eos {
        producer_forced.push(("transactional.id", client_id.as_str()));
    }
    let producer_config =
        settings.client_config_with(&[("partitioner", "murmur2_random"), ("linger.ms", "5")], &producer_forced);
    let producer =
        new_producer(&producer_config, &deliveries).map_err(|e| InstanceError::Fatal(format!("producer: {e}")))?;

    let mut source_of_topic = HashMap::new();
    let mut sinks = HashMap::new();
    let mut sub_of_node = vec![0; plan.nodes.len()];
    for sub in &plan.subtopologies {
        for &n in &sub.nodes {
            sub_of_node[n] = sub.id;
        }
    }
    for (i, n) in plan.nodes.iter().enumerate() {
        match &*n.config {
            NodeConfig::KafkaSource(c) if source_of_topic.insert(c.topic.get_ref().clone(), i).is_some() => {
                return Err(setup(format!("topic `{}` is read by two sources", c.topic.get_ref())));
            }
            NodeConfig::KafkaSink(c) => {
                sinks.insert(i, SinkTarget { topic: Arc::from(c.topic.get_ref().as_str()), key: c.key });
            }
            _ => {}
        }
    }
    // Global sources are read in full by this instance, outside the group.
    let global_topics: HashSet<String> =
        source_of_topic.iter().filter(|(_, s)| plan.is_global(sub_of_node[**s])).map(|(t, _)| t.clone()).collect();
    let topics: Vec<String> = source_of_topic.keys().filter(|t| !global_topics.contains(*t)).cloned().collect();
    let mut changelog_tables = HashMap::new();
    let mut sub_tables = vec![Vec::new(); plan.subtopologies.len()];
    let mut ttls = HashMap::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        if plan.is_global(sub_of_node[i]) {
            continue;
        }
        for table in n.config.state_tables(&n.name) {
            if let Some(ttl) = table.ttl_ms {
                ttls.insert(table.name.clone(), ttl);
            }
            changelog_tables.insert(changelog_topic(&plan, &table.name), table.name.clone());
            sub_tables[sub_of_node[i]].push((table.name, table.journal));
        }
    }
    let db_path = opts.state_dir.join(&plan.name).join(&opts.instance_id);
    let rocks = RocksStore::open(&db_path).map_err(|e| setup(format!("state store: {e}")))?;
    tracing::info!(path = %db_path.display(), tables = ?rocks.tables(), "state store open");
    let limits = emit::Limits::from_config(&producer_config, plan.dead_letter.max_copy_bytes);
    let core = Arc::new(Mutex::new(Core {
        plan: plan.clone(),
        producer,
        producer_config,
        deliveries,
        delivery_failures_seen: 0,
        eos,
        in_txn: false,
        positions: HashMap::new(),
        tasks: HashMap::new(),
        task_gen: HashMap::new(),
        generation: 0,
        executor: Executor::new().map_err(|e| setup(format!("executor: {e}")))?,
        source_of_topic,
        sub_of_node,
        sinks,
        locations: HashMap::new(),
        dlq_topic: dead_letter_topic(&plan),
        out: TaskOutput::default(),
        buf: Vec::new(),
        stats: opts.stats.clone(),
        fatal: None,
        pending_abort: None,
        aborts_in_a_row: 0,
        limits,
        refused: HashMap::new(),
        inject: inject::Injector::from_env().map_err(setup)?,
        store: Epoch::new(Box::new(rocks)),
        changelog_tables,
        sub_tables,
        settings: settings.clone(),
        pending_restore: Vec::new(),
        next_sweep: Instant::now() + SWEEP_INTERVAL,
        global_topics: global_topics.clone(),
        global_store: crate::runtime::memory_store(),
        until: opts.until.clone(),
        at_end: Vec::new(),
    }));

    opts.state_query.set(Arc::new(CoreQuery { core: core.clone(), ttls }));
    let consumer: BaseConsumer<InstanceContext> = settings
        .client_config_with(
            &[("auto.offset.reset", "earliest"), ("partition.assignment.strategy", "cooperative-sticky")],
            &[
                ("group.id", plan.name.as_str()),
                ("client.id", client_id.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", if opts.until.is_some() { "true" } else { "false" }),
            ],
        )
        .create_with_context(InstanceContext { core: core.clone() })
        .map_err(|e| setup(format!("consumer: {e}")))?;
    let lock = || core.lock().unwrap_or_else(|p| p.into_inner());
    // Global tables first, read to their end, as Kafka Streams bootstraps global stores.
    let global = match global_topics.is_empty() {
        true => None,
        false => Some(
            bootstrap_global(settings, &plan.name, &global_topics, &opts.stop, |m| lock().process(m))
                .map_err(|e| setup(format!("global tables: {e}")))?,
        ),
    };
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(|e| setup(format!("subscribe: {e}")))?;

    let interval = Duration::from_millis(t.commit_interval_ms);
    let mut next_commit = Instant::now() + interval;
    let mut last_record = Instant::now();
    let result = loop {
        if opts.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let mut wait = next_commit.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        {
            let mut c = lock();
            if c.in_flight() > 0 {
                // Outcomes arrive on the executor's channel: poll briefly, then finish them.
                wait = wait.min(Duration::from_millis(2));
                c.complete_ready(Duration::ZERO);
            }
            while c.in_flight() >= MAX_IN_FLIGHT && c.fatal.is_none() {
                c.complete_ready(Duration::from_millis(100));
            }
        }
        // Follow the global tables.
        if let Some(g) = &global {
            for _ in 0..1000 {
                match g.poll(Duration::ZERO) {
                    Some(Ok(m)) => lock().process(&m),
                    Some(Err(KafkaError::PartitionEOF(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "global table consume error");
                        break;
                    }
                }
            }
        }
        let polled = consumer.poll(wait);
        let polled_record = matches!(polled, Some(Ok(_)));
        // Partitions assigned during that poll are restored before their first record.
        lock().restore_pending(&consumer);
        match polled {
            Some(Ok(m)) => lock().process(&m),
            // Replay: the partition is read to its end. The event names only the partition
            // number, so with several source topics it marks that partition of each, and the
            // replay also waits for the sources to be quiet (below).
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let mut c = lock();
                for t in &topics {
                    c.at_end.push((t.clone(), p));
                }
            }
            Some(Err(e)) if classify(&e) == Fault::Fatal => lock().fail(format!("consume: {e}")),
            Some(Err(e)) => tracing::warn!(error = %e, "consume error"),
            None => {}
        }
        if polled_record {
            last_record = Instant::now();
        }
        let mut c = lock();
        if c.until.as_ref().is_some_and(HashSet::is_empty)
            && (topics.len() == 1 || last_record.elapsed() >= MULTI_TOPIC_QUIET)
        {
            break Ok(());
        }
        // A broker that never reports a partition's end (seen on Tansu now and then): after a
        // long quiet with every partition assigned and nothing in flight, the replay is done.
        if c.until.as_ref().is_some_and(|u| !u.is_empty())
            && last_record.elapsed() >= REPLAY_QUIET
            && c.stats.assigned.load(Ordering::Relaxed) > 0
            && c.in_flight() == 0
        {
            tracing::warn!(
                waiting = ?c.until,
                "no end-of-partition seen for {REPLAY_QUIET:?} with nothing arriving; treating the sources as fully read"
            );
            break Ok(());
        }
        c.producer.poll(Duration::ZERO);
        // A failure stops everything before the next commit: a due abort first, a stop at once.
        if let Some(why) = c.pending_abort.clone()
            && c.fatal.is_none()
        {
            c.abort(&consumer, &why);
            next_commit = Instant::now() + interval;
        }
        if c.fatal.is_none() && Instant::now() >= next_commit {
            c.commit_or_abort(&consumer);
            next_commit = Instant::now() + interval;
        }
        if let Some(f) = c.fatal.clone() {
            break Err(InstanceError::Fatal(f));
        }
    };
    let result = {
        let mut c = lock();
        if result.is_ok() {
            c.drain_in_flight(DRAIN_TIMEOUT);
            c.commit_or_abort(&consumer);
        }
        match c.fatal.clone() {
            Some(f) => {
                c.abort_on_exit();
                Err(InstanceError::Fatal(f))
            }
            None => result,
        }
    };
    if result.is_ok() && opts.until.is_some() {
        visible::await_visible_commit(&consumer);
    }
    // Leaving the group runs the revoke callback (nothing left to commit) and closes.
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(stats = ?opts.stats.snapshot(), "instance stopped");
    result
}
