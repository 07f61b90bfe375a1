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
//! max_handoffs = 2
//! ```
//! - **Zones.** An envelope without a `zone`, or in zone `public`, is for everyone. An
//!   envelope in any other zone (a `shared` zone several teams are members of, or a
//!   `private` one) is processed only by agents listed as its members (`zones`); anyone else
//!   drops it and writes a `zone_violation` audit envelope.
//! - **Delegation.** A task whose `payload.delegation_depth` exceeds `max_delegation_depth`
//!   is not processed: the requester gets a `task_status` `failed` with the reason, and an
//!   audit envelope records it.
//! - **Handoffs.** A handoff passes a task on to another agent as it is — the same
//!   `task_id`, `original_requester_id` still the first requester, `requester_id` the agent
//!   passing it — where a delegation (the `delegate` tool) makes a child task one level
//!   deeper and waits for it. Whoever hands a task off writes `payload.handoffs`, one more
//!   than it received (absent: 0). With `max_handoffs`, a request handed off more often is
//!   not processed: answered `failed` and audited (`too_many_handoffs`), like a delegation
//!   too deep; `handoffs` is then read by the same fail-closed rule as `delegation_depth`
//!   (`payload_unreadable` for `1.5`, `-1`, `true`, a repeated key).
//! - **Admission.** With `admitted = "<admissions operator>"`, an envelope whose sender has
//!   not been admitted to the group (onboarding) is dropped and audited (`not_admitted`).
//! - **Deadlines.** A task whose `payload.deadline_at` has passed is answered the same way.
//!   The deadline is judged by the clock when the task is processed (a replay judges again).
//!   It is the caller's first deadline: a `delegate` caller extends it while the agent
//!   working on the task reports progress, so it is judged on arrival only; a refusal the
//!   caller reads after its own deadline is dropped there as a late reply.
//! - **Unreadable fields.** The KafClaw fields of a task request (`task_id`,
//!   `parent_task_id`, `requester_id`, `original_requester_id`, `delegation_depth`,
//!   `deadline_at`) are read fail-closed by the rule of [`crate::envelope::wire`]: a
//!   `delegation_depth` of `3`, `3.0` or `"3"` is 3, but `2.5`, `-1`, `true` or a
//!   `deadline_at` that is not an RFC 3339 string cannot be read, and the task is answered
//!   `failed` and audited (`payload_unreadable`, with `details.field` and the reason) rather
//!   than processed as if the field were absent. So is one whose payload writes a guarded
//!   field twice (`{"delegation_depth":3,"delegation_depth":1}`: `details.field` names it).
//!   Empty strings read as absent for ids and times (KafClaw's Go zero value), an empty
//!   `zone` as none; keys are case-sensitive (`Delegation_Depth` is an unknown field).
//!
//! Outputs: the envelopes that pass; `refused` (the `failed` task statuses, correlated to the
//! task, for the requester); `audit` (one `audit` envelope per refusal).

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use std::sync::Arc;

use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Emit, Failure, Port, Ports, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::StateAccess;
use crate::envelope::EnvelopeType;
use crate::envelope::wire::{self, TaskFields, WireError};
use crate::group::onboard::SharedAdmissions;

/// The output of refused tasks' `failed` statuses.
pub const REFUSED: &str = "refused";
/// The output of audit envelopes.
pub const AUDIT: &str = "audit";
/// The port of [`REFUSED`] (after the default output).
pub const REFUSED_PORT: Port = Port(1);
/// The port of [`AUDIT`].
pub const AUDIT_PORT: Port = Port(2);

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
    /// Most handoffs accepted (`payload.handoffs`: how often the task was passed on as it
    /// is); none: no limit, and the field is not read.
    #[serde(default)]
    pub max_handoffs: Option<u32>,
    /// Whether a passed `payload.deadline_at` refuses the task.
    #[serde(default = "yes")]
    pub check_deadline: bool,
    /// An `admissions` operator: envelopes from senders it has not seen admitted to the group
    /// are dropped and audited (`not_admitted`).
    #[serde(default)]
    pub admitted: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

impl Kind for GuardConfig {
    /// The outputs: passed envelopes, `refused` and `audit`.
    fn ports(&self) -> Ports {
        Ports { default: true, named: vec![REFUSED.to_owned(), AUDIT.to_owned()] }
    }

