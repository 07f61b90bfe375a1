//! The gateway's own task routes: `POST /v1/tasks`, `GET /v1/tasks/{id}`,
//! `GET /v1/traces/{id}` (see the route table in [`super`]).

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Gateway, Identity, STAMPED, error, new_task_id};

/// `POST /v1/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    /// The task.
    description: String,
    /// A skill this gateway serves: the task goes to that skill's topic.
    #[serde(default)]
    skill: Option<String>,
}

/// The task of `body`, or why it is refused.
fn parse_submit(body: &[u8]) -> Result<Submit, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    if let Some(field) = STAMPED.iter().find(|f| v.get(**f).is_some()) {
        return Err(format!(
            "`{field}` is not the caller's to choose: the gateway sets it from the token's identity; remove it from the body"
        ));
    }
    let s: Submit = serde_json::from_value(v).map_err(|e| format!("body: {e}"))?;
    if s.description.trim().is_empty() {
        return Err("`description` is empty".to_owned());
    }
    Ok(s)
}

/// A new task for a group: a `kind` (`request` or `skill_request`) envelope asking
/// `description`, from `sender_id` (also its `payload.requester_id`) in `zone`, under a new
/// task id (`task-` and 32 hex digits), which is its correlation id, id and `payload.task_id`.
pub fn new_task(kind: EnvelopeType, description: &str, sender_id: &str, zone: Option<&str>) -> Envelope {
    let id = new_task_id();
    let now = kafclaw_operators::api::record::format_time_ms(kafclaw_operators::api::record::now_ms());
    let payload = json!({"task_id": id, "description": description, "requester_id": sender_id});
    let mut e = Envelope::new(kind, id.clone(), sender_id.to_owned(), now, payload);
    e.id = Some(id);
    e.zone = zone.map(str::to_owned);
    e
}

pub(super) async fn submit(
    State(g): State<Gateway>,
    Extension(who): Extension<Identity>,
    body: axum::body::Bytes,
) -> Response {
    let s = match parse_submit(&body) {
        Ok(s) => s,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let (kind, topic) = match &s.skill {
        None => (EnvelopeType::Request, format!("group.{}.requests", g.group)),
        Some(skill) if g.skills.contains(skill) => {
            (EnvelopeType::SkillRequest, format!("group.{}.skill.{skill}.requests", g.group))
        }
        Some(skill) => {
            return error(StatusCode::BAD_REQUEST, format!("skill `{skill}` is not served by this gateway (--skill)"));
        }
    };
    let e = new_task(kind, &s.description, &who.sender_id, who.zone.as_deref());
    let id = e.correlation_id.clone();
    if let Err(m) = g.io.submit(&topic, &e).await {
        return error(StatusCode::BAD_GATEWAY, m);
    }
    tracing::info!(task_id = %id, token = %who.name, sender_id = %who.sender_id, %topic, "task submitted");
    g.metrics.submitted.inc();
    (StatusCode::ACCEPTED, Json(json!({"task_id": id, "topic": topic}))).into_response()
}

pub(super) async fn task(State(g): State<Gateway>, Path(id): Path<String>) -> Response {
    let view = g.io.view.lock().unwrap_or_else(|p| p.into_inner());
    let Some(answer) = view.answer(&id) else {
        return Json(json!({"task_id": id, "status": "pending"})).into_response();
    };
    let p = &answer["payload"];
    let result = ["content", "result", "summary"].iter().find_map(|k| p[*k].as_str().filter(|s| !s.is_empty()));
    let status = p["status"].as_str().filter(|s| !s.is_empty()).unwrap_or("completed");
    Json(json!({"task_id": id, "status": status, "result": result, "answer": answer})).into_response()
}

pub(super) async fn trace(State(g): State<Gateway>, Path(id): Path<String>) -> Response {
    let view = g.io.view.lock().unwrap_or_else(|p| p.into_inner());
    Json(Value::Array(view.trace(&id).to_vec())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_cannot_choose_sender_or_zone() {
        for (body, field) in [
            (r#"{"description":"x","sender_id":"internal-agent"}"#, "sender_id"),
            (r#"{"description":"x","zone":"internal"}"#, "zone"),
            (r#"{"description":"x","sender_id":null}"#, "sender_id"),
        ] {
            let e = parse_submit(body.as_bytes()).unwrap_err();
            assert!(e.starts_with(&format!("`{field}` is not the caller's to choose")), "{e}");
        }
        assert!(parse_submit(br#"{"description":"x","requester_id":"boss"}"#).unwrap_err().contains("unknown field"));
        assert!(parse_submit(br#"{"description":" "}"#).unwrap_err().contains("empty"));
        let s = parse_submit(br#"{"description":"x","skill":"echo"}"#).unwrap();
        assert_eq!((s.description.as_str(), s.skill.as_deref()), ("x", Some("echo")));
    }
}
