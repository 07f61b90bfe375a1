//! A2A (v1.0, and v0.3's method names) on the gateway: agent cards ([`card`]) and the
//! JSON-RPC endpoint `POST /a2a` (the group: tasks go to `group.<g>.requests`) and
//! `POST /a2a/{skill}` (one agent per skill: `group.<g>.skill.<s>.requests`), mapped onto the
//! group's tasks as docs/a2a-kafka.md says; event streams in [`stream`], shapes in [`wire`].
//! docs/a2a.md is the user's guide.
//!
//! Tasks are the caller's: the gateway remembers which token started each A2A task, and
//! another token's `GetTask`, `CancelTask`, `SubscribeToTask` or message continuing it gets
//! `TaskNotFound` (-32001), as an unknown id does — so a caller learns nothing of the others'
//! tasks. The gateway keeps these A2A tasks in memory (the latest `MAX_TASKS`): after a
//! restart, the tasks started before are unknown to A2A (their answers stay readable through
//! `/v1/tasks/{id}`).

pub(crate) mod card;
pub(crate) mod stream;
pub(crate) mod wire;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use kafclaw_operators::api::record::{format_time_ms, now_ms};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use self::wire::{Call, Method, Msg, RpcError, Snapshot, TaskState, code};
use super::metrics::MethodLabels;
use super::{Gateway, Identity, new_task_id};

/// The largest JSON-RPC body the gateway reads; a larger one gets `413`.
pub const MAX_BODY: usize = 1024 * 1024;
/// A2A tasks remembered (the oldest are forgotten first).
const MAX_TASKS: usize = 100_000;

/// How the gateway serves A2A.
#[derive(Debug, Clone)]
pub struct A2aSettings {
    /// The gateway's public base URL for the cards' interfaces (`https://gw.example.com`);
    /// none: `http://` and the request's `Host`.
    pub public_url: Option<String>,
    /// How long a blocking `SendMessage` waits for the task to finish before answering with
    /// the task as it stands.
    pub wait: Duration,
    /// The bootstrap servers, for the cards' Kafka interface (none: no Kafka interface).
    pub bootstrap: Option<String>,
}

impl Default for A2aSettings {
    fn default() -> Self {
        Self { public_url: None, wait: Duration::from_secs(60), bootstrap: None }
    }
}

/// An A2A task started through this gateway.
#[derive(Debug, Clone)]
struct Owned {
    /// The name of the token that started it.
    owner: String,
    context_id: String,
    history: Vec<Msg>,
    /// Canceled through the gateway, with the reason: later answers do not change its state.
    canceled: Option<String>,
    since: String,
}

/// The A2A tasks the gateway started, by id.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    tasks: HashMap<String, Owned>,
    order: VecDeque<String>,
}

impl Tasks {
    fn insert(&mut self, id: &str, task: Owned) {
        if self.tasks.insert(id.to_owned(), task).is_none() {
            self.order.push_back(id.to_owned());
            while self.order.len() > MAX_TASKS {
                if let Some(old) = self.order.pop_front() {
                    self.tasks.remove(&old);
                }
            }
        }
    }
}

/// The answer text of an envelope's payload: `content`, else `result`, else `summary`.
fn answer_text(p: &Value) -> Option<String> {
    ["content", "result", "summary"].iter().find_map(|k| p[*k].as_str().filter(|s| !s.is_empty())).map(str::to_owned)
}

