//! Human approval on Kafka (docs/approvals.md): the group's two topics,
//! `group.<g>.approvals.requests` (`approval_request`, written by `approve` operators and
//! approval-gated tools) and `group.<g>.approvals.decisions` (`approval`, written here).
//!
//! - [`ledger`]: both topics read to their ends (no consumer group, nothing committed): each
//!   request with the decision its waiter takes, judged as the `approve` operator judges —
//!   the first readable one addressed to the request's `requester` (or to none), in the
//!   partition the request names — what `kafclaw approvals list` and `GET /v1/approvals`
//!   show; a decision addressed elsewhere neither shows nor blocks a real one. Two different
//!   requests ([`fingerprint`]) under one id are a forgery: the id shows `conflicting` and
//!   cannot be decided (its gated call refuses itself);
//! - [`decide`]: a decision written to the partition the request names (the one the waiting
//!   record's task reads), keyed by the request id, after checking the request exists and is
//!   neither decided nor expired — what `kafclaw approvals approve|reject` and
//!   `POST /v1/approvals/{id}/approve|reject` do;
//! - [`channel`]: the [`Approvals`](kafclaw_agent::tools::approval::Approvals) channel of an
//!   instance's approval-gated tools.
//!
//! The log is the arbiter: when two people decide at once, both decisions are written, and
//! every waiter takes the first one in its partition (later ones are audited and ignored).

pub mod channel;

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;

use kafclaw_operators::api::record::{event_time_ms, format_time_ms, now_ms};
use kafclaw_operators::envelope::approval::{
    ApprovalRequestPayload, Decision, Verdict, decisions_topic, requests_topic,
};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::{Value, json};

use kafclaw_agent::tools::approval::fingerprint;

use super::inspect::follow::{FollowOptions, Start, follow};
use super::inspect::{CALL_TIMEOUT, Capture};
use super::settings::ClientSettings;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for a person.
    Pending,
    /// Past its `expires_at` with no decision: its waiter decided by itself.
    Expired,
    /// Decided `approved`.
    Approved,
    /// Decided `rejected`.
    Rejected,
    /// Different requests were written under its id: nobody decides it.
    Conflicting,
}

impl Status {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Expired => "expired",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Conflicting => "conflicting",
        }
    }
}

/// One request as the log tells it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The `approval_request` envelope (the first one written under its id).
    pub request: Envelope,
    /// Its payload.
    pub payload: ApprovalRequestPayload,
    /// When it was asked (ms).
    pub requested_at_ms: i64,
    /// When its waiter stops waiting (ms), if ever.
    pub expires_at_ms: Option<i64>,
    /// The decision its waiter takes, if any, with when it was written (ms).
    pub decision: Option<(Decision, i64)>,
    /// A different request (or one that cannot be read) was written under the same id.
    pub conflict: bool,
}

impl Entry {
    /// Where it stands at `now_ms`.
    pub fn status(&self, now_ms: i64) -> Status {
        if self.conflict {
            return Status::Conflicting;
        }
        match &self.decision {
            Some((d, at)) if self.expires_at_ms.is_none_or(|e| *at < e) => match d.verdict {
                Verdict::Approved => Status::Approved,
                Verdict::Rejected => Status::Rejected,
            },
            _ if self.expires_at_ms.is_some_and(|e| e <= now_ms) => Status::Expired,
            // A decision written after the deadline is ignored by the waiter.
            Some(_) if self.expires_at_ms.is_some() => Status::Expired,
            _ => Status::Pending,
        }
    }

    /// The entry as JSON (`kafclaw approvals list --json`, `GET /v1/approvals`).
    pub fn to_json(&self, now_ms: i64) -> Value {
        let p = &self.payload;
        let mut v = json!({
            "request_id": p.request_id,
            "status": self.status(now_ms).as_str(),
            "agent": p.agent_id,
            "requester": p.requester,
            "summary": p.summary,
            "requested_at": p.requested_at,
            "age_s": (now_ms - self.requested_at_ms).max(0) / 1000,
            "expires_at": p.expires_at,
            "correlation_id": self.request.correlation_id,
        });
        if !p.tool.is_empty() {
            v["tool"] = json!(p.tool);
            v["arguments"] = p.arguments.clone().unwrap_or(Value::Null);
        }
        if let Some((d, at)) = &self.decision {
            v["decision"] = d.payload();
            v["decided_at"] = json!(format_time_ms(*at));
        }
        v
    }
}

