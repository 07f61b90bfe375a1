//! The instance's HTTP endpoint (axum): `/healthz` (alive), `/readyz` (assigned and able to
//! process), `/metrics` (Prometheus, OpenMetrics text: [`crate::metrics`]), `/stats`
//! (counters and model usage as JSON), and interactive state queries:
//! `/state` (tables, key counts, sizes, sample keys) and `/state/{table}/{key}` (a key's
//! committed values — which include journalled model answers and tool results).
//!
//! **Access.** The probes (`/healthz`, `/readyz`) are always open. With a token (`run
//! --http-token-env`, default `KAFCLAW_HTTP_TOKEN`), `/metrics`, `/stats` and `/state…` need
//! `Authorization: Bearer <token>` (constant-time comparison; 401 otherwise), whatever the
//! address. Without one they are open, which is allowed only on a loopback address: `run`
//! refuses to start with `--http` on any other address and no token ([`check_exposure`]).
//! A loopback address is still reachable by every process of the host, tools run by agents
//! included: set a token wherever those should not read the state.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;

use crate::kafka::Stats;
use crate::runtime::query::{QueryError, QuerySlot};
use kafclaw_agent::model::SharedModel;

/// What the routes share.
#[derive(Clone)]
pub struct Endpoint {
    /// The topology's name (the `topology` label of the metrics).
    pub topology: String,
    /// The instance's counters.
    pub stats: Arc<Stats>,
    /// The instance's state, once open.
    pub state: QuerySlot,
    /// The topology's models (their calls and tokens are reported with the counters).
    pub models: Vec<Arc<SharedModel>>,
    /// The bearer token `/stats` and `/state…` need (none: open, loopback only).
    pub token: Option<Arc<str>>,
}

/// Why `addr` may not be served with (`token` true) or without a token: an endpoint on a
/// non-loopback address (`0.0.0.0` included) must have one. `token_env` names the variable
/// to set.
pub fn check_exposure(addr: SocketAddr, token: bool, token_env: &str) -> Result<(), String> {
    if token || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--http {addr} is not a loopback address: /stats and /state would be open to the network; \
         set a bearer token in {token_env} (--http-token-env), or listen on 127.0.0.1"
    ))
}

/// The token in the environment variable `var`, if it is set and not blank.
pub fn token_from_env(var: &str) -> Option<Arc<str>> {
    let token = std::env::var(var).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())?;
    kafclaw_operators::api::secrets::register(&token);
    Some(Arc::from(token))
}

async fn authorize(State(e): State<Endpoint>, request: Request, next: Next) -> Response {
    let Some(token) = e.token.as_deref() else { return next.run(request).await };
    if crate::gateway::bearer(request.headers()).is_some_and(|given| bool::from(given.ct_eq(token.as_bytes()))) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")], "a valid bearer token is required\n")
            .into_response()
    }
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

async fn metrics(State(e): State<Endpoint>) -> Response {
    match crate::metrics::encode_instance(&e.stats, &e.topology, &e.models) {
        Ok(text) => ([("content-type", crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
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
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/stats", get(stats_json))
        .route("/state", get(state_inspect))
        .route("/state/{table}/{key}", get(state_get))
        .route_layer(axum::middleware::from_fn_with_state(endpoint.clone(), authorize));
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).merge(guarded).with_state(endpoint)
}

/// Binds `addr` and serves on a background thread; returns the bound address.
pub fn serve(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    check_exposure(addr, endpoint.token.is_some(), "the --http-token-env variable")
        .map_err(|m| std::io::Error::new(std::io::ErrorKind::PermissionDenied, m))?;
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
                    if let Err(e) = crate::http_serve::serve(l, router(endpoint), std::future::pending()).await {
                        tracing::error!(error = %e, "http endpoint stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "http endpoint: bad listener"),
            }
        });
    })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::query::{KeyValue, QueryError, StateQuery, TableReport};

    /// One table, `journal`, holding one key.
    struct OneTable;

    impl StateQuery for OneTable {
        fn inspect(&self, _: usize) -> Result<Vec<TableReport>, QueryError> {
            Ok(vec![TableReport {
                table: "journal".into(),
                keys: 1,
                bytes: 10,
                ttl_ms: None,
                partitions: vec![],
                sample_keys: vec!["k".into()],
            }])
        }
        fn get(&self, _: &str, _: &[u8]) -> Result<Vec<KeyValue>, QueryError> {
            Ok(vec![KeyValue { partition: 0, value: "tool result".into(), expires_at_ms: None }])
        }
    }

    fn endpoint(token: Option<&str>) -> Endpoint {
        let state = QuerySlot::default();
        state.set(Arc::new(OneTable));
        Endpoint {
            topology: "t".into(),
            stats: Arc::new(Stats::default()),
            state,
            models: vec![],
            token: token.map(Arc::from),
        }
    }

    /// The status of `GET path` on a real server, with `token` as bearer.
    fn status(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
        let mut r = reqwest::blocking::Client::new().get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status().as_u16()
    }

    #[test]
    fn with_a_token_state_and_stats_need_it_and_probes_stay_open() {
        let addr = serve("127.0.0.1:0".parse().unwrap(), endpoint(Some("st-token"))).unwrap();
        for path in ["/metrics", "/stats", "/state", "/state/journal/k"] {
            assert_eq!(status(addr, path, None), 401, "{path} without a token");
            assert_eq!(status(addr, path, Some("st-toke")), 401, "{path} with a wrong token");
            assert_eq!(status(addr, path, Some("st-token")), 200, "{path} with the token");
        }
        assert_eq!(status(addr, "/healthz", None), 200);
        assert_ne!(status(addr, "/readyz", None), 401, "probes need no token");
    }

    #[test]
    fn without_a_token_loopback_is_open_and_other_addresses_are_refused() {
        let addr = serve("127.0.0.1:0".parse().unwrap(), endpoint(None)).unwrap();
        assert_eq!(status(addr, "/state", None), 200);
        let err = serve("0.0.0.0:0".parse().unwrap(), endpoint(None)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        let m = check_exposure("0.0.0.0:9464".parse().unwrap(), false, "KAFCLAW_HTTP_TOKEN").unwrap_err();
        assert!(m.contains("--http 0.0.0.0:9464 is not a loopback address") && m.contains("KAFCLAW_HTTP_TOKEN"), "{m}");
        assert!(check_exposure("[::1]:9464".parse().unwrap(), false, "T").is_ok());
        assert!(check_exposure("10.0.0.5:9464".parse().unwrap(), true, "T").is_ok());
    }
}
