//! Chaos against the real broker and the real binary (issue 14, item 7): an exactly-once
//! instance killed (SIGKILL) at 20 random moments under load, the broker frozen (SIGSTOP) for
//! 20 s mid-run, and a rebalance storm of three instances. (With `KAFCLAW_THREADS=2` the kill
//! test fails on the test broker: each input partition's committed offset stops moving at one
//! of the kills, a different one per partition, and the last incarnation's transactions commit
//! — no aborts, distinct producer ids, epochs bumped at every start — yet neither their
//! offsets nor their outputs become visible; docs/kafka-brokers.md. Stream threads default to
//! 1 until this is understood.) Each test checks, at the end: no
//! input missing (every input coordinate has an output carrying it in
//! `kafclaw.input.{partition,offset}`), the group's committed offsets equal the end of every
//! input partition, and no duplicate after a downstream kafclaw stage with `dedup = true`.
//! Raw duplicates are expected on Tansu (it shows the records of aborted transactions to
//! read_committed readers, docs/kafka-brokers.md); the kill test checks they come only from transactions
//! a kill left open.
//!
//! Each test prints its figures on one line
//! (`cargo test -p kafclaw --test kafka chaos:: -- --nocapture`):
//!
//! - `chaos kill9: kills=20 inputs=N outputs_raw=N missing=0 dup_raw=N dup_after_dedup=0
//!   committed=N/N wall_s=T seed=S moments=[...]` — a moment is seconds after the start of an
//!   incarnation; `*` marks a blind kill (start-up, join, restore), the others came while it
//!   was processing;
//! - `chaos broker-freeze: freeze_s=20 inputs=N outputs_raw=N missing=0 dup_raw=N
//!   dup_after_dedup=0 committed=N/N exits=[...] rode_out=B wall_s=T seed=S` — the exit codes of
//!   instances that stopped on their own (each was restarted with the same instance id);
//! - `chaos rebalance-storm: kills=K kills_assigned=K' adds=A self_exits=[..] inputs=N
//!   outputs_raw=N missing=0 dup_raw=N dup_after_dedup=0 committed=N/N wall_s=T seed=S
//!   events=[...]` — `kills_assigned`: kills of an instance that held partitions; an event is
//!   `<seconds into the storm>s` then `-id` (killed) or `+id` (started).
//!
//! `KAFCLAW_CHAOS_SEED=<u64>` repeats a run's random moments (the seed is printed first).
//! The kill and storm tests use the shared broker (`KAFCLAW_TEST_BROKERS`); the freeze test
//! starts a Tansu of its own on a free port.

mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use harness::*;

