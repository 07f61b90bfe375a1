//! Where the plan's records come from and go to on Kafka, worked out once at start-up: the
//! source node of each topic, the sub-topology of each node, the sinks' topics and keys, the
//! dead-letter topic, the state tables of each sub-topology with their changelogs, and the
//! global tables' topics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafclaw_operators::connectors::kafka::KeyField;

use super::{InstanceError, setup};
use crate::compiler::PhysicalPlan;
use crate::compiler::registry::NodeConfig;
use crate::kafka::topics::{changelog_topic, dead_letter_topic};

/// A sink's topic and what keys its records.
pub(super) struct SinkTarget {
    /// Shared, so that sending an output clones a pointer, not the name.
    pub(super) topic: Arc<str>,
    pub(super) key: KeyField,
}

/// The plan's topics and tables, by what the instance looks them up with.
pub(super) struct Routes {
    /// Source topic → its source node.
    pub(super) source_of_topic: HashMap<String, usize>,
    /// Node → its sub-topology.
    pub(super) sub_of_node: Vec<usize>,
    /// Sink node → its topic and key.
    pub(super) sinks: HashMap<usize, SinkTarget>,
    /// Where dead letters go.
    pub(super) dlq_topic: String,
    /// Changelog topic → table.
    pub(super) changelog_tables: HashMap<String, String>,
    /// Sub-topology → its state tables (and whether each is a journal).
    pub(super) sub_tables: Vec<Vec<(String, bool)>>,
    /// Topics read as global tables (in full, outside the group).
    pub(super) global_topics: HashSet<String>,
    /// Topics read through the consumer group: the sources that are not global.
    pub(super) group_topics: Vec<String>,
    /// Table → its TTL in ms, for the tables that have one.
    pub(super) ttls: HashMap<String, i64>,
}

impl Routes {
    /// The routes of `plan`; a setup error when two sources read one topic.
    pub(super) fn from_plan(plan: &PhysicalPlan) -> Result<Self, InstanceError> {
        let mut source_of_topic = HashMap::new();
        let mut sinks = HashMap::new();
        let mut sub_of_node = vec![0; plan.nodes.len()];
        for sub in &plan.subtopologies {
            for &n in &sub.nodes {
                sub_of_node[n] = sub.id;
            }
        }
        for (i, n) in plan.nodes.iter().enumerate() {
            match &*n.config {
                NodeConfig::KafkaSource(c) if source_of_topic.insert(c.topic.get_ref().clone(), i).is_some() => {
                    return Err(setup(format!("topic `{}` is read by two sources", c.topic.get_ref())));
                }
                // A schedule's topic gives its partition to one instance of the group.
                NodeConfig::Schedule(c) => {
                    source_of_topic.insert(c.topic().unwrap_or_default().to_owned(), i);
                }
                NodeConfig::KafkaSink(c) => {
                    sinks.insert(i, SinkTarget { topic: Arc::from(c.topic.get_ref().as_str()), key: c.key });
                }
                _ => {}
            }
        }
        // Global sources are read in full by this instance, outside the group.
        let global_topics: HashSet<String> =
            source_of_topic.iter().filter(|(_, s)| plan.is_global(sub_of_node[**s])).map(|(t, _)| t.clone()).collect();
        let group_topics: Vec<String> =
            source_of_topic.keys().filter(|t| !global_topics.contains(*t)).cloned().collect();
        let mut changelog_tables = HashMap::new();
        let mut sub_tables = vec![Vec::new(); plan.subtopologies.len()];
        let mut ttls = HashMap::new();
        for (i, n) in plan.nodes.iter().enumerate() {
            if plan.is_global(sub_of_node[i]) {
                continue;
            }
            for table in n.config.tables(&n.name) {
                if let Some(ttl) = table.ttl_ms {
                    ttls.insert(table.name.clone(), ttl);
                }
                changelog_tables.insert(changelog_topic(plan, &table.name), table.name.clone());
                sub_tables[sub_of_node[i]].push((table.name, table.journal));
            }
        }
        Ok(Routes {
            source_of_topic,
            sub_of_node,
            sinks,
            dlq_topic: dead_letter_topic(plan),
            changelog_tables,
            sub_tables,
            global_topics,
            group_topics,
            ttls,
        })
    }

    /// The source node reading `topic`.
    pub(super) fn source(&self, topic: &str) -> Option<usize> {
        self.source_of_topic.get(topic).copied()
    }

    /// The sub-topology reading `topic`.
    pub(super) fn sub_of_topic(&self, topic: &str) -> Option<usize> {
        self.source(topic).map(|s| self.sub_of_node[s])
    }
}
