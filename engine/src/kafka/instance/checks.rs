//! Start-up checks of a plan in Kafka mode: only Kafka sources and sinks (and schedules, alone
//! in their sub-topology and feeding no asynchronous operator; no `approve` feeding one), global
//! sources that feed state only, co-partitioned sources within a sub-topology.

use super::{InstanceError, setup};
use crate::compiler::PhysicalPlan;
use crate::compiler::registry::{NodeConfig, Role};
use crate::kafka::producer::CALL_TIMEOUT;
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::partition_counts;
use kafclaw_operators::api::kind::Built;

/// Checks the plan can run on Kafka and that co-partitioned sources agree.
pub(super) fn check_plan(plan: &PhysicalPlan, settings: &ClientSettings) -> Result<(), InstanceError> {
    for n in &plan.nodes {
        let schedule = matches!(&*n.config, NodeConfig::Schedule(_));
        if matches!(n.role, Role::Source | Role::Sink) && !n.config.is_kafka() && !schedule {
            return Err(setup(format!(
                "{} `{}` is a local {}; Kafka mode reads and writes topics only (use --local)",
                n.role.noun(),
                n.name,
                n.kind
            )));
        }
    }
    for sub in &plan.subtopologies {
        // The task of a schedule's partition fires its ticks: sharing the task with another
        // source's partition (which the group may give to another instance) could fire twice.
        let schedule = sub.sources.iter().find(|&&s| matches!(&*plan.nodes[s].config, NodeConfig::Schedule(_)));
        if let Some(&s) = schedule.filter(|_| sub.sources.len() > 1) {
            return Err(setup(format!(
                "schedule `{}` must be the only source of its sub-topology (nodes {}); send its ticks through a topic to merge them with other inputs",
                plan.nodes[s].name,
                sub.nodes.iter().map(|&n| plan.nodes[n].name.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        // A tick has no input offset to hold back: asynchronous work it starts (a model call)
        // could be lost by a crash after the tick's due time committed.
        let asynchronous = |&&n: &&usize| {
            plan.nodes[n].role == Role::Operator
                && matches!(plan.nodes[n].config.build(&plan.nodes[n].name, &plan.resources), Ok(Built::Async(_)))
        };
        if let Some(&s) = schedule
            && let Some(&a) = sub.nodes.iter().find(asynchronous)
        {
            return Err(setup(format!(
                "schedule `{}` feeds the asynchronous operator `{}` ({}): a crash while its call is in flight would lose the tick, which has no input offset to read again; write the ticks to a topic with a kafka sink and read them with a kafka source (docs/schedules.md)",
                plan.nodes[s].name, plan.nodes[a].name, plan.nodes[a].kind
            )));
        }
        // An approved, rejected or expired record leaves `approve` while another input is
        // processed (a decision, a punctuation): asynchronous work it starts in this task is
        // not held back by its own input's offset, so a crash during the call could lose it.
        for &n in &sub.nodes {
            if matches!(&*plan.nodes[n].config, NodeConfig::Approve(_))
                && let Some(a) = async_downstream(plan, n)
            {
                return Err(setup(format!(
                    "approve `{}` feeds the asynchronous operator `{}` ({}): a released record is not read again after a crash, so a call in flight could be lost; write the released records to a topic with a kafka sink and read them with a kafka source (docs/approvals.md)",
                    plan.nodes[n].name, plan.nodes[a].name, plan.nodes[a].kind
                )));
            }
        }
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

/// The group's `partition.assignment.strategy`. `range` when a sub-topology reads several
/// topics: range gives partition `p` of every co-partitioned topic to the same member (stream
/// thread), so the task `(sub-topology, p)` sees all its inputs and is the only writer of its
/// state partitions, as Kafka Streams' own assignor guarantees; range is an eager protocol
/// (a rebalance revokes every partition). Otherwise `cooperative-sticky`. Every member of a
/// group must agree: changing a topology between the two needs all its instances stopped.
pub(super) fn assignment_strategy(plan: &PhysicalPlan) -> &'static str {
    let several = plan.subtopologies.iter().filter(|sub| !plan.is_global(sub.id)).any(|sub| {
        let mut topics: Vec<&str> = sub.sources.iter().filter_map(|&s| plan.nodes[s].config.kafka_topic()).collect();
        topics.sort_unstable();
        topics.dedup();
        topics.len() > 1
    });
    if several { "range" } else { "cooperative-sticky" }
}

/// The first asynchronous operator reachable downstream of node `from` (any output), if any.
fn async_downstream(plan: &PhysicalPlan, from: usize) -> Option<usize> {
    let mut seen = vec![false; plan.nodes.len()];
    let mut stack: Vec<usize> = plan.nodes[from].downstream.iter().flatten().copied().collect();
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        let node = &plan.nodes[n];
        if node.role == Role::Operator && matches!(node.config.build(&node.name, &plan.resources), Ok(Built::Async(_)))
        {
            return Some(n);
        }
        stack.extend(node.downstream.iter().flatten().copied());
    }
    None
}