/// kill -9 of the exactly-once instance at 20 random moments while input keeps arriving,
/// restarted each time with the same instance id (its `init_transactions` aborts the
/// transaction the kill left open). A quarter of the moments are blind (any time in the first
/// 6 s: start-up, join, restore); the others fall 0–1.5 s after the incarnation has consumed
/// its first record, so a transaction is open. At the end: nothing missing, committed
/// offsets = the end of every input partition, every raw duplicate is of an input whose
/// offset a kill found uncommitted (at most one extra copy per such kill), none after dedup.
#[test]
fn kill_9_at_twenty_random_moments_under_load() {
    const KILLS: usize = 20;
    let t0 = Instant::now();
    let seed = seed();
    eprintln!("chaos kill9: seed={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let b = brokers();
    let dir = TestDir::new();
    let (app, input, output) = (unique("chaos-kill-app"), unique("chaos-kill-in"), unique("chaos-kill-out"));
    create_topic_at(&b, &input, PARTITIONS);
    let topo = pipeline(dir.path(), &app, &input, &output);
    // ~250 inputs/s until the last kill, so every kill lands under load.
    let mut load = Load::start(&b, &input, 250, Duration::from_secs(1), usize::MAX);

    let mut committed_after_kill: Vec<Vec<i64>> = Vec::new();
    let mut moments = Vec::new();
    for round in 0..KILLS {
        let port = free_port();
        let log = dir.path().join(format!("kill-{round:02}.log"));
        let http = format!("127.0.0.1:{port}");
        let mut child = spawn(&b, &topo, "solo", &log, &["--http", &http], true);
        let started = Instant::now();
        let blind = rng.u8(0..4) == 0;
        if blind {
            std::thread::sleep(Duration::from_millis(rng.u64(200..6_000)));
        } else {
            // Processing: it has consumed a record (input keeps arriving until the last kill).
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if stat(port, "consumed").is_some_and(|c| c > 0) {
                    break;
                }
                if let Ok(Some(s)) = child.try_wait() {
                    panic!("round {round}: the instance exited on its own ({s}):\n{}", log_tail(&log));
                }
                assert!(Instant::now() < deadline, "round {round}: nothing consumed in 90 s:\n{}", log_tail(&log));
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(rng.u64(0..1_500)));
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("round {round}: the instance exited on its own ({s}):\n{}", log_tail(&log));
        }
        child.kill().unwrap(); // SIGKILL: no commit, no abort, no leave
        child.wait().unwrap();
        moments.push(format!("{:.1}{}", started.elapsed().as_secs_f64(), if blind { "*" } else { "" }));
        committed_after_kill.push(committed_at(&b, &app, &input, PARTITIONS));
    }
    load.stop();
    let n = load.join();
    let inputs = read_inputs(&b, &input, n);

    let log = dir.path().join("final.log");
    let mut child = spawn(&b, &topo, "solo", &log, &[], true);
    let done = wait_committed(&b, &app, &input, n, Duration::from_secs(150));
    let got = consume_all_at(&b, &output, n, Duration::from_secs(120));
    sigterm(&mut child);
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let raw = analyse(&inputs, &got);

    let committed_sum: i64 = done.iter().sum();
    let (dup_after_dedup, not_passed) =
        if raw.missing.is_empty() { dedup_stage(&b, dir.path(), &output, &raw) } else { (0, 0) };
    figure(&format!(
        "chaos kill9: kills={KILLS} inputs={n} outputs_raw={} missing={} dup_raw={} dup_after_dedup={dup_after_dedup} committed={committed_sum}/{n} wall_s={} seed={seed} moments=[{}]",
        raw.outputs,
        raw.missing.len(),
        raw.dup,
        t0.elapsed().as_secs(),
        moments.join(" ")
    ));
    assert_eq!(code, Some(0), "the last incarnation stops cleanly:\n{}", log_tail(&log));
    assert!(
        raw.missing.is_empty(),
        "{} inputs have no output, first {}; committed after each kill {committed_after_kill:?}; final committed {done:?}; input ends {:?}\n{}",
        raw.missing.len(),
        first(&raw.missing, 20),
        inputs.ends,
        log_tail(&log)
    );
    assert_eq!(done, inputs.ends, "committed offsets = the end of every input partition\n{}", log_tail(&log));
    for &(p, o, copies) in &raw.duplicated {
        // Reprocessed, so a kill found its offset uncommitted: it was in a transaction that
        // never committed (aborted by the next incarnation's init_transactions).
        let open_at_kills = committed_after_kill.iter().filter(|c| c[p as usize] <= o).count();
        assert!(
            copies - 1 <= open_at_kills,
            "input {p}@{o} has {copies} outputs, but only {open_at_kills} kills found it uncommitted: committed after each kill {committed_after_kill:?}"
        );
    }
    assert_eq!((dup_after_dedup, not_passed), (0, 0), "after dedup: each output exactly once");
}

