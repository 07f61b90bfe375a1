//! Group membership on a real broker, with separate processes: three agent instances (an
//! `[agent]` topology) and the roster topology. The roster lists all three within two
//! heartbeat intervals; an agent killed with SIGKILL is gone within the TTL; one stopped
//! cleanly is gone at once (its leave); a fourth joins while the others keep running.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const HEARTBEAT_MS: u64 = 2000;
const TTL_MS: u64 = 6000;

fn members(group: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["group", "members", "--group", group, "--json", "--brokers", &brokers()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["agent_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Polls the roster until it lists exactly `want`; how long that took.
fn until_members(group: &str, want: &[&str], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = members(group);
        if got == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "after {:?} the roster lists {got:?}, not {want:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_line(log: &std::path::Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log).unwrap_or_default().contains(line) {
        assert!(Instant::now() < deadline, "no `{line}` in {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_roster_converges_expires_the_dead_and_takes_newcomers() {
    let dir = TestDir::new();
    let group = unique("grp").replace('.', "-");
    let (roster_app, agent_app) = (unique("roster"), unique("worker"));
    let (announce, requests, out) =
        (format!("group.{group}.announce"), format!("group.{group}.requests"), unique("grp-out"));
    create_topic(&announce, 1);
    create_topic(&requests, 2);
    let roster = write_topology(
        dir.path(),
        &roster_app,
        &format!(
            r#"
[topology]
name = "{roster_app}"
group = "{group}"
partitions = 1

[sources.announce]
type = "kafka"
topic = "{announce}"

[operators.members]
type = "roster"
inputs = ["announce"]
ttl = "{TTL_MS}ms"

[sinks.roster]
type = "kafka"
inputs = ["members"]
topic = "group.{group}.control.roster"
compact = true
"#
        ),
    );
    let agent = write_topology(
        dir.path(),
        &agent_app,
        &format!(
            r#"
[topology]
name = "{agent_app}"
group = "{group}"
partitions = 2

[agent]
name = "worker"
summary = "Answers billing questions"
skills = ["billing"]
heartbeat = "{HEARTBEAT_MS}ms"

[sources.requests]
type = "kafka"
topic = "{requests}"

[operators.seen]
type = "map"
inputs = ["requests"]
set = {{ "payload.seen_by" = '"worker"' }}

[sinks.out]
type = "kafka"
inputs = ["seen"]
topic = "{out}"
"#
        ),
    );
    let log = |n: &str| dir.path().join(format!("{n}.log"));
    let _r = spawn_instance(&roster, "r", &log("r"));
    wait_for_line(&log("r"), "partitions assigned");
    let mut agents: std::collections::HashMap<&str, Instance> =
        ["a", "b", "c"].into_iter().map(|i| (i, spawn_instance(&agent, i, &log(i)))).collect();
    for i in ["a", "b", "c"] {
        wait_for_line(&log(i), "joined the group");
    }
    let took = until_members(&group, &["worker.a", "worker.b", "worker.c"], Duration::from_millis(2 * HEARTBEAT_MS));
    eprintln!("roster converged {took:?} after the third join");

    let mut b = agents.remove("b").unwrap();
    b.0.kill().unwrap();
    let killed = Instant::now();
    until_members(&group, &["worker.a", "worker.c"], Duration::from_millis(TTL_MS + 1000));
    eprintln!("killed agent gone after {:?} (ttl {TTL_MS} ms)", killed.elapsed());

    let _d = spawn_instance(&agent, "d", &log("d"));
    wait_for_line(&log("d"), "joined the group");
    until_members(&group, &["worker.a", "worker.c", "worker.d"], Duration::from_millis(2 * HEARTBEAT_MS));

    let mut c = agents.remove("c").unwrap();
    sigterm(&mut c);
    assert_eq!(wait_exit(&mut c, Duration::from_secs(60)), Some(0), "{}", std::fs::read_to_string(log("c")).unwrap());
    until_members(&group, &["worker.a", "worker.d"], Duration::from_millis(HEARTBEAT_MS));

    let a_log = std::fs::read_to_string(log("a")).unwrap();
    assert_eq!(a_log.matches("joined the group").count(), 1, "agent a was never restarted:\n{a_log}");
    assert_eq!(a_log.matches("starting instance").count(), 1, "{a_log}");
}

#[test]
fn an_agent_table_is_checked_at_its_place() {
    let dir = TestDir::new();
    let topo = write_topology(
        dir.path(),
        "lonely",
        r#"[topology]
name = "lonely"

[agent]
skills = ["billing"]
heartbeat = "0s"
colour = "blue"

[sources.in]
type = "stdin"

[sinks.out]
type = "stdout"
inputs = ["in"]
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("lonely.toml:7:1: error: unknown field `colour`"), "{stderr}");
    let fixed = std::fs::read_to_string(&topo).unwrap().replace("colour = \"blue\"\n", "");
    std::fs::write(&topo, fixed).unwrap();
    let stderr = String::from_utf8_lossy(
        &Command::new(env!("CARGO_BIN_EXE_kafclaw"))
            .args(["validate", topo.to_str().unwrap()])
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(stderr.contains("lonely.toml:6:13: error: `0s` is zero; a duration must be positive"), "{stderr}");
    let fixed = std::fs::read_to_string(&topo).unwrap().replace("\"0s\"", "\"1s\"");
    std::fs::write(&topo, fixed).unwrap();
    let stderr = String::from_utf8_lossy(
        &Command::new(env!("CARGO_BIN_EXE_kafclaw"))
            .args(["validate", topo.to_str().unwrap()])
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(stderr.contains("error: an [agent] joins a group: `[topology] group` is missing"), "{stderr}");
}

#[test]
fn group_create_makes_the_group_topics_once() {
    let group = unique("gc").replace('.', "-");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
            .args([
                "group",
                "create",
                "--group",
                &group,
                "--skill",
                "billing",
                "--partitions",
                "3",
                "--brokers",
                &brokers(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    assert_eq!(first.lines().count(), 13, "{first}");
    assert_eq!(first.matches("(created)").count(), 13, "{first}");
    for t in ["announce", "control.roster", "skill.billing.requests", "skill.billing.responses", "observe.audit"] {
        assert!(first.contains(&format!("group.{group}.{t}  (created)")), "{first}");
    }
    let second = run();
    assert_eq!(second.matches("(created)").count(), 0, "nothing twice: {second}");
    // The roster topic is partitioned as asked (and compacted: `kafclaw group members` reads it).
    let c: rdkafka::consumer::BaseConsumer = config().create().unwrap();
    let md = rdkafka::consumer::Consumer::fetch_metadata(
        &c,
        Some(&format!("group.{group}.control.roster")),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);
    // Reply topics are stamped by the broker (delegate deadlines), the others by producers.
    let stamp = |t: &str| timestamp_type(&format!("group.{group}.{t}"));
    for t in ["responses", "tasks.status", "skill.billing.responses"] {
        assert_eq!(stamp(t).as_deref(), Some("LogAppendTime"), "{t}");
    }
    assert_ne!(stamp("skill.billing.requests").as_deref(), Some("LogAppendTime"));
}

/// `message.timestamp.type` of `topic`, as DescribeConfigs reports it.
fn timestamp_type(topic: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = config().create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let got = rt.block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts)).unwrap();
    let resource = got.into_iter().next().unwrap().unwrap();
    resource.get("message.timestamp.type").and_then(|e| e.value.clone())
}
