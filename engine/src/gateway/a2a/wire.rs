//! A2A's JSON-RPC shapes, read and written: the request envelope (JSON-RPC 2.0), the
//! parameters of the methods the gateway serves, and the Task, Message, Artifact and event
//! objects it answers with — in both dialects the gateway speaks:
//!
//! - A2A v1.0 (a2a-protocol.org, JSON-RPC binding; the JSON mapping of the protocol's
//!   protobuf messages, as the official `a2a-sdk` 1.x parses it): methods `SendMessage`,
//!   `SendStreamingMessage`, `GetTask`, `CancelTask`, `SubscribeToTask`; states
//!   `TASK_STATE_*`, roles `ROLE_*`, parts `{"text"}`, results `{"task": …}` and stream events
//!   `{"task"|"statusUpdate"|"artifactUpdate": …}`;
//! - A2A v0.3: `message/send`, `message/stream`, `tasks/get`, `tasks/cancel`,
//!   `tasks/resubscribe`; objects tagged by `kind`, states `submitted`…, roles `user`/`agent`,
//!   parts `{"kind": "text", "text"}`, status events with `final`.
//!
//! A call is answered in the dialect of its method's name.

use serde_json::{Map, Value, json};

/// JSON-RPC 2.0 and A2A error codes (A2A v1.0, "JSON-RPC error codes").
pub(crate) mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a JSON-RPC 2.0 request object (a batch, no id, a wrong `jsonrpc`, …).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The parameters are not what the method takes.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The gateway or the broker failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// No such task (or not the caller's).
    pub const TASK_NOT_FOUND: i64 = -32001;
    /// The task is in a terminal state.
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
    /// The operation is not supported (e.g. subscribing to a finished task).
    pub const UNSUPPORTED_OPERATION: i64 = -32004;
    /// None of the message's parts is of a type the agents take (text).
    pub const CONTENT_TYPE_NOT_SUPPORTED: i64 = -32005;
    /// The `A2A-Version` header names a version the gateway does not speak.
    pub const VERSION_NOT_SUPPORTED: i64 = -32009;
}

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    /// One of [`code`].
    pub code: i64,
    /// What is wrong, for a person.
    pub message: String,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The JSON-RPC response of this error to request `id`.
    pub(crate) fn response(&self, id: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": self.code, "message": self.message}})
    }
}

/// The JSON-RPC success response to request `id`.
pub(crate) fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Which A2A version's shapes a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// A2A v1.0.
    V1,
    /// A2A v0.3.
    V03,
}

/// The methods the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `SendMessage` / `message/send`.
    Send,
    /// `SendStreamingMessage` / `message/stream`.
    Stream,
    /// `GetTask` / `tasks/get`.
    Get,
    /// `CancelTask` / `tasks/cancel`.
    Cancel,
    /// `SubscribeToTask` / `tasks/resubscribe`.
    Subscribe,
}

fn method(name: &str) -> Option<(Method, Dialect)> {
    Some(match name {
        "SendMessage" => (Method::Send, Dialect::V1),
        "message/send" => (Method::Send, Dialect::V03),
        "SendStreamingMessage" => (Method::Stream, Dialect::V1),
        "message/stream" => (Method::Stream, Dialect::V03),
        "GetTask" => (Method::Get, Dialect::V1),
        "tasks/get" => (Method::Get, Dialect::V03),
        "CancelTask" => (Method::Cancel, Dialect::V1),
        "tasks/cancel" => (Method::Cancel, Dialect::V03),
        "SubscribeToTask" => (Method::Subscribe, Dialect::V1),
        "tasks/resubscribe" => (Method::Subscribe, Dialect::V03),
        _ => return None,
    })
}

/// A JSON-RPC call to one of the gateway's methods.
#[derive(Debug)]
pub(crate) struct Call {
    /// The request id (a string or a number), echoed in the response.
    pub id: Value,
    /// The method as named.
    pub name: String,
    /// The method.
    pub method: Method,
    /// The dialect of its name.
    pub dialect: Dialect,
    /// `params` (an object; absent is `{}`).
    pub params: Map<String, Value>,
}