/// The broker frozen (SIGSTOP) for 20 s mid-run (a random 0–3 s after 1,500 outputs, with
/// input still arriving), then resumed (SIGCONT), on a broker of the test's own. The instance rides it out or stops non-zero (restarted then, same id); it never
/// stops with 0 before it is told to, and whenever it has stopped, every input below the
/// committed offsets has its output. At the end: nothing missing, committed = input end, no
/// duplicate after dedup.
#[test]
fn broker_frozen_for_20_s_loses_and_doubles_nothing() {
    const N: usize = 12_000;
    const FREEZE: Duration = Duration::from_secs(20);
    let t0 = Instant::now();
    let seed = seed();
    eprintln!("chaos broker-freeze: seed={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = TestDir::new();
    let mut broker = OwnBroker::start(&dir.path().join("broker.log"));
    let b = broker.addr().to_owned();
    let (app, input, output) = (unique("chaos-freeze-app"), unique("chaos-freeze-in"), unique("chaos-freeze-out"));
    create_topic_at(&b, &input, PARTITIONS);
    let topo = pipeline(dir.path(), &app, &input, &output);
    let mut load = Load::start(&b, &input, 300, Duration::from_secs(1), N);

    let mut incarnation = 0;
    let log_of = |i: usize| dir.path().join(format!("freeze-{i}.log"));
    let mut child = spawn(&b, &topo, "solo", &log_of(0), &[], false);
    let seen = count_at_least_at(&b, &output, 1_500, Duration::from_secs(90));
    assert!(seen >= 1_500, "only {seen} outputs before the freeze:\n{}", log_tail(&log_of(0)));
    std::thread::sleep(Duration::from_millis(rng.u64(0..3_000)));

    broker.freeze();
    let frozen = Instant::now();
    eprintln!("chaos broker-freeze: broker frozen");
    while frozen.elapsed() < FREEZE {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped_while_frozen = matches!(child.try_wait(), Ok(Some(_)));
    broker.resume();
    eprintln!(
        "chaos broker-freeze: broker resumed (the instance {} while frozen)",
        if stopped_while_frozen { "stopped" } else { "ran" }
    );

    let mut exits: Vec<Option<i32>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let committed = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_of(incarnation);
            exits.push(status.code());
            assert!(
                status.code().is_some_and(|c| c != 0),
                "incarnation {incarnation} stopped on its own with {status} (0 = it claims it finished):\n{}",
                log_tail(&log)
            );
            let (c, lost) = committed_without_output(&b, &app, &input, &output);
            assert!(
                lost.is_empty(),
                "incarnation {incarnation} ({status}) left offsets {c:?} committed, but {} inputs below them have no output, first {}:\n{}",
                lost.len(),
                first(&lost, 20),
                log_tail(&log)
            );
            eprintln!(
                "chaos broker-freeze: incarnation {incarnation} stopped with {status}, committed {c:?}; restarting"
            );
            incarnation += 1;
            child = spawn(&b, &topo, "solo", &log_of(incarnation), &[], false);
        }
        if load.done() {
            let c = committed_at(&b, &app, &input, PARTITIONS);
            if c.iter().sum::<i64>() == N as i64 {
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "committed {c:?} (sum {}) of {N} after the freeze:\n{}",
                c.iter().sum::<i64>(),
                log_tail(&log_of(incarnation))
            );
        }
        std::thread::sleep(Duration::from_millis(1_000));
    };
    load.join();
    let inputs = read_inputs(&b, &input, N);
    let got = consume_all_at(&b, &output, N, Duration::from_secs(120));
    sigterm(&mut child);
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let raw = analyse(&inputs, &got);
    let (dup_after_dedup, not_passed) =
        if raw.missing.is_empty() { dedup_stage(&b, dir.path(), &output, &raw) } else { (0, 0) };
    figure(&format!(
        "chaos broker-freeze: freeze_s={} inputs={N} outputs_raw={} missing={} dup_raw={} dup_after_dedup={dup_after_dedup} committed={}/{N} exits={exits:?} rode_out={} wall_s={} seed={seed}",
        FREEZE.as_secs(),
        raw.outputs,
        raw.missing.len(),
        raw.dup,
        committed.iter().sum::<i64>(),
        exits.is_empty(),
        t0.elapsed().as_secs()
    ));
    let log = log_of(incarnation);
    assert_eq!(code, Some(0), "the last incarnation stops cleanly:\n{}", log_tail(&log));
    assert!(
        raw.missing.is_empty(),
        "{} inputs have no output, first {}; committed {committed:?}; input ends {:?}\n{}",
        raw.missing.len(),
        first(&raw.missing, 20),
        inputs.ends,
        log_tail(&log)
    );
    assert_eq!(committed, inputs.ends, "committed offsets = the end of every input partition");
    assert_eq!((dup_after_dedup, not_passed), (0, 0), "after dedup: each output exactly once");
}

