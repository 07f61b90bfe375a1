//! `schedule` sources on the broker (docs/schedules.md): one tick per due time across three
//! instances through a SIGKILL of the owner and a rebalance, and the three `catch_up` policies
//! after every instance was stopped for two minutes. Ticks are counted by `due_at` on the
//! `read_committed` output; a due time with two different ids would be a doubled tick (the same
//! id twice is a record of a transaction that never committed, which this broker leaks, and
//! which a downstream `dedup = true` drops: docs/kafka-brokers.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use kafclaw_operators::envelope::time::event_time_ms;

use crate::support::*;

/// One tick read back.
#[derive(Debug, Clone)]
struct Tick {
    id: String,
    schedule: String,
    due_ms: i64,
    /// When the tick was planned to fire (due time plus jitter): the envelope's `timestamp`.
    fire_ms: i64,
    fired_ms: i64,
    missed: u64,
}

fn ms(v: &serde_json::Value) -> i64 {
    event_time_ms(v.as_str().unwrap_or_else(|| panic!("a time: {v}"))).unwrap()
}

fn ticks(brokers: &str, topic: &str, expect: usize, timeout: Duration) -> Vec<Tick> {
    consume_all_at(brokers, topic, expect, timeout)
        .into_iter()
        .map(|g| {
            let p = &g.value["payload"];
            Tick {
                id: g.value["id"].as_str().expect("an id").to_owned(),
                schedule: p["schedule"].as_str().expect("schedule").to_owned(),
                due_ms: ms(&p["due_at"]),
                fire_ms: ms(&g.value["timestamp"]),
                fired_ms: ms(&p["fired_at"]),
                missed: p["missed"].as_u64().expect("missed"),
            }
        })
        .collect()
}

/// By due time, the distinct ids and how many records carried them.
fn by_due(ticks: &[Tick]) -> BTreeMap<i64, (BTreeSet<String>, usize)> {
    let mut m: BTreeMap<i64, (BTreeSet<String>, usize)> = BTreeMap::new();
    for t in ticks {
        let e = m.entry(t.due_ms).or_default();
        e.0.insert(t.id.clone());
        e.1 += 1;
    }
    m
}

fn now_ms() -> i64 {
    kafclaw_operators::envelope::time::now_ms()
}

/// Which of `ports` serves the instance that owns the schedule's partition.
fn owner(ports: &[(String, u16)]) -> Option<String> {
    ports.iter().find(|(_, p)| assigned(*p) == Some(1)).map(|(id, _)| id.clone())
}

fn assigned(port: u16) -> Option<u64> {
    let body = http_get_body(port, "/stats")?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?["assigned"].as_u64()
}

fn wait_owner(ports: &[(String, u16)], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(o) = owner(ports) {
            return o;
        }
        assert!(Instant::now() < deadline, "no instance owns the schedule");
        std::thread::sleep(Duration::from_millis(300));
    }
}

struct Fleet<'a> {
    topo: &'a Path,
    dir: &'a Path,
    running: BTreeMap<String, (Instance, u16)>,
    logs: Vec<std::path::PathBuf>,
}

impl Fleet<'_> {
    fn start(&mut self, id: &str) {
        let port = free_port();
        let log = self.dir.join(format!("{id}-{}.log", self.logs.len()));
        let addr = format!("127.0.0.1:{port}");
        let child = spawn_instance_with(self.topo, id, &log, &["--http", &addr]);
        self.logs.push(log);
        self.running.insert(id.to_owned(), (child, port));
    }

    fn ports(&self) -> Vec<(String, u16)> {
        self.running.iter().map(|(id, (_, p))| (id.clone(), *p)).collect()
    }

    fn tails(&self) -> String {
        self.logs.iter().map(|l| format!("--- {}:\n{}", l.display(), log_tail(l))).collect::<Vec<_>>().join("\n")
    }
}

