//! Start-up checks of a plan in Kafka mode: only Kafka sources and sinks, global sources that
//! feed state only, co-partitioned sources within a sub-topology.

use super::{InstanceError, setup};
use crate::compiler::PhysicalPlan;
use crate::compiler::registry::{NodeConfig, Role};
use crate::kafka::producer::CALL_TIMEOUT;
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::partition_counts;

/// Checks the plan can run on Kafka and that co-partitioned sources agree.
pub(super) fn check_plan(plan: &PhysicalPlan, settings: &ClientSettings) -> Result<(), InstanceError> {
    for n in &plan.nodes {
        if matches!(n.role, Role::Source | Role::Sink) && !n.config.is_kafka() {
            return Err(setup(format!(
                "{} `{}` is a local {}; Kafka mode reads and writes topics only (use --local)",
                n.role.noun(),
                n.name,
                n.kind
            )));
        }
    }
    for sub in &plan.subtopologies {
        if plan.is_global(sub.id) {
            let all_global =
                sub.sources.iter().all(|&s| matches!(&*plan.nodes[s].config, NodeConfig::KafkaSource(c) if c.global));
            let sink = sub.nodes.iter().find(|&&n| plan.nodes[n].role == Role::Sink);
            if !all_global || sink.is_some() {
                return Err(setup(format!(
                    "a global source feeds state only: its sub-topology (nodes {}) cannot have sinks or other sources",
                    sub.nodes.iter().map(|&n| plan.nodes[n].name.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            continue;
        }
        let topics: Vec<&str> = sub.sources.iter().filter_map(|&s| plan.nodes[s].config.kafka_topic()).collect();
        if topics.len() < 2 {
            continue;
        }
        let counts = partition_counts(settings, &topics, CALL_TIMEOUT).map_err(|e| setup(e.to_string()))?;
        let first = counts[0];
        if counts.iter().any(|c| *c != first) {
            let listed: Vec<String> = topics.iter().zip(&counts).map(|(t, c)| format!("{t}: {c:?}")).collect();
            return Err(setup(format!(
                "sources of one sub-topology must be co-partitioned (same partition count): {}",
                listed.join(", ")
            )));
        }
    }
    Ok(())
}
