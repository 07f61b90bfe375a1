//! `guard`: the receiving agent's checks, enforced before anything is processed — zones,
//! delegation depth and deadlines.
//!
//! ```toml
//! [operators.guard]
//! type = "guard"
//! inputs = ["requests"]
//! agent = "billing"
//! zones = ["finance"]            # the zones this agent is a member of
//! max_delegation_depth = 3
//! ```
//! - **Zones.** An envelope without a `zone`, or in zone `public`, is for everyone. An
//!   envelope in any other zone (a `shared` zone several teams are members of, or a
//!   `private` one) is processed only by agents listed as its members (`zones`); anyone else
//!   drops it and writes a `zone_violation` audit envelope.
//! - **Delegation.** A task whose `payload.delegation_depth` exceeds `max_delegation_depth`
//!   is not processed: the requester gets a `task_status` `failed` with the reason, and an
//!   audit envelope records it.
//! - **Admission.** With `admitted = "<admissions operator>"`, an envelope whose sender has
//!   not been admitted to the group (onboarding) is dropped and audited (`not_admitted`).
//! - **Deadlines.** A task whose `payload.deadline_at` has passed is answered the same way.
//!   The deadline is judged by the clock when the task is processed (a replay judges again).
//!
//! Outputs: the envelopes that pass; `refused` (the `failed` task statuses, correlated to the
//! task, for the requester); `audit` (one `audit` envelope per refusal).

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use std::sync::Arc;

use crate::envelope::EnvelopeType;
use crate::onboard::SharedAdmissions;
use crate::operator::{ConfigError, Emit, Failure, Ports, SyncOperator};
use crate::record::{Record, event_time_ms};
use crate::state::StateAccess;

/// The output of refused tasks' `failed` statuses.
pub const REFUSED: &str = "refused";
/// The output of audit envelopes.
pub const AUDIT: &str = "audit";

/// Config half of `guard`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// This agent's id, named in statuses and audits.
    pub agent: Spanned<String>,
    /// The zones this agent is a member of (besides `public`).
    #[serde(default)]
    pub zones: Vec<String>,
    /// Deepest delegation accepted (`payload.delegation_depth`); none: no limit.
    #[serde(default)]
    pub max_delegation_depth: Option<u32>,
    /// Whether a passed `payload.deadline_at` refuses the task.
    #[serde(default = "yes")]
    pub check_deadline: bool,
    /// An `admissions` operator: envelopes from senders it has not seen admitted to the group
    /// are dropped and audited (`not_admitted`).
    #[serde(default)]
    pub admitted: Option<Spanned<String>>,
    /// The admissions, resolved by the compiler.
    #[serde(skip)]
    pub admissions: Option<Arc<SharedAdmissions>>,
}

fn yes() -> bool {
    true
}

impl GuardConfig {
    /// The outputs: passed envelopes, `refused` and `audit`.
    pub fn ports() -> Ports {
        Ports { default: true, named: vec![REFUSED.to_owned(), AUDIT.to_owned()] }
    }

    /// Builds the runtime half.
    pub fn build(&self) -> Result<Guard, Vec<ConfigError>> {
        if self.agent.get_ref().is_empty() {
            return Err(vec![ConfigError::at(self.agent.span(), "`agent` must name this agent")]);
        }
        if let (Some(a), None) = (&self.admitted, &self.admissions) {
            return Err(vec![
                ConfigError::at(a.span(), format!("`{}` is not an admissions operator", a.get_ref()))
                    .with_hint(Some("name an operator of type \"admissions\" (over the onboarding topic)".into())),
            ]);
        }
        Ok(Guard {
            agent: self.agent.get_ref().clone(),
            zones: self.zones.clone(),
            max_depth: self.max_delegation_depth,
            check_deadline: self.check_deadline,
            admissions: self.admissions.clone(),
            clock: crate::record::now_ms,
        })
    }
}

/// Runtime half of `guard`.
pub struct Guard {
    agent: String,
    zones: Vec<String>,
    max_depth: Option<u32>,
    check_deadline: bool,
    admissions: Option<Arc<SharedAdmissions>>,
    clock: fn() -> i64,
}

