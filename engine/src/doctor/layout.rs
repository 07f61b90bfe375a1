//! A topology's topics against the cluster (pure: takes what was measured): missing topics,
//! co-partitioning (sources of a sub-topology, changelogs with their sources), compaction of
//! changelogs and tables, and `dedup` on the sources where the broker needs it.

use std::collections::BTreeMap;

use super::features::DEDUP_ADVICE;
use super::report::{Check, Verdict};
use crate::compiler::PhysicalPlan;
use crate::compiler::registry::NodeConfig;
use crate::compiler::sections::Guarantee;
use crate::kafka::topics::{TopicRole, TopicUse, topic_uses};

/// What was measured of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFacts {
    /// Partition count, `None` when the topic does not exist.
    pub partitions: Option<usize>,
    /// `cleanup.policy` (DescribeConfigs), or why it is not known.
    pub cleanup_policy: Result<Option<String>, String>,
}

/// The layout checks of topology `plan` against `facts` (every topic of [`topic_uses`]).
pub fn checks(plan: &PhysicalPlan, facts: &BTreeMap<String, TopicFacts>) -> Vec<Check> {
    let name = plan.name.as_str();
    let uses = topic_uses(plan);
    let parts = |t: &str| facts.get(t).and_then(|f| f.partitions);
    let mut out: Vec<Check> = uses.iter().map(|u| topic_check(u, parts(&u.topic)).topology(name)).collect();
    // Sources of one sub-topology are read by the same tasks: same partition count.
    for sub in plan.subtopologies.iter().filter(|s| !plan.is_global(s.id)) {
        let sources: Vec<(&str, Option<usize>)> =
            sub.sources.iter().filter_map(|&s| plan.nodes[s].config.kafka_topic()).map(|t| (t, parts(t))).collect();
        let widest = sources.iter().filter_map(|(_, n)| *n).max();
        if sources.len() >= 2 && sources.iter().all(|(_, n)| n.is_some()) {
            let listed: Vec<String> = sources.iter().map(|(t, n)| format!("{t}: {}", n.unwrap_or(0))).collect();
            let same = sources.iter().all(|(_, n)| *n == widest);
            let subject = sources.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(" + ");
            out.push(
                if same {
                    Check::new(
                        "layout.copartitioning",
                        subject,
                        Verdict::Ok,
                        format!("co-partitioned ({})", listed.join(", ")),
                    )
                } else {
                    Check::new(
                        "layout.copartitioning",
                        subject,
                        Verdict::Fail,
                        format!("not co-partitioned ({})", listed.join(", ")),
                    )
                    .advice(
                        "sources read by the same tasks need the same partition count; the instance refuses to start",
                    )
                }
                .topology(name),
            );
        }
        // A changelog partition belongs to the task of the same source partition.
        let Some(widest) = widest else { continue };
        for u in uses.iter().filter(|u| u.role == TopicRole::Changelog) {
            let in_sub = u.nodes.iter().any(|n| plan.index(n).is_some_and(|i| plan.sub_of(i) == sub.id));
            let Some(n) = parts(&u.topic).filter(|_| in_sub) else { continue };
            out.push(
                if n == widest {
                    Check::new(
                        "layout.copartitioning",
                        &u.topic,
                        Verdict::Ok,
                        format!("{n} partitions, as its sources"),
                    )
                } else {
                    Check::new(
                        "layout.copartitioning",
                        &u.topic,
                        Verdict::Fail,
                        format!(
                            "{n} partitions, its sources {widest}: tasks would restore the wrong partition's state"
                        ),
                    )
                    .advice("recreate the changelog with the sources' partition count (`kafclaw replay` rebuilds it)")
                }
                .topology(name),
            );
        }
    }
    for u in &uses {
        let Some(f) = facts.get(&u.topic).filter(|f| f.partitions.is_some()) else { continue };
        if let Some(c) = compaction_check(u, &f.cleanup_policy) {
            out.push(c.topology(name));
        }
    }
    out
}

