//! Typed payloads, one per envelope type, with KafClaw's field names.
//!
//! KafClaw (Go) omits empty fields, so every field defaults. Fields this version does not
//! know are kept in `extra` and written back unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Envelope, EnvelopeError, EnvelopeType};

/// An agent's identity as announced to the group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentIdentity {
    /// Stable agent id.
    pub agent_id: String,
    /// Human-readable name.
    pub agent_name: String,
    /// One-line description of the agent.
    pub soul_summary: String,
    /// Skills the agent offers.
    pub capabilities: Vec<String>,
    /// Channels the agent listens on.
    pub channels: Vec<String>,
    /// Model the agent runs.
    pub model: String,
    /// When the agent joined (RFC 3339).
    pub joined_at: String,
    /// `active`, `idle`, …
    pub status: String,
    /// Parent agent, if spawned by one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parent_id: String,
    /// Zone the agent belongs to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub zone_id: String,
    /// Endpoint for direct calls.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// `orchestrator`, `worker` or `observer`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `announce` and `heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnnouncePayload {
    /// `join`, `leave` or `heartbeat`.
    pub action: String,
    /// Who is announcing.
    pub identity: AgentIdentity,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `request` and `skill_request`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskRequestPayload {
    /// The task.
    pub task_id: String,
    /// Short description.
    pub description: String,
    /// Full content.
    pub content: String,
    /// Who asked.
    pub requester_id: String,
    /// The task this one was delegated from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parent_task_id: String,
    /// How many delegations deep this task is (read by the rule of [`crate::envelope::wire`]: `3`,
    /// `3.0` and `"3"` are 3; `2.5`, `-1` or `true` are errors).
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "super::wire::de::delegation_depth")]
    pub delegation_depth: u32,
    /// The first requester of a delegation chain.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub original_requester_id: String,
    /// Deadline (RFC 3339, checked; kept as written).
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "super::wire::de::deadline_at")]
    pub deadline_at: String,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `response` and `skill_response`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskResponsePayload {
    /// The task answered.
    pub task_id: String,
    /// Who answered.
    pub responder_id: String,
    /// The answer.
    pub content: String,
    /// `completed`, `failed` or `rejected`.
    pub status: String,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `task_status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskStatusPayload {
    /// The task.
    pub task_id: String,
    /// Who reports.
    pub responder_id: String,
    /// `accepted`, `in_progress`, `completed`, `failed`.
    pub status: String,
    /// Free-text summary or reason.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `trace`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracePayload {
    /// W3C trace id.
    pub trace_id: String,
    /// W3C span id.
    pub span_id: String,
    /// Parent span id.
    pub parent_span_id: String,
    /// `llm`, `tool`, …
    pub span_type: String,
    /// Title of the span.
    pub title: String,
    /// Content of the span.
    pub content: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub ended_at: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `audit`: an event type and free details (KafClaw sends a flat map).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditPayload {
    /// What happened (`skill_registered`, `zone_violation`, …).
    pub event_type: String,
    /// The agent that decided.
    pub agent_id: String,
    /// Every other detail.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// Payload of `memory`: one shared memory item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryPayload {
    /// Stable id of the item.
    pub item_id: String,
    /// The text remembered.
    pub content: String,
    /// Free tags.
    pub tags: Vec<String>,
    /// Who wrote it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub author_id: String,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `onboard`: one step of the handshake.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnboardPayload {
    /// `onboard_request`, `onboard_challenge`, `onboard_response`, `onboard_complete`, `onboard_reject`.
    pub action: String,
    /// The agent asking to join.
    pub requester_id: String,
    /// The member answering.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sponsor_id: String,
    /// Identity of the requester.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<AgentIdentity>,
    /// Skills offered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// The sponsor's challenge.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub challenge: String,
    /// The requester's answer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub response: String,
    /// Why a request was rejected.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Fields this version does not know (the topic manifest among them).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `roster`: the group's topic manifest and members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RosterPayload {
    /// Manifest version.
    pub version: u64,
    /// Fields this version does not know (core and skill topics, members).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Payload of `orchestrator`: a command and its arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrchestratorPayload {
    /// What the orchestrator asks or reports.
    pub action: String,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The payload of an envelope, typed by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `request`.
    Request(TaskRequestPayload),
    /// `response`.
    Response(TaskResponsePayload),
    /// `task_status`.
    TaskStatus(TaskStatusPayload),
    /// `announce`.
    Announce(AnnouncePayload),
    /// `heartbeat`.
    Heartbeat(AnnouncePayload),
    /// `trace`.
    Trace(TracePayload),
    /// `audit`.
    Audit(AuditPayload),
    /// `memory`.
    Memory(MemoryPayload),
    /// `skill_request`.
    SkillRequest(TaskRequestPayload),
    /// `skill_response`.
    SkillResponse(TaskResponsePayload),
    /// `roster`.
    Roster(RosterPayload),
    /// `onboard`.
    Onboard(OnboardPayload),
    /// `orchestrator`.
    Orchestrator(OrchestratorPayload),
    /// `approval_request`.
    ApprovalRequest(super::approval::ApprovalRequestPayload),
    /// `approval`.
    Approval(super::approval::ApprovalPayload),
}

impl Envelope {
    /// Decodes the payload into the struct its `type` calls for. A field of the wrong type is
    /// an error naming `payload.<field>`.
    pub fn typed_payload(&self) -> Result<Payload, EnvelopeError> {
        fn de<T: serde::de::DeserializeOwned>(p: &super::LazyJson) -> Result<T, EnvelopeError> {
            // From the JSON text, not `from_value`: numbers keep their text (serde_json's
            // `arbitrary_precision`), and a `Value`'s integer above u64 reaches the buffer of a
            // `#[serde(flatten)]` struct as a u128, which serde's buffer refuses.
            let written;
            let text = match p.raw() {
                Some(t) if t.trim() != "null" => t,
                Some(_) => "{}",
                None if p.is_null() => "{}",
                None => {
                    written = serde_json::to_string(&**p).expect("a JSON value encodes");
                    &written
                }
            };
            serde_json::from_str(text).map_err(|e| {
                let m = e.to_string();
                // The position inside the payload's text says nothing the field name does not.
                let m = match m.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())) {
                    Some(short) => short.to_owned(),
                    None => m,
                };
                match m.split(EnvelopeError::MARK).collect::<Vec<_>>()[..] {
                    // A field reader (`wire::de`) named the field at fault.
                    ["", field, message] => EnvelopeError::field(field, message),
                    _ => EnvelopeError::field("payload", m),
                }
            })
        }
        let p = &self.payload;
        Ok(match self.kind {
            EnvelopeType::Request => Payload::Request(de(p)?),
            EnvelopeType::Response => Payload::Response(de(p)?),
            EnvelopeType::TaskStatus => Payload::TaskStatus(de(p)?),
            EnvelopeType::Announce => Payload::Announce(de(p)?),
            EnvelopeType::Heartbeat => Payload::Heartbeat(de(p)?),
            EnvelopeType::Trace => Payload::Trace(de(p)?),
            EnvelopeType::Audit => Payload::Audit(de(p)?),
            EnvelopeType::Memory => Payload::Memory(de(p)?),
            EnvelopeType::SkillRequest => Payload::SkillRequest(de(p)?),
            EnvelopeType::SkillResponse => Payload::SkillResponse(de(p)?),
            EnvelopeType::Roster => Payload::Roster(de(p)?),
            EnvelopeType::Onboard => Payload::Onboard(de(p)?),
            EnvelopeType::Orchestrator => Payload::Orchestrator(de(p)?),
            EnvelopeType::ApprovalRequest => Payload::ApprovalRequest(de(p)?),
            EnvelopeType::Approval => Payload::Approval(de(p)?),
        })
    }
}
