//! The console's Topologies page: each running topology of the group with its graph (the
//! graph of `kafclaw graph`) and live figures — records in and out per second per operator,
//! consumer lag per partition, dead letters, model calls in flight — from the statuses its
//! instances write every few seconds on `group.<g>.control.topologies`
//! (`crate::kafka::group::status`). Rates are the instances' counters' increase between their
//! last two statuses (`crate::metrics::view`, as `kafclaw top` computes them); several
//! instances of a topology add up. An instance whose last status is older than its `ttl_ms`,
//! or says it stopped, is not shown.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use kafclaw_operators::api::record::now_ms;
use serde_json::{Value, json};

use super::session::ConsoleUser;
use super::{Console, pages};
use crate::kafka::ClientSettings;
use crate::kafka::group::status::follow_statuses;
use crate::metrics::view::{Samples, grouped, parse_into, view};

/// The most instances' statuses kept (the oldest dropped first).
const MAX_STATUSES: usize = 4096;

/// One instance's latest status, and its samples before.
struct Status {
    topology: String,
    instance: String,
    at_ms: i64,
    ttl_ms: i64,
    stopped: bool,
    graph: Value,
    latest: Samples,
    before: Option<(i64, Samples)>,
}

/// The statuses the gateway follows.
#[derive(Default)]
pub struct TopologyFeed {
    statuses: Mutex<HashMap<String, Status>>,
}

impl TopologyFeed {
    /// Follows `group`'s status topic (created, compacted, when missing) from its start on a
    /// thread until `stop`.
    pub fn start(settings: &ClientSettings, group: &str, stop: Arc<AtomicBool>) -> Result<Arc<Self>, String> {
        let feed = Arc::new(Self::default());
        let f = feed.clone();
        follow_statuses(settings, group, stop, move |key, value| match value {
            Some(v) => f.apply(key, v),
            None => {
                f.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            }
        })?;
        Ok(feed)
    }

    /// Applies the status `value` written under `key`; one that is not a status is skipped.
    pub(super) fn apply(&self, key: String, value: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(value) else {
            tracing::debug!(key, "not a status; skipped");
            return;
        };
        let mut latest = Samples::new();
        if let Err(e) = parse_into(&mut latest, v["metrics"].as_str().unwrap_or_default()) {
            tracing::debug!(key, error = %e, "a status's metrics did not parse; skipped");
            return;
        }
        let at_ms = v["at_ms"].as_i64().unwrap_or(0);
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        // A status no newer than the one held (a writer's clock stepped back) changes nothing.
        if statuses.get(&key).is_some_and(|s| s.at_ms >= at_ms) {
            return;
        }
        let before = statuses.remove(&key).map(|s| (s.at_ms, s.latest));
        statuses.insert(
            key,
            Status {
                topology: v["topology"].as_str().unwrap_or_default().to_owned(),
                instance: v["instance"].as_str().unwrap_or_default().to_owned(),
                at_ms,
                ttl_ms: v["ttl_ms"].as_i64().unwrap_or(15_000),
                stopped: v["stopped"].as_bool().unwrap_or(false),
                graph: v["graph"].clone(),
                latest,
                before,
            },
        );
        if statuses.len() > MAX_STATUSES {
            let oldest = statuses.iter().min_by_key(|(_, s)| s.at_ms).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                statuses.remove(&k);
            }
        }
    }

    /// The running topologies at `now`: `{"topologies": [{"topology", "instances":
    /// [{"instance", "at_ms"}], "graph", "consumed_per_s", "produced_per_s",
    /// "dead_letters_per_s", "commits_per_s", "lag", "model_calls_in_flight", "operators":
    /// {name: {"in_per_s", "out_per_s"}}, "dead_letters": {operator: total}, "partitions":
    /// [{"topic", "partition", "lag"}]}]}`, by name.
    pub fn topologies(&self, now: i64) -> Value {
        let statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let mut by: BTreeMap<&str, Value> = BTreeMap::new();
        for s in statuses.values().filter(|s| !s.stopped && s.at_ms + s.ttl_ms >= now) {
            let (from, secs) = match &s.before {
                Some((at, samples)) => (samples, ((s.at_ms - at) as f64 / 1000.0).max(0.001)),
                None => (&s.latest, 1.0),
            };
            let v = view(from, &s.latest, secs);
            let t = by.entry(&s.topology).or_insert_with(|| {
                json!({"topology": s.topology, "instances": [], "graph": s.graph, "consumed_per_s": 0.0,
                    "produced_per_s": 0.0, "dead_letters_per_s": 0.0, "commits_per_s": 0.0, "lag": 0.0,
                    "model_calls_in_flight": 0.0, "operators": {}, "dead_letters": {}, "partitions": []})
            });
            if let Some(a) = t["instances"].as_array_mut() {
                a.push(json!({"instance": s.instance, "at_ms": s.at_ms}));
            }
            for tv in v.topologies.iter().filter(|tv| tv.topology == s.topology) {
                for (k, x) in [
                    ("consumed_per_s", tv.consumed_per_s),
                    ("produced_per_s", tv.produced_per_s),
                    ("dead_letters_per_s", tv.dead_letters_per_s),
                    ("commits_per_s", tv.commits_per_s),
                    ("lag", tv.lag),
                    ("model_calls_in_flight", tv.model_calls_in_flight),
                ] {
                    t[k] = json!(t[k].as_f64().unwrap_or(0.0) + x);
                }
                for o in &tv.operators {
                    let e = &mut t["operators"][&o.operator];
                    let (i, out) = (e["in_per_s"].as_f64().unwrap_or(0.0), e["out_per_s"].as_f64().unwrap_or(0.0));
                    *e = json!({"in_per_s": i + o.in_per_s, "out_per_s": out + o.out_per_s});
                }
                if let Some(a) = t["partitions"].as_array_mut() {
                    a.extend(
                        tv.partitions.iter().map(|p| json!({"topic": p.topic, "partition": p.partition, "lag": p.lag})),
                    );
                }
            }
            for (k, n) in grouped(&s.latest, "kafclaw_dead_letters_total", &s.topology, &["operator"]) {
                let e = &mut t["dead_letters"][&k[0]];
                *e = json!(e.as_f64().unwrap_or(0.0) + n);
            }
        }
        json!({"topologies": by.into_values().collect::<Vec<_>>()})
    }
}

