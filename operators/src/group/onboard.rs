//! Onboarding: who may take part in a group.
//!
//! `onboard` is the group's gatekeeper, reading `onboard` envelopes on
//! `group.<g>.control.onboarding` and writing its answers there:
//!
//! ```toml
//! [operators.gate]
//! type = "onboard"
//! inputs = ["onboarding"]
//! mode = "gated"                      # or "open"
//! secret_env = "KAFCLAW_GROUP_SECRET"
//! ```
//! - `open`: every `onboard_request` is admitted (`onboard_complete`).
//! - `gated`: an `onboard_request` gets an `onboard_challenge` (`payload.challenge`, derived
//!   by HMAC from the secret, the requester and the request, so a replay issues the same one);
//!   the requester proves it holds the group secret by answering `onboard_response` with
//!   `payload.response` = hex(HMAC-SHA256(secret, challenge)). The answer is checked in
//!   constant time against the challenge pending for that requester: right → admitted
//!   (`onboard_complete`), wrong or unasked → `onboard_reject`. Every decision is an `audit`
//!   envelope (output `audit`).
//!
//! Every field the decision reads (`action`, `requester_id`, `challenge`, `response`) is read
//! fail-closed ([`crate::envelope::wire`]): a value that is not a string, or a field written
//! twice, is refused with a reason naming the field — an `onboard_reject` when the requester
//! is known (`requester_id`, else the sender) and an `audit` (`onboard_unreadable`); the
//! requester's pending challenge is spent. An action that is not one of the five (spelling
//! and case exact: `Onboard_Request` is not one) is audited (`onboard_unknown_action`).
//! An admitted member is never sent an `onboard_reject` (that would evict it from every
//! `admissions`): its refusals are audited only.
//!
//! Decisions (`onboard_challenge`, `onboard_complete`, `onboard_reject`) are the gatekeeper's
//! own answers coming back on the topic it reads; they pass without effect. One from another
//! sender, or with its id but in a zone (its own have none), is forged: audited
//! (`onboard_forged`, naming the sender). Admitted requesters are kept in `<operator>.admitted`.
//!
//! `admissions` runs on every agent instance over the same topic, read as a global table
//! (`global = true`): it keeps the instance's set of admitted members from the decisions of
//! the gatekeeper (`gatekeeper = "<id>"` or a list, default `"gatekeeper"`, the `onboard`
//! default `agent`), which a `guard` with `admitted = "<operator>"` consults so that requests
//! from senders that are not admitted are dropped and audited. A decision from any other
//! sender, or in a zone, is refused (a dead letter naming the sender). The sender id is
//! what the writer says it is: what makes the rule binding is that only the gatekeeper's
//! principal may write the topic `admissions` reads (Kafka ACLs).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Cause, Emit, Failure, Port, Ports, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, TableSpec};
use crate::envelope::{EnvelopeType, wire};

/// The output of audit envelopes.
pub const AUDIT: &str = "audit";
/// The port of [`AUDIT`] (after the default output).
pub const AUDIT_PORT: Port = Port(1);

type HmacSha256 = Hmac<Sha256>;

