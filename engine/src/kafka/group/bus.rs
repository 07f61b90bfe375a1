//! The bus of `delegate` tools on Kafka: requests are published by a producer of their own
//! (idempotent, outside the instance's transaction — a request must leave now, while the
//! transaction that will hold the answer is still open), and one reader thread per reply
//! topic judges each reply for the call of its correlation id ([`replies`]).
//!
//! A call: (1) waits until the reply reader has read its look-back (twice the call's
//! `max_deadline`, at least a minute) to the end of the topic; (2) reads the request's
//! partition back ([`readback`]): an earlier request with the call's id from this agent is
//! a previous attempt's — it is not sent again, and its deadline counts; otherwise the
//! request is published, to the partition murmur2 gives its key; (3) waits (a tokio watch,
//! no thread held per call) for the first final reply within the deadline, which progress
//! reports extend. Late replies are dropped and audited on `group.<g>.observe.audit` (the
//! topology's group, else the group named by the reply topic, `group.<g>.…`). A reply topic's
//! reader is started by its first call, with that call's look-back.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kafclaw_agent::tools::delegate::{Bus, Clock, Deadlines, ReplyFuture};
use kafclaw_operators::envelope::Envelope;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord};

use crate::kafka::headers::TRACEPARENT;
use crate::kafka::producer::{Logged, assign_since};
use crate::kafka::settings::ClientSettings;

#[path = "bus_readback.rs"]
mod readback;
#[path = "bus_replies.rs"]
mod replies;

use replies::{Call, Replies};

/// The least look-back of a reply reader and of a request's read-back.
const MIN_LOOKBACK: Duration = Duration::from_secs(60);

/// The Kafka bus of one instance.
pub struct KafkaBus {
    settings: ClientSettings,
    name: String,
    group: Option<String>,
    producer: Mutex<Option<FutureProducer<Logged>>>,
    readers: Mutex<HashMap<String, Arc<Replies>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus").field("name", &self.name).finish_non_exhaustive()
    }
}

/// How far back a reader of calls with `deadlines` looks: twice the cap, at least a minute.
fn lookback(deadlines: Deadlines) -> Duration {
    deadlines.max.max(MIN_LOOKBACK).saturating_mul(2)
}

/// The audit topic of the group a reply topic `group.<g>.…` belongs to.
fn group_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("group.")?;
    rest.split_once('.').map(|(g, _)| g).filter(|g| !g.is_empty())
}

impl KafkaBus {
    /// A bus for topology `name`; its reader threads end when `stop` is set.
    pub fn new(settings: ClientSettings, name: &str, stop: Arc<AtomicBool>) -> Self {
        Self {
            settings,
            name: name.to_owned(),
            group: None,
            producer: Mutex::new(None),
            readers: Mutex::new(HashMap::new()),
            stop,
        }
    }

    /// The group whose `observe.audit` topic receives the bus's audits (late replies).
    pub fn with_group(mut self, group: Option<&str>) -> Self {
        self.group = group.map(str::to_owned);
        self
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

    /// The replies of `topic`, starting its reader on first use.
    fn replies(&self, topic: &str, lookback: Duration) -> Result<Arc<Replies>, String> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = readers.get(topic) {
            return Ok(r.clone());
        }
        let consumer: BaseConsumer<Logged> = self
            .settings
            .client_config(&[
                ("group.id", &format!("{}-delegate-replies", self.name)),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                ("isolation.level", "read_committed"),
            ])
            .create_with_context(Logged("delegate replies"))
            .map_err(|e| format!("reply reader: {e}"))?;
        let client_id = format!("{}-delegate-audit", self.name);
        let audits: BaseProducer<Logged> = self
            .settings
            .client_config_with(&[("linger.ms", "0")], &[("enable.idempotence", "true"), ("client.id", &client_id)])
            .create_with_context(Logged("delegate audits"))
            .map_err(|e| format!("delegate audit producer: {e}"))?;
        let since = SystemTime::now().checked_sub(lookback).unwrap_or(SystemTime::UNIX_EPOCH);
        let partitions = assign_since(&consumer, &[topic.to_owned()], since, false)?;
        if partitions == 0 {
            return Err(format!(
                "reply topic `{topic}` does not exist: create it (the peer writes its responses there)"
            ));
        }
        let group = self.group.as_deref().or_else(|| group_of(topic));
        let audit_topic = group.map(|g| format!("group.{g}.observe.audit"));
        let shared = Arc::new(Replies::new(topic, &self.name, audit_topic));
        let (r, stop) = (shared.clone(), self.stop.clone());
        std::thread::Builder::new()
            .name("kafclaw-replies".into())
            .spawn(move || replies::read_replies(&consumer, partitions, &r, &audits, &stop, lookback))
            .map_err(|e| e.to_string())?;
        tracing::info!(topic, partitions, "reading delegate replies");
        readers.insert(topic.to_owned(), shared.clone());
        Ok(shared)
    }
}