/// Every request of a group, in request order, with its first decision.
#[derive(Debug, Default)]
pub struct Ledger {
    /// By request id.
    pub entries: BTreeMap<String, Entry>,
    /// Partitions of the decisions topic (0: it does not exist yet).
    pub decision_partitions: i32,
}

fn read_all(settings: &ClientSettings, topic: &str, mut on: impl FnMut(i32, &[u8])) -> Result<bool, String> {
    let stop = AtomicBool::new(false);
    let opts = FollowOptions { start: Start::Beginning, uncommitted: false, exit_at_end: true, stop: &stop };
    match follow(settings, topic, opts, |seen| {
        if let Some(v) = seen.value {
            on(seen.partition, v);
        }
        ControlFlow::Continue(())
    }) {
        Ok(()) => Ok(true),
        Err(e) if e.to_string().contains("does not exist") => Ok(false),
        Err(e) => Err(format!("reading `{topic}`: {e}")),
    }
}

/// Reads both topics of `group` to their ends.
pub fn ledger(settings: &ClientSettings, group: &str) -> Result<Ledger, String> {
    let mut ledger = Ledger::default();
    read_all(settings, &requests_topic(group), |_, bytes| {
        let Ok(e) = Envelope::decode(bytes) else { return };
        if e.kind != EnvelopeType::ApprovalRequest {
            return;
        }
        let read = serde_json::from_value::<ApprovalRequestPayload>((*e.payload).clone());
        let id = match &read {
            Ok(p) => p.request_id.clone(),
            Err(_) => e.payload.get("request_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        };
        if let Some(first) = ledger.entries.get_mut(&id) {
            // The first request stands; a different one under its id is a forgery.
            first.conflict |= !matches!(&read, Ok(p) if fingerprint(p) == fingerprint(&first.payload));
            return;
        }
        let Ok(payload) = read else { return };
        if payload.request_id.is_empty() {
            return;
        }
        ledger.entries.insert(id, entry(e, payload));
    })?;
    let mut partitions = -1;
    let mut decisions: HashMap<String, Vec<(i32, Decision, i64)>> = HashMap::new();
    let exists = read_all(settings, &decisions_topic(group), |p, bytes| {
        partitions = partitions.max(p);
        let Ok(e) = Envelope::decode(bytes) else { return };
        if e.kind != EnvelopeType::Approval {
            return;
        }
        let Ok(d) = Decision::read(&e.payload) else { return };
        let at = event_time_ms(&e.timestamp).unwrap_or(0);
        decisions.entry(d.request_id.clone()).or_default().push((p, d, at));
    })?;
    for (id, ds) in decisions {
        if let Some(entry) = ledger.entries.get_mut(&id) {
            entry.decision = taken(&entry.payload, ds);
        }
    }
    ledger.decision_partitions = match exists {
        true => crate::kafka::inspect::cluster::partition_counts(settings, &[&decisions_topic(group)])
            .map_err(|e| e.to_string())?
            .first()
            .copied()
            .flatten()
            .unwrap_or(0) as i32,
        false => 0,
    };
    Ok(ledger)
}

/// The entry of request `e` with payload `payload`, not decided yet.
fn entry(e: Envelope, payload: ApprovalRequestPayload) -> Entry {
    let requested_at_ms = event_time_ms(&payload.requested_at).or_else(|_| event_time_ms(&e.timestamp)).unwrap_or(0);
    let expires_at_ms = (!payload.expires_at.is_empty()).then(|| event_time_ms(&payload.expires_at).ok()).flatten();
    Entry { request: e, payload, requested_at_ms, expires_at_ms, decision: None, conflict: false }
}

/// The decision, of `decisions` on `request` (with their partitions, in the order read), that
/// its waiter takes, as the `approve` operator judges: the first in the partition the request
/// names (any, if none) addressed to its `requester` or to no one.
fn taken(request: &ApprovalRequestPayload, decisions: Vec<(i32, Decision, i64)>) -> Option<(Decision, i64)> {
    decisions
        .into_iter()
        .filter(|(p, _, _)| request.partition.is_none_or(|named| named == *p))
        .find(|(_, d, _)| d.requester.as_deref().is_none_or(|r| r == request.requester))
        .map(|(_, d, at)| (d, at))
}

/// Why a decision was not written.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No request has that id.
    #[error("no approval request `{0}` in the group (see `kafclaw approvals list`)")]
    NotFound(String),
    /// Someone decided it already.
    #[error("approval request `{id}` was already {status} by {approver}")]
    Decided {
        /// The request.
        id: String,
        /// `approved` or `rejected`.
        status: &'static str,
        /// Who.
        approver: String,
    },
    /// Different requests were written under the id: no decision on it can be trusted.
    #[error(
        "approval request `{0}` is conflicting: different requests were written under its id (a forgery, or a bug); it cannot be decided, and its call refuses itself"
    )]
    Conflicting(String),
    /// Its waiter stopped waiting.
    #[error("approval request `{0}` expired at {1}: its waiter decided by itself")]
    Expired(String, String),
    /// The request names a partition the decisions topic does not have, or the topic is missing.
    #[error("approval request `{id}`: {message}")]
    Layout {
        /// The request.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// Kafka failed (the infrastructure's fault).
    #[error("kafka: {0}")]
    Kafka(String),
}

