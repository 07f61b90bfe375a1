//! A2A agent cards (A2A v1.0 `AgentCard`, JSON as the official `a2a-sdk` parses it):
//! `GET /.well-known/agent-card.json` is the group's card (its interface `POST /a2a` sends
//! tasks to the group's orchestrator on `group.<g>.requests`; its skills are every skill the
//! group's live members announce, and the gateway's `--skill`s), and
//! `GET /a2a/{skill}/.well-known/agent-card.json` one card per `--skill` (its interface
//! `POST /a2a/{skill}`, tasks on `group.<g>.skill.<s>.requests`).
//!
//! Cards are public, as A2A expects of the well-known card: served without a token. They say
//! what the group offers (skill names, the live members' names and summaries), never a
//! secret; every other A2A route needs the bearer token the card's `securitySchemes` name.
//! Each card has two interfaces: `JSONRPC` (protocol 1.0) at the gateway, and the Kafka
//! binding (`urn:kafclaw:a2a:kafka:v1`, docs/a2a-kafka.md) on the skill's request topic. For
//! v0.3 clients the card also carries v0.3's `url`, `preferredTransport` and
//! `protocolVersion` (v1.0 readers ignore them).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::kafka::group::gateway_feed::Member;

/// The Kafka binding's URI (docs/a2a-kafka.md).
pub const KAFKA_BINDING: &str = "urn:kafclaw:a2a:kafka:v1";

/// `GET /.well-known/agent-card.json`.
pub(in crate::gateway) async fn group_card(State(g): State<Gateway>, headers: HeaderMap) -> Response {
    Json(g.card(&base_url(&g, &headers), None)).into_response()
}

/// `GET /a2a/{skill}/.well-known/agent-card.json`.
pub(in crate::gateway) async fn skill_card(
    State(g): State<Gateway>,
    Path(skill): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !g.skills.contains(&skill) {
        let m = format!("skill `{skill}` is not served by this gateway (--skill)");
        return crate::gateway::error(StatusCode::NOT_FOUND, m);
    }
    Json(g.card(&base_url(&g, &headers), Some(&skill))).into_response()
}

/// `--public-url`, else `http://` and the request's `Host` when it is an address (a name in
/// `Host` is the client's to choose: behind a cache, one client's `Host: evil.example` would
/// send the next clients' tokens there), else `http://127.0.0.1`.
fn base_url(g: &Gateway, headers: &HeaderMap) -> String {
    if let Some(u) = &g.a2a.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let address = host.parse::<std::net::SocketAddr>().is_ok() || host.parse::<std::net::IpAddr>().is_ok();
    let localhost = host == "localhost" || host.strip_prefix("localhost:").is_some_and(|p| p.parse::<u16>().is_ok());
    if address || localhost { format!("http://{host}") } else { "http://127.0.0.1".to_owned() }
}

/// Most skills listed on the group's card (the gateway's `--skill`s first).
const MAX_CARD_SKILLS: usize = 256;
/// Most members named in one skill's description.
const MAX_NAMED_MEMBERS: usize = 8;

/// The bootstrap servers without any `user:password@` part.
fn public_bootstrap(b: &str) -> String {
    b.split(',').map(|s| s.trim().rsplit('@').next().unwrap_or("")).collect::<Vec<_>>().join(",")
}

impl Gateway {
    fn skill_entry(&self, skill: &str, by_skill: &HashMap<&str, Vec<&Member>>) -> Value {
        let offering: &[&Member] = by_skill.get(skill).map_or(&[], Vec::as_slice);
        let count = offering.len();
        let offering = &offering[..count.min(MAX_NAMED_MEMBERS)];
        let description = if offering.is_empty() {
            format!(
                "No live member of group `{}` announces `{skill}` right now; tasks wait on its request topic.",
                self.group
            )
        } else {
            let who: Vec<String> = offering
                .iter()
                .map(|m| {
                    let i = &m.identity;
                    if i.soul_summary.is_empty() {
                        i.agent_name.clone()
                    } else {
                        format!("{}: {}", i.agent_name, i.soul_summary)
                    }
                })
                .collect();
            format!("Offered by {count} live member(s) of group `{}` — {}", self.group, who.join("; "))
        };
        json!({
            "id": skill, "name": skill, "description": description,
            "tags": ["kafclaw", format!("group:{}", self.group)],
            "inputModes": ["text/plain"], "outputModes": ["text/plain"],
        })
    }