impl Gateway {
    /// Task `id` as `who` may see it: `None` when unknown or another token's.
    pub(crate) fn snapshot(&self, id: &str, who: &Identity) -> Option<Snapshot> {
        let owned = {
            let tasks = self.a2a_tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.tasks.get(id).filter(|t| t.owner == who.name)?.clone()
        };
        let answer = self.io.view.lock().unwrap_or_else(|p| p.into_inner()).answer(id).cloned();
        let mut s = Snapshot {
            id: id.to_owned(),
            context_id: owned.context_id,
            state: TaskState::Submitted,
            status_text: None,
            answer: None,
            history: owned.history,
            timestamp: owned.since,
        };
        if let Some(reason) = owned.canceled {
            s.state = TaskState::Canceled;
            s.status_text = Some(reason);
            return Some(s);
        }
        let Some(a) = answer else { return Some(s) };
        let p = &a["payload"];
        let status = p["status"].as_str().unwrap_or("");
        if let Some(t) = a["timestamp"].as_str() {
            s.timestamp = t.to_owned();
        }
        if a["type"] == "task_status" {
            s.state = TaskState::of(status, TaskState::Working);
            s.status_text = p["summary"].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
        } else {
            s.state = TaskState::of(status, TaskState::Completed);
            s.answer = answer_text(p);
            if let Some(text) = &s.answer {
                s.status_text = Some(text.clone());
                s.history.push(Msg { id: format!("{id}-answer"), agent: true, text: text.clone() });
            }
        }
        Some(s)
    }
}

/// `POST /a2a`: the group.
pub(super) async fn group_rpc(
    State(g): State<Gateway>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    rpc(g, who, None, headers, body).await
}

/// `POST /a2a/{skill}`: one skill.
pub(super) async fn skill_rpc(
    State(g): State<Gateway>,
    Extension(who): Extension<Identity>,
    Path(skill): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !g.skills.contains(&skill) {
        // Read the body first (see `require_token`): the 404 must not be lost to a reset.
        let _ = axum::body::to_bytes(body, MAX_BODY).await;
        return super::error(StatusCode::NOT_FOUND, format!("skill `{skill}` is not served by this gateway (--skill)"));
    }
    rpc(g, who, Some(skill), headers, body).await
}

fn rpc_response(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

async fn rpc(g: Gateway, who: Identity, skill: Option<String>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let e = RpcError::new(code::INVALID_REQUEST, format!("the body is larger than {MAX_BODY} bytes"));
            return rpc_response(StatusCode::PAYLOAD_TOO_LARGE, e.response(&Value::Null));
        }
    };
    let call = match wire::parse_call(&bytes) {
        Ok(c) => c,
        Err((id, e)) => {
            g.count_call("unknown", Err(&e));
            return rpc_response(StatusCode::OK, e.response(&id));
        }
    };
    let version = headers.get("a2a-version").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !wire::version_supported(version) {
        let e = RpcError::new(
            code::VERSION_NOT_SUPPORTED,
            format!("A2A version `{version}` is not supported: this gateway speaks 1.0 and 0.3"),
        );
        g.count_call(&call.name, Err(&e));
        return rpc_response(StatusCode::OK, e.response(&call.id));
    }
    let name = call.name.clone();
    let id = call.id.clone();
    let ok = |v: Value| rpc_response(StatusCode::OK, wire::result(&id, v));
    let outcome = match call.method {
        Method::Send => g.send(&who, skill.as_deref(), &call).await.map(ok),
        Method::Stream => g.send_streaming(&who, skill.as_deref(), &call).await,
        Method::Subscribe => g.subscribe(&who, &call),
        Method::Get => g.get(&who, &call).map(ok),
        Method::Cancel => g.cancel(&who, &call).await.map(ok),
    };
    g.count_call(&name, outcome.as_ref().map(|_| ()));
    outcome.unwrap_or_else(|e| rpc_response(StatusCode::OK, e.response(&id)))
}

impl Gateway {
    fn count_call(&self, method: &str, outcome: Result<(), &RpcError>) {
        let outcome = outcome.map_or_else(|e| e.code.to_string(), |()| "ok".to_owned());
        self.metrics.a2a_calls.get_or_create(&MethodLabels { method: method.to_owned(), outcome }).inc();
    }

