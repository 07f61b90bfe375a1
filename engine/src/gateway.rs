//! `kafclaw gateway`: the remote mode — a headless HTTP gateway (axum) in front of an agent
//! group. Submit a task, read its status and result, read its trace, scrape `/metrics`.
//!
//! | route | |
//! |---|---|
//! | `GET /healthz` | alive (the only route without a token) |
//! | `POST /v1/tasks` | `{"description", "skill"?}` → `202 {"task_id", "topic"}`: a `request` on `group.<g>.requests`, or a `skill_request` on `group.<g>.skill.<s>.requests` |
//! | `GET /v1/tasks/{id}` | `{"task_id", "status", "result"?, "answer"?}`: `pending` until a response, skill response or task status with that correlation id arrives |
//! | `GET /v1/traces/{id}` | the `trace` envelopes of the task, in arrival order |
//! | `GET /metrics` | Prometheus text: tasks submitted, answers seen, requests by route and status |
//!
//! Every route but `/healthz` needs `Authorization: Bearer <token>`, compared in constant
//! time; the gateway does not start without a token. It binds 127.0.0.1 unless told otherwise.
//!
//! **Identity is the gateway's, not the caller's.** Each token carries an [`Identity`]: the
//! `sender_id` (and `requester_id`) and the `zone` stamped on every task submitted with it.
//! The body cannot choose them: a body with `sender_id` or `zone` is refused (400, naming the
//! field) rather than silently stripped, so a client that believes it acts as someone else
//! learns at once that it does not (its tasks would otherwise run, be budgeted and audited
//! under an identity it did not expect). Operators decide what a sender may do from its id
//! (`internal_senders`, admissions, budgets) and zone, so letting a token holder pick them
//! would let any holder pose as an internal agent.
//!
//! Tokens come from one of two places (see [`TokenSource`]):
//! - an environment variable (`--token-env`, default `KAFCLAW_GATEWAY_TOKEN`): one token,
//!   whose identity is `--sender-id` (default `gateway`) and `--zone` (default none);
//! - a tokens file (`--tokens-file`): one token per line, `name sender_id zone token`,
//!   whitespace-separated, `-` for no zone, `#` comments; names and tokens must be unique.
//!   With a file, the environment variable is not read.

use std::net::SocketAddr;
use std::path::{Path as FilePath, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::kafka::tasks::TaskIo;

/// Who holds a token: what the gateway stamps on the tasks submitted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name (logs only; never the secret).
    pub name: String,
    /// The `sender_id` and `payload.requester_id` of its tasks.
    pub sender_id: String,
    /// The `zone` of its tasks (none: group-wide).
    pub zone: Option<String>,
}

/// A bearer token and the identity of its holder.
#[derive(Clone)]
pub struct Credential {
    token: Vec<u8>,
    /// The holder.
    pub identity: Identity,
}

impl Credential {
    /// `token` (trimmed) for `identity`; the token is registered as a secret, so no log line
    /// or error shows it.
    pub fn new(token: &str, identity: Identity) -> Self {
        kafclaw_operators::api::secrets::register(token.trim());
        Self { token: token.trim().as_bytes().to_vec(), identity }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("token", &"***").field("identity", &self.identity).finish()
    }
}

/// Where the gateway's tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// One token in the environment variable `var`, for `sender_id` in `zone`.
    Env {
        /// The variable.
        var: String,
        /// The identity's sender id.
        sender_id: String,
        /// The identity's zone.
        zone: Option<String>,
    },
    /// A tokens file: `name sender_id zone token` per line (`-`: no zone).
    File(PathBuf),
}

/// The tokens of `source`; an error names what is missing or wrong.
pub fn credentials(source: &TokenSource) -> Result<Vec<Credential>, String> {
    credentials_from(source, |var| std::env::var(var).ok())
}