/// hex(HMAC-SHA256(secret, message)).
pub fn sign(secret: &[u8], message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `answer` is exactly hex(HMAC-SHA256(secret, challenge)): 64 lowercase hex digits
/// as [`sign`] writes them (no spaces, no other case), the MAC compared in constant time.
pub fn verify(secret: &[u8], challenge: &str, answer: &str) -> bool {
    // The shape is public (it says nothing of the secret); the MAC is compared in constant time.
    if answer.len() != 64 || !answer.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return false;
    }
    let Ok(bytes) = hex::decode(answer) else { return false };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(challenge.as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

/// The actions of `onboard` envelopes: requests and responses from requesters, decisions
/// from the gatekeeper.
const REQUEST: &str = "onboard_request";
const RESPONSE: &str = "onboard_response";
const DECISIONS: [&str; 3] = ["onboard_challenge", "onboard_complete", "onboard_reject"];

/// Config half of `onboard`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardConfig {
    /// `open` (every request admitted) or `gated` (an HMAC challenge over the group secret).
    pub mode: Spanned<String>,
    /// Environment variable holding the group secret (`gated`); read when the operator is
    /// built, never logged.
    #[serde(default)]
    pub secret_env: Option<Spanned<String>>,
    /// The gatekeeper's id (the `sender_id` of its answers and audits).
    #[serde(default = "default_agent")]
    pub agent: String,
}

fn default_agent() -> String {
    "gatekeeper".to_owned()
}

impl OnboardConfig {
    /// The state tables of node `node`: the admitted requesters and the pending challenges.
    fn state_tables(node: &str) -> [TableSpec; 2] {
        [TableSpec::kept(format!("{node}.admitted")), TableSpec::kept(format!("{node}.challenges"))]
    }

    /// The runtime half of node `node`.
    fn onboard(&self, node: &str) -> Result<Onboard, Vec<ConfigError>> {
        let gated = match self.mode.get_ref().as_str() {
            "open" => false,
            "gated" => true,
            other => {
                return Err(vec![ConfigError::at(self.mode.span(), format!("mode `{other}`: \"open\" or \"gated\""))]);
            }
        };
        let secret = match (&self.secret_env, gated) {
            (Some(var), true) => std::env::var(var.get_ref()).ok().filter(|s| !s.is_empty()).map(|s| {
                crate::api::secrets::register(&s);
                s.into_bytes()
            }),
            (None, true) => {
                return Err(vec![ConfigError::at(
                    self.mode.span(),
                    "a gated group needs `secret_env`: the variable holding the group secret",
                )]);
            }
            _ => None,
        };
        let [admitted, challenges] = Self::state_tables(node);
        Ok(Onboard {
            gated,
            secret,
            secret_env: self.secret_env.as_ref().map(|v| v.get_ref().clone()).unwrap_or_default(),
            agent: self.agent.clone(),
            admitted,
            challenges,
        })
    }
}

impl Kind for OnboardConfig {
    /// The outputs: answers (challenge, complete, reject) and `audit`.
    fn ports(&self) -> Ports {
        Ports { default: true, named: vec![AUDIT.to_owned()] }
    }

    /// `<node>.admitted` and `<node>.challenges`.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        Self::state_tables(node).into()
    }

    /// Builds the runtime half (reads the group secret from `secret_env` now).
    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Sync(Box::new(self.onboard(node)?)))
    }
}

/// Runtime half of `onboard`.
pub struct Onboard {
    gated: bool,
    secret: Option<Vec<u8>>,
    secret_env: String,
    agent: String,
    admitted: TableSpec,
    challenges: TableSpec,
}

/// What a requester's envelope says, every field read fail-closed.
struct Asked<'a> {
    action: &'a str,
    challenge: &'a str,
    response: &'a str,
}

