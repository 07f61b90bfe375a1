//! Payloads of `approval_request` and `approval` (human approval, docs/approvals.md), and the
//! fail-closed reading of a decision.
//!
//! An `approval_request` is written by whoever waits (an `approve` operator, an
//! approval-gated tool of an `llm` operator) to `group.<g>.approvals.requests`, keyed by its
//! `request_id`. An `approval` is written by a person (`kafclaw approvals approve|reject`,
//! the gateway's `/v1/approvals` routes) to `group.<g>.approvals.decisions`, keyed by the same
//! id, **to the partition the request names** (`partition`): the one the waiting record's
//! task reads.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::LazyJson;
use super::wire::{self, WireError};

/// The suffix of a group's approval requests topic: `group.<g>.approvals.requests`.
pub const REQUESTS_SUFFIX: &str = "approvals.requests";
/// The suffix of a group's approval decisions topic: `group.<g>.approvals.decisions`.
pub const DECISIONS_SUFFIX: &str = "approvals.decisions";

/// `group.<group>.approvals.requests`.
pub fn requests_topic(group: &str) -> String {
    format!("group.{group}.{REQUESTS_SUFFIX}")
}

/// `group.<group>.approvals.decisions`.
pub fn decisions_topic(group: &str) -> String {
    format!("group.{group}.{DECISIONS_SUFFIX}")
}

/// Payload of `approval_request`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApprovalRequestPayload {
    /// Deterministic id: derived from the waiting input's coordinates and the node (or from
    /// a tool call's idempotency key), so a rerun asks under the same id.
    pub request_id: String,
    /// Who waits: `<topology>/<node>`; a decision names it back, and only that waiter acts
    /// on it.
    pub requester: String,
    /// The agent (topology) that asks.
    pub agent_id: String,
    /// One line for the person deciding.
    pub summary: String,
    /// The partition of the decisions topic the decision must be written to (the waiting
    /// record's task reads that one); absent: any partition (the waiter reads them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// When the request was made (RFC 3339).
    pub requested_at: String,
    /// When the waiter stops waiting and decides by itself (RFC 3339); empty: never.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expires_at: String,
    /// The gated tool, for a tool call.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tool: String,
    /// The gated tool call's arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `approval`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApprovalPayload {
    /// The request decided.
    pub request_id: String,
    /// `approved` or `rejected`.
    pub decision: String,
    /// Who decided (the CLI's user, the gateway token's sender id).
    pub approver: String,
    /// Why (free text; may be empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The waiter the request named (`<topology>/<node>`).
    pub requester: String,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A decision: approved or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The waiting step goes on.
    Approved,
    /// The waiting step does not run.
    Rejected,
}

impl Verdict {
    /// The wire word (`approved`, `rejected`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }
}

/// An `approval` read by the rule of [`wire`]: every field a waiter decides on present
/// once and of the right type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The request decided.
    pub request_id: String,
    /// What was decided.
    pub verdict: Verdict,
    /// Who decided (empty when the writer did not say).
    pub approver: String,
    /// Why (may be empty).
    pub reason: String,
    /// The waiter it is addressed to (`None`: not said).
    pub requester: Option<String>,
}

/// The fields of an `approval` a waiter decides on.
const DECIDING: &[&str] = &["request_id", "decision", "requester", "approver"];

impl Decision {
    /// Reads the payload of an `approval` envelope.
    ///
    /// Errors: a message naming the field at fault: `request_id` missing, `decision` missing
    /// or neither `approved` nor `rejected`, a field that is not a string or is written twice.
    pub fn read(payload: &LazyJson) -> Result<Self, String> {
        let text = |e: WireError| e.to_string();
        if let Some(source) = payload.source() {
            wire::repeated(source, DECIDING).map_err(text)?;
        }
        let p: &Value = payload;
        let request_id =
            wire::string_field(p, "request_id").map_err(text)?.ok_or("`payload.request_id` is missing")?.to_owned();
        let verdict = match wire::string_field(p, "decision").map_err(text)? {
            Some("approved") => Verdict::Approved,
            Some("rejected") => Verdict::Rejected,
            Some(other) => {
                return Err(format!("`payload.decision`: expected `approved` or `rejected`, got `{other}`"));
            }
            None => return Err("`payload.decision` is missing".to_owned()),
        };
        let approver = wire::string_field(p, "approver").map_err(text)?.unwrap_or_default().to_owned();
        let reason = wire::string_field(p, "reason").map_err(text)?.unwrap_or_default().to_owned();
        let requester = wire::string_field(p, "requester").map_err(text)?.map(str::to_owned);
        Ok(Self { request_id, verdict, approver, reason, requester })
    }

    /// The payload of an `approval` envelope carrying this decision.
    pub fn payload(&self) -> Value {
        let mut p = serde_json::json!({
            "request_id": self.request_id,
            "decision": self.verdict.as_str(),
            "approver": self.approver,
        });
        if !self.reason.is_empty() {
            p["reason"] = Value::from(self.reason.clone());
        }
        if let Some(r) = &self.requester {
            p["requester"] = Value::from(r.clone());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Decision, String> {
        Decision::read(&LazyJson::from_raw(serde_json::value::RawValue::from_string(text.to_owned()).unwrap()))
    }

    #[test]
    fn decisions_are_read_fail_closed() {
        let d =
            read(r#"{"request_id":"apr-1","decision":"rejected","approver":"ana","reason":"no","requester":"t/n"}"#)
                .unwrap();
        assert_eq!((d.verdict, d.approver.as_str(), d.requester.as_deref()), (Verdict::Rejected, "ana", Some("t/n")));
        assert_eq!(read(&d.payload().to_string()).unwrap(), d);
        assert!(read(r#"{"decision":"approved"}"#).unwrap_err().contains("request_id"));
        assert!(read(r#"{"request_id":"a","decision":"yes"}"#).unwrap_err().contains("`yes`"));
        assert!(read(r#"{"request_id":"a"}"#).unwrap_err().contains("decision` is missing"));
        assert!(read(r#"{"request_id":7,"decision":"approved"}"#).unwrap_err().contains("payload.request_id"));
        let twice = read(r#"{"request_id":"a","decision":"rejected","decision":"approved"}"#).unwrap_err();
        assert!(twice.contains("payload.decision"), "{twice}");
    }
}
