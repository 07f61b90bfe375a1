//! The reply side of the delegate bus: one reader thread per reply topic, and the calls'
//! verdicts.
//!
//! The reader starts at the first record of its look-back (offsets for that time) and reads
//! the topic to its end before any call is judged (so a retried call sees the progress and
//! replies its first attempt got). Each record correlated to a call is judged by the call's
//! [`Clock`] and its time: progress moves the deadline, the first final reply on time is the
//! call's answer, a final reply after the deadline (or after the call stopped waiting) is
//! late — dropped, never handed to any call, and audited.
//!
//! A record's time is its Kafka timestamp. A `LogAppendTime` timestamp is the broker's: the
//! verdict holds whenever the record is read (a rerun after a crash judges it the same way).
//! A `CreateTime` timestamp is the producer's (the peer's) own word, so it is trusted only as
//! far as this reader can check it: never later than the time the record was read (a reply
//! stamped in the future moves nothing past its reading), and a record read after its call's
//! deadline (+ grace) is not shown to have been sent on time, whatever it is stamped: it never
//! extends a call, and a final reply is late. Without that last rule a peer (or its clock)
//! could answer after the deadline with a backdated stamp, and a rerun reading the topic from
//! its look-back would take the answer. Records of calls this
//! instance has not registered (yet) are kept for the look-back and judged when one does.
//! Audits are published by the reader's own idempotent producer to the group's
//! `observe.audit` topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafclaw_agent::tools::delegate::{Clock, Reading, reading};
use kafclaw_operators::api::record::{format_time_ms, now_ms};
use kafclaw_operators::envelope::{Envelope, EnvelopeType, deterministic_id};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::kafka::producer::Logged;

/// How long past its deadline a waiting call still takes replies stamped before it (they may
/// be on their way), before it stops waiting.
pub(super) const GRACE_MS: i64 = 1_000;
/// How far before its request a reply may be stamped (clock skew) and still be the call's.
const SKEW_MS: i64 = 5_000;
/// How long the reader may take to read its look-back before calls are judged without it.
const CATCH_UP: Duration = Duration::from_secs(30);

/// A final reply whose call's deadline had passed.
#[derive(Debug, Clone)]
struct Late {
    /// What the model is told.
    message: String,
}

/// What the bus knows of one call id.
struct Entry {
    /// Set when a call of this instance registers it (from its first request).
    clock: Option<Clock>,
    /// Records read before a clock was known, in read order.
    unjudged: Vec<Arrival>,
    /// The answer (first final reply on time), once read.
    answer: Option<Envelope>,
    /// A late reply, once one was read while no answer was.
    late: Option<Late>,
    /// A call stopped waiting at the deadline: every later reply is late.
    closed: bool,
    /// Last change (pruning).
    touched: Instant,
}

impl Entry {
    fn new() -> Self {
        Self { clock: None, unjudged: Vec::new(), answer: None, late: None, closed: false, touched: Instant::now() }
    }
}

/// A record correlated to a call, as read.
struct Arrival {
    reply: Envelope,
    reading: Reading,
    /// The record's Kafka timestamp (ms), else the time it was read.
    at_ms: i64,
    /// When this reader read it (ms).
    read_ms: i64,
    /// `at_ms` is the broker's (`LogAppendTime`), not the producer's word.
    broker_time: bool,
    partition: i32,
    offset: i64,
}

/// The shared state of one reply topic.
pub(super) struct Replies {
    topic: String,
    agent: String,
    audit_topic: Option<String>,
    state: Mutex<State>,
    /// Bumped on every change a waiting call may care about.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    caught_up: bool,
    entries: HashMap<String, Entry>,
    audits: Vec<Envelope>,
}

/// What a waiting call names in its messages.
pub(super) struct Call<'a> {
    pub id: &'a str,
    pub request_topic: &'a str,
    pub idle: Duration,
}