    /// The card of the group (`skill` none) or of one skill, with interfaces under `base`.
    pub(crate) fn card(&self, base: &str, skill: Option<&str>) -> Value {
        let now = kafclaw_operators::api::record::now_ms();
        let roster = self.io.roster.lock().unwrap_or_else(|p| p.into_inner());
        let live = roster.live(now);
        // Skill → its live members, built once (not one pass over every member per skill).
        let mut by_skill: HashMap<&str, Vec<&Member>> = HashMap::new();
        for m in &live {
            for c in &m.identity.capabilities {
                by_skill.entry(c.as_str()).or_default().push(m);
            }
        }
        let g = &self.group;
        let (name, description, path, topic, skills) = match skill {
            Some(s) => (
                format!("{s} ({g})"),
                format!(
                    "The skill `{s}` of the kafclaw agent group `{g}`: a message becomes a `skill_request` task on `group.{g}.skill.{s}.requests`."
                ),
                format!("/a2a/{s}"),
                format!("group.{g}.skill.{s}.requests"),
                vec![self.skill_entry(s, &by_skill)],
            ),
            None => {
                let mut names: Vec<&str> = self.skills.iter().map(String::as_str).collect();
                let mut announced: Vec<&str> =
                    live.iter().flat_map(|m| m.identity.capabilities.iter().map(String::as_str)).collect();
                announced.sort_unstable();
                announced.dedup();
                names.extend(announced.into_iter().filter(|a| !self.skills.iter().any(|s| s == a)));
                names.truncate(MAX_CARD_SKILLS);
                names.sort_unstable();
                let members: Vec<&str> =
                    live.iter().take(4 * MAX_NAMED_MEMBERS).map(|m| m.identity.agent_id.as_str()).collect();
                (
                    format!("kafclaw group {g}"),
                    format!(
                        "The kafclaw agent group `{g}` ({} live member(s){}{}): a message becomes a `request` task on `group.{g}.requests`, for the group's orchestrator.",
                        live.len(),
                        if members.is_empty() { "" } else { ": " },
                        members.join(", ")
                    ),
                    "/a2a".to_owned(),
                    format!("group.{g}.requests"),
                    names.iter().map(|s| self.skill_entry(s, &by_skill)).collect(),
                )
            }
        };
        drop(roster);
        let url = format!("{base}{path}");
        let mut interfaces = vec![json!({"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"})];
        if let Some(b) = &self.a2a.bootstrap {
            interfaces.push(json!({
                "url": format!("kafka://{}/{topic}", public_bootstrap(b)),
                "protocolBinding": KAFKA_BINDING, "protocolVersion": "1.0",
            }));
        }
        json!({
            "name": name,
            "description": description,
            "version": env!("CARGO_PKG_VERSION"),
            "supportedInterfaces": interfaces,
            "capabilities": {"streaming": true, "pushNotifications": false},
            "securitySchemes": {"bearer": {"httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "description": "The gateway's bearer token (kafclaw gateway --token-env / --tokens-file); the token's identity is the tasks' sender."
            }}},
            "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": skills,
            // A2A v0.3 readers (v1.0 readers ignore these).
            "url": url,
            "preferredTransport": "JSONRPC",
            "protocolVersion": "0.3.0",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::public_bootstrap;

    #[test]
    fn the_kafka_interface_shows_no_credentials() {
        assert_eq!(public_bootstrap("u:p@b1:9092, b2:9092"), "b1:9092,b2:9092");
    }
}
