//! State on Kafka: counts per key survive kill -9 and move to another instance, restored from
//! the changelog; a clean restart with a current checkpoint restores nothing.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::support::*;

fn counting(dir: &Path, app: &str, input: &str, output: &str) -> std::path::PathBuf {
    counting_with(dir, app, input, output, "")
}

/// A count per `correlation_id` over 6 partitions; `topology_extra` goes into `[topology]`.
pub(crate) fn counting_with(
    dir: &Path,
    app: &str,
    input: &str,
    output: &str,
    topology_extra: &str,
) -> std::path::PathBuf {
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 6
{topology_extra}

[sources.in]
type = "kafka"
topic = "{input}"

[operators.per-key]
type = "count"
inputs = ["in"]
by = 'correlation_id'

[sinks.out]
type = "kafka"
inputs = ["per-key"]
topic = "{output}"
"#
        ),
    )
}

pub(crate) fn keyed(i: usize, keys: usize) -> (String, String) {
    let k = format!("key-{}", i % keys);
    let v = format!(
        r#"{{"type":"request","correlation_id":"{k}","sender_id":"load","timestamp":"2026-11-23T10:00:00Z","payload":{{"n":{i}}},"id":"in-{i}"}}"#
    );
    (k, v)
}

/// The last count emitted per key (a key's outputs share one partition, in order).
pub(crate) fn final_counts(got: &[Got]) -> HashMap<String, u64> {
    let mut sorted: Vec<&Got> = got.iter().collect();
    sorted.sort_by_key(|g| (g.partition, g.offset));
    let mut counts = HashMap::new();
    for g in sorted {
        let key = g.value["payload"]["count_key"].as_str().unwrap().to_owned();
        counts.insert(key, g.value["payload"]["count"].as_u64().unwrap());
    }
    counts
}

#[test]
fn counts_survive_kill_9_and_move_to_another_instance() {
    const N: usize = 100_000;
    const KEYS: usize = 1_000;
    let dir = TestDir::new();
    let (app, input, output) = (unique("count-app"), unique("count-in"), unique("count-out"));
    create_topic(&input, 6);
    let topo = counting(dir.path(), &app, &input, &output);
    let producer = {
        let input = input.clone();
        std::thread::spawn(move || {
            for chunk in (0..N).collect::<Vec<_>>().chunks(5_000) {
                produce(&input, chunk.iter().map(|&i| keyed(i, KEYS)));
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    // Instance A (its own state folder) until about half the input is counted, then kill -9.
    let dir_a = dir.path().join("a");
    std::fs::create_dir_all(&dir_a).unwrap();
    let topo_a = dir_a.join("count.toml");
    std::fs::copy(&topo, &topo_a).unwrap();
    let log_a = dir_a.join("a.log");
    let mut a = spawn_instance(&topo_a, "a", &log_a);
    let seen = count_at_least(&output, N / 2, Duration::from_secs(240));
    assert!(seen >= N / 2, "A counted only {seen}:\n{}", std::fs::read_to_string(&log_a).unwrap());
    a.kill().unwrap();
    a.wait().unwrap();
    producer.join().unwrap();

    // Instance B, on a fresh state folder of its own, takes every partition and restores. It
    // replaces A the way a StatefulSet pod replaces a dead one: same instance id, new disk. The
    // id matters on this broker: Tansu never times out the transaction a killed instance left
    // open, and until that transaction ends it ignores the group's transactional offset
    // commits; B's init_transactions with the same transactional id aborts it at once (Apache
    // Kafka aborts it after transaction.timeout.ms, so any instance id works there).
    let log_b = dir.path().join("b.log");
    let mut b = spawn_instance(&topo, "a", &log_b);
    let done = wait_committed(&app, &input, N);
    let got = consume_all(&output, N, Duration::from_secs(120));
    sigterm(&mut b);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(60)), Some(0));
    let log = std::fs::read_to_string(&log_b).unwrap();
    assert!(done, "B did not finish:\n{log}");
    assert!(log.contains("state restored from the changelog"), "B restored nothing:\n{log}");

    let counts = final_counts(&got);
    assert_eq!(counts.len(), KEYS);
    for (k, c) in &counts {
        assert_eq!(*c, (N / KEYS) as u64, "count of {k}");
    }

    // A clean restart of B with its checkpoints current restores nothing.
    let log_c = dir.path().join("b2.log");
    let mut again = spawn_instance(&topo, "a", &log_c);
    std::thread::sleep(Duration::from_secs(12));
    sigterm(&mut again);
    assert_eq!(wait_exit(&mut again, Duration::from_secs(60)), Some(0));
    let log = std::fs::read_to_string(&log_c).unwrap();
    assert!(log.contains("nothing to restore"), "{log}");
    assert!(!log.contains("state restored from the changelog"), "{log}");
}

fn wait_committed(group: &str, topic: &str, n: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while std::time::Instant::now() < deadline {
        if committed(group, topic, 6).iter().sum::<i64>() >= n as i64 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}