    /// Builds the runtime half, with the set of the `admissions` operator named by `admitted`.
    fn build(&self, _: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        if self.agent.get_ref().is_empty() {
            return Err(vec![ConfigError::at(self.agent.span(), "`agent` must name this agent")]);
        }
        let admissions = match &self.admitted {
            None => None,
            Some(a) => match resources.get::<SharedAdmissions>(a.get_ref()) {
                Some(shared) => Some(shared),
                None => {
                    return Err(vec![
                        ConfigError::at(a.span(), format!("`{}` is not an admissions operator", a.get_ref()))
                            .with_hint(Some(
                                "name an operator of type \"admissions\" (over the onboarding topic)".into(),
                            )),
                    ]);
                }
            },
        };
        Ok(Built::Sync(Box::new(Guard {
            agent: self.agent.get_ref().clone(),
            zones: self.zones.clone(),
            max_depth: self.max_delegation_depth,
            max_handoffs: self.max_handoffs,
            check_deadline: self.check_deadline,
            admissions,
            clock: crate::api::record::now_ms,
        })))
    }
}

/// Runtime half of `guard`.
pub struct Guard {
    agent: String,
    zones: Vec<String>,
    max_depth: Option<u32>,
    max_handoffs: Option<u32>,
    check_deadline: bool,
    admissions: Option<Arc<SharedAdmissions>>,
    clock: fn() -> i64,
}

/// `payload.handoffs` of `payload` (absent: 0), read fail-closed: a whole number written
/// once.
fn handoffs(payload: &crate::envelope::LazyJson) -> Result<u32, WireError> {
    if let Some(text) = payload.source() {
        wire::repeated(text, &["handoffs"])?;
    }
    let read = wire::field(payload, "handoffs", |v| wire::whole(v, u64::from(u32::MAX)).map(|n| Some(n as u32)))?;
    Ok(read.unwrap_or(0))
}

