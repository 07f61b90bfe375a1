//! The topics of a topology: which it reads, which it writes, which kafclaw creates, and their
//! partition counts on the cluster.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::settings::ClientSettings;
use crate::compiler::PhysicalPlan;
use crate::compiler::registry::Role;

/// What a topic is to the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// Read by a Kafka source; must exist.
    Source,
    /// Read in full by every instance (a global source); must exist.
    GlobalSource,
    /// Written by a Kafka sink; created when missing.
    Sink,
    /// Written by a Kafka sink with `compact = true`; created compacted when missing.
    CompactedSink,
    /// Dead letters; created when missing.
    DeadLetter,
    /// A state table's changelog: compacted, co-partitioned with its sources; created when
    /// missing.
    Changelog,
    /// A schedule's topic, `<topology>.schedule.<node>`: one partition, so that the group gives
    /// the schedule to one instance; created when missing.
    Schedule,
}

impl TopicRole {
    /// For listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::GlobalSource => "global source",
            Self::Sink => "sink",
            Self::CompactedSink => "sink (compacted)",
            Self::DeadLetter => "dead-letter",
            Self::Changelog => "changelog",
            Self::Schedule => "schedule",
        }
    }
}

/// One topic of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicUse {
    /// Topic name.
    pub topic: String,
    /// Its role.
    pub role: TopicRole,
    /// The nodes that use it.
    pub nodes: Vec<String>,
}

/// The dead-letter topic of a plan in Kafka mode.
pub fn dead_letter_topic(plan: &PhysicalPlan) -> String {
    plan.dead_letter.topic.as_ref().map_or_else(|| format!("{}.dlq", plan.name), |t| t.get_ref().clone())
}

/// The changelog topic of a state table.
pub fn changelog_topic(plan: &PhysicalPlan, table: &str) -> String {
    format!("{}-{table}-changelog", plan.name)
}

/// Every topic the plan reads or writes, in plan order.
pub fn topic_uses(plan: &PhysicalPlan) -> Vec<TopicUse> {
    let mut uses: Vec<TopicUse> = Vec::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        let Some(topic) = n.config.kafka_topic() else { continue };
        let role = match n.role {
            Role::Source if matches!(&*n.config, crate::compiler::registry::NodeConfig::Schedule(_)) => {
                TopicRole::Schedule
            }
            Role::Source if plan.is_global(plan.sub_of(i)) => TopicRole::GlobalSource,
            Role::Source => TopicRole::Source,
            _ => match &*n.config {
                crate::compiler::registry::NodeConfig::KafkaSink(c) if c.compact => TopicRole::CompactedSink,
                _ => TopicRole::Sink,
            },
        };
        match uses.iter_mut().find(|u| u.topic == topic && u.role == role) {
            Some(u) => u.nodes.push(n.name.to_string()),
            None => uses.push(TopicUse { topic: topic.to_owned(), role, nodes: vec![n.name.to_string()] }),
        }
    }
    uses.push(TopicUse { topic: dead_letter_topic(plan), role: TopicRole::DeadLetter, nodes: Vec::new() });
    for (i, n) in plan.nodes.iter().enumerate() {
        // Global tables have no changelog: their topic is their log.
        if plan.is_global(plan.sub_of(i)) {
            continue;
        }
        for table in n.config.tables(&n.name) {
            uses.push(TopicUse {
                topic: changelog_topic(plan, &table.name),
                role: TopicRole::Changelog,
                nodes: vec![n.name.to_string()],
            });
        }
    }
    uses
}

/// Topic management errors.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The cluster could not be asked.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A source topic does not exist.
    #[error("source topic `{0}` does not exist (kafclaw creates only the topics it writes)")]
    MissingSource(String),
    /// Creating a topic failed.
    #[error("creating topic `{0}`: {1}")]
    Create(String, String),
}