/// Three instances, a 5-second pattern with a 2-second jitter, five minutes: the owner of the
/// schedule is killed with SIGKILL at 100 s (and started again under its id, as a StatefulSet
/// does: its `init_transactions` aborts what the kill left open), and at 200 s the owner then
/// leaves cleanly (SIGTERM) and a fourth instance joins: the partition moves. Every due time
/// from the first tick to the last has exactly one tick id; none is missing.
#[test]
fn three_instances_tick_once_per_due_time_across_a_kill_and_a_rebalance() {
    const RUN: Duration = Duration::from_secs(300);
    let t0 = Instant::now();
    let b = brokers();
    let dir = TestDir::new();
    let (app, out) = (unique("sched-app"), unique("sched-out"));
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"[topology]
name = "{app}"
partitions = 1

[sources.tick]
type = "schedule"
cron = "*/5 * * * * *"
jitter = "2s"
content = "every five seconds"

[sinks.out]
type = "kafka"
inputs = ["tick"]
topic = "{out}"
"#
        ),
    );
    let mut fleet = Fleet { topo: &topo, dir: dir.path(), running: BTreeMap::new(), logs: Vec::new() };
    let started_ms = now_ms();
    for id in ["a", "b", "c"] {
        fleet.start(id);
    }
    let first_owner = wait_owner(&fleet.ports(), Duration::from_secs(60));
    let mut events = vec![format!("owner={first_owner}")];

    // 100 s: SIGKILL the owner; its id comes back 2 s later.
    std::thread::sleep(Duration::from_secs(100).saturating_sub(t0.elapsed()));
    let victim = wait_owner(&fleet.ports(), Duration::from_secs(30));
    let (mut child, _) = fleet.running.remove(&victim).unwrap();
    child.kill().unwrap(); // SIGKILL: no commit, no abort, no leave
    child.wait().unwrap();
    let killed_ms = now_ms();
    events.push(format!("{}s kill -9 {victim}", t0.elapsed().as_secs()));
    std::thread::sleep(Duration::from_secs(2));
    fleet.start(&victim);
    events.push(format!("{}s +{victim}", t0.elapsed().as_secs()));

    // 200 s: the owner leaves cleanly, a fourth instance joins.
    std::thread::sleep(Duration::from_secs(200).saturating_sub(t0.elapsed()));
    let leaver = wait_owner(&fleet.ports(), Duration::from_secs(60));
    let (mut child, _) = fleet.running.remove(&leaver).unwrap();
    sigterm(&mut child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0), "{}", fleet.tails());
    let left_ms = now_ms();
    events.push(format!("{}s -{leaver} (SIGTERM)", t0.elapsed().as_secs()));
    fleet.start("d");
    events.push(format!("{}s +d", t0.elapsed().as_secs()));
    let next_owner = wait_owner(&fleet.ports(), Duration::from_secs(60));
    events.push(format!("owner={next_owner}"));

    std::thread::sleep(RUN.saturating_sub(t0.elapsed()));
    let stopped_ms = now_ms();
    for (id, (mut child, _)) in std::mem::take(&mut fleet.running) {
        sigterm(&mut child);
        assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0), "{id} stops cleanly\n{}", fleet.tails());
    }

    let got = ticks(&b, &out, 50, Duration::from_secs(60));
    let dues = by_due(&got);
    let first = *dues.keys().next().expect("ticks");
    let last = *dues.keys().last().unwrap();
    let expected: Vec<i64> = (0..=(last - first) / 5_000).map(|i| first + i * 5_000).collect();
    let missing: Vec<i64> = expected.iter().copied().filter(|d| !dues.contains_key(d)).collect();
    let doubled: Vec<(i64, usize)> =
        dues.iter().filter(|(_, (ids, _))| ids.len() > 1).map(|(d, (ids, _))| (*d, ids.len())).collect();
    let dup_raw: usize = dues.values().map(|(_, n)| n - 1).sum();
    let lateness: Vec<i64> = got.iter().map(|t| t.fired_ms - t.fire_ms).collect();
    let max_late = lateness.iter().copied().max().unwrap_or(0);
    let around = |at: i64| {
        got.iter().filter(|t| t.fire_ms >= at - 5_000 && t.fire_ms <= at + 30_000).map(|t| t.fired_ms - t.fire_ms).max()
    };
    let jitters: BTreeSet<i64> = got.iter().map(|t| t.fire_ms - t.due_ms).collect();
    figure(&format!(
        "schedules 3 instances: ticks={} due_times={} expected={} missing={} doubled={} dup_raw={dup_raw} max_lateness_ms={max_late} lateness_after_kill_ms={:?} lateness_after_leave_ms={:?} jitter_ms=[{}..{}] wall_s={} events=[{}]",
        got.len(),
        dues.len(),
        expected.len(),
        missing.len(),
        doubled.len(),
        around(killed_ms),
        around(left_ms),
        jitters.first().unwrap_or(&0),
        jitters.last().unwrap_or(&0),
        t0.elapsed().as_secs(),
        events.join(", ")
    ));
    assert!(missing.is_empty(), "due times without a tick: {missing:?}\n{}", fleet.tails());
    assert!(doubled.is_empty(), "due times with two tick ids: {doubled:?}\n{}", fleet.tails());
    assert!(got.iter().all(|t| t.schedule == "tick" && t.missed == 0), "catch_up = all never skips");
    assert!(jitters.iter().all(|j| (0..=2_000).contains(j)), "jitter within bounds: {jitters:?}");
    assert!(jitters.len() > 5, "jitter varies by due time: {jitters:?}");
    // The ticks cover the run: from its first seconds to its last.
    assert!(first <= started_ms + 30_000, "first tick {first} too late after start {started_ms}");
    assert!(last >= stopped_ms - 15_000, "last tick {last} too early before the stop {stopped_ms}");
    assert!(expected.len() >= 50, "{} due times over five minutes", expected.len());
}

