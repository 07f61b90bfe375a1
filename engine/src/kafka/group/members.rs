//! `kafclaw group members`: the live members of a group, from its compacted roster topic
//! (`group.<g>.control.roster`, written by a `roster` operator — `topologies/roster.toml`).
//!
//! A member is live when its latest entry's status is `active` and `last_seen + ttl_ms` is
//! not past: liveness is judged by the clock here, so an agent that died drops out within the
//! TTL even when the group is silent and no roster entry says so.

use std::time::Duration;

use serde_json::Value;

use crate::kafka::settings::ClientSettings;
use crate::kafka::tables::latest::read_latest;
use crate::kafka::topics::{TopicError, ensure_topic_configured};
use kafclaw_operators::api::record::event_time_ms;
use kafclaw_operators::envelope::Envelope;

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
        let mut envelope = match Envelope::decode(&value) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(topic, key = %String::from_utf8_lossy(&key), error = %e, "not a roster envelope; skipped");
                continue;
            }
        };
        let p = envelope.payload.take();
        let seen = p["last_seen"].as_str().and_then(|t| event_time_ms(t).ok()).unwrap_or(i64::MIN);
        let ttl = p["ttl_ms"].as_i64().unwrap_or(0);
        if p["status"] == "active" && seen.saturating_add(ttl) >= now_ms {
            out.push(p);
        }
    }
    Ok(out)
}

/// The topics of group `group` (docs/ARCHITECTURE.md, "The envelope"), with whether each is compacted: the core ones,
/// and a request and a response topic per skill. Records are keyed by `correlation_id`
/// (announces, heartbeats and roster entries by agent id).
pub fn group_topics(group: &str, skills: &[String]) -> Vec<(String, bool)> {
    let mut topics: Vec<(String, bool)> = [
        ("announce", false),
        ("requests", false),
        ("responses", false),
        ("tasks.status", false),
        ("traces", false),
        ("observe.audit", false),
        ("memory.shared", true),
        ("memory.context", false),
        ("control.roster", true),
        ("control.onboarding", false),
        ("orchestrator", false),
    ]
    .iter()
    .map(|(t, c)| (format!("group.{group}.{t}"), *c))
    .collect();
    for s in skills {
        topics.push((format!("group.{group}.skill.{s}.requests"), false));
        topics.push((format!("group.{group}.skill.{s}.responses"), false));
    }
    topics
}

/// The topics of group `group` that a timeline records (`kafclaw timeline`, the gateway's
/// console): all of [`group_topics`] but the control topics, the orchestrator's and the
/// announces.
pub fn timeline_topics(group: &str, skills: &[String]) -> Vec<String> {
    group_topics(group, skills)
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| !t.contains(".control.") && !t.ends_with(".orchestrator") && !t.ends_with(".announce"))
        .collect()
}

/// Whether `topic` of a group carries replies to delegated calls (`responses`,
/// `tasks.status`, a skill's `responses`): created with `message.timestamp.type =
/// LogAppendTime`, so the broker, not the replying peer, stamps when a reply arrived and the
/// delegate deadline is judged by it (docs/topology.md, `delegate`).
pub fn is_reply_topic(topic: &str) -> bool {
    topic.ends_with(".responses") || topic.ends_with(".tasks.status")
}

/// Creates the group's missing topics (reply topics with broker timestamps, see
/// [`is_reply_topic`]); returns those created. An existing topic is left as it is.
pub fn create_group_topics(
    settings: &ClientSettings,
    group: &str,
    skills: &[String],
    partitions: i32,
    replication: i32,
) -> Result<Vec<String>, TopicError> {
    let mut created = Vec::new();
    for (topic, compact) in group_topics(group, skills) {
        let mut configs = Vec::new();
        if compact {
            configs.push(("cleanup.policy", "compact"));
        }
        if is_reply_topic(&topic) {
            configs.push(("message.timestamp.type", "LogAppendTime"));
        }
        if ensure_topic_configured(settings, &topic, partitions, replication, &configs, Duration::from_secs(30))? {
            created.push(topic);
        }
    }
    Ok(created)
}
