//! The bus of `delegate` tools on Kafka: requests are published by a producer of their own
//! (idempotent, outside the instance's transaction — a request must leave now, while the
//! transaction that will hold the answer is still open), and one reader thread per reply
//! topic hands each `response` to the call waiting for its correlation id.
//!
//! A reply reader starts at the first record of the last `max deadline` (offsets for that
//! time), so a call retried after a crash finds the reply its first attempt got; replies
//! nobody waits for yet are kept for that long in a recent-replies map. Waiting is a tokio
//! oneshot: no thread is held per call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafclaw_agent::tools::delegate::{Bus, ReplyFuture};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::oneshot;

use crate::kafka::headers::TRACEPARENT;
use crate::kafka::producer::{Logged, assign_since};
use crate::kafka::settings::ClientSettings;

/// How far back a reply reader starts, at least, and how long unclaimed replies are kept.
const MIN_LOOKBACK: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Waiting {
    /// Calls waiting, by correlation id.
    pending: HashMap<String, oneshot::Sender<Envelope>>,
    /// Replies that came before anyone waited for them (a restarted call's), with when.
    recent: HashMap<String, (Envelope, Instant)>,
}

/// The Kafka bus of one instance.
pub struct KafkaBus {
    settings: ClientSettings,
    name: String,
    producer: Mutex<Option<FutureProducer<Logged>>>,
    readers: Mutex<HashMap<String, Arc<Mutex<Waiting>>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus").field("name", &self.name).finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// A bus for topology `name`; its reader threads end when `stop` is set.
    pub fn new(settings: ClientSettings, name: &str, stop: Arc<AtomicBool>) -> Self {
        Self { settings, name: name.to_owned(), producer: Mutex::new(None), readers: Mutex::new(HashMap::new()), stop }
    }

    fn producer(&self) -> Result<FutureProducer<Logged>, String> {
        let mut p = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &*p {
            return Ok(p.clone());
        }
        let client_id = format!("{}-delegate", self.name);
        let made: FutureProducer<Logged> = self
            .settings
            .client_config_with(&[("linger.ms", "0")], &[("enable.idempotence", "true"), ("client.id", &client_id)])
            .create_with_context(Logged("delegate producer"))
            .map_err(|e| format!("delegate producer: {e}"))?;
        *p = Some(made.clone());
        Ok(made)
    }

    /// The waiting room of `topic`, starting its reader on first use.
    fn reader(&self, topic: &str, lookback: Duration) -> Result<Arc<Mutex<Waiting>>, String> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = readers.get(topic) {
            return Ok(w.clone());
        }
        let consumer: BaseConsumer<Logged> = self
            .settings
            .client_config(&[
                ("group.id", &format!("{}-delegate-replies", self.name)),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ])
            .create_with_context(Logged("delegate replies"))
            .map_err(|e| format!("reply reader: {e}"))?;
        let since =
            std::time::SystemTime::now().checked_sub(lookback.max(MIN_LOOKBACK)).unwrap_or(std::time::UNIX_EPOCH);
        let partitions = assign_since(&consumer, &[topic.to_owned()], since, false)?;
        if partitions == 0 {
            return Err(format!(
                "reply topic `{topic}` does not exist: create it (the peer writes its responses there)"
            ));
        }
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let (w, stop, keep) = (waiting.clone(), self.stop.clone(), lookback.max(MIN_LOOKBACK));
        let name = topic.to_owned();
        std::thread::Builder::new()
            .name("kafclaw-replies".into())
            .spawn(move || read_replies(&consumer, &name, &w, &stop, keep))
            .map_err(|e| e.to_string())?;
        tracing::info!(topic, partitions, "reading delegate replies");
        readers.insert(topic.to_owned(), waiting.clone());
        Ok(waiting)
    }
}

/// Hands every reply on the topic to its waiting call, or keeps it for a while.
fn read_replies(
    consumer: &BaseConsumer<Logged>,
    topic: &str,
    waiting: &Mutex<Waiting>,
    stop: &AtomicBool,
    keep: Duration,
) {
    let mut pruned = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let Ok(reply) = Envelope::decode(m.payload().unwrap_or_default()) else {
                    tracing::debug!(topic, partition = m.partition(), offset = m.offset(), "not an envelope; skipped");
                    continue;
                };
                if !matches!(
                    reply.kind,
                    EnvelopeType::Response | EnvelopeType::SkillResponse | EnvelopeType::TaskStatus
                ) {
                    continue;
                }
                let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
                match w.pending.remove(&reply.correlation_id) {
                    Some(tx) => {
                        let _ = tx.send(reply);
                    }
                    None => {
                        w.recent.insert(reply.correlation_id.clone(), (reply, Instant::now()));
                    }
                }
            }
            Some(Err(e)) => tracing::warn!(topic, error = %e, "reading delegate replies"),
            None => {}
        }
        if pruned.elapsed() > Duration::from_secs(5) {
            let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
            w.recent.retain(|_, (_, at)| at.elapsed() < keep);
            w.pending.retain(|_, tx| !tx.is_closed());
            pruned = Instant::now();
        }
    }
}

impl Bus for KafkaBus {
    fn request(&self, topic: &str, reply_topic: &str, request: Envelope, deadline: Duration) -> ReplyFuture {
        let id = request.correlation_id.clone();
        let prepared = self.reader(reply_topic, deadline).and_then(|w| Ok((w, self.producer()?)));
        let (topic, reply_topic) = (topic.to_owned(), reply_topic.to_owned());
        // The calling span's context (the `invoke_agent` span) when traces are exported: the
        // peer's consumer span becomes its child. Not part of the envelope, which stays the same.
        let traceparent = crate::telemetry::current_traceparent();
        Box::pin(async move {
            let (waiting, producer) = prepared?;
            let rx = {
                let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((reply, _)) = w.recent.remove(&id) {
                    // A previous attempt's request was answered: do not ask again.
                    return Ok(reply);
                }
                let (tx, rx) = oneshot::channel();
                w.pending.insert(id.clone(), tx);
                rx
            };
            let payload = request.encode();
            let mut record = FutureRecord::to(&topic).key(id.as_str()).payload(&payload);
            if let Some(tp) = &traceparent {
                record = record.headers(crate::kafka::headers::owned(&[(TRACEPARENT, tp.as_bytes())]));
            }
            let sent = match producer.send_result(record) {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("the producer stopped".to_owned()),
                },
                Err((e, _)) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                waiting.lock().unwrap_or_else(|e| e.into_inner()).pending.remove(&id);
                return Err(format!("publishing the request to `{topic}`: {e}"));
            }
            match tokio::time::timeout(deadline, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err("the reply reader stopped".into()),
                Err(_) => {
                    waiting.lock().unwrap_or_else(|e| e.into_inner()).pending.remove(&id);
                    Err(format!("no response on `{reply_topic}` within {deadline:?} (request sent to `{topic}`)"))
                }
            }
        })
    }
}
