//! The gateway's Kafka side: publishes submitted tasks, and follows the group's answer topics
//! (responses, task statuses, skill responses, traces) into a bounded in-memory view, by
//! correlation id, and the group's `announce` topic into a [`Roster`] of live members.
//!
//! The reader assigns every partition of those topics itself (no consumer group) from the
//! records of the last `LOOKBACK`, so a restarted gateway still knows recent results; the
//! view keeps the latest answer of at most `MAX_TASKS` tasks and `MAX_SPANS` spans per trace,
//! dropping the oldest tasks first. One reader serves every route: each answer it applies is
//! also sent on [`TaskIo::events`] (a broadcast), so the gateway's A2A event streams follow
//! their tasks without a consumer of their own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafclaw_operators::api::record::{event_time_ms, now_ms};
use kafclaw_operators::envelope::{AnnouncePayload, Envelope, EnvelopeType};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::kafka::producer::{CALL_TIMEOUT, Logged, assign_since};
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::ensure_topic;

const LOOKBACK: Duration = Duration::from_secs(3600);
const MAX_TASKS: usize = 100_000;
const MAX_SPANS: usize = 1_000;
/// A member whose last announce or heartbeat is older than this is no longer live.
pub const MEMBER_TTL: Duration = Duration::from_secs(120);
/// Most members kept (a flood of made-up agent ids evicts the longest silent first).
const MAX_MEMBERS: usize = 10_000;
/// Most skills (capabilities) kept of one member's announce; names that could not be a topic
/// or an MCP tool name (`A-Z a-z 0-9 _ - .`, 1–128 characters) are left out.
pub const MAX_MEMBER_SKILLS: usize = 64;
/// Most characters of a member's name and summary kept (they reach public agent cards).
const MAX_SUMMARY_CHARS: usize = 1024;
/// Answers buffered for slow event streams (a stream that lags further re-reads the view).
const EVENTS: usize = 4096;

/// A member of the group, as its announces tell.
#[derive(Debug, Clone)]
pub struct Member {
    /// Who it is (`agent_id`, `agent_name`, `soul_summary`, `capabilities` = its skills, …).
    pub identity: kafclaw_operators::envelope::AgentIdentity,
    /// When it last announced or heartbeated (ms since the epoch, the envelope's timestamp).
    pub last_seen_ms: i64,
}

/// Whether `name` can name a skill: its topics (`group.<g>.skill.<name>.requests`) and an
/// MCP tool (`A-Z a-z 0-9 _ - .`, 1–128 characters).
pub fn valid_skill_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The group's members, from `group.<g>.announce`: a `join` announce or a heartbeat adds or
/// refreshes a member, a `leave` removes it, and a member silent for its TTL ([`MEMBER_TTL`]
/// unless [`Roster::set_ttl`] says otherwise) is not live (a killed instance stops
/// heartbeating).
#[derive(Debug)]
pub struct Roster {
    members: HashMap<String, Member>,
    ttl: Duration,
}

impl Default for Roster {
    fn default() -> Self {
        Self { members: HashMap::new(), ttl: MEMBER_TTL }
    }
}