impl Replies {
    pub(super) fn new(topic: &str, agent: &str, audit_topic: Option<String>) -> Self {
        Self {
            topic: topic.to_owned(),
            agent: agent.to_owned(),
            audit_topic,
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Waits until the reader has read its look-back to the end of the topic.
    ///
    /// Errors: not within `limit` (the infrastructure's fault).
    pub(super) async fn caught_up(&self, limit: Duration) -> Result<(), String> {
        let mut rx = self.changed.subscribe();
        let until = tokio::time::Instant::now() + limit;
        loop {
            if self.lock().caught_up {
                return Ok(());
            }
            if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                return Err(format!(
                    "the reply reader of `{}` did not read the topic to its end within {limit:?}: the call was not made",
                    self.topic
                ));
            }
        }
    }

    /// Registers call `id` with the clock of its first request, judges what was read for it
    /// already, and waits for its verdict: the answer, or an error once the deadline passed.
    pub(super) async fn wait(&self, call: Call<'_>, clock: Clock) -> Result<Envelope, String> {
        let mut rx = self.changed.subscribe();
        self.register(call.id, clock);
        loop {
            rx.borrow_and_update();
            let left = {
                let mut state = self.lock();
                let entry = state.entries.entry(call.id.to_owned()).or_insert_with(Entry::new);
                entry.touched = Instant::now();
                let clock = *entry.clock.get_or_insert(clock);
                if let Some(answer) = &entry.answer {
                    return Ok(answer.clone());
                }
                if let Some(late) = &entry.late {
                    return Err(late.message.clone());
                }
                if entry.closed {
                    return Err(format!(
                        "the deadline {} of this delegation passed (request sent to `{}`): no reply came in time",
                        clock.due(),
                        call.request_topic
                    ));
                }
                let left = clock.due_ms.saturating_add(GRACE_MS).saturating_sub(now_ms());
                if left <= 0 {
                    entry.closed = true;
                    return Err(format!(
                        "no response on `{}` within {:?} (request sent to `{}`; the deadline {} passed)",
                        self.topic,
                        call.idle,
                        call.request_topic,
                        clock.due()
                    ));
                }
                left
            };
            let _ = tokio::time::timeout(Duration::from_millis(left as u64), rx.changed()).await;
        }
    }

    /// Gives call `id` the clock of its first request (unless it has one: an earlier attempt
    /// in this process registered the same) and judges what was read for it already.
    fn register(&self, id: &str, clock: Clock) {
        let mut state = self.lock();
        let State { entries, audits, .. } = &mut *state;
        let entry = entries.entry(id.to_owned()).or_insert_with(Entry::new);
        entry.clock.get_or_insert(clock);
        for arrival in std::mem::take(&mut entry.unjudged) {
            self.judge(id, entry, arrival, audits);
        }
    }

    /// Judges a record read for call `id` by its clock (which the entry has).
    fn judge(&self, id: &str, entry: &mut Entry, a: Arrival, audits: &mut Vec<Envelope>) {
        let Some(clock) = entry.clock.as_mut() else { return entry.unjudged.push(a) };
        let settled = entry.answer.is_some() || entry.late.is_some() || entry.closed;
        // A producer's stamp is believed up to the reading, and only for a record read
        // before the deadline's grace ended (see the module).
        let at_ms = if a.broker_time { a.at_ms } else { a.at_ms.min(a.read_ms) };
        let unproven = !a.broker_time && a.read_ms > clock.due_ms.saturating_add(GRACE_MS);
        match &a.reading {
            Reading::Ignored => {}
            Reading::Progress => {
                if !settled && !unproven {
                    clock.progress(at_ms);
                }
            }
            Reading::Unreadable(why) => {
                tracing::warn!(
                    topic = %self.topic, partition = a.partition, offset = a.offset, task_id = id, reason = %why,
                    "a delegate reply cannot be read: it neither extends nor ends the call"
                );
                let details = self.details(id, clock, &a, why);
                audits.push(self.audit("reply_unreadable", id, &a, details));
            }
            Reading::Final if entry.answer.is_some() => {
                tracing::debug!(topic = %self.topic, offset = a.offset, task_id = id, "a second final reply; the first stands");
            }
            Reading::Final => {
                let reason = if !clock.on_time(at_ms) {
                    Some("stamped after the call's deadline")
                } else if entry.closed || entry.late.is_some() {
                    Some("read after the call stopped waiting at its deadline")
                } else if unproven {
                    Some(
                        "read after the call's deadline with a producer-set (CreateTime) timestamp: \
                         not shown to have been sent on time (reply topics should use LogAppendTime)",
                    )
                } else if at_ms < clock.started_ms.saturating_sub(SKEW_MS) {
                    Some("stamped before the call's request: an earlier attempt's, out of the look-back")
                } else {
                    None
                };
                let Some(reason) = reason else {
                    entry.answer = Some(a.reply);
                    return;
                };
                tracing::warn!(
                    topic = %self.topic, partition = a.partition, offset = a.offset, task_id = id,
                    deadline = %clock.due(), sender = %a.reply.sender_id, reason, "late delegate reply dropped"
                );
                let message = format!(
                    "the deadline {} passed before `{}` answered on `{}`: its reply (stamped {}) was dropped",
                    clock.due(),
                    a.reply.sender_id,
                    self.topic,
                    format_time_ms(a.at_ms)
                );
                entry.late.get_or_insert(Late { message });
                let details = self.details(id, clock, &a, reason);
                audits.push(self.audit("late_reply_dropped", id, &a, details));
            }
        }
    }

    fn details(&self, id: &str, clock: &Clock, a: &Arrival, reason: &str) -> Value {
        json!({
            "task_id": id,
            "deadline": clock.due(),
            "max_deadline": format_time_ms(clock.cap_ms),
            "reply_at": format_time_ms(a.at_ms),
            "timestamp_type": if a.broker_time { "LogAppendTime" } else { "CreateTime" },
            "read_at": format_time_ms(a.read_ms),
            "sender_id": a.reply.sender_id,
            "type": a.reply.kind.to_string(),
            "topic": self.topic,
            "partition": a.partition,
            "offset": a.offset,
            "reason": reason,
        })
    }

    /// An `audit` envelope; its id derives from the reply's coordinates, so the audits of one
    /// reply (a restarted instance judging it again) are recognisably the same.
    fn audit(&self, event: &str, id: &str, a: &Arrival, details: Value) -> Envelope {
        let payload = json!({"event_type": event, "agent_id": self.agent, "details": details});
        let mut e = Envelope::new(EnvelopeType::Audit, id, self.agent.clone(), format_time_ms(now_ms()), payload);
        e.id = Some(deterministic_id(&self.topic, a.partition, a.offset, event, 0));
        e
    }

    /// A record read from the topic.
    fn read(&self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let (partition, offset) = (m.partition(), m.offset());
        let reply = match Envelope::decode(m.payload().unwrap_or_default()) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition, offset, error = %e, "not an envelope on a delegate reply topic; skipped");
                return;
            }
        };
        let read_ms = now_ms();
        let (at_ms, broker_time) = match m.timestamp() {
            Timestamp::LogAppendTime(t) if t >= 0 => (t, true),
            Timestamp::CreateTime(t) if t >= 0 => (t, false),
            _ => (read_ms, false),
        };
        let reading = reading(&reply);
        if reading == Reading::Ignored {
            return;
        }
        self.arrive(Arrival { reply, reading, at_ms, read_ms, broker_time, partition, offset });
    }

    /// Judges `arrival` for its call, or keeps it until a call registers.
    fn arrive(&self, arrival: Arrival) {
        let id = arrival.reply.correlation_id.clone();
        let mut state = self.lock();
        let State { entries, audits, .. } = &mut *state;
        let entry = entries.entry(id.clone()).or_insert_with(Entry::new);
        entry.touched = Instant::now();
        let ours = entry.clock.is_some();
        self.judge(&id, entry, arrival, audits);
        drop(state);
        if ours {
            self.bump();
        }
    }
}