fn credentials_from(source: &TokenSource, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Credential>, String> {
    match source {
        TokenSource::Env { var, sender_id, zone } => {
            let token = match env(var) {
                Some(t) if !t.trim().is_empty() => t,
                _ => {
                    return Err(format!(
                        "no bearer token: set {var} or pass --tokens-file (the gateway has no unauthenticated mode)"
                    ));
                }
            };
            if sender_id.trim().is_empty() {
                return Err("--sender-id is empty".to_owned());
            }
            let zone = zone.as_deref().map(str::trim).filter(|z| !z.is_empty() && *z != "-").map(str::to_owned);
            Ok(vec![Credential::new(
                &token,
                Identity { name: var.clone(), sender_id: sender_id.trim().to_owned(), zone },
            )])
        }
        TokenSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--tokens-file {}: {e}", path.display()))?;
            warn_if_readable_by_others(path);
            parse_tokens(&text).map_err(|e| format!("--tokens-file {}:{e}", path.display()))
        }
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &FilePath) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the tokens file is readable by group or others (chmod 600)");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &FilePath) {}

/// The lines of a tokens file: `name sender_id zone token`; `-` is no zone; blank lines and
/// `#` comments are skipped. An error starts with the line number.
pub fn parse_tokens(text: &str) -> Result<Vec<Credential>, String> {
    let mut out: Vec<Credential> = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, sender_id, zone, token] = fields[..] else {
            return Err(format!(
                "{n}: expected `name sender_id zone token` (zone `-` for none), got {} field(s)",
                fields.len()
            ));
        };
        if out.iter().any(|c| c.identity.name == name) {
            return Err(format!("{n}: token name `{name}` appears twice"));
        }
        if out.iter().any(|c| bool::from(c.token.as_slice().ct_eq(token.as_bytes()))) {
            return Err(format!("{n}: token `{name}` is the same secret as an earlier line (tokens must be unique)"));
        }
        let zone = (zone != "-").then(|| zone.to_owned());
        out.push(Credential::new(token, Identity { name: name.to_owned(), sender_id: sender_id.to_owned(), zone }));
    }
    if out.is_empty() {
        return Err("0: no token (the gateway has no unauthenticated mode)".to_owned());
    }
    Ok(out)
}

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    code: u16,
}

/// The gateway's counters.
#[derive(Default)]
struct Metrics {
    submitted: Counter<u64, AtomicU64>,
    requests: Family<RouteLabels, Counter<u64, AtomicU64>>,
}

/// What the routes share.
#[derive(Clone)]
pub struct Gateway {
    group: String,
    skills: Arc<Vec<String>>,
    credentials: Arc<Vec<Credential>>,
    io: Arc<TaskIo>,
    metrics: Arc<Metrics>,
    registry: Arc<Mutex<Registry>>,
}

impl Gateway {
    /// A gateway for `group`, serving `skills`, guarded by `credentials`.
    pub fn new(group: &str, skills: Vec<String>, credentials: Vec<Credential>, io: TaskIo) -> Self {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("kafclaw_gateway");
        registry.register("tasks_submitted", "Tasks published to the group", metrics.submitted.clone());
        registry.register("http_requests", "HTTP requests by route and status", metrics.requests.clone());
        Self {
            group: group.to_owned(),
            skills: Arc::new(skills),
            credentials: Arc::new(credentials),
            io: Arc::new(io),
            metrics,
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    /// The routes.
    pub fn router(self) -> Router {
        let guarded = Router::new()
            .route("/v1/tasks", post(submit))
            .route("/v1/tasks/{id}", get(task))
            .route("/v1/traces/{id}", get(trace))
            .route("/metrics", get(metrics))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), authorize));
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .merge(guarded)
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), count))
            .with_state(self)
    }
}

/// The bearer token of `headers`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let given = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    Some(given.strip_prefix("Bearer ")?.trim().as_bytes())
}

/// The identity whose token the request carries. Every token is compared, in constant time,
/// and the match is selected without a branch, so the timing tells neither whether nor which
/// token matched (only, as usual, the lengths of the tokens).
fn authorized<'c>(headers: &HeaderMap, credentials: &'c [Credential]) -> Option<&'c Identity> {
    let given = bearer(headers)?;
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, c) in credentials.iter().enumerate() {
        let eq = given.ct_eq(&c.token);
        index.conditional_assign(&(i as u64), eq);
        found |= eq;
    }
    bool::from(found).then(|| &credentials[index as usize].identity)
}

