//! The approvals channel of an instance's approval-gated tools
//! ([`kafclaw_agent::tools::approval`]): one reader thread follows both approvals topics of
//! the group from their beginnings (no consumer group, nothing committed), keeping the ids
//! asked and the first decision of each; a call waits on a tokio oneshot (no thread held per
//! call).
//!
//! A call waits until the reader has reached the ends the topics had when it started, then:
//! a decision already there is its answer (a step run again after a crash is not asked
//! again); a request already there is not written again and its `expires_at` stands;
//! otherwise the request is written (idempotent producer, outside the instance's
//! transaction: it must leave now, while the transaction that will hold the answer is open).
//! A decision written after the request's `expires_at` is ignored, as the `approve`
//! operator ignores one; so is one addressed to another waiter (its `requester`), and one
//! written before the request under its id that the call itself wrote.
//!
//! A request already under the id is the call's only when its
//! [`fingerprint`](kafclaw_agent::tools::approval::fingerprint) is the call's own; otherwise,
//! or when two different requests were written under the id, the call gets
//! [`Ruling::Mismatch`] (refused, never run), and so does a call waiting when a different
//! request under its id is read.
//!
//! **Bounded** by `[topology] approvals_retention` (default 7 days): an id matters while the
//! input of its step is uncommitted. The reader forgets an id once its deadline and the
//! Kafka timestamp of its last record (request or decision) are both that old and no call
//! waits on it (`forget`, run when the reader catches up and every minute), and drops
//! the waiters of calls that ended (timed out). The topics' own retention is the group's.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafclaw_agent::tools::approval::{Approvals, Ruling, RulingFuture, canonical, fingerprint};
use kafclaw_operators::api::record::{event_time_ms, now_ms};
use kafclaw_operators::envelope::approval::{ApprovalRequestPayload, Decision, decisions_topic, requests_topic};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use crate::kafka::inspect::CALL_TIMEOUT;
use crate::kafka::producer::{Logged, QuietEof};
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::ensure_topic;

/// How often the reader forgets what is past the retention.
const SWEEP: Duration = Duration::from_secs(60);

/// The most decisions kept per id while its request is unknown (later ones are dropped).
const KEPT_DECISIONS: usize = 64;

/// A request seen (the first under its id).
#[derive(Debug, Clone)]
struct Asked {
    /// When its waiter stops waiting (ms; `None`: never).
    deadline: Option<i64>,
    /// The waiter decisions must be addressed to.
    requester: String,
    /// Its [`fingerprint`] (`unreadable`: a payload that is not a request's).
    fingerprint: String,
    /// What it asks, for a call it is not the request of.
    shown: String,
    /// Another request with a different fingerprint was written under the same id.
    conflict: bool,
}

impl Asked {
    /// The request of `payload` (an `approval_request`'s).
    fn of(payload: &Value) -> Self {
        match serde_json::from_value::<ApprovalRequestPayload>(payload.clone()) {
            Ok(p) => {
                let deadline = (!p.expires_at.is_empty()).then(|| event_time_ms(&p.expires_at).ok()).flatten();
                let mut args = p.arguments.as_ref().map(canonical).unwrap_or_default();
                if args.chars().count() > 200 {
                    args = args.chars().take(200).collect::<String>() + "…";
                }
                let shown = format!(
                    "there: agent `{}`, requester `{}`, tool `{}`, arguments {args}",
                    p.agent_id, p.requester, p.tool
                );
                Self { deadline, requester: p.requester.clone(), fingerprint: fingerprint(&p), shown, conflict: false }
            }
            Err(e) => Self {
                deadline: None,
                requester: String::new(),
                fingerprint: "unreadable".to_owned(),
                shown: format!("there: a request that cannot be read ({e})"),
                conflict: false,
            },
        }
    }

    /// Whether `d` is addressed to this request's waiter (a decision naming no requester is).
    fn addressed(&self, d: &Decision) -> bool {
        d.requester.as_deref().is_none_or(|r| r == self.requester)
    }

    /// Why a call with request `own` cannot use this one, if it cannot.
    fn mismatch(&self, own: &Asked) -> Option<String> {
        match () {
            _ if self.conflict => Some("different requests were written under this id".to_owned()),
            _ if self.fingerprint != own.fingerprint => Some(self.shown.clone()),
            _ => None,
        }
    }
}

/// What the reader learnt.
#[derive(Default)]
struct Book {
    /// Requests seen, by id.
    asked: HashMap<String, Asked>,
    /// The decisions per id that may count, in the order read, with when each was written (ms).
    decided: HashMap<String, Vec<(Decision, i64)>>,
    /// Calls waiting, by id.
    waiting: HashMap<String, Vec<oneshot::Sender<Ruling>>>,
    /// When each id known was last written (ms: the Kafka timestamp of its last request or
    /// decision record, or when a call here asked): what the retention runs from.
    touched: HashMap<String, i64>,
}

