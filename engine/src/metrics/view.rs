//! Rates from two scrapes of instances' metrics (the OpenMetrics text of `/metrics`):
//! per topology the records consumed, produced and dead-lettered per second, commits per
//! second, the consumer lag and the model calls in flight; per operator the records in and
//! out per second; per partition the lag. Rates are the counters' increase between two
//! scrapes divided by the time between them; several instances of a topology add up.
//! `kafclaw top` and the gateway console's Topologies page read them.

use std::collections::BTreeMap;

use serde::Serialize;

/// The samples of one scrape of every instance: (name, labels) → value, summed over instances.
pub type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// One measurement.
#[derive(Debug, Serialize)]
pub struct View {
    /// Seconds between the two scrapes.
    pub interval_s: f64,
    /// Per topology.
    pub topologies: Vec<TopologyView>,
}

/// A topology's figures (per second unless said otherwise).
#[derive(Debug, Default, Serialize)]
pub struct TopologyView {
    /// Its name.
    pub topology: String,
    /// Records consumed per second.
    pub consumed_per_s: f64,
    /// Records produced per second.
    pub produced_per_s: f64,
    /// Records dead-lettered per second.
    pub dead_letters_per_s: f64,
    /// Commits per second.
    pub commits_per_s: f64,
    /// Consumer lag over all partitions, in records.
    pub lag: f64,
    /// Model calls in flight now.
    pub model_calls_in_flight: f64,
    /// Per operator.
    pub operators: Vec<OperatorView>,
    /// Per input partition.
    pub partitions: Vec<PartitionView>,
}

/// An operator's rates.
#[derive(Debug, Serialize)]
pub struct OperatorView {
    /// Its name.
    pub operator: String,
    /// Records in per second.
    pub in_per_s: f64,
    /// Records out (forwarded) per second.
    pub out_per_s: f64,
}

/// A partition's lag.
#[derive(Debug, Serialize)]
pub struct PartitionView {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i64,
    /// Lag in records.
    pub lag: f64,
}

/// Adds the samples of the OpenMetrics `text` to `all` (counters, gauges and untyped
/// values; histograms and summaries are left out), summing those of the same name and labels.
pub fn parse_into(all: &mut Samples, text: &str) -> Result<(), String> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    for s in scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let labels: BTreeMap<String, String> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        *all.entry((s.metric, labels)).or_default() += value;
    }
    Ok(())
}

/// Sums the samples named `name` of `topology`, grouped by the labels `by`.
pub fn grouped(s: &Samples, name: &str, topology: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for ((n, labels), v) in s {
        if n == name && labels.get("topology").map(String::as_str) == Some(topology) {
            let key = by.iter().map(|k| labels.get(*k).cloned().unwrap_or_default()).collect();
            *out.entry(key).or_default() += v;
        }
    }
    out
}

fn total(s: &Samples, name: &str, topology: &str) -> f64 {
    grouped(s, name, topology, &[]).values().sum()
}

/// The measurement between scrapes `before` and `after`, `secs` apart. A counter that went
/// down (an instance restarted) counts from zero.
pub fn view(before: &Samples, after: &Samples, secs: f64) -> View {
    let rate = |a: f64, b: f64| if b >= a { (b - a) / secs } else { b / secs };
    let topologies: std::collections::BTreeSet<&String> =
        after.keys().filter_map(|(_, labels)| labels.get("topology")).collect();
    let per_s = |name: &str, t: &str| rate(total(before, name, t), total(after, name, t));
    let topologies = topologies
        .into_iter()
        .map(|t| {
            let ins = grouped(after, "kafclaw_operator_records_in_total", t, &["operator"]);
            let outs = grouped(after, "kafclaw_operator_records_out_total", t, &["operator"]);
            let ins0 = grouped(before, "kafclaw_operator_records_in_total", t, &["operator"]);
            let outs0 = grouped(before, "kafclaw_operator_records_out_total", t, &["operator"]);
            let operators = ins
                .iter()
                .map(|(k, v)| OperatorView {
                    operator: k[0].clone(),
                    in_per_s: rate(ins0.get(k).copied().unwrap_or(0.0), *v),
                    out_per_s: rate(outs0.get(k).copied().unwrap_or(0.0), outs.get(k).copied().unwrap_or(0.0)),
                })
                .collect();
            let partitions: Vec<PartitionView> =
                grouped(after, "kafclaw_consumer_lag_records", t, &["topic", "partition"])
                    .into_iter()
                    .map(|(k, lag)| PartitionView { topic: k[0].clone(), partition: k[1].parse().unwrap_or(-1), lag })
                    .collect();
            TopologyView {
                topology: t.clone(),
                consumed_per_s: per_s("kafclaw_records_consumed_total", t),
                produced_per_s: per_s("kafclaw_records_produced_total", t),
                dead_letters_per_s: per_s("kafclaw_dead_letters_total", t),
                commits_per_s: per_s("kafclaw_commit_latency_seconds_count", t),
                lag: partitions.iter().map(|p| p.lag).sum(),
                model_calls_in_flight: total(after, "kafclaw_model_calls_in_flight", t),
                operators,
                partitions,
            }
        })
        .collect();
    View { interval_s: secs, topologies }
}