    /// Publishes the message of a send call (a new task, or the next turn of one of the
    /// caller's tasks); returns the task id and the receiver of the reader's events,
    /// subscribed before publishing.
    async fn publish(
        &self,
        who: &Identity,
        skill: Option<&str>,
        m: &wire::Incoming,
    ) -> Result<(String, broadcast::Receiver<std::sync::Arc<Value>>, Option<Value>), RpcError> {
        let now = format_time_ms(now_ms());
        let (id, context_id, mut history) = match &m.task_id {
            Some(id) => {
                let s = self.snapshot(id, who).ok_or_else(|| not_found(id))?;
                if s.state.terminal() {
                    return Err(RpcError::new(
                        code::INVALID_PARAMS,
                        format!("task `{id}` is in a terminal state; start a new task (no taskId)"),
                    ));
                }
                if m.context_id.as_ref().is_some_and(|c| *c != s.context_id) {
                    return Err(RpcError::new(code::INVALID_PARAMS, format!("task `{id}` is of another contextId")));
                }
                let owned = self.a2a_tasks.lock().unwrap_or_else(|p| p.into_inner()).tasks.get(id).cloned();
                (id.clone(), s.context_id, owned.map(|o| o.history).unwrap_or_default())
            }
            None => {
                let context = m.context_id.clone().unwrap_or_else(|| format!("ctx-{}", &new_task_id()[5..]));
                (new_task_id(), context, Vec::new())
            }
        };
        let (kind, topic) = match skill {
            None => (EnvelopeType::Request, format!("group.{}.requests", self.group)),
            Some(s) => (EnvelopeType::SkillRequest, format!("group.{}.skill.{s}.requests", self.group)),
        };
        let mut e = Envelope::new(
            kind,
            id.clone(),
            who.sender_id.clone(),
            now.clone(),
            json!({
                "task_id": id, "description": m.text, "requester_id": who.sender_id,
                "context_id": context_id, "a2a": {"message": m.raw},
            }),
        );
        // The envelope id, by which agents drop duplicates, is the caller's messageId bound to
        // the token and the task: one caller cannot make an agent drop another's message by
        // reusing its messageId (the messageId itself is in `payload.a2a.message`).
        e.id = Some(envelope_id(&who.name, &id, &m.message_id));
        e.zone = who.zone.clone();
        let events = self.io.events.subscribe();
        // What the task showed before this message: a continued task's `input_required` is not
        // the answer to this message.
        let before = self.io.view.lock().unwrap_or_else(|p| p.into_inner()).answer(&id).cloned();
        let headers = [("a2a-version", "1.0"), ("content-type", "application/json")];
        if let Err(err) = self.io.publish(&topic, &e, &headers).await {
            return Err(RpcError::new(code::INTERNAL_ERROR, err));
        }
        tracing::info!(task_id = %id, token = %who.name, sender_id = %who.sender_id, %topic, "A2A message published");
        self.metrics.submitted.inc();
        history.push(Msg { id: m.message_id.clone(), agent: false, text: m.text.clone() });
        // The caller's messages kept per task, oldest dropped first: a task continued again and
        // again holds no more than this in the gateway's memory.
        while history.len() > 1
            && (history.len() > MAX_HISTORY || history.iter().map(|h| h.text.len()).sum::<usize>() > MAX_HISTORY_BYTES)
        {
            history.remove(0);
        }
        let owned = Owned { owner: who.name.clone(), context_id, history, canceled: None, since: now };
        self.a2a_tasks.lock().unwrap_or_else(|p| p.into_inner()).insert(&id, owned);
        Ok((id, events, before))
    }

