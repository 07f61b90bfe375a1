//! The envelope `type` field: KafClaw's set of message kinds.

use std::fmt;

/// Every envelope type of the wire format (KafClaw's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnvelopeType {
    /// A task request to an agent or the group.
    Request,
    /// The answer to a request.
    Response,
    /// A task's status change (accepted, in progress, completed, failed).
    TaskStatus,
    /// An agent joins or leaves the group.
    Announce,
    /// An agent is alive.
    Heartbeat,
    /// A trace span shared between agents.
    Trace,
    /// An audit record of a decision.
    Audit,
    /// A shared memory item.
    Memory,
    /// A request on a skill channel.
    SkillRequest,
    /// A response on a skill channel.
    SkillResponse,
    /// The group's roster / topic manifest.
    Roster,
    /// A step of the onboarding handshake.
    Onboard,
    /// A message for or from the orchestrator.
    Orchestrator,
    /// A record waits for a human decision (the `approve` operator, approval-gated tools).
    ApprovalRequest,
    /// A human decision on an `approval_request` (approved or rejected).
    Approval,
}

impl EnvelopeType {
    /// Every type, in wire order of the documentation.
    pub const ALL: [EnvelopeType; 15] = [
        Self::Request,
        Self::Response,
        Self::TaskStatus,
        Self::Announce,
        Self::Heartbeat,
        Self::Trace,
        Self::Audit,
        Self::Memory,
        Self::SkillRequest,
        Self::SkillResponse,
        Self::Roster,
        Self::Onboard,
        Self::Orchestrator,
        Self::ApprovalRequest,
        Self::Approval,
    ];

    /// The wire name (`task_status`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
            Self::TaskStatus => "task_status",
            Self::Announce => "announce",
            Self::Heartbeat => "heartbeat",
            Self::Trace => "trace",
            Self::Audit => "audit",
            Self::Memory => "memory",
            Self::SkillRequest => "skill_request",
            Self::SkillResponse => "skill_response",
            Self::Roster => "roster",
            Self::Onboard => "onboard",
            Self::Orchestrator => "orchestrator",
            Self::ApprovalRequest => "approval_request",
            Self::Approval => "approval",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The wire names joined for error messages.
    pub fn expected_list() -> String {
        Self::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for EnvelopeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
