//! `GET /console/api/members`: the group's live members, from the announces and heartbeats
//! the gateway's reader follows on `group.<g>.announce` (the same roster as the agent cards).

use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use kafclaw_operators::api::record::{format_time_ms, now_ms};
use serde_json::{Value, json};

use super::Console;
use crate::kafka::group::gateway_feed::Member;

/// One member as the Group page shows it.
fn member_json(m: &Member) -> Value {
    let i = &m.identity;
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    json!({
        "agent_id": i.agent_id,
        "agent_name": text(&i.agent_name),
        "summary": text(&i.soul_summary),
        "skills": i.capabilities,
        "zone": text(&i.zone_id),
        "role": text(&i.role),
        "model": text(&i.model),
        "status": text(&i.status),
        "joined_at": text(&i.joined_at),
        "last_seen": format_time_ms(m.last_seen_ms),
        "last_seen_ms": m.last_seen_ms,
    })
}

/// `{"ttl_ms", "now_ms", "members": [...]}`, members by agent id.
pub(super) async fn members(State(console): State<Console>) -> Response {
    let now = now_ms();
    let roster = console.roster.lock().unwrap_or_else(|p| p.into_inner());
    let members: Vec<Value> = roster.live(now).into_iter().map(member_json).collect();
    Json(json!({ "ttl_ms": roster.ttl().as_millis() as u64, "now_ms": now, "members": members })).into_response()
}