/// Why a task is refused.
enum Refusal {
    /// Outside the agent's zones: dropped, audited.
    Zone(String),
    /// From a sender not admitted to the group: dropped, audited.
    NotAdmitted,
    /// Answered `failed`, audited; `field` names a payload field that could not be read.
    Task { event: &'static str, reason: String, field: Option<String> },
}

impl From<WireError> for Refusal {
    fn from(err: WireError) -> Self {
        Self::Task { event: "payload_unreadable", reason: err.to_string(), field: Some(err.field) }
    }
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
        let fields = match TaskFields::of(&e.payload) {
            Ok(f) => f,
            Err(err) => return Some(err.into()),
        };
        // Absent is KafClaw's `omitempty` zero; an unreadable depth was refused above.
        let depth = fields.delegation_depth.unwrap_or(0);
        if let Some(max) = self.max_depth
            && depth > max
        {
            return Some(Refusal::Task {
                event: "delegation_too_deep",
                reason: format!("delegation depth {depth} exceeds the limit of {max}"),
                field: None,
            });
        }
        if let Some(max) = self.max_handoffs {
            let hops = match handoffs(&e.payload) {
                Ok(n) => n,
                Err(err) => return Some(err.into()),
            };
            if hops > max {
                return Some(Refusal::Task {
                    event: "too_many_handoffs",
                    reason: format!("the task was handed off {hops} times, over the limit of {max}"),
                    field: None,
                });
            }
        }
        if self.check_deadline
            && let Some(at) = fields.deadline_at
            && at.ms < (self.clock)()
        {
            let reason = format!("the deadline {} has passed", at.text);
            return Some(Refusal::Task { event: "deadline_passed", reason, field: None });
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
        // Only a readable task id is repeated (an unreadable one is named by the reason).
        let task_id = wire::string_field(&e.payload, "task_id").ok().flatten().map(str::to_owned);
        let details = json!({
            "sender_id": e.sender_id,
            "type": e.kind.to_string(),
            "zone": e.zone,
            "task_id": task_id,
            "input_id": e.id,
        });
        match self.judge(&record) {
            None => out.emit(Port::DEFAULT, record),
            Some(Refusal::Zone(zone)) => {
                let mut d = details;
                d["reason"] = json!(format!("zone `{zone}` is not one of this agent's zones"));
                out.emit(AUDIT_PORT, self.audit(&record, "zone_violation", d));
            }
            Some(Refusal::NotAdmitted) => {
                let mut d = details;
                d["reason"] = json!("the sender is not an admitted member of the group");
                out.emit(AUDIT_PORT, self.audit(&record, "not_admitted", d));
            }
            Some(Refusal::Task { event, reason, field }) => {
                let mut d = details;
                d["reason"] = json!(reason);
                if let Some(field) = field {
                    d["field"] = json!(field);
                }
                out.emit(AUDIT_PORT, self.audit(&record, event, d));
                let mut status = record;
                status.envelope.kind = EnvelopeType::TaskStatus;
                status.envelope.sender_id = self.agent.clone();
                *status.envelope.payload =
                    json!({"task_id": task_id, "responder_id": self.agent, "status": "failed", "summary": reason});
                out.emit(REFUSED_PORT, status);
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
            max_handoffs: Some(1),
            check_deadline: true,
            admissions: None,
            clock: || 1_000_000,
        }
    }

    /// Outputs by port index (1: refused, 2: audit).
    fn run(envelope: Envelope) -> Vec<(usize, Record)> {
        let mut out = Emit::default();
        guard().process(Record::detached(envelope), &mut crate::api::state::NoState, &mut out).unwrap();
        out.drain().map(|(p, r)| (p.0, r)).collect()
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

    /// The guard's answer to a request with `payload`: (outputs, audit event, audit details,
    /// status summary).
    fn verdict(payload: Value) -> (Vec<usize>, String, Value, String) {
        judged(request(None, payload))
    }

    fn judged(envelope: Envelope) -> (Vec<usize>, String, Value, String) {
        let out = run(envelope);
        let ports = out.iter().map(|(p, _)| *p).collect();
        let audit = out.iter().find(|(p, _)| *p == 2).map(|(_, r)| r.envelope.payload.clone());
        let status = out.iter().find(|(p, _)| *p == 1).map(|(_, r)| r.envelope.payload.clone());
        let (audit, status) = (audit.unwrap_or_default(), status.unwrap_or_default());
        let event = audit["event_type"].as_str().unwrap_or_default().to_owned();
        let summary = status["summary"].as_str().unwrap_or_default().to_owned();
        (ports, event, audit["details"].clone(), summary)
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_depth_over_the_limit_is_refused_in_every_spelling() {
        for depth in [json!(3), json!(3.0), json!("3"), json!("3.0"), parsed("3e0"), parsed("30e-1")] {
            let (ports, event, details, summary) = verdict(json!({"task_id": "t", "delegation_depth": depth}));
            assert_eq!((ports, event.as_str()), (vec![2, 1], "delegation_too_deep"), "{depth}");
            assert_eq!(summary, "delegation depth 3 exceeds the limit of 2");
            assert_eq!(details["reason"], summary);
        }
        for depth in [json!(2), json!(2.0), json!("2"), json!(0), parsed("20e-1"), parsed("0.2e1")] {
            assert_eq!(verdict(json!({ "delegation_depth": depth })).0, [0], "{depth}");
        }
    }

    #[test]
    fn unreadable_fields_are_refused_and_audited_with_the_field() {
        let mut depths = vec![
            json!(-1),
            json!(2.5),
            json!(true),
            json!(null),
            json!([]),
            json!({}),
            json!(""),
            json!("abc"),
            json!("-1"),
            json!(" 3"),
            json!("+2"),
            parsed("-0"),
            parsed("18446744073709551616"),
            json!(4_294_967_296_u64),
        ];
        // Only with serde_json's `arbitrary_precision` can a payload hold 1e400.
        depths.extend(serde_json::from_str::<Value>("1e400").ok());
        for depth in depths {
            let (ports, event, details, summary) = verdict(json!({"task_id": "t", "delegation_depth": depth}));
            assert_eq!((ports, event.as_str()), (vec![2, 1], "payload_unreadable"), "{depth}");
            assert_eq!(details["field"], "payload.delegation_depth");
            assert!(summary.starts_with("`payload.delegation_depth`: expected a whole number"), "{summary}");
            assert_eq!(details["reason"], summary);
        }
        let (_, _, details, summary) = verdict(json!({"task_id": "t", "delegation_depth": 2.5}));
        assert_eq!(summary, "`payload.delegation_depth`: expected a whole number ≥ 0, got 2.5");
        assert_eq!(details["task_id"], "t");
        // Fractional by its text; without `arbitrary_precision` it reads as 3.0: refused either way.
        let (ports, ..) = verdict(json!({ "delegation_depth": parsed("3.0000000000000001") }));
        assert_eq!(ports, [2, 1]);

        for at in [json!(1_700_000_000), json!("tomorrow"), json!(["1970-01-01T00:20:00Z"]), json!(null)] {
            let (ports, event, details, summary) = verdict(json!({ "deadline_at": at }));
            assert_eq!((ports, event.as_str()), (vec![2, 1], "payload_unreadable"), "{at}");
            assert_eq!(details["field"], "payload.deadline_at");
            assert!(summary.starts_with("`payload.deadline_at`: expected an RFC 3339 time string, got "), "{summary}");
        }
        for task_id in [json!(7), json!({"id": "t"})] {
            let out = run(request(None, json!({ "task_id": task_id })));
            let (audit, status) = (&out[0].1.envelope.payload, &out[1].1.envelope.payload);
            assert_eq!(audit["details"]["field"], "payload.task_id");
            assert_eq!((&audit["details"]["task_id"], &status["task_id"]), (&Value::Null, &Value::Null));
        }
        // A readable request with the other fields KafClaw writes still passes.
        let full = json!({"task_id": "t", "parent_task_id": "", "requester_id": "bob", "delegation_depth": "1"});
        assert_eq!(verdict(full).0, [0]);
        // Responses are not judged on task fields.
        let mut response = request(None, json!({"delegation_depth": 2.5}));
        response.kind = EnvelopeType::Response;
        assert_eq!(judged(response).0, [0]);
    }

    #[test]
    fn decoded_payloads_are_judged_on_their_text() {
        let decoded = |payload: &str| {
            let text = format!(
                r#"{{"type":"request","correlation_id":"c","sender_id":"alice","timestamp":"1970-01-01T00:00:00Z","payload":{payload}}}"#
            );
            judged(Envelope::decode(text.as_bytes()).unwrap())
        };
        assert_eq!(decoded(r#"{"delegation_depth":30e-1}"#).1, "delegation_too_deep");
        assert_eq!(decoded(r#"{"delegation_depth":"3"}"#).1, "delegation_too_deep");
        assert_eq!(decoded(r#"{"delegation_depth":2.5}"#).1, "payload_unreadable");
        assert_eq!(decoded(r#"{"delegation_depth":20e-1}"#).0, [0]);
        // Needs serde_json's `arbitrary_precision`: without it the payload's text passes the
        // decoder but cannot be parsed, and `LazyJson` reads it as `null` (no fields at all).
        assert_eq!(decoded(r#"{"delegation_depth":1e400}"#).1, "payload_unreadable");
    }

    #[test]
    fn handoff_chains_are_bounded_and_read_fail_closed() {
        assert_eq!(verdict(json!({"task_id": "t", "handoffs": 1})).0, [0]);
        assert_eq!(verdict(json!({"task_id": "t"})).0, [0], "absent: never handed off");
        for hops in [json!(2), json!("2"), json!(2.0)] {
            let (ports, event, details, summary) = verdict(json!({"task_id": "t", "handoffs": hops}));
            assert_eq!((ports, event.as_str()), (vec![2, 1], "too_many_handoffs"), "{hops}");
            assert_eq!(summary, "the task was handed off 2 times, over the limit of 1");
            assert_eq!((details["reason"].as_str(), details["task_id"].as_str()), (Some(summary.as_str()), Some("t")));
        }
        for hops in [json!(1.5), json!(-1), json!(true), json!(null), json!("one")] {
            let (ports, event, details, _) = verdict(json!({"task_id": "t", "handoffs": hops}));
            assert_eq!((ports, event.as_str()), (vec![2, 1], "payload_unreadable"), "{hops}");
            assert_eq!(details["field"], "payload.handoffs");
        }
        let twice = Envelope::decode(
            br#"{"type":"request","correlation_id":"c","sender_id":"a","timestamp":"1970-01-01T00:00:00Z","payload":{"handoffs":5,"handoffs":0}}"#,
        )
        .unwrap();
        let (ports, event, details, _) = judged(twice);
        assert_eq!(
            (ports, event.as_str(), details["field"].as_str()),
            (vec![2, 1], "payload_unreadable", Some("payload.handoffs"))
        );
        // Without a limit the field is not read.
        let mut open = guard();
        open.max_handoffs = None;
        let mut out = Emit::default();
        let r = Record::detached(request(None, json!({"handoffs": true})));
        open.process(r, &mut crate::api::state::NoState, &mut out).unwrap();
        assert_eq!(out.drain().map(|(p, _)| p.0).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn a_guarded_field_written_twice_is_refused_whichever_copy_would_pass() {
        let decoded = |payload: &str| {
            let text = format!(
                r#"{{"type":"request","correlation_id":"c","sender_id":"alice","timestamp":"1970-01-01T00:00:00Z","payload":{payload}}}"#
            );
            judged(Envelope::decode(text.as_bytes()).unwrap())
        };
        for (payload, field) in [
            (r#"{"task_id":"t1","delegation_depth":3,"delegation_depth":1}"#, "payload.delegation_depth"),
            (r#"{"task_id":"t1","delegation_depth":1,"delegation_depth":1}"#, "payload.delegation_depth"),
            (r#"{"deadline_at":"1970-01-01T00:00:00Z","deadline_at":"2099-01-01T00:00:00Z"}"#, "payload.deadline_at"),
            (r#"{"task_id":"a","task_id":"b"}"#, "payload.task_id"),
            (r#"{"requester_id":"a","requester_id":"b"}"#, "payload.requester_id"),
        ] {
            let (ports, event, details, summary) = decoded(payload);
            assert_eq!((ports, event.as_str()), (vec![2, 1], "payload_unreadable"), "{payload}");
            assert_eq!(details["field"], field);
            assert_eq!(summary, format!("`{field}`: appears more than once in the payload"));
        }
        // Unguarded repeats, other spellings and nested objects are not refused.
        assert_eq!(decoded(r#"{"note":1,"note":2,"Delegation_Depth":9,"x":{"task_id":1,"task_id":2}}"#).0, [0]);
    }
}