impl Onboard {
    fn answer(&self, record: &Record, action: &str, requester: &str, extra: Value) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Onboard;
        r.envelope.sender_id = self.agent.clone();
        // Decisions are group-wide: an `admissions` refuses one in a zone.
        r.envelope.zone = None;
        let mut payload = json!({"action": action, "requester_id": requester});
        if let (Some(p), Value::Object(e)) = (payload.as_object_mut(), extra) {
            p.extend(e);
        }
        *r.envelope.payload = payload;
        r
    }

    fn audit(&self, record: &Record, event: &str, requester: Option<&str>, reason: &str, extra: Value) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Audit;
        r.envelope.sender_id = self.agent.clone();
        let mut details = json!({
            "requester_id": requester, "reason": reason, "input_id": record.envelope.id,
            "sender_id": record.envelope.sender_id,
        });
        if let (Some(d), Value::Object(e)) = (details.as_object_mut(), extra) {
            d.extend(e);
        }
        *r.envelope.payload = json!({"event_type": event, "agent_id": self.agent, "details": details});
        r
    }

    fn is_admitted(&self, requester: &str, state: &mut dyn StateAccess) -> Result<bool, Cause> {
        Ok(state.get(&self.admitted.name, requester.as_bytes())?.is_some())
    }

    fn admit(
        &self,
        record: &Record,
        requester: &str,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Cause> {
        state.put(&self.admitted.name, requester.as_bytes(), record.envelope.timestamp.as_bytes())?;
        out.emit(Port::DEFAULT, self.answer(record, "onboard_complete", requester, json!({})));
        let reason = if self.gated { "right answer" } else { "open group" };
        out.emit(AUDIT_PORT, self.audit(record, "onboard_admitted", Some(requester), reason, json!({})));
        Ok(())
    }

    /// Refuses `requester`: an `onboard_reject` and an audit `event`; an admitted member is
    /// audited only (a reject would evict it from every `admissions`).
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &self,
        record: &Record,
        requester: &str,
        event: &str,
        reason: &str,
        extra: Value,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Cause> {
        if self.is_admitted(requester, state)? {
            let kept = format!("{reason} (already admitted: membership kept, no reject sent)");
            out.emit(AUDIT_PORT, self.audit(record, event, Some(requester), &kept, extra));
            return Ok(());
        }
        out.emit(Port::DEFAULT, self.answer(record, "onboard_reject", requester, json!({"reason": reason})));
        out.emit(AUDIT_PORT, self.audit(record, event, Some(requester), reason, extra));
        Ok(())
    }

    fn apply(&self, record: &Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Cause> {
        let e = &record.envelope;
        if e.kind != EnvelopeType::Onboard {
            return Err(Cause::Record(format!("onboarding reads `onboard` envelopes, not `{}`", e.kind)));
        }
        let p = &e.payload;
        // A guarded field written twice is unreadable; so is `requester_id` if it is the one.
        let repeated = wire::once(p).err();
        let requester = match (&repeated, p.source().map(|t| wire::repeated(t, &["requester_id"]))) {
            (Some(_), Some(Err(_))) => None,
            _ => match wire::string_field(p, "requester_id") {
                Ok(Some(r)) => Some(r),
                Ok(None) => Some(e.sender_id.as_str()).filter(|s| !s.is_empty()),
                Err(_) => None,
            },
        };
        let action = match wire::string_field(p, "action") {
            Ok(a) if repeated.as_ref().is_none_or(|r| r.field != "payload.action") => a.unwrap_or_default(),
            Ok(_) => return self.unreadable(record, requester, repeated.expect("matched"), state, out),
            Err(err) => return self.unreadable(record, requester, err, state, out),
        };
        if DECISIONS.contains(&action) {
            return Ok(self.decision(record, action, requester, out)?);
        }
        if action != REQUEST && action != RESPONSE {
            let reason = format!("unknown action {}: onboarding reads `{REQUEST}` and `{RESPONSE}`", json!(action));
            out.emit(
                AUDIT_PORT,
                self.audit(record, "onboard_unknown_action", requester, &reason, json!({"action": action})),
            );
            return Ok(());
        }
        let read = |key| wire::string_field(p, key).map(Option::unwrap_or_default);
        let asked = repeated.map_or(Ok(()), Err).and_then(|()| {
            wire::string_field(p, "requester_id")?;
            Ok(Asked { action, challenge: read("challenge")?, response: read("response")? })
        });
        let (asked, requester) = match (asked, requester) {
            (Ok(asked), Some(requester)) => (asked, requester),
            (Err(err), requester) => return self.unreadable(record, requester, err, state, out),
            (Ok(_), None) => {
                let reason = "`payload.requester_id`: the request names no requester";
                out.emit(AUDIT_PORT, self.audit(record, "onboard_unreadable", None, reason, json!({})));
                return Ok(());
            }
        };
        self.asked(record, &asked, requester, state, out)
    }

    fn asked(
        &self,
        record: &Record,
        asked: &Asked<'_>,
        requester: &str,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Cause> {
        let refused = "onboard_rejected";
        match asked.action {
            REQUEST if !self.gated => self.admit(record, requester, state, out),
            REQUEST => {
                let secret = self.secret()?;
                let seed = format!(
                    "challenge|{requester}|{}",
                    record.envelope.id.as_deref().unwrap_or(&record.envelope.timestamp)
                );
                let challenge = sign(secret, &seed);
                state.put(&self.challenges.name, requester.as_bytes(), challenge.as_bytes())?;
                out.emit(
                    Port::DEFAULT,
                    self.answer(record, "onboard_challenge", requester, json!({"challenge": challenge})),
                );
                Ok(())
            }
            _ if !self.gated => {
                let reason = "an open group asks no challenge: send `onboard_request`";
                self.reject(record, requester, refused, reason, json!({}), state, out)
            }
            _ => {
                let Some(pending) = state.get(&self.challenges.name, requester.as_bytes())? else {
                    let reason = "no challenge is pending for this requester";
                    return self.reject(record, requester, refused, reason, json!({}), state, out);
                };
                let secret = self.secret()?;
                let pending = String::from_utf8_lossy(&pending).into_owned();
                state.delete(&self.challenges.name, requester.as_bytes())?;
                if asked.challenge != pending {
                    let reason = "the answer is to another challenge";
                    self.reject(record, requester, refused, reason, json!({}), state, out)
                } else if verify(secret, &pending, asked.response) {
                    self.admit(record, requester, state, out)
                } else {
                    self.reject(record, requester, refused, "wrong answer to the challenge", json!({}), state, out)
                }
            }
        }
    }

    /// A field that cannot be read: the requester's pending challenge is spent, and it is
    /// rejected (when known) and audited with the reason naming the field.
    fn unreadable(
        &self,
        record: &Record,
        requester: Option<&str>,
        err: wire::WireError,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Cause> {
        let (reason, extra) = (err.to_string(), json!({"field": err.field}));
        match requester {
            Some(r) => {
                if self.gated {
                    state.delete(&self.challenges.name, r.as_bytes())?;
                }
                self.reject(record, r, "onboard_unreadable", &reason, extra, state, out)
            }
            None => {
                out.emit(AUDIT_PORT, self.audit(record, "onboard_unreadable", None, &reason, extra));
                Ok(())
            }
        }
    }

    /// A decision read back: the gatekeeper's own pass without effect; any other is forged
    /// and audited.
    fn decision(&self, record: &Record, action: &str, requester: Option<&str>, out: &mut Emit) -> Result<(), String> {
        let e = &record.envelope;
        // Its own pass (the admitted table is per partition: whether it made a decision with
        // its id is not told from it without false alarms).
        let why = if e.sender_id != self.agent {
            Some(format!("`{action}` from `{}`: only the gatekeeper `{}` decides", e.sender_id, self.agent))
        } else {
            let zone = e.zone.as_deref().filter(|z| !z.is_empty());
            zone.map(|zone| format!("`{action}` in zone `{zone}`: the gatekeeper's decisions have no zone"))
        };
        if let Some(why) = why {
            out.emit(AUDIT_PORT, self.audit(record, "onboard_forged", requester, &why, json!({"action": action})));
        }
        Ok(())
    }

    fn secret(&self) -> Result<&[u8], String> {
        self.secret.as_deref().ok_or_else(|| {
            format!("the group secret variable `{}` is not set: gated onboarding cannot answer", self.secret_env)
        })
    }
}

impl SyncOperator for Onboard {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        match self.apply(&record, state, out) {
            Ok(()) => Ok(()),
            Err(m) => Err(Failure::because(record, m)),
        }
    }
}

/// One instance's set of admitted members, shared by its tasks and the guards that name it.
#[derive(Debug, Default)]
pub struct SharedAdmissions {
    /// The `admissions` operator.
    pub name: String,
    members: RwLock<HashSet<String>>,
}

impl SharedAdmissions {
    /// An empty set.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self { name: name.to_owned(), members: RwLock::default() })
    }

    /// Whether `agent` is admitted.
    pub fn contains(&self, agent: &str) -> bool {
        self.members.read().unwrap_or_else(|p| p.into_inner()).contains(agent)
    }

    fn set(&self, agent: &str, admitted: bool) {
        let mut m = self.members.write().unwrap_or_else(|p| p.into_inner());
        if admitted {
            m.insert(agent.to_owned());
        } else {
            m.remove(agent);
        }
    }
}

/// One id or several (`gatekeeper = "gk"` or `gatekeeper = ["gk-1", "gk-2"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Ids {
    /// One id.
    One(String),
    /// Several ids.
    Many(Vec<String>),
}