impl Roster {
    /// How long a silent member stays live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Sets how long a silent member stays live (`kafclaw gateway --member-ttl`; at least
    /// 1 ms). Make it a few of the members' heartbeat intervals.
    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl.max(Duration::from_millis(1));
    }

    /// Applies an announce or heartbeat envelope.
    pub(crate) fn apply(&mut self, e: &Envelope) {
        let Ok(p) = serde_json::from_value::<AnnouncePayload>((*e.payload).clone()) else {
            tracing::debug!(sender_id = %e.sender_id, "announce without an identity; skipped");
            return;
        };
        let id = if p.identity.agent_id.is_empty() { e.sender_id.clone() } else { p.identity.agent_id.clone() };
        if p.action == "leave" {
            self.members.remove(&id);
            return;
        }
        // The writer's clock, never later than the reader's: an announce stamped in the future
        // would otherwise hide the member's later heartbeats and never expire.
        let now = now_ms();
        let seen = event_time_ms(&e.timestamp).unwrap_or(now).min(now);
        if self.members.get(&id).is_some_and(|m| m.last_seen_ms > seen) {
            return;
        }
        let mut identity = p.identity;
        identity.capabilities.retain(|c| valid_skill_name(c));
        identity.capabilities.truncate(MAX_MEMBER_SKILLS);
        for text in [&mut identity.agent_name, &mut identity.soul_summary] {
            if let Some((at, _)) = text.char_indices().nth(MAX_SUMMARY_CHARS) {
                text.truncate(at);
            }
        }
        self.members.insert(id, Member { identity, last_seen_ms: seen });
        if self.members.len() > MAX_MEMBERS {
            let ttl = self.ttl.as_millis() as i64;
            self.members.retain(|_, m| m.last_seen_ms + ttl >= now);
            while self.members.len() > MAX_MEMBERS {
                let oldest = self.members.iter().min_by_key(|(_, m)| m.last_seen_ms).map(|(k, _)| k.clone());
                let Some(k) = oldest else { break };
                self.members.remove(&k);
            }
        }
    }

    /// The members live at `now_ms`, by agent id.
    pub fn live(&self, now_ms: i64) -> Vec<&Member> {
        let ttl = self.ttl.as_millis() as i64;
        let mut out: Vec<&Member> = self.members.values().filter(|m| m.last_seen_ms + ttl >= now_ms).collect();
        out.sort_by(|a, b| a.identity.agent_id.cmp(&b.identity.agent_id));
        out
    }
}

/// Task statuses that end a task (A2A's terminal states, as docs/a2a-kafka.md maps them).
const FINAL_STATUSES: [&str; 6] = ["completed", "failed", "rejected", "canceled", "no_answer", "budget_exceeded"];

/// Whether the stored answer `v` ends its task: an answer (whose status, when it has one, is
/// not `input_required`: the task goes on with the caller's next message), or a terminal
/// `task_status`.
pub fn is_final(v: &Value) -> bool {
    let status = v["payload"]["status"].as_str();
    if v["type"] == "task_status" {
        status.is_some_and(|s| FINAL_STATUSES.contains(&s))
    } else {
        status != Some("input_required")
    }
}

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
                // The first final state stands (docs/a2a-kafka.md, "Final states"): nothing
                // after an answer or a terminal status replaces it — not a late `in_progress`,
                // not a contradicting second answer, not an answer after a cancel.
                if self.answers.get(&id).is_some_and(is_final) {
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
    /// The reader's consumer (polled by the reader thread; [`TaskIo::follow`] adds topics).
    consumer: Arc<BaseConsumer<Logged>>,
    /// The topics followed, and how to create one.
    followed: Mutex<HashSet<String>>,
    settings: ClientSettings,
    partitions: i32,
    /// What the reader has seen.
    pub view: Arc<Mutex<View>>,
    /// The group's members, from the announces the reader has seen (when it follows
    /// `group.<g>.announce`).
    pub roster: Arc<Mutex<Roster>>,
    /// Every answer (response, skill response, task status) the reader applies to the view,
    /// after applying it, as its envelope's JSON: subscribe, then read the view, and nothing
    /// is missed.
    pub events: broadcast::Sender<Arc<Value>>,
}

