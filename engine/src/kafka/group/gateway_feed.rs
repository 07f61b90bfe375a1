//! The gateway's Kafka side: publishes submitted tasks, and follows the group's answer topics
//! (responses, task statuses, skill responses, traces) into a bounded in-memory view, by
//! correlation id.
//!
//! The reader assigns every partition of those topics itself (no consumer group) from the
//! records of the last `LOOKBACK`, so a restarted gateway still knows recent results; the
//! view keeps the latest answer of at most `MAX_TASKS` tasks and `MAX_SPANS` spans per trace,
//! dropping the oldest tasks first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::kafka::producer::{CALL_TIMEOUT, Logged, assign_since};
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::ensure_topic;

const LOOKBACK: Duration = Duration::from_secs(3600);
const MAX_TASKS: usize = 100_000;
const MAX_SPANS: usize = 1_000;

/// What the gateway knows of tasks.
#[derive(Debug, Default)]
pub struct View {
    answers: HashMap<String, Value>,
    traces: HashMap<String, Vec<Value>>,
    order: VecDeque<String>,
}

impl View {
    fn remember(&mut self, id: &str) {
        if !self.answers.contains_key(id) && !self.traces.contains_key(id) {
            self.order.push_back(id.to_owned());
            while self.order.len() > MAX_TASKS {
                if let Some(old) = self.order.pop_front() {
                    self.answers.remove(&old);
                    self.traces.remove(&old);
                }
            }
        }
    }

    fn apply(&mut self, e: &Envelope) {
        let id = e.correlation_id.clone();
        match e.kind {
            EnvelopeType::Trace => {
                self.remember(&id);
                let spans = self.traces.entry(id).or_default();
                if spans.len() < MAX_SPANS {
                    spans.push(e.to_json());
                }
            }
            EnvelopeType::Response | EnvelopeType::SkillResponse | EnvelopeType::TaskStatus => {
                // A status after the final answer (e.g. a late `in_progress`) does not hide it.
                let final_answer = |v: &Value| v["type"] != "task_status";
                if e.kind == EnvelopeType::TaskStatus && self.answers.get(&id).is_some_and(final_answer) {
                    return;
                }
                self.remember(&id);
                self.answers.insert(id, e.to_json());
            }
            _ => {}
        }
    }

    /// The latest answer of task `id`.
    pub fn answer(&self, id: &str) -> Option<&Value> {
        self.answers.get(id)
    }

    /// The trace spans of `id`, in arrival order.
    pub fn trace(&self, id: &str) -> &[Value] {
        self.traces.get(id).map_or(&[], Vec::as_slice)
    }
}

/// The gateway's producer and the view its reader keeps.
pub struct TaskIo {
    producer: FutureProducer<Logged>,
    /// What the reader has seen.
    pub view: Arc<Mutex<View>>,
}

impl TaskIo {
    /// Creates the answer topics that are missing, and starts following them (until `stop`).
    pub fn start(
        settings: &ClientSettings,
        follow: &[String],
        partitions: i32,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        for t in follow {
            ensure_topic(settings, t, partitions, -1, CALL_TIMEOUT).map_err(|e| e.to_string())?;
        }
        let producer: FutureProducer<Logged> = settings
            .client_config(&[("enable.idempotence", "true"), ("client.id", "kafclaw-gateway"), ("linger.ms", "0")])
            .create_with_context(Logged("gateway producer"))
            .map_err(|e| format!("gateway producer: {e}"))?;
        let consumer: BaseConsumer<Logged> = settings
            .client_config(&[
                ("group.id", "kafclaw-gateway"),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ])
            .create_with_context(Logged("gateway reader"))
            .map_err(|e| format!("gateway reader: {e}"))?;
        let since = std::time::SystemTime::now().checked_sub(LOOKBACK).unwrap_or(std::time::UNIX_EPOCH);
        assign_since(&consumer, follow, since)?;
        let view = Arc::new(Mutex::new(View::default()));
        let v = view.clone();
        std::thread::Builder::new()
            .name("kafclaw-gateway-reader".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(200)) {
                        Some(Ok(m)) => match Envelope::decode(m.payload().unwrap_or_default()) {
                            Ok(e) => v.lock().unwrap_or_else(|p| p.into_inner()).apply(&e),
                            Err(err) => {
                                tracing::debug!(topic = m.topic(), offset = m.offset(), error = %err, "skipped")
                            }
                        },
                        Some(Err(e)) => tracing::warn!(error = %e, "gateway reader"),
                        None => {}
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        tracing::info!(topics = ?follow, "gateway follows the group's answers");
        Ok(Self { producer, view })
    }

    /// Publishes `envelope` to `topic`, keyed by its correlation id.
    pub async fn submit(&self, topic: &str, envelope: &Envelope) -> Result<(), String> {
        let payload = envelope.encode();
        let record = FutureRecord::to(topic).key(envelope.correlation_id.as_str()).payload(&payload);
        match self.producer.send(record, CALL_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(format!("publishing to `{topic}`: {e}")),
        }
    }
}