impl Book {
    /// The decision of `id` that counts, as the `approve` operator judges: the first
    /// addressed to the request's waiter, unless written after the deadline.
    fn ruling(&self, id: &str) -> Option<Decision> {
        let asked = self.asked.get(id)?;
        let (d, at) = self.decided.get(id)?.iter().find(|(d, _)| asked.addressed(d))?;
        asked.deadline.is_none_or(|e| *at < e).then(|| d.clone())
    }

    /// Hands `ruling` to every call waiting on `id`.
    fn answer(&mut self, id: &str, ruling: &Ruling) {
        for tx in self.waiting.remove(id).unwrap_or_default() {
            let _ = tx.send(ruling.clone());
        }
    }

    /// Where a call whose request is `own` stands on `id`: a ruling now, or a wait (and whether
    /// the call must write its request: nobody did).
    fn enter(&mut self, id: &str, own: Asked) -> Entered {
        let first = match self.asked.get(id) {
            Some(there) => {
                if let Some(why) = there.mismatch(&own) {
                    return Entered::Ruled(Ruling::Mismatch(why));
                }
                if let Some(d) = self.ruling(id) {
                    return Entered::Ruled(Ruling::Decided(d));
                }
                false
            }
            None => {
                // A decision read before the request the call writes now is on no request of
                // its: ignored.
                self.decided.remove(id);
                self.asked.insert(id.to_owned(), own);
                self.touch(id, now_ms());
                true
            }
        };
        let (tx, rx) = oneshot::channel();
        self.waiting.entry(id.to_owned()).or_default().push(tx);
        Entered::Wait { rx, deadline: self.asked[id].deadline, first }
    }

    /// Notes that `id` was written at `at_ms`.
    fn touch(&mut self, id: &str, at_ms: i64) {
        let t = self.touched.entry(id.to_owned()).or_insert(at_ms);
        *t = (*t).max(at_ms);
    }
}

/// Where a call stands ([`Book::enter`]).
enum Entered {
    /// Decided, or refused, already.
    Ruled(Ruling),
    /// Waits on `rx` until `deadline`; `first`: the call writes the request.
    Wait { rx: oneshot::Receiver<Ruling>, deadline: Option<i64>, first: bool },
}

/// Forgets, at `now_ms`, the waiters of calls that ended and every id whose deadline and last
/// record are both `retention_ms` old or older and on which no call waits; returns how many
/// ids.
fn forget(book: &mut Book, now_ms: i64, retention_ms: i64) -> usize {
    book.waiting.retain(|_, calls| {
        calls.retain(|tx| !tx.is_closed());
        !calls.is_empty()
    });
    let Book { asked, decided, waiting, touched } = book;
    let before = touched.len();
    touched.retain(|id, at| {
        let settled = asked.get(id).and_then(|a| a.deadline).map_or(*at, |deadline| deadline.max(*at));
        let keep = waiting.contains_key(id) || settled.saturating_add(retention_ms) > now_ms;
        if !keep {
            asked.remove(id);
            decided.remove(id);
        }
        keep
    });
    before - touched.len()
}

/// The reader's shared state.
struct Shared {
    book: Mutex<Book>,
    /// `true` once the reader reached the ends the topics had when it started.
    caught_up: watch::Receiver<bool>,
}

/// The approvals channel of one instance, for agent group `group`.
pub struct KafkaApprovals(Arc<Inner>);

/// What the channel needs to start (on first use, off the async executor: it creates topics
/// and reads metadata, which block).
struct Inner {
    settings: ClientSettings,
    group: String,
    name: String,
    partitions: i32,
    replication: i32,
    /// `[topology] approvals_retention` (ms).
    retention_ms: i64,
    stop: Arc<AtomicBool>,
    started: Mutex<Option<(Arc<Shared>, FutureProducer<Logged>)>>,
}

impl std::fmt::Debug for KafkaApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaApprovals").field("group", &self.0.group).finish_non_exhaustive()
    }
}