/// The call in `body`, or the error response's id and error. Refused: a body that is not
/// JSON (-32700); a batch, a non-object, `jsonrpc` other than `"2.0"`, an id missing (a
/// notification: the gateway answers every call) or not a string or a number, a method
/// missing (-32600); an unknown method (-32601); `params` not an object (-32602).
pub(crate) fn parse_call(body: &[u8]) -> Result<Call, (Value, RpcError)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| (Value::Null, RpcError::new(code::PARSE_ERROR, format!("the body is not JSON: {e}"))))?;
    let invalid = |id: &Value, m: &str| (id.clone(), RpcError::new(code::INVALID_REQUEST, m));
    let Value::Object(mut o) = v else {
        let m = if v.is_array() { "batch requests are not supported" } else { "the request must be a JSON object" };
        return Err(invalid(&Value::Null, m));
    };
    let id = match o.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(_) => return Err(invalid(&Value::Null, "`id` must be a string or a number")),
        None => return Err(invalid(&Value::Null, "`id` is required (notifications are not supported)")),
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(&id, "`jsonrpc` must be exactly \"2.0\""));
    }
    let Some(name) = o.get("method").and_then(Value::as_str).map(str::to_owned) else {
        return Err(invalid(&id, "`method` is required (a string)"));
    };
    let Some((method, dialect)) = self::method(&name) else {
        return Err((id, RpcError::new(code::METHOD_NOT_FOUND, format!("method `{name}` not found"))));
    };
    let params = match o.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err((id, RpcError::new(code::INVALID_PARAMS, "`params` must be an object"))),
    };
    Ok(Call { id, name, method, dialect, params })
}

/// Whether an `A2A-Version` header value is one the gateway speaks: none, `0.3` or `1.x`.
pub(crate) fn version_supported(v: &str) -> bool {
    let v = v.trim();
    let mut parts = v.split('.');
    let (major, minor) = (parts.next().unwrap_or(""), parts.next().unwrap_or("0"));
    v.is_empty() || major == "1" || major == "0" && minor == "3"
}

fn invalid_params(m: impl Into<String>) -> RpcError {
    RpcError::new(code::INVALID_PARAMS, m)
}

/// Fields the gateway sets from the token's identity; a message may not carry them.
const STAMPED: [&str; 2] = ["sender_id", "zone"];

/// A `SendMessage` / `message/send` (or streaming) call's parameters.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// `message.messageId`.
    pub message_id: String,
    /// The text parts, joined with "\n".
    pub text: String,
    /// `message.taskId`: the task the message continues.
    pub task_id: Option<String>,
    /// `message.contextId`.
    pub context_id: Option<String>,
    /// The message as received.
    pub raw: Value,
    /// Whether to wait for the task to finish: v1.0 unless `configuration.returnImmediately`;
    /// v0.3 when `configuration.blocking`.
    pub wait: bool,
    /// `configuration.historyLength`.
    pub history_length: Option<usize>,
}

fn string(o: &Map<String, Value>, field: &str, at: &str) -> Result<Option<String>, RpcError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid_params(format!("`{at}.{field}` is empty"))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_params(format!("`{at}.{field}` must be a string"))),
    }
}

/// `historyLength` of `o` (a non-negative integer) if any.
pub(crate) fn history_length(o: &Map<String, Value>, at: &str) -> Result<Option<usize>, RpcError> {
    match o.get("historyLength") {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| invalid_params(format!("`{at}.historyLength` must be a non-negative integer"))),
    }
}

