//! Stream threads: an instance runs `threads` of them (`[topology] threads`, `--threads`),
//! as a Kafka Streams instance runs `num.stream.threads`.
//!
//! Each stream thread is a member of the consumer group of its own, with its own consumer,
//! its own transactional producer (exactly-once v2, KIP-447: one producer per thread, as Kafka
//! Streams' EOS-v2 has it; the group generation in every offset commit fences a zombie thread),
//! its own tasks, driver of asynchronous work, restores, punctuations and commits. So partitions
//! spread over the threads of all instances by the group's assignor, a rebalance moves
//! partitions between threads as between instances, and a thread never waits for another's
//! commit. What the threads of an instance share: the RocksDB store (each thread writes only
//! the partitions of its own tasks; `RocksStore::share`), the counters, the effect log, the
//! approvals channel, the agent bus and the group presence.
//!
//! Transactional ids: thread 0 keeps `<topology>-<instance id>` (what one thread always used,
//! so an upgrade fences its predecessor), thread `k > 0` uses `<topology>-<instance id>-<k>`.
//! With fewer threads than a previous run, the transaction a killed thread `k` left open is
//! aborted by the broker at `transaction.timeout.ms`, not fenced at start.
//!
//! A thread that fails stops every thread of the instance (each commits or aborts its own
//! transaction first), and the first failure is the instance's error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::context::InstanceContext;
use super::routes::Routes;
use super::until::Until;
use super::{Core, Instance, InstanceError, InstanceOptions, SWEEP_INTERVAL, emit, inject, lock, setup};
use crate::compiler::sections::Guarantee;
use crate::kafka::producer::{DeliveryCounter, new_producer};
use crate::kafka::tables::global::bootstrap_global;
use crate::runtime::driver::{Driver, MAX_IN_FLIGHT};
use kafclaw_state::{Epoch, RocksStore};

/// What every stream thread of an instance starts from.
pub(super) struct Shared<'a> {
    pub(super) plan: Arc<crate::compiler::PhysicalPlan>,
    pub(super) opts: &'a InstanceOptions,
    /// The instance's store; each thread takes a handle of its own.
    pub(super) rocks: &'a RocksStore,
    /// How often each thread commits its open transaction.
    pub(super) commit_interval: Duration,
    /// Set when a thread failed: the others stop too.
    pub(super) halt: AtomicBool,
    /// Injected send failures, counted over all threads (debug builds).
    pub(super) inject: inject::Injector,
}

impl Shared<'_> {
    /// Whether the stream threads are to stop (asked from outside, or a thread failed).
    pub(super) fn stopping(&self) -> bool {
        self.opts.stop.load(Ordering::Relaxed) || self.halt.load(Ordering::Relaxed)
    }
}

/// The `transactional.id` (and `client.id`) of stream thread `index` of an instance.
pub(super) fn client_id(topology: &str, instance_id: &str, index: usize) -> String {
    match index {
        0 => format!("{topology}-{instance_id}"),
        k => format!("{topology}-{instance_id}-{k}"),
    }
}

/// Runs stream thread `index` until the instance stops or this thread fails (then it makes
/// the other threads stop too).
pub(super) fn run_stream_thread(shared: &Shared<'_>, index: usize) -> Result<(), InstanceError> {
    let result = stream_thread(shared, index);
    if let Err(e) = &result {
        tracing::error!(thread = index, error = %e, "stream thread failed; stopping the instance");
        shared.halt.store(true, Ordering::Relaxed);
    }
    result
}

fn stream_thread(shared: &Shared<'_>, index: usize) -> Result<(), InstanceError> {
    let (plan, opts) = (&shared.plan, shared.opts);
    let settings = &opts.settings;
    let eos = plan.guarantee == Guarantee::ExactlyOnce;
    let client_id = client_id(&plan.name, &opts.instance_id, index);
    let deliveries = Arc::new(DeliveryCounter::default());
    let mut producer_forced = vec![("enable.idempotence", "true"), ("client.id", client_id.as_str())];
    if eos {
        producer_forced.push(("transactional.id", client_id.as_str()));
    }
    let producer_config =
        settings.client_config_with(&[("partitioner", "murmur2_random"), ("linger.ms", "5")], &producer_forced);
    let producer =
        new_producer(&producer_config, &deliveries).map_err(|e| InstanceError::Fatal(format!("producer: {e}")))?;

    let routes = Routes::from_plan(plan)?;
    let (group_topics, global_topics) = (routes.group_topics.clone(), routes.global_topics.clone());
    let limits = emit::Limits::from_config(&producer_config, plan.dead_letter.max_copy_bytes);
    let core = Core {
        plan: plan.clone(),
        until: Until::new(opts.until.clone(), group_topics.clone()),
        routes,
        producer,
        producer_config,
        deliveries,
        delivery_failures_seen: 0,
        eos,
        in_txn: false,
        sent_since_commit: false,
        commit_interval: shared.commit_interval,
        next_commit: Instant::now() + shared.commit_interval,
        positions: Default::default(),
        tasks: Default::default(),
        task_gen: Default::default(),
        generation: 0,
        locations: Default::default(),
        buf: Vec::new(),
        stats: opts.stats.clone(),
        fatal: None,
        pending_abort: None,
        aborts_in_a_row: 0,
        limits,
        refused: Default::default(),
        inject: shared.inject.clone(),
        store: Epoch::new(Box::new(shared.rocks.share())),
        settings: settings.clone(),
        pending_restore: Vec::new(),
        assigned: Default::default(),
        punctuated: Default::default(),
        next_punctuation: Instant::now(),
        next_sweep: Instant::now() + SWEEP_INTERVAL,
        next_lag: Instant::now(),
        global_store: crate::runtime::memory_store(),
    };
    let driver = Driver::new(MAX_IN_FLIGHT).map_err(|e| setup(format!("executor: {e}")))?;
    let instance = Arc::new(Mutex::new(Instance { core, driver }));

    let consumer: BaseConsumer<InstanceContext> = settings
        .client_config_with(
            &[("auto.offset.reset", "earliest")],
            &[
                ("partition.assignment.strategy", super::checks::assignment_strategy(plan)),
                ("group.id", plan.name.as_str()),
                ("client.id", client_id.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                // The partitions' ends the consumer sees, for the lag metrics (`lag.rs`).
                ("statistics.interval.ms", "1000"),
                ("enable.partition.eof", if opts.until.is_some() { "true" } else { "false" }),
            ],
        )
        .create_with_context(InstanceContext { instance: instance.clone(), stats: opts.stats.clone(), thread: index })
        .map_err(|e| setup(format!("consumer: {e}")))?;
    // Global tables first, read to their end, as Kafka Streams bootstraps global stores. Each
    // stream thread keeps its own copy (in memory), so a thread never waits on another's.
    let global = match global_topics.is_empty() {
        true => None,
        false => Some(
            bootstrap_global(settings, &plan.name, &global_topics, &opts.stop, |m| lock(&instance).process(m))
                .map_err(|e| setup(format!("global tables: {e}")))?,
        ),
    };
    let topic_refs: Vec<&str> = group_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(|e| setup(format!("subscribe: {e}")))?;
    tracing::info!(thread = index, client_id = %client_id, "stream thread started");

    super::poll_loop(&instance, &consumer, global.as_ref(), shared);
    let result = super::shut_down(&instance, &consumer);
    if result.is_ok() && opts.until.is_some() {
        super::visible::await_visible_commit(&consumer);
    }
    // Leaving the group runs the revoke callback (nothing left to commit) and closes.
    consumer.unsubscribe();
    drop(consumer);
    result
}
