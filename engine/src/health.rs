//! The instance's HTTP endpoint (axum): `/healthz` (alive), `/readyz` (assigned and able to
//! process) and `/stats` (counters as JSON). Binds 127.0.0.1 unless told otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::kafka::Stats;

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(stats): State<Arc<Stats>>) -> impl IntoResponse {
    if stats.snapshot().ready { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

async fn stats_json(State(stats): State<Arc<Stats>>) -> impl IntoResponse {
    Json(stats.snapshot())
}

/// The routes.
pub fn router(stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats_json))
        .with_state(stats)
}

/// Binds `addr` and serves on a background thread; returns the bound address.
pub fn serve(addr: SocketAddr, stats: Arc<Stats>) -> std::io::Result<SocketAddr> {
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
                    if let Err(e) = axum::serve(l, router(stats)).await {
                        tracing::error!(error = %e, "http endpoint stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "http endpoint: bad listener"),
            }
        });
    })?;
    Ok(bound)
}