impl TaskIo {
    /// The client settings it connects with (the gateway's approvals routes use them too).
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

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
            .client_config(&[
                ("enable.idempotence", "true"),
                ("client.id", "kafclaw-gateway"),
                ("linger.ms", "0"),
                ("partitioner", "murmur2_random"),
            ])
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
        assign_since(&consumer, follow, since, false)?;
        let consumer = Arc::new(consumer);
        let reader = consumer.clone();
        let view = Arc::new(Mutex::new(View::default()));
        let roster = Arc::new(Mutex::new(Roster::default()));
        let (events, _) = broadcast::channel(EVENTS);
        let (v, r, tx) = (view.clone(), roster.clone(), events.clone());
        let apply = move |e: Envelope| match e.kind {
            EnvelopeType::Announce | EnvelopeType::Heartbeat => r.lock().unwrap_or_else(|p| p.into_inner()).apply(&e),
            EnvelopeType::Response | EnvelopeType::SkillResponse | EnvelopeType::TaskStatus => {
                v.lock().unwrap_or_else(|p| p.into_inner()).apply(&e);
                // No subscriber is not an error.
                let _ = tx.send(Arc::new(e.to_json()));
            }
            _ => v.lock().unwrap_or_else(|p| p.into_inner()).apply(&e),
        };
        std::thread::Builder::new()
            .name("kafclaw-gateway-reader".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match reader.poll(Duration::from_millis(200)) {
                        Some(Ok(m)) => match Envelope::decode(m.payload().unwrap_or_default()) {
                            Ok(e) => apply(e),
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
        let followed = Mutex::new(follow.iter().cloned().collect());
        Ok(Self { producer, consumer, followed, settings: settings.clone(), partitions, view, roster, events })
    }

    /// Follows `topic` too (read from the last `LOOKBACK`), on the same reader: its answers
    /// land in the same view and events. Nothing when already followed. A missing topic is
    /// created only when `create` says so (the caller checked the group has the skill's
    /// request topic: a name a member merely announced must not make topics), else an error.
    /// Blocking (metadata and offset lookups, up to `CALL_TIMEOUT`): call it off the async
    /// runtime.
    pub fn follow(&self, topic: &str, create: bool) -> Result<(), String> {
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        if followed.contains(topic) {
            return Ok(());
        }
        if create {
            ensure_topic(&self.settings, topic, self.partitions, -1, CALL_TIMEOUT).map_err(|e| e.to_string())?;
        }
        let since = std::time::SystemTime::now().checked_sub(LOOKBACK).unwrap_or(std::time::UNIX_EPOCH);
        assign_since(&self.consumer, &[topic.to_owned()], since, true)?;
        followed.insert(topic.to_owned());
        tracing::info!(topic, "the reader follows one more topic");
        Ok(())
    }

    /// Publishes `envelope` to `topic`, keyed by its correlation id.
    pub async fn submit(&self, topic: &str, envelope: &Envelope) -> Result<(), String> {
        self.publish(topic, envelope, &[]).await
    }

    /// Publishes `envelope` to `topic`, keyed by its correlation id, with record `headers`.
    pub async fn publish(&self, topic: &str, envelope: &Envelope, headers: &[(&str, &str)]) -> Result<(), String> {
        let payload = envelope.encode();
        let mut record = FutureRecord::to(topic).key(envelope.correlation_id.as_str()).payload(&payload);
        if !headers.is_empty() {
            let owned = headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(*value) }));
            record = record.headers(owned);
        }
        match self.producer.send(record, CALL_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(format!("publishing to `{topic}`: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: EnvelopeType, status: &str) -> Envelope {
        let payload = serde_json::json!({"task_id": "t", "status": status, "content": status});
        Envelope::new(kind, "t", "agent", "2026-12-01T10:00:00Z", payload)
    }

    fn status_after(steps: &[(EnvelopeType, &str)]) -> (String, String) {
        let mut view = View::default();
        for (kind, status) in steps {
            view.apply(&envelope(*kind, status));
        }
        let a = view.answer("t").unwrap();
        (a["type"].as_str().unwrap().to_owned(), a["payload"]["status"].as_str().unwrap().to_owned())
    }

    #[test]
    fn announces_are_bounded_and_cannot_come_from_the_future() {
        let announce = |id: &str, at: &str, skills: Vec<String>| {
            let payload = serde_json::json!({"action": "join", "identity": {"agent_id": id, "agent_name": "n".repeat(5000), "capabilities": skills}});
            Envelope::new(EnvelopeType::Announce, "a", id, at, payload)
        };
        let mut roster = Roster::default();
        let mut skills: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        skills.insert(0, "<script>".into());
        skills.insert(1, "a/../b".into());
        roster.apply(&announce("ghost", "2099-01-01T00:00:00Z", skills));
        let m = &roster.live(now_ms())[0];
        assert_eq!(m.identity.capabilities.len(), MAX_MEMBER_SKILLS);
        assert_eq!(m.identity.capabilities[0], "s0", "invalid names are left out");
        assert_eq!(m.identity.agent_name.chars().count(), MAX_SUMMARY_CHARS);
        assert!(m.last_seen_ms <= now_ms(), "a timestamp in the future counts as now");
        // So it expires like any other member.
        assert!(roster.live(now_ms() + MEMBER_TTL.as_millis() as i64 + 1).is_empty());
    }

    #[test]
    fn a_member_is_live_for_the_rosters_ttl_after_its_last_heartbeat() {
        let beat = |kind: EnvelopeType, action: &str, at: i64| {
            let payload =
                serde_json::json!({"action": action, "identity": {"agent_id": "a1", "capabilities": ["echo"]}});
            Envelope::new(kind, "a", "a1", kafclaw_operators::api::record::format_time_ms(at), payload)
        };
        let mut roster = Roster::default();
        assert_eq!(roster.ttl(), MEMBER_TTL);
        roster.set_ttl(Duration::from_secs(5));
        let t0 = now_ms() - 60_000;
        roster.apply(&beat(EnvelopeType::Announce, "join", t0));
        assert_eq!(roster.live(t0 + 5_000).len(), 1);
        assert!(roster.live(t0 + 5_001).is_empty(), "silent for longer than the TTL");
        roster.apply(&beat(EnvelopeType::Heartbeat, "heartbeat", t0 + 4_000));
        assert_eq!(roster.live(t0 + 9_000).len(), 1, "a heartbeat refreshes it");
        // An older heartbeat arriving late does not move it back.
        roster.apply(&beat(EnvelopeType::Heartbeat, "heartbeat", t0 + 1_000));
        assert_eq!(roster.live(t0 + 9_000).len(), 1);
        roster.apply(&beat(EnvelopeType::Announce, "leave", t0 + 5_000));
        assert!(roster.live(t0 + 5_000).is_empty(), "a leave removes it at once");
    }

    #[test]
    fn the_first_final_state_stands() {
        use EnvelopeType::{SkillResponse, TaskStatus};
        let s = |t: &str, st: &str| (t.to_owned(), st.to_owned());
        // Progress is replaced by what follows; the first answer or terminal status is not.
        assert_eq!(
            status_after(&[(TaskStatus, "accepted"), (TaskStatus, "in_progress")]),
            s("task_status", "in_progress")
        );
        assert_eq!(
            status_after(&[(TaskStatus, "in_progress"), (SkillResponse, "completed")]),
            s("skill_response", "completed")
        );
        assert_eq!(
            status_after(&[(SkillResponse, "completed"), (TaskStatus, "in_progress"), (SkillResponse, "failed")]),
            s("skill_response", "completed")
        );
        assert_eq!(
            status_after(&[(TaskStatus, "rejected"), (SkillResponse, "completed")]),
            s("task_status", "rejected")
        );
        assert_eq!(
            status_after(&[(TaskStatus, "canceled"), (SkillResponse, "completed")]),
            s("task_status", "canceled")
        );
        assert_eq!(status_after(&[(TaskStatus, "failed"), (TaskStatus, "completed")]), s("task_status", "failed"));
        // A turn that asks for input does not end the task: the next answer is read.
        assert_eq!(
            status_after(&[(SkillResponse, "input_required"), (SkillResponse, "completed")]),
            s("skill_response", "completed")
        );
    }
}