/// `GET /console/topologies`.
pub(super) async fn page(State(console): State<Console>, Extension(user): Extension<ConsoleUser>) -> Response {
    pages::page(&console, &user, "topologies.html", "topologies", minijinja::context! {})
}

/// `GET /console/api/topologies` (see [`TopologyFeed::topologies`]; none followed: none).
pub(super) async fn list(State(console): State<Console>) -> Response {
    match &console.topologies {
        Some(feed) => Json(feed.topologies(now_ms())).into_response(),
        None => Json(json!({"topologies": []})).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(instance: &str, at_ms: i64, records_in: u64, dead: u64, stopped: bool) -> Vec<u8> {
        let metrics = format!(
            "# TYPE kafclaw_operator_records_in counter\n\
             kafclaw_operator_records_in_total{{topology=\"t\",operator=\"review\"}} {records_in}\n\
             # TYPE kafclaw_operator_records_out counter\n\
             kafclaw_operator_records_out_total{{topology=\"t\",operator=\"review\"}} {}\n\
             # TYPE kafclaw_dead_letters counter\n\
             kafclaw_dead_letters_total{{topology=\"t\",operator=\"refunds\",reason=\"decode\"}} {dead}\n\
             # TYPE kafclaw_consumer_lag_records gauge\n\
             kafclaw_consumer_lag_records{{topology=\"t\",topic=\"in\",partition=\"0\"}} 7\n\
             # EOF\n",
            records_in / 2
        );
        json!({"topology": "t", "instance": instance, "at_ms": at_ms, "ttl_ms": 15_000, "stopped": stopped,
            "graph": {"nodes": [{"name": "review", "role": "operator", "kind": "approve"}], "edges": []},
            "metrics": metrics})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn rates_come_from_an_instances_last_two_statuses_and_instances_add_up() {
        let feed = TopologyFeed::default();
        let t0 = 1_000_000;
        feed.apply("t/a".into(), &status("a", t0, 100, 1, false));
        let first = feed.topologies(t0);
        assert_eq!(first["topologies"][0]["operators"]["review"]["in_per_s"], 0.0, "one status: no rate yet");
        feed.apply("t/a".into(), &status("a", t0 + 5_000, 600, 2, false));
        feed.apply("t/b".into(), &status("b", t0 + 4_000, 50, 0, false));
        feed.apply("t/b".into(), &status("b", t0 + 5_000, 100, 0, false));
        // An older status arriving late changes nothing.
        feed.apply("t/b".into(), &status("b", t0 + 4_500, 80, 0, false));
        let v = feed.topologies(t0 + 5_000);
        let t = &v["topologies"][0];
        assert_eq!(t["instances"].as_array().unwrap().len(), 2, "{v}");
        // a: 500 in 5 s = 100/s; b: 50 in 1 s = 50/s.
        assert_eq!(t["operators"]["review"]["in_per_s"], 150.0, "{v}");
        assert_eq!(t["operators"]["review"]["out_per_s"], 75.0, "{v}");
        assert_eq!(t["dead_letters"]["refunds"], 2.0, "{v}");
        assert_eq!(t["lag"], 14.0, "both instances' lag: {v}");
        // Stale or stopped instances are not shown.
        assert_eq!(feed.topologies(t0 + 5_000 + 15_001)["topologies"], json!([]));
        feed.apply("t/a".into(), &status("a", t0 + 6_000, 700, 2, true));
        let v = feed.topologies(t0 + 6_000);
        assert_eq!(v["topologies"][0]["instances"].as_array().unwrap().len(), 1, "{v}");
        // Not a status: skipped.
        feed.apply("t/c".into(), b"not json");
        assert_eq!(feed.topologies(t0 + 6_000)["topologies"][0]["instances"].as_array().unwrap().len(), 1);
    }
}