const IDS: [&str; 3] = ["a", "b", "c"];

/// The storm's instances: slot `i` runs instance id `IDS[i]` (or nothing).
struct Fleet<'a> {
    brokers: &'a str,
    topo: &'a Path,
    dir: &'a Path,
    /// (instance, its HTTP port) per slot.
    running: Vec<Option<(Instance, u16)>>,
    /// Incarnations started per slot (the log of incarnation n is `storm-<id>-<n>.log`).
    spawned: [usize; 3],
    /// (id, exit code) of instances that stopped on their own.
    self_exits: Vec<(&'static str, Option<i32>)>,
}

impl Fleet<'_> {
    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("storm-{}-{}.log", IDS[i], self.spawned[i].saturating_sub(1)))
    }

    fn start(&mut self, i: usize) {
        self.spawned[i] += 1;
        let port = free_port();
        let http = format!("127.0.0.1:{port}");
        let inst = spawn(self.brokers, self.topo, IDS[i], &self.log(i), &["--http", &http], true);
        self.running[i] = Some((inst, port));
    }

    /// Notes instances that stopped on their own; none may say 0.
    fn reap(&mut self) {
        for (i, id) in IDS.iter().enumerate() {
            let exited = self.running[i].as_mut().and_then(|(c, _)| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = self.log(i);
                assert!(
                    status.code().is_some_and(|c| c != 0),
                    "instance {id} stopped on its own with {status}:\n{}",
                    log_tail(&log)
                );
                eprintln!("chaos rebalance-storm: instance {id} stopped on its own ({status}):\n{}", log_tail(&log));
                self.self_exits.push((id, status.code()));
                self.running[i] = None;
            }
        }
    }
}