/// Partition count of each topic (`None` when the topic does not exist).
pub fn partition_counts(
    settings: &ClientSettings,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<Option<usize>>, TopicError> {
    let consumer: BaseConsumer = settings.client_config(&[]).create()?;
    let md = consumer.fetch_metadata(None, timeout)?;
    Ok(topics
        .iter()
        .map(|t| {
            md.topics()
                .iter()
                .find(|m| m.name() == *t && m.error().is_none() && !m.partitions().is_empty())
                .map(|m| m.partitions().len())
        })
        .collect())
}

/// Creates the topics the plan writes that are missing, and checks its source topics exist.
/// Returns the names created.
pub fn ensure_topics(
    settings: &ClientSettings,
    plan: &PhysicalPlan,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<Vec<String>, TopicError> {
    let uses = topic_uses(plan);
    let names: Vec<&str> = uses.iter().map(|u| u.topic.as_str()).collect();
    let counts = partition_counts(settings, &names, timeout)?;
    // Changelogs are co-partitioned with the sources (the widest source decides).
    let source_partitions = uses
        .iter()
        .zip(&counts)
        .filter(|(u, _)| u.role == TopicRole::Source)
        .filter_map(|(_, c)| *c)
        .max()
        .map_or(partitions, |c| c as i32);
    let mut missing: Vec<(String, TopicRole)> = Vec::new();
    for (u, count) in uses.iter().zip(&counts) {
        // A topic the plan both writes and reads (a schedule's ticks handed to a kafka source)
        // is created like the sink's.
        let written =
            |t: &str| uses.iter().any(|v| v.topic == t && matches!(v.role, TopicRole::Sink | TopicRole::CompactedSink));
        match (u.role, count) {
            (TopicRole::Source | TopicRole::GlobalSource, None) if !written(&u.topic) => {
                return Err(TopicError::MissingSource(u.topic.clone()));
            }
            (role, None) if !missing.iter().any(|(t, _)| *t == u.topic) => missing.push((u.topic.clone(), role)),
            _ => {}
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = settings.client_config(&[]).create()?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(t, role)| match role {
            TopicRole::Changelog => NewTopic::new(t, source_partitions, TopicReplication::Fixed(replication))
                .set("cleanup.policy", "compact"),
            TopicRole::CompactedSink => {
                NewTopic::new(t, partitions, TopicReplication::Fixed(replication)).set("cleanup.policy", "compact")
            }
            TopicRole::Schedule => NewTopic::new(t, 1, TopicReplication::Fixed(replication)),
            _ => NewTopic::new(t, partitions, TopicReplication::Fixed(replication)),
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TopicError::Create("*".into(), e.to_string()))?;
    let results = rt.block_on(admin.create_topics(&new, &opts))?;
    for r in results {
        if let Err((topic, code)) = r
            && code != RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(TopicError::Create(topic, code.to_string()));
        }
    }
    let created: Vec<String> = missing.into_iter().map(|(t, _)| t).collect();
    tracing::info!(topics = ?created, partitions, replication, "created topics");
    Ok(created)
}

/// Creates `topic` with `partitions` when it does not exist (a group topic such as
/// `group.<g>.announce`, which no node of the plan names).
pub fn ensure_topic(
    settings: &ClientSettings,
    topic: &str,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<bool, TopicError> {
    ensure_topic_with(settings, topic, partitions, replication, false, timeout)
}

/// [`ensure_topic`], created compacted when `compact`.
pub fn ensure_topic_with(
    settings: &ClientSettings,
    topic: &str,
    partitions: i32,
    replication: i32,
    compact: bool,
    timeout: Duration,
) -> Result<bool, TopicError> {
    let configs: &[(&str, &str)] = if compact { &[("cleanup.policy", "compact")] } else { &[] };
    ensure_topic_configured(settings, topic, partitions, replication, configs, timeout)
}

/// [`ensure_topic`], created with the topic `configs` (`cleanup.policy`, `retention.ms`, …);
/// an existing topic is left as it is. Returns whether it was created.
pub fn ensure_topic_configured(
    settings: &ClientSettings,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<bool, TopicError> {
    if partition_counts(settings, &[topic], timeout)?[0].is_some() {
        return Ok(false);
    }
    let admin: AdminClient<DefaultClientContext> = settings.client_config(&[]).create()?;
    let topic_spec = configs
        .iter()
        .fold(NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)), |t, (k, v)| t.set(k, v));
    let new = [topic_spec];
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TopicError::Create(topic.into(), e.to_string()))?;
    for r in rt.block_on(admin.create_topics(&new, &opts))? {
        if let Err((t, code)) = r
            && code != RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(TopicError::Create(t, code.to_string()));
        }
    }
    tracing::info!(topic, partitions, "created topic");
    Ok(true)
}