/// Installs the approvals channel of `compiled` (an instance of it), when its topology has a
/// group: approval-gated tools wait through it. Without a group, gated calls are refused.
pub fn install(compiled: &crate::compiler::Compiled, settings: &ClientSettings, stop: &Arc<AtomicBool>) {
    let slot = kafclaw_agent::tools::approval::slot(&compiled.resources);
    if let Some(group) = &compiled.plan.group {
        let t = &compiled.spec.topology;
        slot.set(Arc::new(KafkaApprovals(Arc::new(Inner {
            settings: settings.clone(),
            group: group.clone(),
            name: compiled.plan.name.clone(),
            partitions: t.partitions,
            replication: t.replication,
            retention_ms: i64::try_from(t.approvals_retention().as_millis()).unwrap_or(i64::MAX),
            stop: stop.clone(),
            started: Mutex::new(None),
        }))));
    }
}

impl Inner {
    /// The reader and the producer, started on first use.
    fn start(&self) -> Result<(Arc<Shared>, FutureProducer<Logged>), String> {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, p)) = &*started {
            return Ok((s.clone(), p.clone()));
        }
        let topics = [requests_topic(&self.group), decisions_topic(&self.group)];
        for t in &topics {
            ensure_topic(&self.settings, t, self.partitions, self.replication, CALL_TIMEOUT)
                .map_err(|e| format!("{t}: {e}"))?;
        }
        let client_id = format!("{}-approvals", self.name);
        let producer: FutureProducer<Logged> = self
            .settings
            .client_config_with(&[("linger.ms", "0")], &[("enable.idempotence", "true"), ("client.id", &client_id)])
            .create_with_context(Logged("approvals producer"))
            .map_err(|e| format!("approvals producer: {e}"))?;
        // One reader per topic: a partition's end (`PartitionEOF`) names no topic.
        let mut readers = Vec::new();
        for t in &topics {
            readers.push(self.reader(t)?);
        }
        let count: usize = readers.iter().map(|(_, n)| n).sum();
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared { book: Mutex::new(Book::default()), caught_up: rx });
        let (s, stop, retention_ms) = (shared.clone(), self.stop.clone(), self.retention_ms);
        std::thread::Builder::new()
            .name("kafclaw-approvals".into())
            .spawn(move || read(&readers, &s, &tx, &stop, retention_ms))
            .map_err(|e| e.to_string())?;
        tracing::info!(group = %self.group, partitions = count, "following approvals");
        *started = Some((shared.clone(), producer.clone()));
        Ok((shared, producer))
    }

    /// A consumer of every partition of `topic` from its beginning, and how many there are.
    fn reader(&self, topic: &str) -> Result<(BaseConsumer<QuietEof>, usize), String> {
        let consumer: BaseConsumer<QuietEof> = self
            .settings
            .client_config(&[
                ("group.id", &format!("{}-approvals", self.name)),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
            ])
            .create_with_context(QuietEof("approvals reader"))
            .map_err(|e| format!("approvals reader: {e}"))?;
        let md = consumer.fetch_metadata(Some(topic), CALL_TIMEOUT).map_err(|e| format!("{topic}: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics().iter().filter(|m| m.error().is_none()).flat_map(|m| m.partitions()) {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).map_err(|e| e.to_string())?;
        }
        let count = tpl.count();
        if count == 0 {
            return Err(format!("topic `{topic}` has no partitions"));
        }
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        Ok((consumer, count))
    }
}

/// Follows both topics into the book, handing each first decision to its waiters, and
/// forgets what is past `retention_ms`.
fn read(
    readers: &[(BaseConsumer<QuietEof>, usize)],
    shared: &Shared,
    caught_up: &watch::Sender<bool>,
    stop: &AtomicBool,
    retention_ms: i64,
) {
    let mut at_end: Vec<HashSet<i32>> = vec![HashSet::new(); readers.len()];
    let mut swept = Instant::now();
    let sweep = || {
        let mut book = shared.book.lock().unwrap_or_else(|e| e.into_inner());
        let forgotten = forget(&mut book, now_ms(), retention_ms);
        tracing::debug!(forgotten, kept = book.touched.len(), "approvals: forgot what is past the retention");
    };
    while !stop.load(Ordering::Relaxed) {
        if swept.elapsed() >= SWEEP {
            swept = Instant::now();
            sweep();
        }
        for (i, (consumer, _)) in readers.iter().enumerate() {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => match Envelope::decode(m.payload().unwrap_or_default()) {
                    Ok(e) => note(shared, &e, m.timestamp().to_millis()),
                    Err(_) => tracing::debug!(
                        topic = m.topic(),
                        partition = m.partition(),
                        offset = m.offset(),
                        "not an envelope; skipped"
                    ),
                },
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end[i].insert(p);
                    if !*caught_up.borrow() && readers.iter().zip(&at_end).all(|((_, n), seen)| seen.len() >= *n) {
                        sweep();
                        let _ = caught_up.send(true);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "reading approvals"),
                None => {}
            }
        }
    }
}