/// Publishes `request` to `partition` of `topic`, keyed by its correlation id.
async fn publish(
    producer: &FutureProducer<Logged>,
    topic: &str,
    partition: i32,
    request: &Envelope,
    traceparent: Option<&str>,
) -> Result<(), String> {
    let payload = request.encode();
    let mut record =
        FutureRecord::to(topic).key(request.correlation_id.as_str()).partition(partition).payload(&payload);
    if let Some(tp) = traceparent {
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
    sent.map_err(|e| format!("publishing the request to `{topic}`: {e}"))
}

impl Bus for KafkaBus {
    fn request(&self, topic: &str, reply_topic: &str, request: Envelope, deadlines: Deadlines) -> ReplyFuture {
        let lookback = lookback(deadlines);
        let prepared = self.replies(reply_topic, lookback).and_then(|r| Ok((r, self.producer()?)));
        let (topic, settings, agent) = (topic.to_owned(), self.settings.clone(), self.name.clone());
        // The calling span's context (the `invoke_agent` span) when traces are exported: the
        // peer's consumer span becomes its child. Not part of the envelope, which stays the same.
        let traceparent = crate::telemetry::current_traceparent();
        Box::pin(async move {
            let (replies, producer) = prepared?;
            replies.caught_up(deadlines.idle.max(Duration::from_secs(30))).await?;
            let id = request.correlation_id.clone();
            let since = SystemTime::now().checked_sub(lookback).unwrap_or(SystemTime::UNIX_EPOCH);
            let (t, i) = (topic.clone(), id.clone());
            let (partition, earlier) =
                tokio::task::spawn_blocking(move || readback::first_request(&settings, &agent, &t, &i, since))
                    .await
                    .map_err(|e| format!("reading `{topic}` back: {e}"))??;
            let first = match earlier {
                Some(first) => {
                    tracing::debug!(task_id = %id, %topic, sent = %first.timestamp, "a previous attempt sent this request: not sent again");
                    first
                }
                None => {
                    // The deadline counts from when the request leaves.
                    let mut request = request;
                    deadlines.stamp(&mut request, kafclaw_operators::api::record::now_ms());
                    publish(&producer, &topic, partition, &request, traceparent.as_deref()).await?;
                    request
                }
            };
            let clock = Clock::of_request(&first, deadlines)
                .map_err(|e| format!("the earlier request `{id}` on `{topic}` cannot be read: {e}"))?;
            replies.wait(Call { id: &id, request_topic: &topic, idle: deadlines.idle }, clock).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audits_go_to_the_group_of_the_reply_topic() {
        assert_eq!(group_of("group.acme.skill.billing.responses"), Some("acme"));
        assert_eq!(group_of("group.acme.responses"), Some("acme"));
        assert_eq!(group_of("replies"), None);
        assert_eq!(group_of("group..x"), None);
        let d = Deadlines::new(Duration::from_secs(5), None);
        assert_eq!(lookback(d), Duration::from_secs(120));
        assert_eq!(lookback(Deadlines::new(Duration::from_secs(60), None)), Duration::from_secs(1200));
    }
}
