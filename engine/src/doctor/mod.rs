//! `kafclaw doctor`: diagnoses the cluster under kafclaw with the runtime's own client settings,
//! one verdict per check (ok / warn / fail / unknown, with a reason and, where something can
//! be done, advice):
//!
//! - [`connectivity`]: the SASL/TLS settings, DNS, TCP, the TLS and SASL handshakes and the
//!   metadata answer;
//! - [`features`]: transactions, idempotence, aborted records under `read_committed`,
//!   transactional offset commits, compaction, group protocols — measured by a probe;
//! - [`layout`]: each topology's topics: missing, co-partitioning, compaction, dedup;
//! - [`group`]: each topology's consumer group: members and lag;
//! - [`report`]: the checks, printed for people or as JSON.
//!
//! The Kafka clients are in [`crate::kafka::inspect`].

use std::collections::BTreeMap;
use std::time::Duration;

pub mod connectivity;
pub mod features;
pub mod group;
pub mod layout;
pub mod report;

pub use report::{Check, Report, Verdict};

use crate::compiler::PhysicalPlan;
use crate::compiler::registry::NodeConfig;
use crate::kafka::ClientSettings;
use crate::kafka::inspect::{CALL_TIMEOUT, cluster, groups, probe};
use crate::kafka::topics::topic_uses;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run the feature probe (it creates and deletes a topic, writes three records and joins
    /// two groups); without it the feature checks are `unknown`.
    pub probe: bool,
    /// How long a probe consumer may wait for its assignment.
    pub join_timeout: Duration,
    /// Warn when a group lags by more records than this in total.
    pub max_lag: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Self { probe: true, join_timeout: Duration::from_secs(45), max_lag: None }
    }
}

/// One topology to check, with its own client settings (its `[kafka]` table).
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Its plan.
    pub plan: &'a PhysicalPlan,
    /// Its client settings, as `kafclaw run` would build them.
    pub settings: ClientSettings,
}

/// Runs every check: the cluster's with `cluster` (the first topology's settings, or the
/// environment's with no topology), then each topology's with its own settings.
pub fn run(cluster: &ClientSettings, targets: &[Target<'_>], opts: &Options) -> Report {
    let servers = cluster.get("bootstrap.servers").unwrap_or_default().to_owned();
    let mut report = Report { bootstrap_servers: servers.clone(), checks: Vec::new() };
    report.checks.extend(connectivity::settings_checks(cluster));
    report.checks.extend(connectivity::network_checks(cluster));
    let handshake = cluster::handshake(cluster, CALL_TIMEOUT);
    report.checks.extend(connectivity::handshake_checks(cluster, &servers, &handshake));
    if handshake.result.is_err() {
        report.checks.push(Check::new(
            "features.probe",
            &servers,
            Verdict::Unknown,
            "not measured: no connection to the cluster (see connectivity)",
        ));
        return report;
    }
    let aborted_visible = if opts.probe {
        let p = probe::run(cluster, opts.join_timeout);
        report.checks.extend(features::checks(&servers, &p));
        p.aborted_visible.ok()
    } else {
        report.checks.push(Check::new("features.probe", &servers, Verdict::Unknown, "not measured: --no-probe"));
        None
    };
    for t in targets {
        report.checks.extend(topology_checks(t, aborted_visible, opts));
    }
    report
}

/// The layout, dedup and group checks of one topology.
fn topology_checks(t: &Target<'_>, aborted_visible: Option<bool>, opts: &Options) -> Vec<Check> {
    let plan = t.plan;
    let uses = topic_uses(plan);
    let mut names: Vec<&str> = Vec::new();
    for u in &uses {
        if !names.contains(&u.topic.as_str()) {
            names.push(&u.topic);
        }
    }
    let counts = match cluster::partition_counts(&t.settings, &names) {
        Ok(c) => c,
        Err(e) => {
            return vec![
                Check::new("layout.topic", "*", Verdict::Unknown, format!("cannot read the topics: {e}"))
                    .topology(&plan.name),
            ];
        }
    };
    let existing: Vec<&str> = names.iter().zip(&counts).filter(|(_, c)| c.is_some()).map(|(n, _)| *n).collect();
    let policies = cluster::cleanup_policies(&t.settings, &existing).map_err(|e| e.to_string());
    let mut facts: BTreeMap<String, layout::TopicFacts> = BTreeMap::new();
    for (name, count) in names.iter().zip(&counts) {
        let cleanup_policy = match (&policies, existing.iter().position(|e| e == name)) {
            (Ok(p), Some(i)) => p.get(i).cloned().unwrap_or(Ok(None)),
            (Err(e), _) => Err(e.clone()),
            (_, None) => Ok(None),
        };
        facts.insert((*name).to_owned(), layout::TopicFacts { partitions: *count, cleanup_policy });
    }
    let mut out = layout::checks(plan, &facts);
    out.push(layout::dedup_check(plan, aborted_visible));
    // The group: named after the topology; it reads the non-global Kafka sources.
    let group_name = plan.name.as_str();
    let described = groups::describe(&t.settings, group_name).map_err(|e| e.to_string());
    out.push(group::members_check(group_name, &described).topology(group_name));
    let consumed: Vec<(&str, usize)> = plan
        .nodes
        .iter()
        .filter_map(|n| match &*n.config {
            NodeConfig::KafkaSource(c) if !c.global => Some(c.topic.get_ref().as_str()),
            _ => None,
        })
        .filter_map(|topic| facts.get(topic).and_then(|f| f.partitions).map(|n| (topic, n)))
        .collect();
    let positions = groups::positions(&t.settings, group_name, &consumed).map_err(|e| e.to_string());
    out.push(group::lag_check(group_name, &positions, opts.max_lag).topology(group_name));
    out
}
