//! A duplicate launch (same `--instance-id`, same `--state-dir`) stops at its state store's
//! lock before it touches Kafka: it exits 2 saying why, and the running instance, never
//! fenced, goes on processing.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_duplicate_instance_exits_2_and_leaves_the_running_one_alone() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("dup-app"), unique("dup-in"), unique("dup-out"));
    create_topic(&input, 1);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
guarantee = "exactly-once"
partitions = 1
commit_interval_ms = 100

[sources.in]
type = "kafka"
topic = "{input}"

[operators.tag]
type = "map"
inputs = ["in"]
set = {{ "payload.seen_by" = '"kafclaw"' }}

[sinks.out]
type = "kafka"
inputs = ["tag"]
topic = "{output}"
"#
        ),
    );
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut first = spawn_instance(&topo, "a", &log_a);
    produce(&input, [("0".to_owned(), envelope(0))]);
    let got = consume_all(&output, 1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "the first instance runs: {}", log_tail(&log_a));

    let mut duplicate = spawn_instance(&topo, "a", &log_b);
    assert_eq!(wait_exit(&mut duplicate, Duration::from_secs(60)), Some(2), "{}", log_tail(&log_b));
    let said = std::fs::read_to_string(&log_b).unwrap();
    let state_dir = dir.path().join("state");
    assert!(
        said.contains("locked by another running instance `a`")
            && said.contains(&state_dir.join(&app).join("a").display().to_string())
            && said.contains(&format!("state dir {}", state_dir.display())),
        "{said}"
    );

    // The first instance was not fenced: it processes a record produced afterwards.
    produce(&input, [("1".to_owned(), envelope(1))]);
    let got = consume_all(&output, 2, Duration::from_secs(60));
    assert_eq!(got.len(), 2, "{}", log_tail(&log_a));
    assert!(first.try_wait().unwrap().is_none(), "the first instance stopped: {}", log_tail(&log_a));
    sigterm(&mut first);
    assert_eq!(wait_exit(&mut first, Duration::from_secs(30)), Some(0), "{}", log_tail(&log_a));
}
