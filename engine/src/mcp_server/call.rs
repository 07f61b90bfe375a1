//! A skill tool call: its arguments read and checked, the `skill_request` it becomes, and the
//! correlated answer awaited until the deadline.
//!
//! The request is built as the gateway builds one (`POST /v1/tasks` with a skill): type
//! `skill_request` on `group.<g>.skill.<s>.requests`, keyed and correlated by a fresh task id
//! (also its `id`), `sender_id` and `payload.requester_id` the caller's identity, `zone` the
//! identity's zone, and `payload.deadline_at` (RFC 3339) the call's deadline, so the agents'
//! guards drop work nobody waits for any more. The answer is the first envelope with that
//! correlation id on the skill's response topic (or `group.<g>.tasks.status`) that ends the
//! task: a `skill_response`/`response` (an error when its `status` is `failed`, `rejected` or
//! `cancelled`), or a `task_status` that failed, was rejected or cancelled.

use std::time::Duration;

use kafclaw_operators::api::record::{format_time_ms, now_ms};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde_json::{Value, json};

use crate::gateway::Identity;

/// The longest deadline a call may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);

/// A skill call's checked arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillArgs {
    /// The task.
    pub description: String,
    /// How long to wait for the answer.
    pub deadline: Duration,
}

/// Reads the arguments of a skill call (`description`: a non-empty string of at most
/// `max_description` bytes; `deadline_seconds`: a number in (0, 3600], default `deadline`).
/// A wrong argument is a JSON-RPC invalid-params error naming it (MCP: "Invalid arguments").
pub fn parse_args(
    args: Option<&JsonObject>,
    deadline: Duration,
    max_description: usize,
) -> Result<SkillArgs, McpError> {
    let empty = JsonObject::new();
    let args = args.unwrap_or(&empty);
    if let Some(k) = args.keys().find(|k| !matches!(k.as_str(), "description" | "deadline_seconds")) {
        return Err(McpError::invalid_params(
            format!("unknown argument `{k}`: a skill tool takes `description` and `deadline_seconds`"),
            None,
        ));
    }
    let description = match args.get("description") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(McpError::invalid_params("argument `description` is empty", None)),
        Some(other) => {
            return Err(McpError::invalid_params(
                format!("argument `description` must be a string, not {}", json_kind(other)),
                None,
            ));
        }
        None => return Err(McpError::invalid_params("missing required argument `description` (a string)", None)),
    };
    if description.len() > max_description {
        return Err(McpError::invalid_params(
            format!(
                "argument `description` is {} bytes; the limit is {max_description} bytes (kafclaw mcp-server --max-description-bytes)",
                description.len()
            ),
            None,
        ));
    }
    let deadline = match args.get("deadline_seconds") {
        None | Some(Value::Null) => deadline,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(s) if s > 0.0 && s <= MAX_DEADLINE.as_secs_f64() => Duration::from_secs_f64(s),
            _ => {
                return Err(McpError::invalid_params(
                    format!("argument `deadline_seconds` is {n}: it must be more than 0 and at most 3600"),
                    None,
                ));
            }
        },
        Some(other) => {
            return Err(McpError::invalid_params(
                format!("argument `deadline_seconds` must be a number, not {}", json_kind(other)),
                None,
            ));
        }
    };
    Ok(SkillArgs { description, deadline })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A fresh task id (the gateway's form).
pub fn new_task_id() -> String {
    format!("task-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The `skill_request` of task `id` from `who`, answered by `deadline_at` (ms).
pub fn request(id: &str, who: &Identity, args: &SkillArgs) -> Envelope {
    let now = now_ms();
    let deadline_at = now.saturating_add(args.deadline.as_millis() as i64);
    let mut e = Envelope::new(
        EnvelopeType::SkillRequest,
        id,
        who.sender_id.clone(),
        format_time_ms(now),
        json!({
            "task_id": id,
            "description": args.description,
            "requester_id": who.sender_id,
            "deadline_at": format_time_ms(deadline_at),
        }),
    );
    e.id = Some(id.to_owned());
    e.zone = who.zone.clone();
    e
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered: the answer's text.
    Answered(String),
    /// Failed, rejected or cancelled: the reason.
    Failed(String),
}

/// Whether `answer` (an envelope as JSON) ends its task, and how. A `task_status` that is
/// not terminal (`in_progress`, …) does not.
pub fn outcome(answer: &Value) -> Option<Outcome> {
    let p = &answer["payload"];
    let status = p["status"].as_str().unwrap_or_default();
    let text = ["content", "result", "summary", "error", "reason"]
        .iter()
        .find_map(|k| p[*k].as_str().filter(|s| !s.is_empty()))
        .map(str::to_owned);
    // The terminal statuses of docs/a2a-kafka.md ("Task states"), and the British spelling.
    let failed = matches!(status, "failed" | "rejected" | "cancelled" | "canceled" | "no_answer" | "budget_exceeded");
    let why = || text.clone().unwrap_or_else(|| format!("the task is {status}"));
    match answer["type"].as_str() {
        Some("skill_response" | "response") if failed => Some(Outcome::Failed(why())),
        Some("skill_response" | "response") => Some(Outcome::Answered(text.clone().unwrap_or_default())),
        Some("task_status") if failed => Some(Outcome::Failed(why())),
        Some("task_status") if status == "completed" => Some(Outcome::Answered(text.clone().unwrap_or_default())),
        _ => None,
    }
}

/// The tool result of task `id` of `skill`, from its outcome (or `None`: the deadline passed).
pub fn result(
    id: &str,
    skill: &str,
    deadline: Duration,
    outcome: Option<Outcome>,
    answer: Option<&Value>,
) -> CallToolResult {
    let responder = answer.and_then(|a| a["payload"]["responder_id"].as_str().or(a["sender_id"].as_str()));
    let structured = |status: &str, text: &str| json!({"task_id": id, "skill": skill, "status": status, "responder_id": responder, "content": text});
    let mut r = match outcome {
        Some(Outcome::Answered(text)) => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
            r.structured_content = Some(structured("completed", &text));
            r
        }
        Some(Outcome::Failed(why)) => {
            let text = format!("skill `{skill}` did not complete task {id}: {why}");
            let mut r = CallToolResult::error(vec![ContentBlock::text(text.clone())]);
            r.structured_content = Some(structured("failed", &why));
            r
        }
        None => {
            let text = format!(
                "no answer from skill `{skill}` within {:.0} s (task {id}); no live member may serve it, or it is busy",
                deadline.as_secs_f64()
            );
            let mut r = CallToolResult::error(vec![ContentBlock::text(text.clone())]);
            r.structured_content = Some(structured("timed_out", &text));
            r
        }
    };
    // Without an outputSchema the structured copy is a courtesy; the text block is the answer.
    if r.structured_content.as_ref().is_some_and(Value::is_null) {
        r.structured_content = None;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Result<SkillArgs, String> {
        parse_args(v.as_object(), Duration::from_secs(60), 100).map_err(|e| e.message.to_string())
    }

    #[test]
    fn arguments_are_checked_and_named() {
        assert_eq!(
            args(json!({"description": "refund?"})).unwrap(),
            SkillArgs { description: "refund?".into(), deadline: Duration::from_secs(60) }
        );
        assert_eq!(
            args(json!({"description": "x", "deadline_seconds": 2.5})).unwrap().deadline,
            Duration::from_millis(2500)
        );
        assert!(args(json!({})).unwrap_err().contains("missing required argument `description`"));
        assert!(args(json!({"description": 3})).unwrap_err().contains("`description` must be a string, not a number"));
        assert!(args(json!({"description": " "})).unwrap_err().contains("empty"));
        assert!(args(json!({"description": "x".repeat(101)})).unwrap_err().contains("101 bytes; the limit is 100"));
        assert!(
            args(json!({"description": "x", "deadline_seconds": 0})).unwrap_err().contains("`deadline_seconds` is 0")
        );
        assert!(args(json!({"description": "x", "deadline_seconds": "5"})).unwrap_err().contains("must be a number"));
        assert!(
            args(json!({"description": "x", "sender_id": "boss"}))
                .unwrap_err()
                .contains("unknown argument `sender_id`")
        );
        let e = parse_args(None, Duration::from_secs(1), 10).unwrap_err();
        assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
    }

    #[test]
    fn the_request_carries_identity_and_deadline() {
        let who = Identity { name: "t".into(), sender_id: "claude".into(), zone: Some("finance".into()) };
        let e = request("task-1", &who, &SkillArgs { description: "d".into(), deadline: Duration::from_secs(5) });
        let v = e.to_json();
        assert_eq!(
            (v["type"].as_str(), v["correlation_id"].as_str(), v["id"].as_str()),
            (Some("skill_request"), Some("task-1"), Some("task-1"))
        );
        assert_eq!((v["sender_id"].as_str(), v["zone"].as_str()), (Some("claude"), Some("finance")));
        assert_eq!(v["payload"]["requester_id"], "claude");
        let at = kafclaw_operators::api::record::event_time_ms(v["payload"]["deadline_at"].as_str().unwrap()).unwrap();
        let sent = kafclaw_operators::api::record::event_time_ms(v["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(at - sent, 5000);
    }

    #[test]
    fn answers_statuses_and_failures() {
        let ans = |t: &str, p: Value| outcome(&json!({"type": t, "payload": p}));
        assert_eq!(
            ans("skill_response", json!({"status": "completed", "content": "42"})),
            Some(Outcome::Answered("42".into()))
        );
        assert_eq!(ans("response", json!({"result": "ok"})), Some(Outcome::Answered("ok".into())));
        assert_eq!(ans("task_status", json!({"status": "in_progress"})), None);
        assert_eq!(
            ans("task_status", json!({"status": "failed", "summary": "deadline passed"})),
            Some(Outcome::Failed("deadline passed".into()))
        );
        assert_eq!(
            ans("task_status", json!({"status": "rejected"})),
            Some(Outcome::Failed("the task is rejected".into()))
        );
        assert_eq!(
            ans("skill_response", json!({"status": "failed", "error": "boom"})),
            Some(Outcome::Failed("boom".into()))
        );
        for status in ["no_answer", "budget_exceeded", "canceled"] {
            assert_eq!(
                ans("task_status", json!({"status": status, "summary": "why"})),
                Some(Outcome::Failed("why".into())),
                "{status}"
            );
        }
        assert_eq!(
            ans("task_status", json!({"status": "completed", "summary": "done"})),
            Some(Outcome::Answered("done".into()))
        );
        assert_eq!(ans("task_status", json!({"status": "streaming", "delta": "x"})), None);
        let r = result("t", "s", Duration::from_secs(2), None, None);
        assert_eq!(r.is_error, Some(true));
    }
}
