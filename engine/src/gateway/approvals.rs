//! The gateway's approval routes (docs/approvals.md), behind the bearer token **and the
//! approver scope**: only a token whose `sender_id` is one of the gateway's approvers
//! (`kafclaw gateway --approver <sender_id>`, repeatable) may list or decide; any other
//! token gets `403`, and a gateway with no approver refuses every token (fails closed). The
//! listing needs the scope too: it shows the arguments of pending tool calls.
//!
//! - `GET /v1/approvals` → `{"approvals": [...]}`: the group's pending requests (`?all=true`:
//!   decided and expired ones too), as `kafclaw approvals list --json` prints them;
//! - `POST /v1/approvals/{id}/approve`, `POST /v1/approvals/{id}/reject` with an optional
//!   body `{"reason": "…"}` → `200 {"decision": …}`: the decision, written to the partition
//!   the request names. The approver is the token's `sender_id`; the body cannot choose it
//!   (a body naming `approver` is refused, as `sender_id` is on `/v1/tasks`; so is a body
//!   writing a key twice, `{"reason":"a","reason":"b"}`: 400). `404` for an unknown id,
//!   `409` for one already decided, expired or conflicting, `502` when Kafka fails.

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use kafclaw_operators::api::record::now_ms;
use kafclaw_operators::envelope::approval::Verdict;
use kafclaw_operators::envelope::wire;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Gateway, Identity, error};
use crate::kafka::approvals::{self, DecideError, Status};

/// `GET /v1/approvals` query.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    /// Also decided and expired requests.
    #[serde(default)]
    all: bool,
}

/// `POST /v1/approvals/{id}/{approve|reject}` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    /// Why.
    #[serde(default)]
    reason: String,
}

/// The keys a decision body may write (once each), and `approver`, refused by name.
const BODY_KEYS: &[&str] = &["reason", "approver"];

fn parse_body(body: &[u8]) -> Result<DecideBody, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecideBody::default());
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("body: not UTF-8 ({e})"))?;
    // Fails closed, as the envelope readers do: a key written twice is ambiguous.
    wire::repeated(text, BODY_KEYS).map_err(|e| format!("body: {}", e.to_string().replacen("payload", "body", 1)))?;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("body: {e}"))?;
    if v.get("approver").is_some() {
        return Err("`approver` is not the caller's to choose: the gateway sets it from the token's identity".into());
    }
    serde_json::from_value(v).map_err(|e| format!("body: {e}"))
}

/// `403` unless `who` may decide approvals on `g`.
fn forbidden(g: &Gateway, who: &Identity) -> Option<Response> {
    if g.approvers.is_empty() {
        return Some(error(
            StatusCode::FORBIDDEN,
            "this gateway has no approver (start it with `--approver <sender_id>`): no token may list or decide approvals",
        ));
    }
    (!g.approvers.contains(&who.sender_id)).then(|| {
        tracing::warn!(token = %who.name, sender_id = %who.sender_id, "approvals: token without the approver scope refused");
        error(
            StatusCode::FORBIDDEN,
            format!("`{}` is not an approver of this gateway (`--approver`)", who.sender_id),
        )
    })
}

pub(super) async fn list(
    State(g): State<Gateway>,
    Extension(who): Extension<Identity>,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(no) = forbidden(&g, &who) {
        return no;
    }
    let (settings, group) = (g.io.settings().clone(), g.group.clone());
    let read = tokio::task::spawn_blocking(move || approvals::ledger(&settings, &group)).await;
    let ledger = match read {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return error(StatusCode::BAD_GATEWAY, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let now = now_ms();
    let mut entries: Vec<&approvals::Entry> =
        ledger.entries.values().filter(|e| q.all || e.status(now) == Status::Pending).collect();
    entries.sort_by_key(|e| e.requested_at_ms);
    let shown: Vec<Value> = entries.iter().map(|e| e.to_json(now)).collect();
    Json(json!({"approvals": shown})).into_response()
}

pub(super) async fn decide(
    State(g): State<Gateway>,
    Extension(who): Extension<Identity>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(no) = forbidden(&g, &who) {
        return no;
    }
    let verdict = match action.as_str() {
        "approve" => Verdict::Approved,
        "reject" => Verdict::Rejected,
        other => return error(StatusCode::NOT_FOUND, format!("no action `{other}`: approve or reject")),
    };
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let (settings, group, approver) = (g.io.settings().clone(), g.group.clone(), who.sender_id.clone());
    let i = id.clone();
    let done =
        tokio::task::spawn_blocking(move || approvals::decide(&settings, &group, &i, verdict, &approver, &body.reason))
            .await;
    match done {
        Ok(Ok(decision)) => {
            tracing::info!(request_id = %id, token = %who.name, approver = %who.sender_id, decision = verdict.as_str(), "approval decided");
            Json(json!({"decision": decision})).into_response()
        }
        Ok(Err(e @ DecideError::NotFound(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ (DecideError::Decided { .. } | DecideError::Expired(..) | DecideError::Conflicting(_)))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e @ DecideError::Layout { .. })) => error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e @ DecideError::Kafka(_))) => error(StatusCode::BAD_GATEWAY, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_cannot_choose_the_approver() {
        assert!(parse_body(br#"{"approver":"boss"}"#).unwrap_err().contains("not the caller's"));
        assert_eq!(parse_body(b"").unwrap().reason, "");
        assert_eq!(parse_body(br#"{"reason":"too much"}"#).unwrap().reason, "too much");
        assert!(parse_body(br#"{"reson":"x"}"#).unwrap_err().contains("unknown field"));
        let twice = parse_body(br#"{"reason":"a","reason":"b"}"#).unwrap_err();
        assert!(twice.contains("body.reason"), "{twice}");
        assert!(parse_body(br#"{"reason":"a","approver":"x","approver":"y"}"#).is_err());
    }
}