/// Writes `verdict` on request `id` of `group` by `approver`, to the partition the request
/// names; returns the decision's payload.
pub fn decide(
    settings: &ClientSettings,
    group: &str,
    id: &str,
    verdict: Verdict,
    approver: &str,
    reason: &str,
) -> Result<Value, DecideError> {
    let ledger = ledger(settings, group).map_err(DecideError::Kafka)?;
    let entry = ledger.entries.get(id).ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
    let now = now_ms();
    match entry.status(now) {
        Status::Pending => {}
        Status::Expired => return Err(DecideError::Expired(id.to_owned(), entry.payload.expires_at.clone())),
        Status::Conflicting => return Err(DecideError::Conflicting(id.to_owned())),
        s => {
            let approver = entry.decision.as_ref().map(|(d, _)| d.approver.clone()).unwrap_or_default();
            return Err(DecideError::Decided { id: id.to_owned(), status: s.as_str(), approver });
        }
    }
    let topic = decisions_topic(group);
    let layout = |message: String| DecideError::Layout { id: id.to_owned(), message };
    if ledger.decision_partitions == 0 {
        return Err(layout(format!(
            "topic `{topic}` does not exist (its waiter creates it, or `kafclaw group create`)"
        )));
    }
    if let Some(p) = entry.payload.partition
        && !(0..ledger.decision_partitions).contains(&p)
    {
        return Err(layout(format!(
            "it names partition {p}, and `{topic}` has {} partitions: the decisions topic must be co-partitioned with the waiting operator's input",
            ledger.decision_partitions
        )));
    }
    let decision = Decision {
        request_id: id.to_owned(),
        verdict,
        approver: approver.to_owned(),
        reason: reason.to_owned(),
        requester: Some(entry.payload.requester.clone()),
    };
    let mut e = Envelope::new(
        EnvelopeType::Approval,
        entry.request.correlation_id.clone(),
        approver,
        format_time_ms(now),
        decision.payload(),
    );
    e.id = Some(format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)));
    e.causation_id = entry.request.id.clone();
    e.trace_id = entry.request.trace_id.clone();
    produce(settings, &topic, entry.payload.partition, id, &e.encode()).map_err(DecideError::Kafka)?;
    Ok(decision.payload())
}