/// One instance runs three schedules (`none`, `last`, `all`; every 10 s, `grace = "5s"`) for
/// a while, is stopped for two minutes, and starts again: `all` fires every due time of the
/// stop, `last` one tick for the latest with the count of the others, `none` nothing for
/// them (the first tick after says how many it skipped); `none` and `last` audit the skip.
#[test]
fn catch_up_policies_after_a_two_minute_stop() {
    let t0 = Instant::now();
    let b = brokers();
    let dir = TestDir::new();
    let (app, out, audit) = (unique("sched-cu-app"), unique("sched-cu-out"), unique("sched-cu-audit"));
    let mut body = format!("[topology]\nname = \"{app}\"\npartitions = 1\n");
    for policy in ["none", "last", "all"] {
        body += &format!(
            r#"
[sources.{policy}]
type = "schedule"
cron = "*/10 * * * * *"
catch_up = "{policy}"
grace = "5s"

[sinks.out-{policy}]
type = "kafka"
inputs = ["{policy}"]
topic = "{out}"

[sinks.audit-{policy}]
type = "kafka"
inputs = ["{policy}.audit"]
topic = "{audit}"
"#
        );
    }
    let topo = write_topology(dir.path(), &app, &body);
    let log = |n: usize| dir.path().join(format!("run-{n}.log"));
    let per = |ticks: &[Tick], s: &str| ticks.iter().filter(|t| t.schedule == s).cloned().collect::<Vec<_>>();

    // Before: two ticks of each schedule.
    let mut first = spawn_instance(&topo, "a", &log(0));
    let deadline = Instant::now() + Duration::from_secs(90);
    let before = loop {
        let got = ticks(&b, &out, 0, Duration::from_secs(5));
        if ["none", "last", "all"].iter().all(|s| per(&got, s).len() >= 2) {
            break got;
        }
        assert!(Instant::now() < deadline, "no ticks before the stop\n{}", log_tail(&log(0)));
        std::thread::sleep(Duration::from_secs(1));
    };
    sigterm(&mut first);
    assert_eq!(wait_exit(&mut first, Duration::from_secs(60)), Some(0), "{}", log_tail(&log(0)));
    let stopped_ms = now_ms();
    std::thread::sleep(Duration::from_secs(120));

    // After: every schedule ticks on time again.
    let restarted_ms = now_ms();
    let mut second = spawn_instance(&topo, "a", &log(1));
    let deadline = Instant::now() + Duration::from_secs(90);
    let all = loop {
        let got = ticks(&b, &out, 0, Duration::from_secs(5));
        let on_time_after = |s: &str| {
            per(&got, s).iter().any(|t| t.due_ms > restarted_ms && t.fired_ms - t.fire_ms < 5_000 && t.missed == 0)
        };
        if ["none", "last", "all"].iter().all(|s| on_time_after(s)) {
            break got;
        }
        assert!(Instant::now() < deadline, "no ticks after the restart\n{}", log_tail(&log(1)));
        std::thread::sleep(Duration::from_secs(1));
    };
    sigterm(&mut second);
    assert_eq!(wait_exit(&mut second, Duration::from_secs(60)), Some(0), "{}", log_tail(&log(1)));
    let audits = consume_all_at(&b, &audit, 2, Duration::from_secs(30));

    let mut lines = Vec::new();
    for s in ["none", "last", "all"] {
        let mine = per(&all, s);
        let dues = by_due(&mine);
        assert!(dues.values().all(|(ids, _)| ids.len() == 1), "{s}: one id per due time: {dues:?}");
        // The last tick fired before the stop.
        let last_before = mine.iter().filter(|t| t.fired_ms <= stopped_ms).map(|t| t.due_ms).max().unwrap();
        assert!(per(&before, s).iter().all(|t| t.due_ms <= last_before));
        let after: Vec<Tick> = {
            let mut v: Vec<Tick> = mine.iter().filter(|t| t.due_ms > last_before).cloned().collect();
            v.sort_by_key(|t| t.due_ms);
            v.dedup_by_key(|t| t.due_ms);
            v
        };
        let first_after = after.first().unwrap_or_else(|| panic!("{s}: nothing after the restart"));
        // The due times of the stop: after the last tick before it, up to the restart.
        let gap: Vec<i64> = (1..).map(|i| last_before + i * 10_000).take_while(|&d| d < restarted_ms).collect();
        let skipped = audits
            .iter()
            .filter(|a| a.value["payload"]["details"]["schedule"] == s)
            .map(|a| a.value["payload"]["details"]["skipped"].as_u64().unwrap())
            .sum::<u64>();
        let late = after.iter().map(|t| t.fired_ms - t.fire_ms).max().unwrap_or(0);
        lines.push(format!(
            "{s}: gap_due_times={} ticks_after={} first_after_missed={} audited_skipped={skipped} max_lateness_ms={late}",
            gap.len(),
            after.len(),
            first_after.missed
        ));
        assert!(gap.len() >= 11, "{s}: a two-minute stop spans at least 11 due times: {gap:?}");
        let consecutive = after.windows(2).all(|w| w[1].due_ms - w[0].due_ms == 10_000);
        assert!(consecutive, "{s}: after the first tick back, every due time ticks: {after:?}");
        match s {
            "all" => {
                assert_eq!(first_after.due_ms, last_before + 10_000, "all: the first missed due time fires");
                assert!(gap.iter().all(|d| dues.contains_key(d)), "all: every due time of the stop fires");
                assert!(after.iter().all(|t| t.missed == 0));
                assert_eq!(skipped, 0, "all: nothing skipped, nothing audited");
            }
            "last" => {
                // One tick stands for the stop: the latest due time, with the count of the others.
                let stood_for = (first_after.due_ms - last_before) / 10_000 - 1;
                assert_eq!(first_after.missed as i64, stood_for, "last: missed counts the skipped due times");
                assert!(stood_for >= 10, "last: most of the stop is skipped ({stood_for})");
                assert_eq!(skipped as i64, stood_for, "last: the skip is audited");
                assert!(after[1..].iter().all(|t| t.missed == 0));
            }
            _ => {
                // Nothing late fires; the first tick back says how many were skipped.
                let skipped_dues = (first_after.due_ms - last_before) / 10_000 - 1;
                assert!(
                    after.iter().all(|t| t.fired_ms - t.fire_ms <= 5_000 + 1_000),
                    "none: only on-time ticks fire: {after:?}"
                );
                assert_eq!(first_after.missed as i64, skipped_dues, "none: the first tick counts the skipped");
                assert!(skipped_dues >= 10, "none: the stop's due times are skipped ({skipped_dues})");
                assert_eq!(skipped as i64, skipped_dues, "none: the skip is audited");
            }
        }
    }
    figure(&format!(
        "schedules catch_up after a {} s stop (every 10 s, grace 5 s): {} wall_s={}",
        (restarted_ms - stopped_ms) / 1000,
        lines.join("; "),
        t0.elapsed().as_secs()
    ));
}