/// Reads `consumer` (assigned to the reply topic since the look-back) until `stop`: judges
/// each record, publishes the audits, forgets calls untouched for `keep`.
pub(super) fn read_replies(
    consumer: &BaseConsumer<Logged>,
    partitions: usize,
    replies: &Replies,
    audits: &BaseProducer<Logged>,
    stop: &AtomicBool,
    keep: Duration,
) {
    let (mut pruned, started, mut at_end) = (Instant::now(), Instant::now(), std::collections::HashSet::new());
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => replies.read(&m),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => tracing::warn!(topic = %replies.topic, error = %e, "reading delegate replies"),
            None => {}
        }
        if !replies.lock().caught_up && (at_end.len() >= partitions || started.elapsed() > CATCH_UP) {
            if at_end.len() < partitions {
                tracing::warn!(topic = %replies.topic, "no end of partition within {CATCH_UP:?}: judging calls with what was read");
            }
            replies.lock().caught_up = true;
            replies.bump();
        }
        publish(replies, audits);
        if pruned.elapsed() > Duration::from_secs(5) {
            replies.lock().entries.retain(|_, e| e.touched.elapsed() < keep);
            pruned = Instant::now();
        }
    }
    publish(replies, audits);
    let _ = audits.flush(Duration::from_secs(10));
}

