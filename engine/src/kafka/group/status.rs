//! An instance's status on its group's `group.<g>.control.topologies` topic (compacted,
//! keyed `<topology>/<instance>`), for the gateway's console (the Topologies page): every
//! [`INTERVAL`], the topology's graph (Mermaid, as `kafclaw graph --format mermaid` draws it)
//! and the instance's metrics (the OpenMetrics text its `/metrics` serves), so rates, lag,
//! dead letters and model calls in flight are seen without reaching each instance's HTTP
//! endpoint. At a clean stop it writes a last status with `"stopped": true`; a killed
//! instance's status just ages (readers judge liveness by `at_ms` + `ttl_ms`).
//!
//! Value: `{"topology", "instance", "at_ms", "ttl_ms", "interval_ms", "stopped", "mermaid",
//! "graph" (`crate::render::json`), "metrics"}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kafclaw_agent::model::SharedModel;
use kafclaw_agent::resources::AgentResources;
use kafclaw_operators::api::record::now_ms;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

use crate::compiler::Compiled;
use crate::kafka::producer::{CALL_TIMEOUT, Logged};
use crate::kafka::settings::ClientSettings;
use crate::kafka::stats::Stats;
use crate::kafka::topics::ensure_topic_configured;

/// How often an instance writes its status.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// The status topic of `group`.
pub fn status_topic(group: &str) -> String {
    format!("group.{group}.control.topologies")
}

/// The running status writer; dropping it writes the last status and stops.
pub struct StatusWriter {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one status says.
struct Source {
    topology: String,
    instance: String,
    mermaid: String,
    graph: serde_json::Value,
    stats: Arc<Stats>,
    models: Vec<Arc<SharedModel>>,
}

impl Source {
    fn status(&self, stopped: bool) -> Vec<u8> {
        let metrics = crate::metrics::encode_instance(&self.stats, &self.topology, &self.models).unwrap_or_default();
        let interval = INTERVAL.as_millis() as u64;
        json!({
            "topology": self.topology,
            "instance": self.instance,
            "at_ms": now_ms(),
            "interval_ms": interval,
            "ttl_ms": 3 * interval,
            "stopped": stopped,
            "mermaid": self.mermaid,
            "graph": self.graph,
            "metrics": metrics,
        })
        .to_string()
        .into_bytes()
    }
}

/// Starts writing the status of `compiled`'s instance `instance` when its topology belongs to
/// a group (none otherwise). The topic is created (compacted) when missing.
pub(in crate::kafka) fn start(
    compiled: &Compiled,
    settings: &ClientSettings,
    instance: &str,
    stats: Arc<Stats>,
    halt: Arc<AtomicBool>,
) -> Result<Option<StatusWriter>, String> {
    let Some(group) = compiled.plan.group.clone() else { return Ok(None) };
    let t = &compiled.spec.topology;
    let topic = status_topic(&group);
    ensure_topic_configured(settings, &topic, 1, t.replication, &[("cleanup.policy", "compact")], CALL_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let source = Source {
        topology: compiled.plan.name.clone(),
        instance: instance.to_owned(),
        mermaid: crate::render::mermaid(compiled),
        graph: crate::render::json(compiled),
        stats,
        models: compiled.resources.models(),
    };
    let key = format!("{}/{instance}", source.topology);
    let producer: BaseProducer<Logged> = settings
        .client_config(&[("enable.idempotence", "true"), ("client.id", &format!("{key}-status"))])
        .create_with_context(Logged("status producer"))
        .map_err(|e| format!("status producer: {e}"))?;
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("kafclaw-status".into())
        .spawn(move || {
            let send = |stopped: bool| {
                let value = source.status(stopped);
                if let Err((e, _)) = producer.send(BaseRecord::to(&topic).key(&key).payload(&value)) {
                    tracing::debug!(topic, error = %e, "status not sent");
                }
                producer.poll(Duration::ZERO);
            };
            let (lock, wake) = &*s;
            let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !*stopped && !halt.load(Ordering::Relaxed) {
                send(false);
                stopped = wake.wait_timeout(stopped, INTERVAL).unwrap_or_else(|p| p.into_inner()).0;
            }
            drop(stopped);
            send(true);
            // Bounded: a stop must not wait long on an unreachable broker.
            let _ = producer.flush(Duration::from_secs(5));
        })
        .map_err(|e| e.to_string())?;
    Ok(Some(StatusWriter { stop, thread: Some(thread) }))
}

/// Follows `group`'s status topic (created, compacted, when missing) from its start on a
/// thread until `stop`, handing each record to `on` as its key and value (none: a tombstone).
pub fn follow_statuses(
    settings: &ClientSettings,
    group: &str,
    stop: Arc<AtomicBool>,
    on: impl Fn(String, Option<&[u8]>) + Send + 'static,
) -> Result<(), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let topic = status_topic(group);
    ensure_topic_configured(settings, &topic, 1, -1, &[("cleanup.policy", "compact")], CALL_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let consumer: BaseConsumer<Logged> = settings
        .client_config(&[("group.id", "kafclaw-gateway-status"), ("enable.auto.commit", "false")])
        .create_with_context(Logged("status reader"))
        .map_err(|e| format!("status reader: {e}"))?;
    let md = consumer.fetch_metadata(Some(&topic), CALL_TIMEOUT).map_err(|e| e.to_string())?;
    let partitions = md.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("kafclaw-status-reader".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => on(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(), m.payload()),
                    Some(Err(e)) => tracing::debug!(error = %e, "status reader"),
                    None => {}
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