/// The state written downstream of a tick (a `count`) is restored from its changelog like any
/// other: an instance that lost its local store carries on counting where the last one
/// committed, and its schedule carries on from the due time handled (no tick repeated, none
/// missing).
#[test]
fn state_downstream_of_ticks_is_restored_from_the_changelog() {
    let b = brokers();
    let dir = TestDir::new();
    let (app, out) = (unique("sched-rs-app"), unique("sched-rs-out"));
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"[topology]
name = "{app}"
partitions = 1

[sources.tick]
type = "schedule"
cron = "* * * * * *"

[operators.n]
type = "count"
inputs = ["tick"]
by = "payload.schedule"

[sinks.out]
type = "kafka"
inputs = ["n"]
topic = "{out}"
"#
        ),
    );
    let log = |n: usize| dir.path().join(format!("run-{n}.log"));
    let mut first = spawn_instance(&topo, "a", &log(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_at_least_at(&b, &out, 5, Duration::from_secs(5)) < 5 {
        assert!(Instant::now() < deadline, "no ticks\n{}", log_tail(&log(0)));
    }
    sigterm(&mut first);
    assert_eq!(wait_exit(&mut first, Duration::from_secs(60)), Some(0), "{}", log_tail(&log(0)));
    let before = consume_all_at(&b, &out, 5, Duration::from_secs(30)).len();
    // The local store goes: everything must come back from the changelogs.
    std::fs::remove_dir_all(dir.path().join("state").join(&app).join("a")).unwrap();
    let mut second = spawn_instance(&topo, "a", &log(1));
    while count_at_least_at(&b, &out, before + 5, Duration::from_secs(5)) < before + 5 {
        assert!(Instant::now() < deadline + Duration::from_secs(60), "no ticks after\n{}", log_tail(&log(1)));
    }
    sigterm(&mut second);
    assert_eq!(wait_exit(&mut second, Duration::from_secs(60)), Some(0), "{}", log_tail(&log(1)));
    let got = consume_all_at(&b, &out, before + 5, Duration::from_secs(30));
    let mut by_due: BTreeMap<i64, BTreeSet<u64>> = BTreeMap::new();
    for g in &got {
        let p = &g.value["payload"];
        by_due.entry(ms(&p["due_at"])).or_default().insert(p["count"].as_u64().expect("a count"));
    }
    let dues: Vec<i64> = by_due.keys().copied().collect();
    let counts: Vec<u64> = by_due.values().map(|c| *c.iter().next().unwrap()).collect();
    figure(&format!(
        "schedules restore: ticks_before={before} ticks={} due_times={} counts={}..{}",
        got.len(),
        dues.len(),
        counts.first().unwrap(),
        counts.last().unwrap()
    ));
    assert!(by_due.values().all(|c| c.len() == 1), "one count per due time: {by_due:?}");
    assert!(dues.windows(2).all(|w| w[1] - w[0] == 1_000), "every second, none twice, none missing: {dues:?}");
    let expected: Vec<u64> = (1..=counts.len() as u64).collect();
    assert_eq!(counts, expected, "the count carries on after the restore\n{}", log_tail(&log(1)));
    assert!(std::fs::read_to_string(log(1)).unwrap().contains("state restored from the changelog"));
}

/// The durable way to ask a model on a schedule: ticks written to a topic, read back by a
/// kafka source (whose offsets wait for the model's answer). One topology does both; the
/// topic it writes and reads is created at start.
#[test]
fn ticks_handed_to_a_kafka_source_in_the_same_topology() {
    let b = brokers();
    let dir = TestDir::new();
    let (app, ticks_topic, out) = (unique("sched-hop-app"), unique("sched-hop-ticks"), unique("sched-hop-out"));
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"[topology]
name = "{app}"
partitions = 1

[sources.tick]
type = "schedule"
cron = "* * * * * *"

[sinks.ticks]
type = "kafka"
inputs = ["tick"]
topic = "{ticks_topic}"

[sources.due]
type = "kafka"
topic = "{ticks_topic}"
dedup = true

[operators.seen]
type = "map"
inputs = ["due"]
set = {{ "payload.seen" = "payload.due_at" }}

[sinks.out]
type = "kafka"
inputs = ["seen"]
topic = "{out}"
"#
        ),
    );
    let log = dir.path().join("run.log");
    let mut inst = spawn_instance(&topo, "a", &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_at_least_at(&b, &out, 3, Duration::from_secs(5)) < 3 {
        assert!(Instant::now() < deadline, "no ticks through the topic\n{}", log_tail(&log));
    }
    sigterm(&mut inst);
    assert_eq!(wait_exit(&mut inst, Duration::from_secs(60)), Some(0), "{}", log_tail(&log));
    let got = consume_all_at(&b, &out, 3, Duration::from_secs(30));
    assert!(got.iter().all(|g| g.value["payload"]["seen"] == g.value["payload"]["due_at"]), "{got:?}");
    let causes: BTreeSet<&str> = got.iter().filter_map(|g| g.value["causation_id"].as_str()).collect();
    assert_eq!(causes.len(), got.len(), "each answer caused by its own tick");
}
