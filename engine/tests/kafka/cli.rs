//! Kafka-mode CLI against the real broker: at-least-once runs, `kafclaw topics`, the health
//! endpoint, and start-up checks (co-partitioning, missing sources, local nodes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

fn kafclaw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(args).output().unwrap()
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()))
}

#[test]
fn at_least_once_run_with_health_endpoint_and_topics_listing() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("alo-app"), unique("alo-in"), unique("alo-out"));
    create_topic(&input, 3);
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
guarantee = "at-least-once"
partitions = 4

[kafka]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500

[sources.in]
type = "kafka"
topic = "{input}"

[operators.even]
type = "filter"
inputs = ["in"]
where = 'payload.n % 2 == 0'

[sinks.out]
type = "kafka"
inputs = ["even"]
topic = "{output}"
key = "sender_id"
"#
        ),
    );

    // Before the run: the output and dead-letter topics are missing; --create makes them.
    let o = kafclaw(&["topics", topo.to_str().unwrap(), "--brokers", &brokers()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.lines().any(|l| l.starts_with(&input) && l.contains("source") && l.contains(" 3 ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with(&output) && l.contains("missing")), "{text}");
    let o = kafclaw(&["topics", topo.to_str().unwrap(), "--brokers", &brokers(), "--create"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().any(|l| l.starts_with(&output) && l.contains(" 4 ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with(&format!("{app}.dlq")) && l.contains("dead-letter")), "{text}");

    produce(&input, (0..1_000).map(|i| (format!("{i}"), envelope(i))));
    let port = 20_000 + (std::process::id() % 10_000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let log = dir.path().join("alo.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--instance-id", "x", "--brokers", &brokers(), "--http", &addr])
        .env("RUST_LOG", "info")
        // A secret that must never reach the logs (librdkafka ignores it on plaintext).
        .env("KAFCLAW_KAFKA_SASL_PASSWORD", "hunter2-secret")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut health = None;
    while Instant::now() < deadline && health.is_none() {
        health = http_get(&addr, "/healthz");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(health.map(|h| h.0), Some(200));
    let got = consume_all(&output, 500, Duration::from_secs(60));
    let (code, _) = http_get(&addr, "/readyz").unwrap();
    assert_eq!(code, 200, "ready once partitions are assigned");
    let (_, stats) = http_get(&addr, "/stats").unwrap();
    let stats: serde_json::Value = serde_json::from_str(stats.trim()).unwrap_or_else(|_| panic!("{stats}"));
    assert_eq!(stats["consumed"], 1000, "{stats}");
    sigterm(&mut child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0), "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|g| g.value["payload"]["n"].as_i64().unwrap() % 2 == 0));
    assert!(got.iter().all(|g| g.key.as_deref() == Some("load")), "keyed by sender_id");
    assert_eq!(committed(&app, &input, 3).iter().sum::<i64>(), 1000, "offsets committed at least once");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains(r#"("sasl.password", "***")"#), "the configuration is logged, masked:\n{log}");
    assert!(!log.contains("hunter2-secret"), "no secrets in logs");
}

#[test]
fn startup_checks_name_the_problem() {
    let dir = TestDir::new();
    let (a, b) = (unique("cop-a"), unique("cop-b"));
    create_topic(&a, 2);
    create_topic(&b, 3);
    let app = unique("cop-app");
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
[sources.left]
type = "kafka"
topic = "{a}"
[sources.right]
type = "kafka"
topic = "{b}"
[operators.both]
type = "filter"
inputs = ["left", "right"]
where = 'true'
[sinks.out]
type = "kafka"
inputs = ["both"]
topic = "{}"
"#,
            unique("cop-out")
        ),
    );
    let o = kafclaw(&["run", topo.to_str().unwrap(), "--brokers", &brokers()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("co-partitioned") && err.contains(&a) && err.contains(&b), "{err}");

    let missing = unique("nope");
    let topo = write_topology(
        dir.path(),
        "missing",
        &format!(
            "[topology]\nname = \"{app}\"\n[sources.s]\ntype = \"kafka\"\ntopic = \"{missing}\"\n[sinks.o]\ntype = \"kafka\"\ninputs = [\"s\"]\ntopic = \"x-{missing}\"\n"
        ),
    );
    let o = kafclaw(&["run", topo.to_str().unwrap(), "--brokers", &brokers()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("source topic `{missing}` does not exist")), "{err}");

    let local = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/support-triage.toml");
    let o = kafclaw(&["run", local.to_str().unwrap(), "--brokers", &brokers()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("source `requests` is a local file"), "{err}");
}