fn topic_check(u: &TopicUse, partitions: Option<usize>) -> Check {
    let role = u.role.as_str();
    match (partitions, u.role) {
        (Some(n), _) => {
            Check::new("layout.topic", &u.topic, Verdict::Ok, format!("{role}, {n} partitions")).fact("partitions", n)
        }
        (None, TopicRole::Source | TopicRole::GlobalSource) => {
            Check::new("layout.topic", &u.topic, Verdict::Fail, format!("{role} topic missing"))
                .advice("create it: kafclaw creates only the topics it writes")
        }
        (None, _) => Check::new("layout.topic", &u.topic, Verdict::Warn, format!("{role} topic missing"))
            .advice("`kafclaw run` creates it at start (CreateTopics permission needed), or `kafclaw topics --create`"),
    }
}

fn compaction_check(u: &TopicUse, policy: &Result<Option<String>, String>) -> Option<Check> {
    let (bad, why) = match u.role {
        TopicRole::Changelog => (
            Verdict::Fail,
            "a changelog must be compacted: with `delete` the state older than retention is lost on restore",
        ),
        TopicRole::CompactedSink => (Verdict::Warn, "the sink says `compact = true`, the topic is not compacted"),
        TopicRole::GlobalSource => {
            (Verdict::Warn, "a global table is read in full at every start: keep only the latest value per key")
        }
        _ => return None,
    };
    Some(match policy {
        Ok(Some(p)) if p.contains("compact") => {
            Check::new("layout.compaction", &u.topic, Verdict::Ok, format!("cleanup.policy = {p}"))
                .fact("cleanup_policy", p.clone())
        }
        Ok(Some(p)) => Check::new("layout.compaction", &u.topic, bad, format!("cleanup.policy = {p}: {why}"))
            .advice(format!(
                "kafka-configs --alter --entity-type topics --entity-name {} --add-config cleanup.policy=compact",
                u.topic
            ))
            .fact("cleanup_policy", p.clone()),
        Ok(None) => Check::new("layout.compaction", &u.topic, Verdict::Unknown, "the broker lists no cleanup.policy"),
        Err(e) => Check::new("layout.compaction", &u.topic, Verdict::Unknown, format!("cleanup.policy unknown: {e}")),
    })
}

/// `features.dedup`: whether the topology's Kafka sources deduplicate where the broker leaks
/// aborted records (`aborted_visible`: the probe's measure, `None` when not measured).
pub fn dedup_check(plan: &PhysicalPlan, aborted_visible: Option<bool>) -> Check {
    let name = plan.name.as_str();
    let without: Vec<&str> = plan
        .nodes
        .iter()
        .filter_map(|n| match &*n.config {
            NodeConfig::KafkaSource(c) if !c.global && !c.dedup => Some(&*n.name),
            _ => None,
        })
        .collect();
    let subject = "dedup";
    let check = match (plan.guarantee, aborted_visible) {
        (Guarantee::AtLeastOnce, _) => {
            Check::new("features.dedup", subject, Verdict::Ok, "at-least-once: duplicates are allowed")
        }
        (_, None) => Check::new(
            "features.dedup",
            subject,
            Verdict::Unknown,
            "not measured: whether this broker leaks aborted records is unknown",
        ),
        (_, Some(false)) => {
            Check::new("features.dedup", subject, Verdict::Ok, "not needed: the broker hides aborted records")
        }
        (_, Some(true)) if without.is_empty() => Check::new(
            "features.dedup",
            subject,
            Verdict::Ok,
            "every Kafka source has dedup = true, which drops the aborted records this broker leaks",
        ),
        (_, Some(true)) => Check::new(
            "features.dedup",
            subject,
            Verdict::Warn,
            format!(
                "this broker leaks aborted records and source(s) {} have no dedup = true: outputs may repeat",
                without.join(", ")
            ),
        )
        .advice(DEDUP_ADVICE),
    };
    check.topology(name).fact("sources_without_dedup", without)
}