/// The message of a send call's `params`.
pub(crate) fn parse_send(params: &Map<String, Value>, dialect: Dialect) -> Result<Incoming, RpcError> {
    let Some(Value::Object(m)) = params.get("message") else {
        return Err(invalid_params("`params.message` is required (an object)"));
    };
    for (at, o) in [("params", params), ("params.message", m)] {
        let metadata = o.get("metadata").and_then(Value::as_object);
        let named = |f: &&str| o.contains_key(*f) || metadata.is_some_and(|md| md.contains_key(*f));
        if let Some(field) = STAMPED.into_iter().find(|f| named(f)) {
            return Err(invalid_params(format!(
                "`{field}` (in `{at}`) is not the caller's to choose: the gateway sets it from the token's identity"
            )));
        }
    }
    let message_id = string(m, "messageId", "params.message")?
        .ok_or_else(|| invalid_params("`params.message.messageId` is required"))?;
    match m.get("role").and_then(Value::as_str) {
        Some("ROLE_USER" | "user") => {}
        other => {
            return Err(invalid_params(format!(
                "`params.message.role` must be the user's (`ROLE_USER`, or `user` in v0.3), not {other:?}"
            )));
        }
    }
    let Some(parts) = m.get("parts").and_then(Value::as_array) else {
        return Err(invalid_params("`params.message.parts` is required (an array)"));
    };
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| p.get("kind").is_none_or(|k| k == "text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    if texts.is_empty() || texts.iter().all(|t| t.trim().is_empty()) {
        return Err(RpcError::new(
            code::CONTENT_TYPE_NOT_SUPPORTED,
            "the message has no text part: the group's agents take text/plain (the card's defaultInputModes)",
        ));
    }
    let config = match params.get("configuration") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => return Err(invalid_params("`params.configuration` must be an object")),
    };
    let flag = |f: &str| match config.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid_params(format!("`params.configuration.{f}` must be a boolean"))),
    };
    let wait = match dialect {
        Dialect::V1 => !flag("returnImmediately")?.unwrap_or(false),
        Dialect::V03 => flag("blocking")?.unwrap_or(false),
    };
    Ok(Incoming {
        message_id,
        text: texts.join("\n"),
        task_id: string(m, "taskId", "params.message")?,
        context_id: string(m, "contextId", "params.message")?,
        raw: Value::Object(m.clone()),
        wait,
        history_length: history_length(&config, "params.configuration")?,
    })
}

/// The task id of a `GetTask`, `CancelTask` or `SubscribeToTask` call (`params.id`).
pub(crate) fn task_id(params: &Map<String, Value>) -> Result<String, RpcError> {
    string(params, "id", "params")?.ok_or_else(|| invalid_params("`params.id` is required"))
}

/// An A2A task state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Published, no word from an agent yet.
    Submitted,
    /// An agent works on it (or streams its answer).
    Working,
    /// The agent asks for more input.
    InputRequired,
    /// Answered.
    Completed,
    /// Failed (or no usable answer).
    Failed,
    /// Canceled.
    Canceled,
    /// Refused (by policy or budget).
    Rejected,
}

impl TaskState {
    /// The state of a kafclaw task status (docs/a2a-kafka.md): `accepted` → submitted,
    /// `in_progress`/`streaming` → working, `input_required`, `completed`, `failed`/`no_answer`
    /// → failed, `rejected`/`budget_exceeded` → rejected, `canceled`; anything else is
    /// `otherwise`.
    pub(crate) fn of(status: &str, otherwise: TaskState) -> TaskState {
        match status {
            "accepted" => Self::Submitted,
            "in_progress" | "streaming" => Self::Working,
            "input_required" => Self::InputRequired,
            "completed" => Self::Completed,
            "failed" | "no_answer" => Self::Failed,
            "rejected" | "budget_exceeded" => Self::Rejected,
            "canceled" | "cancelled" => Self::Canceled,
            _ => otherwise,
        }
    }

    /// Completed, failed, canceled or rejected: nothing changes it any more.
    pub(crate) fn terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled | Self::Rejected)
    }

    /// A state that ends a stream: terminal, or waiting for the caller (input required).
    pub(crate) fn ends_stream(self) -> bool {
        self.terminal() || self == Self::InputRequired
    }

    fn name(self, d: Dialect) -> &'static str {
        match (self, d) {
            (Self::Submitted, Dialect::V1) => "TASK_STATE_SUBMITTED",
            (Self::Working, Dialect::V1) => "TASK_STATE_WORKING",
            (Self::InputRequired, Dialect::V1) => "TASK_STATE_INPUT_REQUIRED",
            (Self::Completed, Dialect::V1) => "TASK_STATE_COMPLETED",
            (Self::Failed, Dialect::V1) => "TASK_STATE_FAILED",
            (Self::Canceled, Dialect::V1) => "TASK_STATE_CANCELED",
            (Self::Rejected, Dialect::V1) => "TASK_STATE_REJECTED",
            (Self::Submitted, Dialect::V03) => "submitted",
            (Self::Working, Dialect::V03) => "working",
            (Self::InputRequired, Dialect::V03) => "input-required",
            (Self::Completed, Dialect::V03) => "completed",
            (Self::Failed, Dialect::V03) => "failed",
            (Self::Canceled, Dialect::V03) => "canceled",
            (Self::Rejected, Dialect::V03) => "rejected",
        }
    }
}

/// A text message of a task's history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Msg {
    /// `messageId`.
    pub id: String,
    /// The agent's (else the user's).
    pub agent: bool,
    /// Its text.
    pub text: String,
}

