//! Shared memory on Kafka: the memory topic is a global table, read in full by every
//! instance. Two instances split the requests between them, and each finds every memory item
//! — those written before it started and those written while it runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::*;

fn memory(i: usize) -> (String, String) {
    let k = format!("mem-{i}");
    let text = format!("fact {i}: the code word for project {i} is word{i}x");
    let v = format!(
        r#"{{"type":"memory","correlation_id":"{k}","sender_id":"writer","timestamp":"2026-11-24T10:00:00Z","id":"{k}","payload":{{"content":"{text}"}}}}"#
    );
    (k, v)
}

fn request(i: usize, about: usize) -> (String, String) {
    let k = format!("req-{i}");
    let v = format!(
        r#"{{"type":"request","correlation_id":"{k}","sender_id":"asker","timestamp":"2026-11-24T10:00:00Z","id":"{k}","payload":{{"task_id":"{k}","description":"fact {about}: the code word for project {about} is word{about}x","about":{about}}}}}"#
    );
    (k, v)
}

fn topology(dir: &std::path::Path, app: &str, memories: &str, requests: &str, output: &str) -> std::path::PathBuf {
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 6

[sources.shared]
type = "kafka"
topic = "{memories}"
global = true

[operators.remember]
type = "memory-index"
inputs = ["shared"]

[sources.requests]
type = "kafka"
topic = "{requests}"

[operators.recall]
type = "memory-search"
inputs = ["requests"]
index = "remember"
k = 3

[sinks.out]
type = "kafka"
inputs = ["recall"]
topic = "{output}"
"#
        ),
    )
}

#[test]
fn every_instance_sees_every_shared_memory_item() {
    let dir = TestDir::new();
    let (app, memories, requests, output) =
        (unique("mem-app"), unique("memory-shared"), unique("mem-req"), unique("mem-out"));
    create_topic(&memories, 3);
    create_topic(&requests, 6);
    let topo = topology(dir.path(), &app, &memories, &requests, &output);
    produce(&memories, (0..40).map(memory));
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn_instance(&topo, "a", &log_a);
    let mut b = spawn_instance(&topo, "b", &log_b);
    for log in [&log_a, &log_b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(log).unwrap().contains("partitions assigned") {
            assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(log).unwrap());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Items written while both run reach both.
    produce(&memories, (40..60).map(memory));
    std::thread::sleep(Duration::from_secs(3));
    produce(&requests, (0..120).map(|i| request(i, i % 60)));
    let got = consume_all(&output, 120, Duration::from_secs(120));
    sigterm(&mut a);
    sigterm(&mut b);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0));
    assert_eq!(wait_exit(&mut b, Duration::from_secs(60)), Some(0));
    assert_eq!(got.len(), 120);
    let mut per_partition: HashMap<i32, usize> = HashMap::new();
    for g in &got {
        let about = g.value["payload"]["about"].as_u64().unwrap();
        let top = &g.value["payload"]["memories"][0];
        assert_eq!(top["id"], format!("mem-{about}"), "request about {about} found {top}");
        *per_partition.entry(g.partition).or_default() += 1;
    }
    let la = std::fs::read_to_string(&log_a).unwrap();
    let lb = std::fs::read_to_string(&log_b).unwrap();
    assert!(la.contains("global tables loaded") && lb.contains("global tables loaded"));
    // Both instances answered requests (the group split the partitions between them).
    let consumed = |log: &str| {
        log.lines()
            .find(|l| l.contains("instance stopped"))
            .and_then(|l| l.split("consumed: ").nth(1))
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(consumed(&la) > 0 && consumed(&lb) > 0, "a consumed {}, b consumed {}", consumed(&la), consumed(&lb));
}

/// One instance (a group one member leaves cleanly: this broker can keep a departed leader
/// of a two-member group, see docs/ARCHITECTURE.md): answers, then a replay that rebuilds the
/// index from the memory topic answers every request identically.
#[test]
fn a_replay_rebuilds_an_index_that_answers_identically() {
    let dir = TestDir::new();
    let (app, memories, requests, output) =
        (unique("mem-replay"), unique("memory-shared-r"), unique("mem-req-r"), unique("mem-out-r"));
    create_topic(&memories, 3);
    create_topic(&requests, 6);
    let topo = topology(dir.path(), &app, &memories, &requests, &output);
    produce(&memories, (0..60).map(memory));
    let log = dir.path().join("a.log");
    let mut a = spawn_instance(&topo, "a", &log);
    produce(&requests, (0..120).map(|i| request(i, i % 60)));
    let got = consume_all(&output, 120, Duration::from_secs(120));
    sigterm(&mut a);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(60)), Some(0));
    assert_eq!(got.len(), 120, "{}", std::fs::read_to_string(&log).unwrap());

    // A replay rebuilds the index from the memory topic, and it answers identically.
    let (code, stderr) = run_replay(&topo, "earliest", "a", &dir.path().join("state"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("replayed 120 record(s)"), "{stderr}");
    let all = consume_all(&output, 240, Duration::from_secs(60));
    assert_eq!(all.len(), 240);
    let first: std::collections::HashSet<(i32, i64)> = got.iter().map(|g| (g.partition, g.offset)).collect();
    let by_id = |it: &mut dyn Iterator<Item = &Got>| -> std::collections::BTreeMap<String, serde_json::Value> {
        it.map(|g| (g.value["id"].as_str().unwrap().to_owned(), g.value.clone())).collect()
    };
    let before = by_id(&mut all.iter().filter(|g| first.contains(&(g.partition, g.offset))));
    let after = by_id(&mut all.iter().filter(|g| !first.contains(&(g.partition, g.offset))));
    assert_eq!(before.len(), 120);
    assert_eq!(before, after, "the rebuilt index answers every request identically");
}
