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
use kafclaw_operators::kafka::KeyField;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::client::ClientSettings;
use super::clients::{CALL_TIMEOUT, DeliveryCounter, ProducerCtx, new_producer, send_record};
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
    topic: String,
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
    fatal: Option<String>,
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

/// Length of a W3C `traceparent` value: `00-<32 hex>-<16 hex>-01`.
const TRACEPARENT_LEN: usize = 55;

/// Writes the output's W3C `traceparent` header value into `buf` (no allocation per record).
fn write_traceparent<'b>(buf: &'b mut [u8; TRACEPARENT_LEN], e: &kafclaw_operators::Envelope) -> &'b [u8] {
    match (e.trace_id.as_deref(), e.span_id.as_deref()) {
        (Some(t), Some(s)) if t.len() == 32 && s.len() == 16 => {
            buf[..3].copy_from_slice(b"00-");
            buf[3..35].copy_from_slice(t.as_bytes());
            buf[35] = b'-';
            buf[36..52].copy_from_slice(s.as_bytes());
            buf[52..].copy_from_slice(b"-01");
            &buf[..]
        }
        // Outputs always carry both (the task stamps them); an empty header otherwise.
        _ => &[],
    }
}

fn fatal_of(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}

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
                self.fatal = Some(format!("begin transaction: {e}"));
                return false;
            }
            self.in_txn = true;
        }
        true
    }

    fn send(&mut self, topic: &str, key: Option<&[u8]>, payload: &[u8], headers: OwnedHeaders) -> KafkaResult<()> {
        let mut record = BaseRecord::to(topic).payload(payload).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        send_record(&self.producer, record)
    }

    fn process(&mut self, m: &BorrowedMessage<'_>) {
        if self.global_topics.contains(m.topic()) {
            return self.process_global(m);
        }
        if self.fatal.is_some() || !self.begin() {
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
            self.fatal = Some(e.to_string());
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
        if self.fatal.is_some() {
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
            self.fatal = Some(format!("global table: {e}"));
        }
        if !out.dead_letters.is_empty() && self.begin() {
            self.emit(&mut out);
        }
        out.dead_letters.clear();
        self.out = out;
    }

    fn emit(&mut self, out: &mut TaskOutput) {
        let mut buf = std::mem::take(&mut self.buf);
        let (mut partition, mut offset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut traceparent = [0u8; TRACEPARENT_LEN];
        for o in out.records.drain(..) {
            let target = &self.sinks[&o.sink];
            let e = &o.envelope;
            let key = match target.key {
                KeyField::CorrelationId => Some(e.correlation_id.as_bytes()),
                KeyField::SenderId => Some(e.sender_id.as_bytes()),
                KeyField::Id => e.id.as_deref().map(str::as_bytes),
                KeyField::None => None,
            };
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header { key: headers::INPUT_TOPIC, value: Some(o.origin.location.as_bytes()) })
                .insert(Header { key: headers::INPUT_PARTITION, value: Some(partition.format(o.origin.partition)) })
                .insert(Header { key: headers::INPUT_OFFSET, value: Some(offset.format(o.origin.offset)) })
                .insert(Header { key: headers::TRACEPARENT, value: Some(write_traceparent(&mut traceparent, e)) });
            buf.clear();
            e.encode_into(&mut buf);
            let mut record = BaseRecord::to(&target.topic).payload(&buf[..]).headers(headers);
            if let Some(k) = key {
                record = record.key(k);
            }
            match send_record(&self.producer, record) {
                Ok(()) => Stats::add(&self.stats.produced, 1),
                Err(err) => {
                    // The record cannot be written (too large, …): dead-letter it, keep going.
                    let letter = kafclaw_operators::DeadLetter::at(
                        &o.origin,
                        format!("sink:{}", self.plan.nodes[o.sink].name),
                        format!("produce to `{}` failed: {err}", target.topic),
                        buf.clone(),
                    );
                    out.dead_letters.push(letter);
                }
            }
        }
        for w in out.changelog.drain(..) {
            let topic = changelog_topic(&self.plan, &w.table);
            let partition = w.origin.partition.to_string();
            let offset = w.origin.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header { key: headers::INPUT_TOPIC, value: Some(w.origin.location.as_bytes()) })
                .insert(Header { key: headers::INPUT_PARTITION, value: Some(partition.as_bytes()) })
                .insert(Header { key: headers::INPUT_OFFSET, value: Some(offset.as_bytes()) });
            let mut record = BaseRecord::to(&topic).key(&w.key[..]).partition(w.partition).headers(headers);
            if let Some(v) = &w.value {
                record = record.payload(&v[..]);
            }
            if let Err(e) = send_record(&self.producer, record) {
                self.fatal = Some(format!("changelog `{topic}`: {e}"));
            }
        }
        self.buf = buf;
        for letter in out.dead_letters.drain(..) {
            let mut h = OwnedHeaders::new();
            for (k, v) in letter.headers() {
                h = h.insert(Header { key: k, value: Some(&v) });
            }
            let dlq = self.dlq_topic.clone();
            tracing::debug!(stage = %letter.stage, input = %letter.describe_input(), error = %letter.error, "record dead-lettered");
            match self.send(&dlq, None, &letter.raw, h) {
                Ok(()) => Stats::add(&self.stats.dead_lettered, 1),
                Err(e) => self.fatal = Some(format!("dead-letter topic `{dlq}`: {e}")),
            }
        }
    }

    /// Replay: the partitions that reported their end before this commit are done.
    fn settle_until(&mut self) {
        if let Some(until) = &mut self.until {
            for tp in self.at_end.drain(..) {
                until.remove(&tp);
            }
        }
    }

    /// Deletes what the tasks' TTL tables hold past its time, inside the open transaction
    /// (the tombstones go to the changelogs with the outputs).
    fn sweep(&mut self) {
        if self.eos && !self.in_txn {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        let mut swept = 0;
        for task in self.tasks.values_mut() {
            match task.sweep(&mut self.store, &mut out) {
                Ok(n) => swept += n,
                Err(e) => self.fatal = Some(format!("sweeping expired state: {e}")),
            }
        }
        if swept > 0 {
            tracing::debug!(swept, "expired state entries deleted");
        }
        self.emit(&mut out);
        self.out = out;
    }

    /// Commits the open transaction (or, at-least-once, flushes and commits offsets).
    fn commit(&mut self, consumer: &BaseConsumer<InstanceContext>) -> KafkaResult<()> {
        if Instant::now() >= self.next_sweep {
            self.sweep();
            self.next_sweep = Instant::now() + SWEEP_INTERVAL;
        }
        if self.positions.is_empty() && !self.in_txn {
            self.settle_until();
            return Ok(());
        }
        // Offsets are committed only below inputs whose asynchronous work is unfinished.
        let mut tpl = TopicPartitionList::new();
        let mut committing = Vec::new();
        for ((topic, partition), next) in &self.positions {
            let unfinished = self.source_of_topic.get(&**topic).and_then(|&s| {
                self.tasks.get(&(self.sub_of_node[s], *partition)).and_then(|t| t.first_unfinished(topic))
            });
            let offset = unfinished.map_or(*next, |u| u.min(*next));
            tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))?;
            committing.push(((topic.clone(), *partition), offset));
        }
        if self.eos {
            // Inputs read whose work is still in flight produce no output yet, so no
            // transaction may be open: their offsets are committed in one of their own.
            if !self.in_txn && !self.begin() {
                return Ok(());
            }
            if !self.positions.is_empty() {
                let cgm = consumer.group_metadata().ok_or(KafkaError::Canceled)?;
                self.producer.send_offsets_to_transaction(&tpl, &cgm, CALL_TIMEOUT)?;
            }
            self.producer.commit_transaction(CALL_TIMEOUT)?;
            self.in_txn = false;
        } else {
            self.producer.flush(CALL_TIMEOUT)?;
            let failures = self.deliveries.failures.load(Ordering::Relaxed);
            if failures > self.delivery_failures_seen {
                self.delivery_failures_seen = failures;
                return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
            }
            if !self.positions.is_empty() {
                consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)?;
            }
        }
        self.settle_until();
        for (tp, offset) in committing {
            if self.positions.get(&tp).is_some_and(|next| *next <= offset) {
                self.positions.remove(&tp);
            }
        }
        // The transaction committed: seal the epoch with how far each changelog now reaches.
        let ends: Vec<((String, i32), i64)> =
            self.deliveries.changelog_ends.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let checkpoints = ends
            .into_iter()
            .filter_map(|((topic, p), end)| self.changelog_tables.get(&topic).map(|t| (t.clone(), p as u32, end + 1)))
            .collect();
        if let Err(e) = self.store.seal(checkpoints) {
            self.fatal = Some(format!("sealing state after a commit: {e}"));
        }
        Stats::add(&self.stats.commits, 1);
        Ok(())
    }

    /// Abandons the open transaction and rewinds every assigned partition to its committed
    /// offset, so its records are processed again.
    fn abort(&mut self, consumer: &BaseConsumer<InstanceContext>, why: &KafkaError) {
        tracing::warn!(error = %why, "aborting the open transaction and rewinding");
        if self.eos && self.in_txn {
            if let Err(e) = self.producer.abort_transaction(CALL_TIMEOUT) {
                self.fatal = Some(format!("abort transaction: {e}"));
                return;
            }
            self.in_txn = false;
            // A new incarnation of the producer (same transactional id): some brokers (Tansu)
            // stop applying a producer's transactional offset commits after it aborted one.
            match new_producer(&self.producer_config, &self.deliveries) {
                Ok(p) => self.producer = p,
                Err(e) => {
                    self.fatal = Some(format!("restarting the producer after an abort: {e}"));
                    return;
                }
            }
        }
        self.positions.clear();
        // Tasks start afresh from the committed state; work they had in flight is forgotten
        // (its inputs are read again).
        self.tasks.clear();
        self.task_gen.clear();
        self.store.abort();
        self.deliveries.changelog_ends.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Stats::add(&self.stats.aborts, 1);
        let rewound = consumer.assignment().and_then(|a| consumer.committed_offsets(a, CALL_TIMEOUT)).and_then(|c| {
            let mut seek = TopicPartitionList::new();
            for e in c.elements() {
                let to = if e.offset() == Offset::Invalid { Offset::Beginning } else { e.offset() };
                seek.add_partition_offset(e.topic(), e.partition(), to)?;
            }
            consumer.seek_partitions(seek, CALL_TIMEOUT).map(|_| ())
        });
        if let Err(e) = rewound {
            self.fatal = Some(format!("rewinding after an abort failed: {e}"));
        }
    }

    /// Commits, or aborts and rewinds; a fatal error is kept for the loop to return.
    fn commit_or_abort(&mut self, consumer: &BaseConsumer<InstanceContext>) {
        if let Err(e) = self.commit(consumer) {
            if fatal_of(&e) {
                self.fatal = Some(e.to_string());
            } else {
                self.abort(consumer, &e);
            }
        }
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
                self.fatal = Some(format!("reading committed offsets for a restore: {e}"));
                return;
            }
        };
        if let Err(e) = restore(&self.plan, &mut self.store, &self.settings, &committed, &jobs) {
            self.fatal = Some(format!("restoring state: {e}"));
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
                sinks.insert(i, SinkTarget { topic: c.topic.get_ref().clone(), key: c.key });
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
        if Instant::now() >= next_commit {
            c.commit_or_abort(&consumer);
            next_commit = Instant::now() + interval;
        }
        if let Some(f) = c.fatal.take() {
            break Err(InstanceError::Fatal(f));
        }
    };
    {
        let mut c = lock();
        if result.is_ok() {
            c.drain_in_flight(DRAIN_TIMEOUT);
            c.commit_or_abort(&consumer);
        } else if c.eos && c.in_txn {
            let _ = c.producer.abort_transaction(CALL_TIMEOUT);
            c.in_txn = false;
        }
    }
    if result.is_ok() && opts.until.is_some() {
        visible::await_visible_commit(&consumer);
    }
    // Leaving the group runs the revoke callback (nothing left to commit) and closes.
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(stats = ?opts.stats.snapshot(), "instance stopped");
    result
}