/// Config half of `admissions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionsConfig {
    /// The sender id(s) whose decisions count: the `agent` of the group's `onboard`
    /// (default `"gatekeeper"`, its default). Decisions from anyone else are refused.
    #[serde(default)]
    pub gatekeeper: Option<Ids>,
}

impl AdmissionsConfig {
    /// The runtime half of node `node`, over the instance's set (`resources` holds it under
    /// the node's name). An empty id never matches: `gatekeeper = []` (or `""`) refuses every
    /// decision.
    fn admissions(&self, node: &str, resources: &Resources) -> Admissions {
        let mut gatekeepers = match &self.gatekeeper {
            None => vec![default_agent()],
            Some(Ids::One(id)) => vec![id.clone()],
            Some(Ids::Many(ids)) => ids.clone(),
        };
        gatekeepers.retain(|g| !g.is_empty());
        let shared = resources.get::<SharedAdmissions>(node).unwrap_or_else(|| SharedAdmissions::new(node));
        Admissions { shared, gatekeepers }
    }
}

impl Kind for AdmissionsConfig {
    /// The instance's set of admitted members, shared by its tasks and the guards that name
    /// the node (`admitted = "<node>"`).
    fn provides(&self, node: &str, resources: &mut Resources) {
        resources.insert(node, SharedAdmissions::new(node));
    }

    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Sync(Box::new(self.admissions(node, resources))))
    }
}