/// Notes one record of either topic, written at `timestamp_ms` (its Kafka timestamp; `None`:
/// the envelope's), in the book.
fn note(shared: &Shared, e: &Envelope, timestamp_ms: Option<i64>) {
    let mut book = shared.book.lock().unwrap_or_else(|e| e.into_inner());
    let written = timestamp_ms.or_else(|| event_time_ms(&e.timestamp).ok()).unwrap_or_else(now_ms);
    match e.kind {
        EnvelopeType::ApprovalRequest => {
            let p = &e.payload;
            let Some(id) = p.get("request_id").and_then(|v| v.as_str()).map(str::to_owned) else { return };
            let seen = Asked::of(p);
            book.touch(&id, written);
            match book.asked.get_mut(&id) {
                None => {
                    // Decisions addressed to another waiter never count: not kept.
                    if let Some(ds) = book.decided.get_mut(&id) {
                        ds.retain(|(d, _)| seen.addressed(d));
                    }
                    book.asked.insert(id, seen);
                }
                Some(there) if there.fingerprint != seen.fingerprint && !there.conflict => {
                    there.conflict = true;
                    tracing::warn!(request_id = %id, sender = %e.sender_id, "a different approval request under the same id: calls on it are refused");
                    let why = "different requests were written under this id".to_owned();
                    book.answer(&id, &Ruling::Mismatch(why));
                }
                Some(_) => {}
            }
        }
        EnvelopeType::Approval => {
            let Ok(d) = Decision::read(&e.payload) else {
                tracing::warn!(sender = %e.sender_id, "unreadable approval; ignored");
                return;
            };
            let id = d.request_id.clone();
            book.touch(&id, written);
            let kept = book.asked.get(&id).map(|a| a.addressed(&d));
            let ds = book.decided.entry(id.clone()).or_default();
            match kept {
                Some(false) => return,
                None if ds.len() >= KEPT_DECISIONS => return,
                _ => {}
            }
            let at = event_time_ms(&e.timestamp).unwrap_or(i64::MAX);
            ds.push((d, at));
            if let Some(d) = book.ruling(&id) {
                book.answer(&id, &Ruling::Decided(d));
            }
        }
        _ => {}
    }
}

/// Writes `request` keyed by its id and waits for its acknowledgement.
async fn publish(producer: &FutureProducer<Logged>, topic: &str, id: &str, request: &Envelope) -> Result<(), String> {
    let payload = request.encode();
    let record = FutureRecord::to(topic).key(id).payload(&payload);
    match producer.send_result(record) {
        Ok(delivery) => match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(format!("writing the request to `{topic}`: {e}")),
            Err(_) => Err("the approvals producer stopped".to_owned()),
        },
        Err((e, _)) => Err(format!("writing the request to `{topic}`: {e}")),
    }
}

impl Approvals for KafkaApprovals {
    fn ask(&self, request: Envelope) -> RulingFuture {
        let inner = self.0.clone();
        let topic = requests_topic(&inner.group);
        Box::pin(async move {
            let (shared, producer) = tokio::task::spawn_blocking(move || inner.start())
                .await
                .map_err(|e| format!("starting the approvals channel: {e}"))??;
            let mut caught_up = shared.caught_up.clone();
            tokio::time::timeout(Duration::from_secs(60), caught_up.wait_for(|c| *c))
                .await
                .map_err(|_| "the approvals topics were not read to their ends within 60 s".to_owned())?
                .map_err(|_| "the approvals reader stopped".to_owned())?;
            let p = &request.payload;
            let id = p.get("request_id").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let own = Asked::of(p);
            let entered = shared.book.lock().unwrap_or_else(|e| e.into_inner()).enter(&id, own);
            let (rx, deadline, first) = match entered {
                Entered::Ruled(r) => return Ok(r),
                Entered::Wait { rx, deadline, first } => (rx, deadline, first),
            };
            if first {
                if let Err(e) = publish(&producer, &topic, &id, &request).await {
                    // Not asked after all: a later attempt of the step must write it.
                    let mut book = shared.book.lock().unwrap_or_else(|e| e.into_inner());
                    book.asked.remove(&id);
                    book.waiting.remove(&id);
                    return Err(e);
                }
            } else {
                tracing::debug!(request_id = %id, "asked before: not asked again");
            }
            let Some(deadline) = deadline else {
                return rx.await.map_err(|_| "the approvals reader stopped".to_owned());
            };
            let left = Duration::from_millis((deadline - now_ms()).max(0) as u64);
            match tokio::time::timeout(left, rx).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(_)) => Err("the approvals reader stopped".to_owned()),
                Err(_) => Ok(Ruling::TimedOut),
            }
        })
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
