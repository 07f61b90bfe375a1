//! The gateway's counters and `GET /metrics` (Prometheus text).

use std::sync::atomic::AtomicU64;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Gateway, error};

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    route: String,
    code: u16,
}

/// Labels of the A2A call counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabels {
    /// The JSON-RPC method as the caller named it (`SendMessage`, `message/send`, …); an
    /// unknown method counts as `unknown`.
    pub(super) method: String,
    /// `ok`, or the JSON-RPC error code.
    pub(super) outcome: String,
}

/// The gateway's counters.
#[derive(Default)]
pub(super) struct Metrics {
    /// Tasks published (by `/v1/tasks` and A2A messages).
    pub(super) submitted: Counter<u64, AtomicU64>,
    requests: Family<RouteLabels, Counter<u64, AtomicU64>>,
    /// A2A JSON-RPC calls by method and outcome.
    pub(super) a2a_calls: Family<MethodLabels, Counter<u64, AtomicU64>>,
    /// A2A event streams (SSE) open now.
    pub(super) a2a_streams: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Metrics {
    /// Registers the counters in `registry`.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register("tasks_submitted", "Tasks published to the group", self.submitted.clone());
        registry.register("http_requests", "HTTP requests by route and status", self.requests.clone());
        registry.register("a2a_calls", "A2A JSON-RPC calls by method and outcome", self.a2a_calls.clone());
        registry.register("a2a_streams_open", "A2A event streams (SSE) open now", self.a2a_streams.clone());
    }
}

pub(super) async fn count(State(g): State<Gateway>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    g.metrics.requests.get_or_create(&RouteLabels { route, code: response.status().as_u16() }).inc();
    response
}

pub(super) async fn metrics(State(g): State<Gateway>) -> Response {
    let mut text = String::new();
    let registry = g.registry.lock().unwrap_or_else(|p| p.into_inner());
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([("content-type", crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