/// Writes one record and waits for its acknowledgement.
fn produce(
    settings: &ClientSettings,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let capture = Capture::default();
    let producer: ThreadedProducer<Capture> = settings
        .client_config_with(&[("linger.ms", "0")], &[("enable.idempotence", "true")])
        .create_with_context(capture.clone())
        .map_err(|e| e.to_string())?;
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer.send(record).map_err(|(e, _)| e.to_string())?;
    producer.flush(CALL_TIMEOUT).map_err(|e| format!("{e}: {}", capture.reasons().join("; ")))?;
    match capture.delivered() {
        1 => Ok(()),
        _ => Err(format!("the decision was not acknowledged: {}", capture.reasons().join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_at_ms: Option<i64>, decision: Option<(Verdict, i64)>) -> Entry {
        let payload = ApprovalRequestPayload { request_id: "apr-1".into(), ..ApprovalRequestPayload::default() };
        let request = Envelope::new(EnvelopeType::ApprovalRequest, "c", "a", "2026-11-24T10:00:00Z", json!({}));
        let decision = decision.map(|(verdict, at)| {
            let d = Decision {
                request_id: "apr-1".into(),
                verdict,
                approver: "ana".into(),
                reason: String::new(),
                requester: None,
            };
            (d, at)
        });
        Entry { request, payload, requested_at_ms: 0, expires_at_ms, decision, conflict: false }
    }

    fn to(id: &str, requester: Option<&str>, approver: &str) -> Decision {
        let requester = requester.map(Into::into);
        Decision {
            request_id: id.into(),
            verdict: Verdict::Approved,
            approver: approver.into(),
            reason: String::new(),
            requester,
        }
    }

    #[test]
    fn the_decision_shown_is_the_one_its_waiter_takes() {
        let request = |partition| ApprovalRequestPayload {
            request_id: "apr-1".into(),
            requester: "shop/answer".into(),
            partition,
            ..ApprovalRequestPayload::default()
        };
        // A forged decision addressed elsewhere comes first: skipped, the real one counts.
        let ds =
            vec![(0, to("apr-1", Some("evil/node"), "mallory"), 1), (0, to("apr-1", Some("shop/answer"), "ana"), 2)];
        assert_eq!(taken(&request(None), ds).map(|(d, at)| (d.approver, at)), Some(("ana".into(), 2)));
        // Only the forged one: no decision (pending, decidable).
        assert!(taken(&request(None), vec![(0, to("apr-1", Some("evil/node"), "mallory"), 1)]).is_none());
        // A decision naming no requester counts, as for the operator.
        assert!(taken(&request(None), vec![(1, to("apr-1", None, "bob"), 1)]).is_some());
        // The request names partition 1: a decision on partition 0 never reaches its waiter.
        let ds = vec![(0, to("apr-1", None, "mallory"), 1), (1, to("apr-1", None, "ana"), 2)];
        assert_eq!(taken(&request(Some(1)), ds).map(|(d, _)| d.approver), Some("ana".into()));
        let mut conflicting = entry(None, Some((Verdict::Approved, 50)));
        conflicting.conflict = true;
        assert_eq!(conflicting.status(10), Status::Conflicting);
    }

    #[test]
    fn a_request_stands_by_its_first_decision_and_its_deadline() {
        assert_eq!(entry(None, None).status(10), Status::Pending);
        assert_eq!(entry(Some(100), None).status(99), Status::Pending);
        assert_eq!(entry(Some(100), None).status(100), Status::Expired);
        assert_eq!(entry(Some(100), Some((Verdict::Approved, 50))).status(500), Status::Approved);
        assert_eq!(entry(None, Some((Verdict::Rejected, 50))).status(500), Status::Rejected);
        // A decision written after the deadline does not count: the waiter decided first.
        assert_eq!(entry(Some(100), Some((Verdict::Approved, 150))).status(120), Status::Expired);
        let shown = entry(Some(100), Some((Verdict::Approved, 50))).to_json(1_000);
        assert_eq!((shown["status"].as_str(), shown["age_s"].as_i64()), (Some("approved"), Some(1)));
        assert_eq!(shown["decision"]["approver"], "ana");
    }
}