async fn authorize(State(g): State<Gateway>, mut request: Request, next: Next) -> Response {
    if let Some(who) = authorized(request.headers(), &g.credentials).cloned() {
        request.extensions_mut().insert(who);
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            Json(json!({"error": "a valid bearer token is required"})),
        )
            .into_response()
    }
}

async fn count(State(g): State<Gateway>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    g.metrics.requests.get_or_create(&RouteLabels { route, code: response.status().as_u16() }).inc();
    response
}

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

/// Fields of the envelope that the gateway sets from the token's identity.
const STAMPED: [&str; 2] = ["sender_id", "zone"];

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({"error": message.into()}))).into_response()
}

fn new_task_id() -> String {
    format!("task-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
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

async fn submit(State(g): State<Gateway>, Extension(who): Extension<Identity>, body: axum::body::Bytes) -> Response {
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
    let id = new_task_id();
    let now = kafclaw_operators::api::record::format_time_ms(kafclaw_operators::api::record::now_ms());
    let mut e = Envelope::new(
        kind,
        id.clone(),
        who.sender_id.clone(),
        now,
        json!({"task_id": id, "description": s.description, "requester_id": who.sender_id}),
    );
    e.id = Some(id.clone());
    e.zone = who.zone.clone();
    if let Err(m) = g.io.submit(&topic, &e).await {
        return error(StatusCode::BAD_GATEWAY, m);
    }
    tracing::info!(task_id = %id, token = %who.name, sender_id = %who.sender_id, %topic, "task submitted");
    g.metrics.submitted.inc();
    (StatusCode::ACCEPTED, Json(json!({"task_id": id, "topic": topic}))).into_response()
}

async fn task(State(g): State<Gateway>, Path(id): Path<String>) -> Response {
    let view = g.io.view.lock().unwrap_or_else(|p| p.into_inner());
    let Some(answer) = view.answer(&id) else {
        return Json(json!({"task_id": id, "status": "pending"})).into_response();
    };
    let p = &answer["payload"];
    let result = ["content", "result", "summary"].iter().find_map(|k| p[*k].as_str().filter(|s| !s.is_empty()));
    let status = p["status"].as_str().filter(|s| !s.is_empty()).unwrap_or("completed");
    Json(json!({"task_id": id, "status": status, "result": result, "answer": answer})).into_response()
}

async fn trace(State(g): State<Gateway>, Path(id): Path<String>) -> Response {
    let view = g.io.view.lock().unwrap_or_else(|p| p.into_inner());
    Json(Value::Array(view.trace(&id).to_vec())).into_response()
}

async fn metrics(State(g): State<Gateway>) -> Response {
    let mut text = String::new();
    let registry = g.registry.lock().unwrap_or_else(|p| p.into_inner());
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([("content-type", crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `kafclaw gateway`: reads the tokens, follows the group's answer topics, serves until
/// SIGTERM or SIGINT. Returns the exit code.
pub fn run(
    group: &str,
    skills: Vec<String>,
    listen: SocketAddr,
    tokens: &TokenSource,
    brokers: Option<String>,
    partitions: i32,
) -> i32 {
    let credentials = match credentials(tokens) {
        Ok(c) => c,
        Err(m) => {
            eprintln!("error: {m}");
            return crate::exit::INVALID;
        }
    };
    for c in &credentials {
        let i = &c.identity;
        tracing::info!(token = %i.name, sender_id = %i.sender_id, zone = ?i.zone, "gateway token");
    }
    let settings = crate::kafka::ClientSettings::from_env(brokers);
    let mut follow = vec![
        format!("group.{group}.responses"),
        format!("group.{group}.tasks.status"),
        format!("group.{group}.traces"),
    ];
    follow.extend(skills.iter().map(|s| format!("group.{group}.skill.{s}.responses")));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = match TaskIo::start(&settings, &follow, partitions, stop.clone()) {
        Ok(io) => io,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::exit::RUNTIME;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::exit::RUNTIME;
        }
    };
    let gateway = Gateway::new(group, skills, credentials, io);
    let result = rt.block_on(async move {
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
        };
        serve(listen, gateway, shutdown).await
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    match result {
        Ok(()) => crate::exit::OK,
        Err(e) => {
            eprintln!("error: {listen}: {e}");
            crate::exit::RUNTIME
        }
    }
}

/// Serves the gateway on `addr` until `stop` resolves.
pub async fn serve(
    addr: SocketAddr,
    gateway: Gateway,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "gateway listening");
    axum::serve(listener, gateway.router()).with_graceful_shutdown(stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, sender: &str, zone: Option<&str>) -> Identity {
        Identity { name: name.into(), sender_id: sender.into(), zone: zone.map(Into::into) }
    }

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn tokens_are_checked_whole() {
        let creds = [Credential::new("s3cret", who("a", "gateway", None))];
        assert!(authorized(&HeaderMap::new(), &creds).is_none());
        assert_eq!(authorized(&with("s3cret"), &creds).map(|i| i.name.as_str()), Some("a"));
        assert!(authorized(&with("s3cre"), &creds).is_none());
        assert!(authorized(&with("s3crett"), &creds).is_none());
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(authorized(&h, &creds).is_none());
    }

    #[test]
    fn a_token_is_a_secret_no_text_shows() {
        let _ = Credential::new(" gw-token-for-redaction-test ", who("a", "a", None));
        let text = kafclaw_operators::api::secrets::redact("Authorization: Bearer gw-token-for-redaction-test");
        assert_eq!(text, "Authorization: Bearer [redacted]");
    }

    #[test]
    fn each_token_selects_its_own_identity() {
        let creds = parse_tokens(
            "# name sender_id zone token\n\nops  ops-console  -  tok-ops-1\npartner partner-acme external tok-partner-2\n",
        )
        .unwrap();
        assert_eq!(authorized(&with("tok-ops-1"), &creds), Some(&who("ops", "ops-console", None)));
        assert_eq!(authorized(&with("tok-partner-2"), &creds), Some(&who("partner", "partner-acme", Some("external"))));
        assert!(authorized(&with("tok-partner-"), &creds).is_none());
        assert!(authorized(&with(""), &creds).is_none());
        assert!(!format!("{creds:?}").contains("tok-ops-1"), "Debug hides the secrets");
    }

    #[test]
    fn tokens_files_with_mistakes_are_refused_by_line() {
        let err = |t: &str| parse_tokens(t).map(|_| ()).unwrap_err();
        assert!(err("a b c\n").starts_with("1: expected `name sender_id zone token`"), "{}", err("a b c"));
        assert!(err("a s - t1\na s2 - t2\n").contains("2: token name `a` appears twice"));
        assert!(err("a s - t1\n# c\nb s2 - t1\n").contains("3: token `b` is the same secret"));
        assert!(err("# only comments\n").contains("no token"));
    }

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

    #[test]
    fn the_env_token_has_the_default_identity() {
        let source = |zone: Option<&str>| TokenSource::Env {
            var: "KAFCLAW_GATEWAY_TOKEN".into(),
            sender_id: "gateway".into(),
            zone: zone.map(Into::into),
        };
        let e = credentials_from(&source(None), |_| None).unwrap_err();
        assert!(e.contains("no bearer token: set KAFCLAW_GATEWAY_TOKEN"), "{e}");
        let e = credentials_from(&source(None), |_| Some("  ".into())).unwrap_err();
        assert!(e.contains("no bearer token"), "{e}");
        let env = |_: &str| Some(" tok \n".to_owned());
        let c = credentials_from(&source(Some("-")), env).unwrap();
        assert_eq!(authorized(&with("tok"), &c), Some(&who("KAFCLAW_GATEWAY_TOKEN", "gateway", None)));
        let c = credentials_from(&source(Some("external")), env).unwrap();
        assert_eq!(c[0].identity.zone.as_deref(), Some("external"));
    }
}
