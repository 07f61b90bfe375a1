//! `roster`: who is in the group, from its `announce` and `heartbeat` envelopes.
//!
//! ```toml
//! [operators.roster]
//! type = "roster"
//! inputs = ["announce"]
//! ttl = "15s"
//! ```
//! Members are kept in the state table `<operator>.members`, keyed by agent id. Every
//! `announce` (join) and `heartbeat` refreshes the member and emits a `roster` envelope for
//! it (status `active`, with `last_seen` and `ttl_ms`); a `leave` removes it (status `left`);
//! a member not heard from for `ttl` (in event time: the envelopes' timestamps) is removed
//! with status `expired` when the next envelope shows the time has passed. Every roster
//! envelope is keyed by the member's agent id (`correlation_id`), so a compacted topic of them
//! (`group.<g>.control.roster`) holds each member's latest entry; a reader may also judge
//! liveness itself from `last_seen + ttl_ms`, as `kafclaw group members` does, so a dead agent
//! drops out with no operator action even when nobody else speaks.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::parse_duration_ms;
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Cause, Emit, Failure, Port, SyncOperator};
use crate::api::record::{Record, format_time_ms};
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, TableSpec};
use crate::envelope::{AnnouncePayload, EnvelopeType, Payload};

/// Config half of `roster`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterConfig {
    /// How long a member stays after its last announce or heartbeat (event time); three
    /// heartbeat intervals is usual.
    #[serde(default = "default_ttl")]
    pub ttl: Spanned<String>,
}

fn default_ttl() -> Spanned<String> {
    Spanned::new(0..0, "15s".to_owned())
}

impl RosterConfig {
    /// The state table of node `node`: its members.
    fn state_table(node: &str) -> TableSpec {
        TableSpec::kept(format!("{node}.members"))
    }
}

impl Kind for RosterConfig {
    /// `<node>.members`.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![Self::state_table(node)]
    }

    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let ttl_ms = parse_duration_ms(&self.ttl)?;
        Ok(Built::Sync(Box::new(Roster { ttl_ms, table: Self::state_table(node), swept_at: i64::MIN })))
    }
}

/// A member (the value of `<operator>.members`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// What it announced.
    pub identity: Value,
    /// When it joined (its first envelope, or the `joined_at` it announced).
    pub joined_at: String,
    /// Its last envelope's timestamp, in ms.
    pub last_seen_ms: i64,
}

/// Runtime half of `roster`.
pub struct Roster {
    ttl_ms: i64,
    table: TableSpec,
    /// Event time of the last sweep for expired members.
    swept_at: i64,
}

impl Roster {
    /// The `roster` envelope of `agent`, made from `record`.
    fn entry(&self, record: &Record, agent: &str, status: &str, member: &Member) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Roster;
        r.envelope.correlation_id = agent.to_owned();
        r.envelope.sender_id = agent.to_owned();
        *r.envelope.payload = json!({
            "version": 1,
            "agent_id": agent,
            "status": status,
            "identity": member.identity,
            "joined_at": member.joined_at,
            "last_seen": format_time_ms(member.last_seen_ms),
            "ttl_ms": self.ttl_ms,
        });
        r
    }

    /// Removes the members not heard from for the TTL, at most once a second of event time.
    fn sweep(&mut self, now: i64, record: &Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Cause> {
        if now < self.swept_at.saturating_add(1000) {
            return Ok(());
        }
        self.swept_at = now;
        for (key, value) in state.scan(&self.table.name, &[], None)? {
            let member: Member =
                serde_json::from_slice(&value).map_err(|e| format!("state `{}`: {e}", self.table.name))?;
            if member.last_seen_ms + self.ttl_ms < now {
                let agent = String::from_utf8_lossy(&key).into_owned();
                state.delete(&self.table.name, &key)?;
                out.emit(Port::DEFAULT, self.entry(record, &agent, "expired", &member));
            }
        }
        Ok(())
    }

    fn apply(&mut self, record: &Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Cause> {
        let announce: AnnouncePayload = match record.envelope.typed_payload().map_err(|e| e.to_string())? {
            Payload::Announce(p) | Payload::Heartbeat(p) => p,
            _ => {
                return Err(Cause::Record(format!(
                    "a roster reads `announce` and `heartbeat` envelopes, not `{}`",
                    record.envelope.kind
                )));
            }
        };
        let now = record.event_time_ms()?;
        let agent = match announce.identity.agent_id.as_str() {
            "" => record.envelope.sender_id.clone(),
            id => id.to_owned(),
        };
        if agent.is_empty() {
            return Err("the announce names no agent (`payload.identity.agent_id` and `sender_id` are empty)".into());
        }
        let key = agent.as_bytes();
        let known: Option<Member> = match state.get(&self.table.name, key)? {
            Some(v) => Some(serde_json::from_slice(&v).map_err(|e| format!("state `{}`: {e}", self.table.name))?),
            None => None,
        };
        let identity = serde_json::to_value(&announce.identity).map_err(|e| e.to_string())?;
        if announce.action == "leave" {
            let member = known.unwrap_or(Member { identity, joined_at: String::new(), last_seen_ms: now });
            state.delete(&self.table.name, key)?;
            out.emit(Port::DEFAULT, self.entry(record, &agent, "left", &Member { last_seen_ms: now, ..member }));
        } else {
            let joined_at = match (&known, announce.identity.joined_at.as_str()) {
                (Some(m), _) => m.joined_at.clone(),
                (None, "") => record.envelope.timestamp.clone(),
                (None, at) => at.to_owned(),
            };
            let member = Member { identity, joined_at, last_seen_ms: now.max(known.map_or(now, |m| m.last_seen_ms)) };
            state.put(&self.table.name, key, &serde_json::to_vec(&member).map_err(|e| e.to_string())?)?;
            out.emit(Port::DEFAULT, self.entry(record, &agent, "active", &member));
        }
        self.sweep(now, record, state, out)
    }
}

impl SyncOperator for Roster {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        match self.apply(&record, state, out) {
            Ok(()) => Ok(()),
            Err(m) => Err(Failure::because(record, m)),
        }
    }
}
