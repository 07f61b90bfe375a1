//! `kafclaw doctor` against the test broker: the measured features (this broker leaks the
//! records of aborted transactions to read_committed readers, so doctor must say so and
//! recommend `dedup = true`), a changelog created with `cleanup.policy = delete` reported as
//! not compacted, the group's lag from its committed offsets, and the JSON shape.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::support::{TestDir, brokers, config, create_topic, produce, unique, write_topology};

const AREAS: [&str; 5] = ["settings", "connectivity", "features", "layout", "group"];
const VERDICTS: [&str; 4] = ["ok", "warn", "fail", "unknown"];
/// The test instances' group timings: this broker holds a new group's first join for about
/// half the session timeout (23 s with librdkafka's default 45 s).
const FAST: [(&str, &str); 2] =
    [("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000"), ("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")];
const CHECK_KEYS: [&str; 8] = ["id", "area", "topology", "subject", "verdict", "reason", "advice", "facts"];

fn topology(app: &str, input: &str, output: &str, dedup: bool) -> String {
    format!(
        r#"
[topology]
name = "{app}"
partitions = 1

[sources.in]
type = "kafka"
topic = "{input}"
dedup = {dedup}

[operators.per-key]
type = "count"
inputs = ["in"]
by = 'correlation_id'

[sinks.out]
type = "kafka"
inputs = ["per-key"]
topic = "{output}"
"#
    )
}

/// Runs `kafclaw doctor` with `args`; exit code and standard output.
pub fn doctor(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .arg("doctor")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The stable JSON shape (docs/doctor.md): fixed keys everywhere, verdicts from the four,
/// counts adding up, the top verdict the worst of the checks'.
pub fn assert_shape(doc: &Value) {
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
    let set = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(keys(doc), set(&["doctor", "bootstrap_servers", "verdict", "counts", "checks"]), "{doc:#}");
    assert_eq!(doc["doctor"], 1);
    assert!(doc["bootstrap_servers"].is_string());
    assert_eq!(keys(&doc["counts"]), set(&VERDICTS));
    let checks = doc["checks"].as_array().unwrap();
    let total: u64 = VERDICTS.iter().map(|v| doc["counts"][v].as_u64().unwrap()).sum();
    assert_eq!(total as usize, checks.len());
    let rank = |v: &str| ["ok", "unknown", "warn", "fail"].iter().position(|r| *r == v).unwrap();
    let worst = checks.iter().map(|c| rank(c["verdict"].as_str().unwrap())).max().unwrap_or(0);
    assert_eq!(rank(doc["verdict"].as_str().unwrap()), worst);
    for c in checks {
        assert_eq!(keys(c), set(&CHECK_KEYS), "{c:#}");
        let id = c["id"].as_str().unwrap();
        assert!(AREAS.contains(&c["area"].as_str().unwrap()), "{c:#}");
        assert!(id.starts_with(&format!("{}.", c["area"].as_str().unwrap())), "{c:#}");
        assert!(VERDICTS.contains(&c["verdict"].as_str().unwrap()), "{c:#}");
        assert!(!c["reason"].as_str().unwrap().is_empty(), "{c:#}");
        assert!(c["topology"].is_null() || c["topology"].is_string());
        assert!(c["advice"].is_null() || c["advice"].is_string());
        assert!(c["facts"].is_object());
    }
}

pub fn check<'a>(doc: &'a Value, id: &str, subject: Option<&str>) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id && subject.is_none_or(|s| c["subject"] == s))
        .unwrap_or_else(|| panic!("no check {id} {subject:?} in {doc:#}"))
}

fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    for r in rt.block_on(admin.create_topics([&t], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
}

fn changelogs(path: &Path) -> Vec<String> {
    let c = kafclaw_engine::compiler::compile_file(path).unwrap();
    kafclaw_engine::kafka::topics::topic_uses(&c.plan)
        .into_iter()
        .filter(|u| u.role == kafclaw_engine::kafka::topics::TopicRole::Changelog)
        .map(|u| u.topic)
        .collect()
}

#[test]
fn doctor_reports_leaked_aborted_records_an_uncompacted_changelog_and_lag() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("doctor-app"), unique("doctor-in"), unique("doctor-out"));
    create_topic(&input, 1);
    let path = write_topology(dir.path(), &app, &topology(&app, &input, &output, false));
    let changelog = changelogs(&path).pop().expect("count has a changelog");
    create_topic_with(&changelog, 1, &[("cleanup.policy", "delete")]);
    produce(&input, (0..5).map(|i| (format!("k{i}"), crate::support::envelope(i))));
    // The group has processed two records.
    let c: BaseConsumer = config().set("group.id", &app).set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&input, 0, Offset::Offset(2)).unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();

    let (code, out, err) = doctor(&[path.to_str().unwrap(), "--json", "--brokers", &brokers()], &FAST);
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_shape(&doc);
    assert_eq!(code, Some(1), "a failed check exits 1: {doc:#}");
    assert_eq!(doc["verdict"], "fail");
    for id in ["connectivity.dns", "connectivity.tcp", "connectivity.metadata", "features.transactions"] {
        assert_eq!(check(&doc, id, None)["verdict"], "ok", "{id}: {doc:#}");
    }
    // The known property of this broker, measured by the probe transaction.
    let leak = check(&doc, "features.read_committed", None);
    assert_eq!(leak["verdict"], "warn", "{leak:#}");
    assert_eq!(leak["facts"]["aborted_visible"], true);
    assert!(leak["advice"].as_str().unwrap().contains("dedup = true"), "{leak:#}");
    let dedup = check(&doc, "features.dedup", None);
    assert_eq!((dedup["verdict"].as_str(), dedup["topology"].as_str()), (Some("warn"), Some(app.as_str())));
    assert_eq!(dedup["facts"]["sources_without_dedup"], serde_json::json!(["in"]));
    // The changelog made with cleanup.policy = delete.
    let comp = check(&doc, "layout.compaction", Some(&changelog));
    assert_eq!(comp["verdict"], "fail", "{comp:#}");
    assert!(comp["reason"].as_str().unwrap().contains("cleanup.policy = delete"), "{comp:#}");
    // The sink does not exist yet: created at start.
    assert_eq!(check(&doc, "layout.topic", Some(&output))["verdict"], "warn");
    assert_eq!(check(&doc, "layout.topic", Some(&input))["verdict"], "ok");
    // Lag: committed 2 of 5 on the input's one partition.
    let lag = check(&doc, "group.lag", Some(&app));
    let p = &lag["facts"]["partitions"][0];
    assert_eq!((p["topic"].as_str(), p["committed"].as_i64()), (Some(input.as_str()), Some(2)), "{lag:#}");
    // The end as a read_committed fetch sees it (this broker's ListOffsets is wrong).
    assert_eq!((p["high_watermark"].as_i64(), p["end_from"].as_str()), (Some(5), Some("fetch")), "{lag:#}");
    assert_eq!((p["lag"].as_i64(), lag["facts"]["total"].as_i64()), (Some(3), Some(3)), "{lag:#}");
    // The probe cleaned up after itself.
    let probe = doc["checks"].as_array().unwrap().iter().find(|c| c["id"] == "features.probe").unwrap();
    assert_eq!(probe["verdict"], "ok", "{probe:#}");

    // The same for people: one verdict per line.
    let (code, text, _) = doctor(&[path.to_str().unwrap(), "--no-probe", "--brokers", &brokers()], &FAST);
    assert_eq!(code, Some(1));
    let line = text.lines().find(|l| l.contains("layout.compaction") && l.contains(&changelog)).expect(&text);
    assert!(line.starts_with("fail ") && line.contains("cleanup.policy = delete"), "{line}");
    assert!(text.lines().any(|l| l.starts_with("unknown") && l.contains("features.probe") && l.contains("--no-probe")));
    assert!(text.lines().last().unwrap().starts_with("doctor: fail:"), "{text}");
}

#[test]
fn doctor_passes_a_sound_topology_with_dedup() {
    let dir = TestDir::new();
    let (app, input, output) = (unique("doctor-ok"), unique("doctor-ok-in"), unique("doctor-ok-out"));
    create_topic(&input, 2);
    let path = write_topology(dir.path(), &app, &topology(&app, &input, &output, true));
    let created = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["topics", path.to_str().unwrap(), "--create", "--brokers", &brokers()])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    std::thread::sleep(Duration::from_millis(500));

    let (code, out, err) = doctor(&[path.to_str().unwrap(), "--brokers", &brokers()], &FAST);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(!out.lines().any(|l| l.starts_with("fail")), "{out}");
    let dedup = out.lines().find(|l| l.contains("features.dedup")).expect(&out);
    assert!(dedup.starts_with("ok ") && dedup.contains("every Kafka source has dedup = true"), "{dedup}");
    for changelog in changelogs(&path) {
        let line = out.lines().find(|l| l.contains("layout.compaction") && l.contains(&changelog)).expect(&out);
        assert!(line.starts_with("ok "), "{line}");
    }
    let copart = out.lines().filter(|l| l.contains("layout.copartitioning")).collect::<Vec<_>>();
    assert!(!copart.is_empty() && copart.iter().all(|l| l.starts_with("ok ")), "{out}");
}