/// The JSON of one text part.
pub(crate) fn text_part(text: &str, d: Dialect) -> Value {
    match d {
        Dialect::V1 => json!({"text": text}),
        Dialect::V03 => json!({"kind": "text", "text": text}),
    }
}

/// The `answer` artifact with `text`.
pub(crate) fn artifact(text: &str, d: Dialect) -> Value {
    json!({"artifactId": "answer", "name": "answer", "parts": [text_part(text, d)]})
}

/// What the gateway knows of a task at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// The task id.
    pub id: String,
    /// Its context id.
    pub context_id: String,
    /// Its state.
    pub state: TaskState,
    /// The status message's text (an agent's summary or answer; the cancel's reason).
    pub status_text: Option<String>,
    /// The final answer (the `answer` artifact).
    pub answer: Option<String>,
    /// The messages so far, oldest first.
    pub history: Vec<Msg>,
    /// When the state was last seen to change (RFC 3339).
    pub timestamp: String,
}

impl Snapshot {
    fn message(&self, m: &Msg, d: Dialect) -> Value {
        let role = match (m.agent, d) {
            (true, Dialect::V1) => "ROLE_AGENT",
            (false, Dialect::V1) => "ROLE_USER",
            (true, Dialect::V03) => "agent",
            (false, Dialect::V03) => "user",
        };
        let mut v = json!({
            "messageId": m.id, "role": role, "parts": [text_part(&m.text, d)],
            "taskId": self.id, "contextId": self.context_id,
        });
        if d == Dialect::V03 {
            v["kind"] = json!("message");
        }
        v
    }

    /// The `TaskStatus` object.
    pub(crate) fn status(&self, d: Dialect) -> Value {
        let mut s = json!({"state": self.state.name(d), "timestamp": self.timestamp});
        if let Some(text) = &self.status_text {
            let m = Msg {
                id: format!("{}-status-{}", self.id, self.state.name(Dialect::V03)),
                agent: true,
                text: text.clone(),
            };
            s["message"] = self.message(&m, d);
        }
        s
    }

    /// The `Task` object, with at most `history_length` of the latest messages (all if none).
    pub(crate) fn task(&self, d: Dialect, history_length: Option<usize>) -> Value {
        let keep = history_length.unwrap_or(usize::MAX).min(self.history.len());
        let history: Vec<Value> =
            self.history[self.history.len() - keep..].iter().map(|m| self.message(m, d)).collect();
        let mut t = json!({"id": self.id, "contextId": self.context_id, "status": self.status(d)});
        if let Some(a) = &self.answer {
            t["artifacts"] = json!([artifact(a, d)]);
        }
        if !history.is_empty() {
            t["history"] = Value::Array(history);
        }
        if d == Dialect::V03 {
            t["kind"] = json!("task");
        }
        t
    }

    /// The result of a send call, and the first event of a stream: the task.
    pub(crate) fn task_result(&self, d: Dialect, history_length: Option<usize>) -> Value {
        match d {
            Dialect::V1 => json!({"task": self.task(d, history_length)}),
            Dialect::V03 => self.task(d, history_length),
        }
    }

    /// A `TaskStatusUpdateEvent` of the current status (`final` in v0.3 when it ends the
    /// stream).
    pub(crate) fn status_event(&self, d: Dialect) -> Value {
        match d {
            Dialect::V1 => {
                json!({"statusUpdate": {"taskId": self.id, "contextId": self.context_id, "status": self.status(d)}})
            }
            Dialect::V03 => json!({
                "kind": "status-update", "taskId": self.id, "contextId": self.context_id,
                "status": self.status(d), "final": self.state.ends_stream(),
            }),
        }
    }