/// Runtime half of `admissions`: `onboard_complete` from the gatekeeper admits the
/// requester, `onboard_reject` (a later refusal) removes it; other envelopes pass without
/// effect. A decision from another sender (forged) or in a zone, or whose `payload.action`
/// or `payload.requester_id` cannot be read (not a string, written twice), or that names no
/// requester, fails the record (a dead letter naming the sender or the field) rather than
/// being skipped: a refusal that went unread would leave its member admitted.
pub struct Admissions {
    shared: Arc<SharedAdmissions>,
    gatekeepers: Vec<String>,
}

impl Admissions {
    fn decide(&self, e: &crate::envelope::Envelope) -> Result<(), String> {
        wire::once(&e.payload).map_err(|err| err.to_string())?;
        let admit = match wire::string_field(&e.payload, "action").map_err(|err| err.to_string())? {
            Some("onboard_complete") => true,
            Some("onboard_reject") => false,
            _ => return Ok(()),
        };
        let action = if admit { "onboard_complete" } else { "onboard_reject" };
        if !self.gatekeepers.contains(&e.sender_id) {
            return Err(format!(
                "forged decision refused: `{action}` from `{}`, who is not the gatekeeper ({})",
                e.sender_id,
                self.gatekeepers.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(zone) = e.zone.as_deref().filter(|z| !z.is_empty()) {
            return Err(format!(
                "decision refused: `{action}` from `{}` in zone `{zone}`: admission is group-wide",
                e.sender_id
            ));
        }
        match wire::string_field(&e.payload, "requester_id").map_err(|err| err.to_string())? {
            Some(agent) => self.shared.set(agent, admit),
            None => return Err("`payload.requester_id`: an admission decision names no requester".to_owned()),
        }
        Ok(())
    }
}

impl SyncOperator for Admissions {
    fn process(&mut self, record: Record, _: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        if record.envelope.kind == EnvelopeType::Onboard
            && let Err(m) = self.decide(&record.envelope)
        {
            return Err(Failure::because(record, m));
        }
        out.emit(Port::DEFAULT, record);
        Ok(())
    }
}

#[cfg(test)]
#[path = "onboard_tests.rs"]
mod tests;
