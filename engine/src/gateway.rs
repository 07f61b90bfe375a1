//! `kafclaw gateway`: the remote mode — a headless HTTP gateway (axum) in front of an agent
//! group. Submit a task, read its status and result, read its trace, scrape `/metrics`.
//!
//! | route | |
//! |---|---|
//! | `GET /healthz` | alive (the only route without a token) |
//! | `POST /v1/tasks` | `{"description", "skill"?, "sender_id"?, "zone"?}` → `202 {"task_id", "topic"}`: a `request` on `group.<g>.requests`, or a `skill_request` on `group.<g>.skill.<s>.requests` |
//! | `GET /v1/tasks/{id}` | `{"task_id", "status", "result"?, "answer"?}`: `pending` until a response, skill response or task status with that correlation id arrives |
//! | `GET /v1/traces/{id}` | the `trace` envelopes of the task, in arrival order |
//! | `GET /metrics` | Prometheus text: tasks submitted, answers seen, requests by route and status |
//!
//! Every route but `/healthz` needs `Authorization: Bearer <token>`, compared in constant
//! time; the token comes from an environment variable, and the gateway does not start without
//! one. It binds 127.0.0.1 unless told otherwise.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Request, State};
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
use subtle::ConstantTimeEq;

use crate::kafka::tasks::TaskIo;

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
    token: Arc<Vec<u8>>,
    io: Arc<TaskIo>,
    metrics: Arc<Metrics>,
    registry: Arc<Mutex<Registry>>,
}

impl Gateway {
    /// A gateway for `group`, serving `skills`, guarded by `token`.
    pub fn new(group: &str, skills: Vec<String>, token: String, io: TaskIo) -> Self {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("kafclaw_gateway");
        registry.register("tasks_submitted", "Tasks published to the group", metrics.submitted.clone());
        registry.register("http_requests", "HTTP requests by route and status", metrics.requests.clone());
        Self {
            group: group.to_owned(),
            skills: Arc::new(skills),
            token: Arc::new(token.into_bytes()),
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

/// Whether the request carries the token (constant-time comparison).
fn authorized(headers: &HeaderMap, token: &[u8]) -> bool {
    let Some(given) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else { return false };
    bool::from(given.trim().as_bytes().ct_eq(token))
}

async fn authorize(State(g): State<Gateway>, request: Request, next: Next) -> Response {
    if authorized(request.headers(), &g.token) {
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
    /// Who asks (default `gateway`).
    #[serde(default)]
    sender_id: Option<String>,
    /// The task's zone.
    #[serde(default)]
    zone: Option<String>,
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({"error": message.into()}))).into_response()
}

fn new_task_id() -> String {
    format!("task-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

async fn submit(State(g): State<Gateway>, body: axum::body::Bytes) -> Response {
    let s: Submit = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if s.description.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`description` is empty");
    }
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
    let sender = s.sender_id.unwrap_or_else(|| "gateway".into());
    let now = kafclaw_operators::api::record::format_time_ms(kafclaw_operators::api::record::now_ms());
    let mut e = Envelope::new(
        kind,
        id.clone(),
        sender.clone(),
        now,
        json!({"task_id": id, "description": s.description, "requester_id": sender}),
    );
    e.id = Some(id.clone());
    e.zone = s.zone;
    if let Err(m) = g.io.submit(&topic, &e).await {
        return error(StatusCode::BAD_GATEWAY, m);
    }
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
        Ok(()) => {
            ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `kafclaw gateway`: checks the token, follows the group's answer topics, serves until
/// SIGTERM or SIGINT. Returns the exit code.
pub fn run(
    group: &str,
    skills: Vec<String>,
    listen: SocketAddr,
    token_env: &str,
    brokers: Option<String>,
    partitions: i32,
) -> i32 {
    let token = match std::env::var(token_env) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            eprintln!("error: no bearer token: set {token_env} (the gateway has no unauthenticated mode)");
            return crate::exit::INVALID;
        }
    };
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
    let gateway = Gateway::new(group, skills, token, io);
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

    #[test]
    fn tokens_are_checked_whole() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, b"s3cret"));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, b"s3cret"));
        assert!(!authorized(&h, b"s3cre"));
        assert!(!authorized(&h, b"s3crett"));
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(!authorized(&h, b"s3cret"));
    }
}