/// Publishes the pending audits (delivery failures are logged by the producer's context).
fn publish(replies: &Replies, producer: &BaseProducer<Logged>) {
    let pending = std::mem::take(&mut replies.lock().audits);
    for audit in pending {
        let Some(topic) = &replies.audit_topic else {
            tracing::warn!(audit = %String::from_utf8_lossy(&audit.encode()), "no group audit topic: audit logged only");
            continue;
        };
        let payload = audit.encode();
        if let Err((e, _)) =
            producer.send(BaseRecord::<str, [u8]>::to(topic).key(&audit.correlation_id).payload(&payload))
        {
            tracing::warn!(topic, error = %e, audit = %String::from_utf8_lossy(&payload), "publishing an audit failed");
        }
    }
    producer.poll(Duration::ZERO);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000_000;

    fn clock() -> Clock {
        Clock { started_ms: T0, due_ms: T0 + 2_000, cap_ms: T0 + 5_000, idle_ms: 2_000 }
    }

    /// A record stamped `at` by its producer and read then.
    fn arrive(r: &Replies, kind: EnvelopeType, payload: Value, at: i64, offset: i64) {
        arrive_read(r, kind, payload, (at, at, false), offset);
    }

    /// A record stamped `at`, read at `read`, by the broker's clock when `broker`.
    fn arrive_read(r: &Replies, kind: EnvelopeType, payload: Value, (at, read, broker): (i64, i64, bool), offset: i64) {
        let reply = Envelope::new(kind, "call", "peer", format_time_ms(T0 + at), payload);
        let (at_ms, read_ms) = (T0 + at, T0 + read);
        r.arrive(Arrival {
            reading: reading(&reply),
            reply,
            at_ms,
            read_ms,
            broker_time: broker,
            partition: 0,
            offset,
        });
    }

    fn progress(r: &Replies, at: i64, offset: i64) {
        arrive(r, EnvelopeType::TaskStatus, json!({"status": "in_progress"}), at, offset);
    }

    fn answer(r: &Replies, at: i64, offset: i64) {
        arrive(r, EnvelopeType::Response, json!({"status": "completed", "content": format!("at {at}")}), at, offset);
    }

    /// (due, answer text, late message, audit events).
    fn verdict(r: &Replies) -> (i64, Option<String>, Option<String>, Vec<String>) {
        let s = r.lock();
        let e = &s.entries["call"];
        let text = e.answer.as_ref().map(|a| a.payload["content"].as_str().unwrap().to_owned());
        let events = s.audits.iter().map(|a| a.payload["event_type"].as_str().unwrap().to_owned()).collect();
        (e.clock.unwrap().due_ms - T0, text, e.late.as_ref().map(|l| l.message.clone()), events)
    }

    fn replies() -> Replies {
        Replies::new("replies", "me", Some("group.g.observe.audit".into()))
    }

    #[test]
    fn progress_extends_and_the_first_reply_on_time_is_the_answer() {
        let r = replies();
        r.register("call", clock());
        progress(&r, 1_500, 0);
        progress(&r, 3_000, 1);
        answer(&r, 4_900, 2);
        answer(&r, 4_950, 3);
        assert_eq!(
            verdict(&r),
            (5_000, Some("at 4900".into()), None, vec![]),
            "capped at 5 s; the second reply ignored"
        );
    }

    #[test]
    fn a_reply_after_the_deadline_is_dropped_and_audited() {
        let r = replies();
        r.register("call", clock());
        progress(&r, 2_001, 0);
        answer(&r, 2_500, 1);
        answer(&r, 2_600, 2);
        let (due, text, late, events) = verdict(&r);
        assert_eq!((due, text), (2_000, None));
        assert_eq!(events, ["late_reply_dropped", "late_reply_dropped"]);
        assert_eq!(
            late.unwrap(),
            "the deadline 1970-01-01T00:16:42.000Z passed before `peer` answered on `replies`: its reply (stamped 1970-01-01T00:16:42.500Z) was dropped"
        );
        let s = r.lock();
        let a = &s.audits[0];
        assert_eq!((a.kind, a.correlation_id.as_str(), a.sender_id.as_str()), (EnvelopeType::Audit, "call", "me"));
        let d = &a.payload["details"];
        assert_eq!(
            (d["deadline"].as_str(), d["reply_at"].as_str()),
            (Some("1970-01-01T00:16:42.000Z"), Some("1970-01-01T00:16:42.500Z"))
        );
        assert_eq!(
            (d["topic"].as_str(), d["partition"].as_i64(), d["offset"].as_i64()),
            (Some("replies"), Some(0), Some(1))
        );
        assert_eq!(d["reason"], "stamped after the call's deadline");
        assert_ne!(s.audits[0].id, s.audits[1].id, "one audit per reply, by its coordinates");
    }

    #[test]
    fn records_read_before_a_call_registers_are_judged_when_it_does() {
        let r = replies();
        progress(&r, 1_900, 0);
        answer(&r, 3_800, 1);
        assert!(r.lock().entries["call"].answer.is_none());
        r.register("call", clock());
        assert_eq!(verdict(&r), (3_900, Some("at 3800".into()), None, vec![]));
        // A late reply read before the rerun registers is not handed to it either.
        let late = replies();
        answer(&late, 2_001, 0);
        late.register("call", clock());
        let (_, text, message, events) = verdict(&late);
        assert_eq!((text, events), (None, vec!["late_reply_dropped".to_owned()]));
        assert!(message.is_some());
    }

    #[test]
    fn a_backdated_reply_read_after_the_deadline_is_late_unless_the_broker_stamped_it() {
        let done = json!({"status": "completed", "content": "backdated"});
        // A rerun after a crash reads, 10 s after the request, a reply its producer stamped
        // on time (at 1.5 s of a 2 s deadline).
        let r = replies();
        arrive_read(&r, EnvelopeType::TaskStatus, json!({"status": "working"}), (1_900, 10_000, false), 0);
        arrive_read(&r, EnvelopeType::Response, done.clone(), (1_500, 10_000, false), 1);
        r.register("call", clock());
        let (due, text, late, events) = verdict(&r);
        assert_eq!((due, text, events), (2_000, None, vec!["late_reply_dropped".to_owned()]), "nothing extended");
        assert!(late.is_some());
        let s = r.lock();
        let d = &s.audits[0].payload["details"];
        assert!(d["reason"].as_str().unwrap().contains("CreateTime"), "{d}");
        assert_eq!(d["timestamp_type"], "CreateTime");
        drop(s);
        // Stamped by the broker, the same reply was on time whenever it is read.
        let r = replies();
        arrive_read(&r, EnvelopeType::Response, done, (1_500, 10_000, true), 0);
        r.register("call", clock());
        assert_eq!(verdict(&r), (2_000, Some("backdated".into()), None, vec![]));
        // A report stamped in the future counts from its reading.
        let r = replies();
        r.register("call", clock());
        arrive_read(&r, EnvelopeType::TaskStatus, json!({"status": "working"}), (4_000, 1_000, false), 0);
        assert_eq!(verdict(&r).0, 3_000, "read at 1 s: due 1 s + 2 s, not the cap");
    }

    #[test]
    fn unreadable_progress_neither_extends_nor_ends_a_call() {
        let r = replies();
        r.register("call", clock());
        arrive(&r, EnvelopeType::TaskStatus, json!({"status": "in_progress", "progress": true}), 1_000, 7);
        arrive(&r, EnvelopeType::TaskStatus, json!({"status": 1}), 1_100, 8);
        let (due, text, late, events) = verdict(&r);
        assert_eq!((due, text, late), (2_000, None, None));
        assert_eq!(events, ["reply_unreadable", "reply_unreadable"]);
        let s = r.lock();
        let d = &s.audits[0].payload["details"];
        assert_eq!((d["offset"].as_i64(), d["topic"].as_str()), (Some(7), Some("replies")));
        assert!(d["reason"].as_str().unwrap().starts_with("`payload.progress`"), "{d}");
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_ends_at_once_and_takes_no_later_reply() {
        let r = replies();
        let now = now_ms();
        let past = Clock { started_ms: now - 10_000, due_ms: now - 5_000, cap_ms: now - 1_000, idle_ms: 5_000 };
        let call = Call { id: "call", request_topic: "asks", idle: Duration::from_secs(5) };
        let e = r.wait(call, past).await.unwrap_err();
        assert!(e.starts_with("no response on `replies` within 5s (request sent to `asks`; the deadline "), "{e}");
        // Stamped on time, but read after the call stopped waiting: late too.
        let reply = Envelope::new(EnvelopeType::Response, "call", "peer", "t", json!({"content": "x"}));
        let arrival = Arrival {
            reading: Reading::Final,
            reply,
            at_ms: now - 6_000,
            read_ms: now,
            broker_time: false,
            partition: 0,
            offset: 0,
        };
        r.arrive(arrival);
        assert_eq!(
            r.lock().audits[0].payload["details"]["reason"],
            "read after the call stopped waiting at its deadline"
        );
        let again = r.wait(Call { id: "call", request_topic: "asks", idle: Duration::from_secs(5) }, past).await;
        assert!(again.unwrap_err().starts_with("the deadline "), "a retry in this process is told at once");
    }
}
