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
//! The gatekeeper's own answers come back on the topic it reads; they are not requests and
//! pass without effect. Admitted requesters are kept in `<operator>.admitted`.
//!
//! `admissions` runs on every agent instance over the same topic, read as a global table
//! (`global = true`): it keeps the instance's set of admitted members from the
//! `onboard_complete` envelopes, which a `guard` with `admitted = "<operator>"` consults so
//! that requests from senders that are not admitted are dropped and audited.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use toml::Spanned;

use crate::envelope::{EnvelopeType, wire};
use crate::operator::{ConfigError, Emit, Failure, Ports, SyncOperator};
use crate::record::Record;
use crate::state::{StateAccess, TableSpec};

/// The output of audit envelopes.
pub const AUDIT: &str = "audit";

type HmacSha256 = Hmac<Sha256>;

/// hex(HMAC-SHA256(secret, message)).
pub fn sign(secret: &[u8], message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `answer` is hex(HMAC-SHA256(secret, challenge)), compared in constant time.
pub fn verify(secret: &[u8], challenge: &str, answer: &str) -> bool {
    let Ok(bytes) = hex::decode(answer.trim()) else { return false };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(challenge.as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

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
    /// The outputs: answers (challenge, complete, reject) and `audit`.
    pub fn ports() -> Ports {
        Ports { default: true, named: vec![AUDIT.to_owned()] }
    }

    /// Builds the runtime half; its tables are `<name>.admitted` and `<name>.challenges`.
    pub fn build(&self, name: &str) -> Result<Onboard, Vec<ConfigError>> {
        let gated = match self.mode.get_ref().as_str() {
            "open" => false,
            "gated" => true,
            other => {
                return Err(vec![ConfigError::at(self.mode.span(), format!("mode `{other}`: \"open\" or \"gated\""))]);
            }
        };
        let secret = match (&self.secret_env, gated) {
            (Some(var), true) => std::env::var(var.get_ref()).ok().filter(|s| !s.is_empty()).map(String::into_bytes),
            (None, true) => {
                return Err(vec![ConfigError::at(
                    self.mode.span(),
                    "a gated group needs `secret_env`: the variable holding the group secret",
                )]);
            }
            _ => None,
        };
        Ok(Onboard {
            gated,
            secret,
            secret_env: self.secret_env.as_ref().map(|v| v.get_ref().clone()).unwrap_or_default(),
            agent: self.agent.clone(),
            admitted: TableSpec::kept(format!("{name}.admitted")),
            challenges: TableSpec::kept(format!("{name}.challenges")),
        })
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

impl Onboard {
    fn answer(&self, record: &Record, action: &str, requester: &str, extra: Value) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Onboard;
        r.envelope.sender_id = self.agent.clone();
        let mut payload = json!({"action": action, "requester_id": requester});
        if let (Some(p), Value::Object(e)) = (payload.as_object_mut(), extra) {
            p.extend(e);
        }
        *r.envelope.payload = payload;
        r
    }

    fn audit(&self, record: &Record, event: &str, requester: &str, reason: &str) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Audit;
        r.envelope.sender_id = self.agent.clone();
        *r.envelope.payload = json!({
            "event_type": event, "agent_id": self.agent,
            "details": {"requester_id": requester, "reason": reason, "input_id": record.envelope.id},
        });
        r
    }

    fn admit(
        &self,
        record: &Record,
        requester: &str,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), String> {
        state.put(&self.admitted.name, requester.as_bytes(), record.envelope.timestamp.as_bytes())?;
        out.emit(0, self.answer(record, "onboard_complete", requester, json!({})));
        out.emit(
            1,
            self.audit(record, "onboard_admitted", requester, if self.gated { "right answer" } else { "open group" }),
        );
        Ok(())
    }

    fn reject(&self, record: &Record, requester: &str, reason: &str, out: &mut Emit) {
        out.emit(0, self.answer(record, "onboard_reject", requester, json!({"reason": reason})));
        out.emit(1, self.audit(record, "onboard_rejected", requester, reason));
    }

    fn apply(&self, record: &Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), String> {
        let e = &record.envelope;
        if e.kind != EnvelopeType::Onboard {
            return Err(format!("onboarding reads `onboard` envelopes, not `{}`", e.kind));
        }
        // The fields the decision reads, fail-closed: one that is present but not a string
        // fails the record (dead letter naming it) instead of reading as absent.
        let text = |key| wire::string_field(&e.payload, key).map_err(|err| err.to_string());
        let (action, requester) = (text("action")?.unwrap_or_default(), text("requester_id")?);
        let (challenge, response) = (text("challenge")?.unwrap_or_default(), text("response")?.unwrap_or_default());
        let requester = requester.unwrap_or(&e.sender_id).to_owned();
        match action {
            "onboard_request" if !self.gated => self.admit(record, &requester, state, out),
            "onboard_request" => {
                let secret = self.secret()?;
                let seed = format!(
                    "challenge|{requester}|{}",
                    record.envelope.id.as_deref().unwrap_or(&record.envelope.timestamp)
                );
                let challenge = sign(secret, &seed);
                state.put(&self.challenges.name, requester.as_bytes(), challenge.as_bytes())?;
                out.emit(0, self.answer(record, "onboard_challenge", &requester, json!({"challenge": challenge})));
                Ok(())
            }
            "onboard_response" if self.gated => {
                let Some(pending) = state.get(&self.challenges.name, requester.as_bytes())? else {
                    self.reject(record, &requester, "no challenge is pending for this requester", out);
                    return Ok(());
                };
                let secret = self.secret()?;
                let pending = String::from_utf8_lossy(&pending).into_owned();
                state.delete(&self.challenges.name, requester.as_bytes())?;
                if challenge != pending {
                    self.reject(record, &requester, "the answer is to another challenge", out);
                } else if verify(secret, &pending, response) {
                    self.admit(record, &requester, state, out)?;
                } else {
                    self.reject(record, &requester, "wrong answer to the challenge", out);
                }
                Ok(())
            }
            // The gatekeeper's own answers, read back from the topic it writes.
            _ => Ok(()),
        }
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
            Err(m) => Err(Failure::new(record, m)),
        }
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.admitted.clone(), self.challenges.clone()]
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

/// Config half of `admissions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionsConfig {
    /// The instance's set, made by the compiler.
    #[serde(skip)]
    pub shared: Option<Arc<SharedAdmissions>>,
}

impl AdmissionsConfig {
    /// Builds the runtime half.
    pub fn build(&self, name: &str) -> Admissions {
        Admissions { shared: self.shared.clone().unwrap_or_else(|| SharedAdmissions::new(name)) }
    }
}

/// Runtime half of `admissions`: `onboard_complete` admits the requester, `onboard_reject`
/// (a later refusal) removes it; other envelopes pass without effect. A decision whose
/// `payload.action` or `payload.requester_id` cannot be read (not a string), or that names
/// no requester, fails the record (a dead letter naming the field) rather than being
/// skipped: a refusal that went unread would leave its member admitted.
pub struct Admissions {
    shared: Arc<SharedAdmissions>,
}

impl SyncOperator for Admissions {
    fn process(&mut self, record: Record, _: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let e = &record.envelope;
        if e.kind == EnvelopeType::Onboard {
            let admit = match wire::string_field(&e.payload, "action") {
                Ok(Some("onboard_complete")) => Some(true),
                Ok(Some("onboard_reject")) => Some(false),
                Ok(_) => None,
                Err(err) => return Err(Failure::new(record, err.to_string())),
            };
            if let Some(admit) = admit {
                match wire::string_field(&e.payload, "requester_id") {
                    Ok(Some(agent)) => self.shared.set(agent, admit),
                    Ok(None) => {
                        return Err(Failure::new(
                            record,
                            "`payload.requester_id`: an admission decision names no requester",
                        ));
                    }
                    Err(err) => return Err(Failure::new(record, err.to_string())),
                }
            }
        }
        out.emit(0, record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_answers_verify_and_wrong_ones_do_not() {
        let answer = sign(b"s3cret", "abc");
        assert_eq!(answer.len(), 64);
        assert!(verify(b"s3cret", "abc", &answer));
        assert!(!verify(b"other", "abc", &answer));
        assert!(!verify(b"s3cret", "abd", &answer));
        assert!(!verify(b"s3cret", "abc", "not hex"));
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn onboard(payload: Value) -> Record {
        let e = crate::envelope::Envelope::new(EnvelopeType::Onboard, "c", "bob", "1970-01-01T00:00:00Z", payload);
        Record::detached(e)
    }

    #[test]
    fn unreadable_decision_fields_fail_the_record() {
        let gate = OnboardConfig { mode: Spanned::new(0..0, "open".into()), secret_env: None, agent: default_agent() };
        let gate = gate.build("gate").unwrap();
        let apply = |p: Value| gate.apply(&onboard(p), &mut crate::state::NoState, &mut Emit::default());
        let refused = apply(json!({"action": "onboard_request", "requester_id": 5})).unwrap_err();
        assert_eq!(refused, "`payload.requester_id`: expected a string, got 5");
        assert!(apply(json!({"action": ["onboard_request"]})).unwrap_err().starts_with("`payload.action`"));
        assert!(
            apply(json!({"action": "onboard_response", "response": {}})).unwrap_err().starts_with("`payload.response`")
        );

        let shared = SharedAdmissions::new("admitted");
        let mut admissions = AdmissionsConfig { shared: Some(shared.clone()) }.build("admitted");
        let mut run = |p: Value| {
            admissions.process(onboard(p), &mut crate::state::NoState, &mut Emit::default()).map_err(|f| f.message)
        };
        run(json!({"action": "onboard_complete", "requester_id": "alice"})).unwrap();
        run(json!({"action": "onboard_request", "requester_id": 7, "identity": []})).unwrap();
        let unread = run(json!({"action": "onboard_reject", "requester_id": ["alice"]})).unwrap_err();
        assert_eq!(unread, r#"`payload.requester_id`: expected a string, got ["alice"]"#);
        assert!(run(json!({"action": "onboard_reject"})).unwrap_err().contains("names no requester"));
        assert!(run(json!({"action": true, "requester_id": "alice"})).unwrap_err().starts_with("`payload.action`"));
        assert!(shared.contains("alice"), "an unread refusal is a dead letter, not a removal");
        run(json!({"action": "onboard_reject", "requester_id": "alice", "identity": 3})).unwrap();
        assert!(!shared.contains("alice"));
    }
}
