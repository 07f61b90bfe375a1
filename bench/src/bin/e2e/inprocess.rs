//! The contenders of the mock-cluster run, in the harness's process: the raw loop on a thread,
//! or kafclaw's Kafka runtime (`kafclaw_engine::kafka::run_instance`, at-least-once) with one or
//! two stream threads, or two instances of one thread each in one group.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};
use kafclaw_engine::compiler::Compiled;
use kafclaw_engine::kafka::{ClientSettings, InstanceOptions, Stats, run_instance};

use crate::contenders::{FETCH_WAIT_MAX_MS, Job};
use crate::free::Free;

/// The filter topology (at-least-once: the mock cluster is not faithful for transactions).
pub fn compile(dir: &Path, group: &str, input: &str, output: &str, partitions: i32) -> Result<Compiled> {
    let path = dir.join(format!("{group}.toml"));
    std::fs::write(&path, crate::contenders::topology(group, "at-least-once", partitions, input, output))?;
    kafclaw_engine::compiler::compile_file(&path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// `session.timeout.ms` of the contenders' consumers on the mock cluster.
pub const MOCK_SESSION_TIMEOUT_MS: &str = "2000";
/// `heartbeat.interval.ms` of the contenders' consumers on the mock cluster.
pub const MOCK_HEARTBEAT_MS: &str = "250";

/// Records of one input partition a contender consumed so far.
pub type ConsumedFrom = Arc<dyn Fn(i32) -> u64 + Send + Sync>;

/// A running contender: its threads and its count of consumed records, in all and by input
/// partition (the feeder keeps each partition's backlog under the mock cluster's retention).
pub struct Running {
    pub consumed: Arc<dyn Fn() -> u64 + Send + Sync>,
    pub consumed_from: ConsumedFrom,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Running {
    pub fn finished(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    pub fn join(self) -> Result<()> {
        for t in self.threads {
            t.join().map_err(|_| anyhow!("contender thread panicked"))??;
        }
        Ok(())
    }
}

pub fn start(
    who: Free,
    compiled: Option<Compiled>,
    job: &Job<'_>,
    stop: &Arc<AtomicBool>,
    state_dir: &Path,
) -> Result<Running> {
    let (brokers, input, output, group) = (job.brokers, job.input, job.output, job.group);
    let (instances, threads) = match who {
        Free::MockRaw => {
            let consumed: Arc<[AtomicU64]> = (0..job.partitions).map(|_| AtomicU64::new(0)).collect();
            let (b, i, o, g, s, c) = (
                brokers.to_owned(),
                input.to_owned(),
                output.to_owned(),
                group.to_owned(),
                stop.clone(),
                consumed.clone(),
            );
            let t = std::thread::spawn(move || {
                crate::raw::run_until(&b, &i, &o, &g, (MOCK_SESSION_TIMEOUT_MS, MOCK_HEARTBEAT_MS), &s, &c)
            });
            let all = consumed.clone();
            return Ok(Running {
                consumed: Arc::new(move || all.iter().map(|c| c.load(Ordering::Relaxed)).sum()),
                consumed_from: Arc::new(move |p| consumed.get(p as usize).map_or(0, |c| c.load(Ordering::Relaxed))),
                threads: vec![t],
            });
        }
        Free::MockThreads1 => (1, 1),
        Free::MockThreads2 => (1, 2),
        Free::MockTwoInstances => (2, 1),
        Free::Local => unreachable!("local mode runs the kafclaw binary"),
    };
    let compiled = Arc::new(compiled.ok_or_else(|| anyhow!("no topology"))?);
    let mut all_stats = Vec::new();
    let mut handles = Vec::new();
    for n in 0..instances {
        let stats = Arc::new(Stats::default());
        all_stats.push(stats.clone());
        let opts = InstanceOptions {
            instance_id: format!("bench-{n}"),
            settings: settings(&compiled, brokers),
            stop: stop.clone(),
            stats,
            state_dir: state_dir.join(format!("instance-{n}")),
            until: None,
            state_query: Default::default(),
            threads,
        };
        let c = compiled.clone();
        handles.push(std::thread::spawn(move || run_instance(&c, opts).map_err(|e| anyhow!("kafclaw: {e}"))));
    }
    let by_partition = all_stats.clone();
    let input = input.to_owned();
    let consumed = move || all_stats.iter().map(|s| s.consumed.load(Ordering::Relaxed)).sum();
    let consumed_from = move |p| by_partition.iter().map(|s| s.metrics.consumed_from(&input, p)).sum();
    Ok(Running { consumed: Arc::new(consumed), consumed_from: Arc::new(consumed_from), threads: handles })
}

/// The client settings `kafclaw run` would use with the harness's environment (contenders.rs),
/// but a shorter session: the mock cluster waits the session timeout less 1 s for members to
/// rejoin at every rebalance (two stream threads joining one after the other rebalance).
fn settings(c: &Compiled, brokers: &str) -> ClientSettings {
    let mut s = ClientSettings::new(&c.spec.kafka, std::iter::empty());
    s.set("bootstrap.servers", brokers);
    s.set("session.timeout.ms", MOCK_SESSION_TIMEOUT_MS);
    s.set("heartbeat.interval.ms", MOCK_HEARTBEAT_MS);
    s.set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS);
    s
}