    /// A `TaskArtifactUpdateEvent` of the `answer` artifact carrying `text`.
    pub(crate) fn artifact_event(&self, text: &str, append: bool, last_chunk: bool, d: Dialect) -> Value {
        let mut e = json!({
            "taskId": self.id, "contextId": self.context_id, "artifact": artifact(text, d),
            "append": append, "lastChunk": last_chunk,
        });
        match d {
            Dialect::V1 => json!({"artifactUpdate": e}),
            Dialect::V03 => {
                e["kind"] = json!("artifact-update");
                e
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &str) -> Result<Call, (Value, RpcError)> {
        parse_call(body.as_bytes())
    }

    fn code_of(body: &str) -> i64 {
        call(body).unwrap_err().1.code
    }

    #[test]
    fn malformed_json_rpc_is_refused_with_its_code() {
        assert_eq!(code_of("{"), code::PARSE_ERROR);
        assert_eq!(code_of(r#"[{"jsonrpc":"2.0","id":1,"method":"GetTask"}]"#), code::INVALID_REQUEST);
        assert_eq!(code_of(r#""x""#), code::INVALID_REQUEST);
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","method":"GetTask"}"#), code::INVALID_REQUEST);
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":true,"method":"GetTask"}"#), code::INVALID_REQUEST);
        assert_eq!(code_of(r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#), code::INVALID_REQUEST);
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1}"#), code::INVALID_REQUEST);
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/list"}"#), code::METHOD_NOT_FOUND);
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":[1]}"#), code::INVALID_PARAMS);
        let (id, e) = call(r#"{"jsonrpc":"1.0","id":"r-7","method":"GetTask"}"#).unwrap_err();
        assert_eq!(e.response(&id)["id"], "r-7", "the id is echoed when known");
        let c = call(r#"{"jsonrpc":"2.0","id":7,"method":"message/send","params":{}}"#).unwrap();
        assert_eq!((c.method, c.dialect, c.id), (Method::Send, Dialect::V03, json!(7)));
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_message_needs_a_text_part_and_cannot_name_its_sender() {
        let m = |parts: Value| params(json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": parts}}));
        let ok = parse_send(&m(json!([{"text": "a"}, {"url": "http://x"}, {"text": "b"}])), Dialect::V1).unwrap();
        assert_eq!((ok.text.as_str(), ok.wait, ok.task_id), ("a\nb", true, None));
        let e = parse_send(&m(json!([{"data": {"x": 1}}])), Dialect::V1).unwrap_err();
        assert_eq!(e.code, code::CONTENT_TYPE_NOT_SUPPORTED);
        let v03 =
            params(json!({"message": {"messageId": "m1", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}}));
        assert!(!parse_send(&v03, Dialect::V03).unwrap().wait, "v0.3 waits only when `blocking`");
        for bad in [
            json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "x"}], "sender_id": "root"}}),
            json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "x"}], "metadata": {"zone": "internal"}}}),
            json!({"zone": "internal", "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "x"}]}}),
        ] {
            let e = parse_send(&params(bad), Dialect::V1).unwrap_err();
            assert!(e.code == code::INVALID_PARAMS && e.message.contains("is not the caller's to choose"), "{e:?}");
        }
        let e = parse_send(
            &params(json!({"message": {"messageId": "m1", "role": "ROLE_AGENT", "parts": []}})),
            Dialect::V1,
        );
        assert_eq!(e.unwrap_err().code, code::INVALID_PARAMS);
        assert_eq!(parse_send(&params(json!({})), Dialect::V1).unwrap_err().code, code::INVALID_PARAMS);
    }

    #[test]
    fn versions() {
        for ok in ["", "1.0", "1", "1.2", "0.3", "0.3.0"] {
            assert!(version_supported(ok), "{ok}");
        }
        for bad in ["2.0", "0.2", "x"] {
            assert!(!version_supported(bad), "{bad}");
        }
    }

    #[test]
    fn tasks_render_in_both_dialects() {
        let s = Snapshot {
            id: "t".into(),
            context_id: "c".into(),
            state: TaskState::Completed,
            status_text: Some("pong".into()),
            answer: Some("pong".into()),
            history: vec![Msg { id: "m1".into(), agent: false, text: "ping".into() }],
            timestamp: "2026-01-01T00:00:00.000Z".into(),
        };
        let v1 = s.task_result(Dialect::V1, None);
        assert_eq!(v1["task"]["status"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(v1["task"]["artifacts"][0]["parts"][0]["text"], "pong");
        assert_eq!(v1["task"]["history"][0]["role"], "ROLE_USER");
        let v03 = s.task_result(Dialect::V03, Some(0));
        assert_eq!((v03["kind"].as_str(), v03["status"]["state"].as_str()), (Some("task"), Some("completed")));
        assert!(v03.get("history").is_none(), "historyLength 0");
        assert_eq!(s.status_event(Dialect::V03)["final"], true);
        assert_eq!(s.artifact_event("po", false, false, Dialect::V1)["artifactUpdate"]["append"], false);
    }
}