/// A rebalance storm: three instances (ids a, b, c) on a 6-partition topic under load; for a
/// minute, every 2–6 s one is killed (SIGKILL) or one is started again (with its own id, so
/// its `init_transactions` aborts what its kill left open; Tansu blocks the group's offset
/// commits while such a transaction is open). Then all three run until everything is
/// committed. Nothing missing, committed = input end, no duplicate after dedup. An instance
/// that stops on its own must not say 0; it is counted (`self_exits`) and started again.
#[test]
fn rebalance_storm_loses_and_doubles_nothing() {
    const N: usize = 30_000;
    const STORM: Duration = Duration::from_secs(60);
    let t0 = Instant::now();
    let seed = seed();
    eprintln!("chaos rebalance-storm: seed={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let b = brokers();
    let dir = TestDir::new();
    let (app, input, output) = (unique("chaos-storm-app"), unique("chaos-storm-in"), unique("chaos-storm-out"));
    create_topic_at(&b, &input, PARTITIONS);
    // The output topic exists before the storm. When the three instances created it at the
    // same moment, the test broker once (1 run in 9) kept the first transactional batch of
    // one output partition hidden from read_committed readers for good, although its
    // transaction's offsets were committed (34 records at offsets 0–33, every later batch
    // visible; not reproduced with the same seed). Creating missing topics at start-up is
    // tested elsewhere with one instance; the storm is about rebalances.
    create_topic_at(&b, &output, PARTITIONS);
    let topo = pipeline(dir.path(), &app, &input, &output);
    // ~400 inputs/s for ~75 s: load through the whole storm.
    let mut load = Load::start(&b, &input, 400, Duration::from_secs(1), N);

    let mut fleet = Fleet {
        brokers: &b,
        topo: &topo,
        dir: dir.path(),
        running: (0..IDS.len()).map(|_| None).collect(),
        spawned: [0; 3],
        self_exits: Vec::new(),
    };
    for i in 0..3 {
        fleet.start(i);
    }
    let (mut kills, mut kills_assigned, mut adds, mut events) = (0, 0, 0, Vec::new());
    let start = Instant::now();
    while start.elapsed() < STORM {
        std::thread::sleep(Duration::from_millis(rng.u64(2_000..6_000)));
        fleet.reap();
        let up: Vec<usize> = (0..3).filter(|&i| fleet.running[i].is_some()).collect();
        let down: Vec<usize> = (0..3).filter(|&i| fleet.running[i].is_none()).collect();
        let kill = match up.len() {
            3 => true,
            0 | 1 => false,
            _ => rng.bool(),
        };
        if kill {
            let i = up[rng.usize(..up.len())];
            let (mut c, port) = fleet.running[i].take().unwrap();
            if stat(port, "assigned").is_some_and(|a| a > 0) {
                kills_assigned += 1;
            }
            c.kill().unwrap();
            c.wait().unwrap();
            kills += 1;
            events.push(format!("{:.0}s-{}", start.elapsed().as_secs_f64(), IDS[i]));
        } else {
            let i = down[rng.usize(..down.len())];
            fleet.start(i);
            adds += 1;
            events.push(format!("{:.0}s+{}", start.elapsed().as_secs_f64(), IDS[i]));
        }
    }
    // All three again (each killed id's open transaction is aborted by its own restart), and
    // whichever stops on its own is started again, until everything is committed.
    let deadline = Instant::now() + Duration::from_secs(180);
    let committed = loop {
        fleet.reap();
        for i in 0..3 {
            if fleet.running[i].is_none() {
                fleet.start(i);
            }
        }
        let c = committed_at(&b, &app, &input, PARTITIONS);
        if (load.done() && c.iter().sum::<i64>() == N as i64) || Instant::now() >= deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(1_000));
    };
    load.join();
    let inputs = read_inputs(&b, &input, N);
    let got = consume_all_at(&b, &output, N, Duration::from_secs(120));
    let mut codes = Vec::new();
    for (inst, _) in fleet.running.iter_mut().flatten() {
        sigterm(inst);
    }
    for (i, id) in IDS.iter().enumerate() {
        let log = fleet.log(i);
        let (inst, _) = fleet.running[i].as_mut().unwrap();
        codes.push((id, wait_exit(inst, Duration::from_secs(60)), log));
    }
    let raw = analyse(&inputs, &got);
    let (dup_after_dedup, not_passed) =
        if raw.missing.is_empty() { dedup_stage(&b, dir.path(), &output, &raw) } else { (0, 0) };
    figure(&format!(
        "chaos rebalance-storm: kills={kills} kills_assigned={kills_assigned} adds={adds} self_exits={:?} inputs={N} outputs_raw={} missing={} dup_raw={} dup_after_dedup={dup_after_dedup} committed={}/{N} wall_s={} seed={seed} events=[{}]",
        fleet.self_exits,
        raw.outputs,
        raw.missing.len(),
        raw.dup,
        committed.iter().sum::<i64>(),
        t0.elapsed().as_secs(),
        events.join(" ")
    ));
    for (id, code, log) in &codes {
        assert_eq!(*code, Some(0), "instance {id} stops cleanly:\n{}", log_tail(log));
    }
    let tails: Vec<String> =
        codes.iter().map(|(id, _, log)| format!("--- instance {id} ({}):\n{}", log.display(), log_tail(log))).collect();
    assert!(
        raw.missing.is_empty(),
        "{} inputs have no output, first {}; committed {committed:?}; input ends {:?}\n{}",
        raw.missing.len(),
        first(&raw.missing, 20),
        inputs.ends,
        tails.join("\n")
    );
    assert_eq!(committed, inputs.ends, "committed offsets = the end of every input partition");
    assert_eq!((dup_after_dedup, not_passed), (0, 0), "after dedup: each output exactly once");
}
