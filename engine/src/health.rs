//! The instance's HTTP endpoint (axum): `/healthz` (alive), `/readyz` (assigned and able to
//! process), `/stats` (counters as JSON), and interactive state queries: `/state` (tables, key
//! counts, sizes, sample keys) and `/state/{table}/{key}` (a key's committed values). Binds
//! 127.0.0.1 unless told otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

use crate::kafka::Stats;
use crate::runtime::query::{QueryError, QuerySlot};
use kafclaw_agent::model::SharedModel;

/// What the routes share.
#[derive(Clone)]
pub struct Endpoint {
    /// The instance's counters.
    pub stats: Arc<Stats>,
    /// The instance's state, once open.
    pub state: QuerySlot,
    /// The topology's models (their calls and tokens are reported with the counters).
    pub models: Vec<Arc<SharedModel>>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(e): State<Endpoint>) -> impl IntoResponse {
    if e.stats.snapshot().ready {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn stats_json(State(e): State<Endpoint>) -> impl IntoResponse {
    let mut v = serde_json::to_value(e.stats.snapshot()).unwrap_or_default();
    let models: serde_json::Map<String, serde_json::Value> = e
        .models
        .iter()
        .map(|m| (m.name.clone(), serde_json::to_value(m.usage().unwrap_or_default()).unwrap_or_default()))
        .collect();
    v["models"] = serde_json::Value::Object(models);
    Json(v)
}

fn query_error(e: QueryError) -> (StatusCode, String) {
    match e {
        QueryError::UnknownTable(..) => (StatusCode::NOT_FOUND, format!("{e}\n")),
        QueryError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn not_open() -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, "state store not open yet\n".to_owned())
}

/// Options of `/state`.
#[derive(Debug, serde::Deserialize)]
struct InspectParams {
    /// Sample keys per table.
    samples: Option<usize>,
}

async fn state_inspect(State(e): State<Endpoint>, Query(p): Query<InspectParams>) -> Response {
    let Some(q) = e.state.get().cloned() else { return not_open().into_response() };
    let samples = p.samples.unwrap_or(5).min(1000);
    match tokio::task::spawn_blocking(move || q.inspect(samples)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(err)) => query_error(err).into_response(),
        Err(join) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{join}\n")).into_response(),
    }
}

async fn state_get(State(e): State<Endpoint>, Path((table, key)): Path<(String, String)>) -> Response {
    let Some(q) = e.state.get().cloned() else { return not_open().into_response() };
    let (t, k) = (table.clone(), key.clone());
    match tokio::task::spawn_blocking(move || q.get(&t, k.as_bytes())).await {
        Ok(Ok(values)) if values.is_empty() => {
            (StatusCode::NOT_FOUND, format!("no key `{key}` in table `{table}`\n")).into_response()
        }
        Ok(Ok(values)) => Json(serde_json::json!({"table": table, "key": key, "values": values})).into_response(),
        Ok(Err(err)) => query_error(err).into_response(),
        Err(join) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{join}\n")).into_response(),
    }
}

/// The routes.
pub fn router(endpoint: Endpoint) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats_json))
        .route("/state", get(state_inspect))
        .route("/state/{table}/{key}", get(state_get))
        .with_state(endpoint)
}

/// Binds `addr` and serves on a background thread; returns the bound address.
pub fn serve(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("kafclaw-http".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(error = %e, "http endpoint: no runtime"),
        };
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    if let Err(e) = axum::serve(l, router(endpoint)).await {
                        tracing::error!(error = %e, "http endpoint stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "http endpoint: bad listener"),
            }
        });
    })?;
    Ok(bound)
}
