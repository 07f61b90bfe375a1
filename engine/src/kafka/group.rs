//! `kafclaw group members`: the live members of a group, from its compacted roster topic
//! (`group.<g>.control.roster`, written by a `roster` operator — `topologies/roster.toml`).
//!
//! A member is live when its latest entry's status is `active` and `last_seen + ttl_ms` is
//! not past: liveness is judged by the clock here, so an agent that died drops out within the
//! TTL even when the group is silent and no roster entry says so.

use serde_json::Value;

use super::client::ClientSettings;
use super::latest::read_latest;
use kafclaw_operators::envelope::Envelope;
use kafclaw_operators::record::event_time_ms;

/// The roster topic of `group`.
pub fn roster_topic(group: &str) -> String {
    format!("group.{group}.control.roster")
}

/// The live members' roster payloads (`agent_id`, `identity`, `joined_at`, `last_seen`,
/// `ttl_ms`, `status`), by agent id, as of `now_ms`.
pub fn live_members(settings: &ClientSettings, group: &str, now_ms: i64) -> Result<Vec<Value>, String> {
    let topic = roster_topic(group);
    let mut out = Vec::new();
    for (key, value) in read_latest(settings, &topic, "roster")? {
        let envelope = match Envelope::decode_slice(&value) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(topic, key = %String::from_utf8_lossy(&key), error = %e, "not a roster envelope; skipped");
                continue;
            }
        };
        let p = envelope.payload;
        let seen = p["last_seen"].as_str().and_then(|t| event_time_ms(t).ok()).unwrap_or(i64::MIN);
        let ttl = p["ttl_ms"].as_i64().unwrap_or(0);
        if p["status"] == "active" && seen.saturating_add(ttl) >= now_ms {
            out.push(p);
        }
    }
    Ok(out)
}
