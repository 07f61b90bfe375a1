//! `kafclaw doctor`'s layout verdicts on measured facts (no broker), and `kafclaw tap`'s
//! refusal of a bad `--where` before it connects.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kafclaw_engine::compiler::{SourceFile, compile_source};
use kafclaw_engine::doctor::layout::{TopicFacts, checks, dedup_check};
use kafclaw_engine::doctor::{Check, Verdict};
use kafclaw_engine::kafka::topics::{TopicRole, topic_uses};

const TOPOLOGY: &str = r#"
[topology]
name = "doc"

[sources.orders]
type = "kafka"
topic = "orders"

[sources.payments]
type = "kafka"
topic = "payments"
dedup = true

[operators.per-key]
type = "count"
inputs = ["orders", "payments"]
by = 'correlation_id'

[sinks.out]
type = "kafka"
inputs = ["per-key"]
topic = "counts"
"#;

fn plan() -> kafclaw_engine::compiler::PhysicalPlan {
    let c = compile_source(SourceFile::new(Path::new("doc.toml"), TOPOLOGY.to_owned())).expect("compiles");
    c.plan
}

fn facts(
    plan: &kafclaw_engine::compiler::PhysicalPlan,
    f: impl Fn(&str, TopicRole) -> TopicFacts,
) -> BTreeMap<String, TopicFacts> {
    topic_uses(plan).into_iter().map(|u| (u.topic.clone(), f(&u.topic, u.role))).collect()
}

fn find<'a>(checks: &'a [Check], id: &str, subject: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id && c.subject == subject)
        .unwrap_or_else(|| panic!("no {id} on {subject}: {checks:#?}"))
}

fn compacted(n: usize) -> TopicFacts {
    TopicFacts { partitions: Some(n), cleanup_policy: Ok(Some("compact".into())) }
}

fn deleting(n: usize) -> TopicFacts {
    TopicFacts { partitions: Some(n), cleanup_policy: Ok(Some("delete".into())) }
}

#[test]
fn a_sound_layout_is_all_ok() {
    let plan = plan();
    let changelog = topic_uses(&plan).into_iter().find(|u| u.role == TopicRole::Changelog).expect("a changelog").topic;
    let f = facts(&plan, |_, role| if role == TopicRole::Changelog { compacted(3) } else { deleting(3) });
    let c = checks(&plan, &f);
    assert!(c.iter().all(|c| c.verdict == Verdict::Ok), "{c:#?}");
    assert_eq!(find(&c, "layout.copartitioning", "orders + payments").verdict, Verdict::Ok);
    assert_eq!(find(&c, "layout.copartitioning", &changelog).verdict, Verdict::Ok);
    assert_eq!(find(&c, "layout.compaction", &changelog).verdict, Verdict::Ok);
    assert!(c.iter().all(|c| c.topology.as_deref() == Some("doc")));
}

#[test]
fn an_uncompacted_changelog_and_unequal_partitions_fail() {
    let plan = plan();
    let changelog = topic_uses(&plan).into_iter().find(|u| u.role == TopicRole::Changelog).unwrap().topic;
    let f = facts(&plan, |t, _| match t {
        "orders" => deleting(3),
        "payments" => deleting(4),
        _ => deleting(3),
    });
    let c = checks(&plan, &f);
    let comp = find(&c, "layout.compaction", &changelog);
    assert_eq!(comp.verdict, Verdict::Fail);
    assert!(comp.reason.contains("cleanup.policy = delete") && comp.reason.contains("changelog"), "{}", comp.reason);
    assert_eq!(comp.facts["cleanup_policy"], "delete");
    assert_eq!(find(&c, "layout.copartitioning", "orders + payments").verdict, Verdict::Fail);
    // The changelog against the widest source (4): tasks 3 would find no partition.
    assert_eq!(find(&c, "layout.copartitioning", &changelog).verdict, Verdict::Fail);
}

#[test]
fn missing_sources_fail_missing_outputs_warn_and_unknown_configs_are_unknown() {
    let plan = plan();
    let changelog = topic_uses(&plan).into_iter().find(|u| u.role == TopicRole::Changelog).unwrap().topic;
    let f = facts(&plan, |t, role| match (t, role) {
        ("orders", _) => TopicFacts { partitions: None, cleanup_policy: Ok(None) },
        ("counts", _) => TopicFacts { partitions: None, cleanup_policy: Ok(None) },
        (_, TopicRole::Changelog) => {
            TopicFacts { partitions: Some(3), cleanup_policy: Err("DescribeConfigs: unsupported".into()) }
        }
        _ => deleting(3),
    });
    let c = checks(&plan, &f);
    assert_eq!(find(&c, "layout.topic", "orders").verdict, Verdict::Fail);
    assert_eq!(find(&c, "layout.topic", "counts").verdict, Verdict::Warn);
    assert_eq!(find(&c, "layout.compaction", &changelog).verdict, Verdict::Unknown);
}

#[test]
fn dedup_is_required_exactly_where_the_broker_leaks() {
    let plan = plan();
    let leak = dedup_check(&plan, Some(true));
    assert_eq!(leak.verdict, Verdict::Warn);
    assert_eq!(leak.facts["sources_without_dedup"], serde_json::json!(["orders"]));
    assert!(leak.advice.as_deref().unwrap().contains("dedup = true"));
    assert_eq!(dedup_check(&plan, Some(false)).verdict, Verdict::Ok);
    assert_eq!(dedup_check(&plan, None).verdict, Verdict::Unknown);
}

#[test]
fn tap_refuses_a_bad_condition_before_connecting() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["tap", "anything", "--where", "type == && payload.x", "--brokers", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: --where: CEL syntax") && err.contains('^'), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["tap", "anything", "--where", "payloa.x == 1", "--brokers", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `payload`"));
}

/// `kafclaw run` refuses incoherent SASL/TLS settings at start (exit 2, the reason named)
/// instead of letting librdkafka fall back to a mechanism this build lacks.
#[test]
fn run_refuses_sasl_without_a_mechanism_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.toml");
    std::fs::write(
        &topo,
        "[topology]\nname = \"sec\"\n\n[sources.in]\ntype = \"kafka\"\ntopic = \"sec-in\"\n\n[sinks.out]\ntype = \"kafka\"\ninputs = [\"in\"]\ntopic = \"sec-out\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--brokers", "127.0.0.1:1", "--state-dir"])
        .arg(dir.path().join("state"))
        .env("KAFCLAW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("SASL_SSL without sasl.mechanism"), "{err}");
}