    /// `SendMessage` / `message/send`.
    async fn send(&self, who: &Identity, skill: Option<&str>, call: &Call) -> Result<Value, RpcError> {
        let m = wire::parse_send(&call.params, call.dialect)?;
        let (id, mut events, before) = self.publish(who, skill, &m).await?;
        let deadline = tokio::time::Instant::now() + self.a2a.wait;
        let answered = |g: &Self| g.io.view.lock().unwrap_or_else(|p| p.into_inner()).answer(&id) != before.as_ref();
        loop {
            // The task is read (its history copied) only when one of its records arrived.
            let s = self.snapshot(&id, who).ok_or_else(|| not_found(&id))?;
            if !m.wait || s.state.terminal() || (s.state.ends_stream() && answered(self)) {
                return Ok(s.task_result(call.dialect, m.history_length));
            }
            loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                        let s = self.snapshot(&id, who).ok_or_else(|| not_found(&id))?;
                        return Ok(s.task_result(call.dialect, m.history_length));
                    }
                    Ok(Ok(e)) if e["correlation_id"] != id.as_str() => {}
                    // Lagged: records were missed; read the task again.
                    Ok(_) => break,
                }
            }
        }
    }

    /// `GetTask` / `tasks/get` (`historyLength` honoured).
    fn get(&self, who: &Identity, call: &Call) -> Result<Value, RpcError> {
        let id = wire::task_id(&call.params)?;
        let history = wire::history_length(&call.params, "params")?;
        let s = self.snapshot(&id, who).ok_or_else(|| not_found(&id))?;
        Ok(s.task(call.dialect, history))
    }

    /// `CancelTask` / `tasks/cancel`: a `canceled` task status on `group.<g>.tasks.status`.
    async fn cancel(&self, who: &Identity, call: &Call) -> Result<Value, RpcError> {
        let id = wire::task_id(&call.params)?;
        let s = self.snapshot(&id, who).ok_or_else(|| not_found(&id))?;
        if s.state.terminal() {
            return Err(RpcError::new(
                code::TASK_NOT_CANCELABLE,
                format!("task `{id}` is {:?}: a finished task cannot be canceled", s.state).to_lowercase(),
            ));
        }
        let reason = format!("canceled by {}", who.sender_id);
        let mut e = Envelope::new(
            EnvelopeType::TaskStatus,
            id.clone(),
            who.sender_id.clone(),
            format_time_ms(now_ms()),
            json!({"task_id": id, "status": "canceled", "responder_id": who.sender_id, "summary": reason}),
        );
        e.zone = who.zone.clone();
        let topic = format!("group.{}.tasks.status", self.group);
        let headers = [("a2a-version", "1.0"), ("content-type", "application/json")];
        self.io.publish(&topic, &e, &headers).await.map_err(|m| RpcError::new(code::INTERNAL_ERROR, m))?;
        if let Some(t) = self.a2a_tasks.lock().unwrap_or_else(|p| p.into_inner()).tasks.get_mut(&id) {
            t.canceled = Some(reason);
            t.since = e.timestamp.clone();
        }
        tracing::info!(task_id = %id, token = %who.name, "A2A task canceled");
        let s = self.snapshot(&id, who).ok_or_else(|| not_found(&id))?;
        Ok(s.task(call.dialect, None))
    }

    /// `SendStreamingMessage` / `message/stream`: publishes, then streams the task's events.
    async fn send_streaming(&self, who: &Identity, skill: Option<&str>, call: &Call) -> Result<Response, RpcError> {
        let m = wire::parse_send(&call.params, call.dialect)?;
        let (id, events, _) = self.publish(who, skill, &m).await?;
        Ok(stream::open(self.clone(), who.clone(), id, call.id.clone(), call.dialect, events))
    }

    /// `SubscribeToTask` / `tasks/resubscribe`: the events of one of the caller's unfinished
    /// tasks (a finished one: `UnsupportedOperation`, -32004).
    fn subscribe(&self, who: &Identity, call: &Call) -> Result<Response, RpcError> {
        let id = wire::task_id(&call.params)?;
        let events = self.io.events.subscribe();
        let s = self.snapshot(&id, who).ok_or_else(|| not_found(&id))?;
        if s.state.terminal() {
            return Err(RpcError::new(
                code::UNSUPPORTED_OPERATION,
                format!("task `{id}` is finished: read it with GetTask"),
            ));
        }
        Ok(stream::open(self.clone(), who.clone(), id, call.id.clone(), call.dialect, events))
    }
}

/// Most messages of a task kept in its history.
const MAX_HISTORY: usize = 32;
/// Most bytes of text of a task's kept messages.
const MAX_HISTORY_BYTES: usize = 1 << 20;

/// The envelope id of message `message_id` of task `task_id` sent with token `token`:
/// `a2a-` and the first 32 hex digits of SHA-256 over the three, each ended by a NUL.
fn envelope_id(token: &str, task_id: &str, message_id: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [token, task_id, message_id] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("a2a-{}", &hex::encode(h.finalize())[..32])
}

fn not_found(id: &str) -> RpcError {
    RpcError::new(code::TASK_NOT_FOUND, format!("task `{id}` not found"))
}