/// Why a task is refused.
enum Refusal {
    /// Outside the agent's zones: dropped, audited.
    Zone(String),
    /// From a sender not admitted to the group: dropped, audited.
    NotAdmitted,
    /// Answered `failed`, audited.
    Task { event: &'static str, reason: String },
}

impl Guard {
    fn judge(&self, record: &Record) -> Option<Refusal> {
        let e = &record.envelope;
        if self.admissions.as_ref().is_some_and(|a| !a.contains(&e.sender_id)) {
            return Some(Refusal::NotAdmitted);
        }
        if let Some(zone) = e.zone.as_deref().filter(|z| !z.is_empty() && *z != "public")
            && !self.zones.iter().any(|z| z == zone)
        {
            return Some(Refusal::Zone(zone.to_owned()));
        }
        if !matches!(e.kind, EnvelopeType::Request | EnvelopeType::SkillRequest) {
            return None;
        }
        let depth = e.payload.get("delegation_depth").and_then(Value::as_u64).unwrap_or(0);
        if let Some(max) = self.max_depth
            && depth > u64::from(max)
        {
            return Some(Refusal::Task {
                event: "delegation_too_deep",
                reason: format!("delegation depth {depth} exceeds the limit of {max}"),
            });
        }
        if self.check_deadline
            && let Some(at) = e.payload.get("deadline_at").and_then(Value::as_str).filter(|s| !s.is_empty())
        {
            match event_time_ms(at) {
                Ok(t) if t < (self.clock)() => {
                    return Some(Refusal::Task {
                        event: "deadline_passed",
                        reason: format!("the deadline {at} has passed"),
                    });
                }
                Ok(_) => {}
                Err(_) => {
                    return Some(Refusal::Task {
                        event: "deadline_unreadable",
                        reason: format!("`payload.deadline_at` `{at}` is not an RFC 3339 time"),
                    });
                }
            }
        }
        None
    }

    fn audit(&self, record: &Record, event: &str, details: Value) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Audit;
        r.envelope.sender_id = self.agent.clone();
        *r.envelope.payload = json!({"event_type": event, "agent_id": self.agent, "details": details});
        r
    }
}

impl SyncOperator for Guard {
    fn process(&mut self, record: Record, _: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let e = &record.envelope;
        let details = json!({
            "sender_id": e.sender_id,
            "type": e.kind.to_string(),
            "zone": e.zone,
            "task_id": e.payload.get("task_id"),
            "input_id": e.id,
        });
        match self.judge(&record) {
            None => out.emit(0, record),
            Some(Refusal::Zone(zone)) => {
                let mut d = details;
                d["reason"] = json!(format!("zone `{zone}` is not one of this agent's zones"));
                out.emit(2, self.audit(&record, "zone_violation", d));
            }
            Some(Refusal::NotAdmitted) => {
                let mut d = details;
                d["reason"] = json!("the sender is not an admitted member of the group");
                out.emit(2, self.audit(&record, "not_admitted", d));
            }
            Some(Refusal::Task { event, reason }) => {
                let mut d = details;
                d["reason"] = json!(reason);
                out.emit(2, self.audit(&record, event, d));
                let mut status = record;
                let task_id = status.envelope.payload.get("task_id").cloned().unwrap_or(Value::Null);
                status.envelope.kind = EnvelopeType::TaskStatus;
                status.envelope.sender_id = self.agent.clone();
                *status.envelope.payload =
                    json!({"task_id": task_id, "responder_id": self.agent, "status": "failed", "summary": reason});
                out.emit(1, status);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    fn guard() -> Guard {
        Guard {
            agent: "billing".into(),
            zones: vec!["finance".into()],
            max_depth: Some(2),
            check_deadline: true,
            admissions: None,
            clock: || 1_000_000,
        }
    }

    fn run(envelope: Envelope) -> Vec<(usize, Record)> {
        let mut out = Emit::default();
        guard().process(Record::detached(envelope), &mut crate::state::NoState, &mut out).unwrap();
        out.drain().collect()
    }

    fn request(zone: Option<&str>, payload: Value) -> Envelope {
        let mut e = Envelope::new(EnvelopeType::Request, "c", "alice", "1970-01-01T00:00:00Z", payload);
        e.zone = zone.map(str::to_owned);
        e
    }

    #[test]
    fn zones_depth_and_deadlines() {
        let passed = |o: &[(usize, Record)]| o.len() == 1 && o[0].0 == 0;
        assert!(passed(&run(request(None, json!({"task_id": "t"})))));
        assert!(passed(&run(request(Some("public"), json!({})))));
        assert!(passed(&run(request(Some("finance"), json!({})))));
        assert!(passed(&run(request(None, json!({"delegation_depth": 2, "deadline_at": "1970-01-01T00:20:00Z"})))));

        let zone = run(request(Some("hr-private"), json!({"task_id": "t"})));
        assert_eq!(zone.len(), 1);
        assert_eq!(zone[0].0, 2, "audited only");
        assert_eq!(zone[0].1.envelope.payload["event_type"], "zone_violation");

        let deep = run(request(None, json!({"task_id": "t", "delegation_depth": 3})));
        assert_eq!(deep.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2, 1]);
        let status = &deep[1].1.envelope;
        assert_eq!((status.kind, status.payload["status"].as_str()), (EnvelopeType::TaskStatus, Some("failed")));
        assert_eq!(status.payload["summary"], "delegation depth 3 exceeds the limit of 2");
        assert_eq!(status.payload["task_id"], "t");

        let late = run(request(None, json!({"task_id": "t", "deadline_at": "1970-01-01T00:01:00Z"})));
        assert_eq!(late[1].1.envelope.payload["summary"], "the deadline 1970-01-01T00:01:00Z has passed");
        assert_eq!(late[0].1.envelope.payload["event_type"], "deadline_passed");
    }
}
