//! The Streamable HTTP transport (MCP 2025-11-25, "Transports"): rmcp's
//! `StreamableHttpService` mounted at `/mcp`, behind two checks made before any MCP message
//! is read:
//!
//! 1. **Origin** — the spec's security warning: servers MUST validate the `Origin` header to
//!    stop DNS-rebinding attacks from web pages. A request with no `Origin` (a non-browser
//!    client) passes; one from `http(s)://localhost`, `127.0.0.1` or `[::1]` (any port) passes;
//!    any other needs `--allow-origin <origin>` (exact `scheme://host[:port]`), else `403`.
//! 2. **Bearer token** — the gateway's rule, with the gateway's code
//!    (`crate::gateway::require_token`): one of the configured tokens, compared in constant
//!    time, else `401` with `WWW-Authenticate: Bearer`. The token's [`Identity`] rides in the
//!    request's extensions; rmcp hands the HTTP request parts to the handler, which stamps the
//!    identity on the skill requests the call makes.
//!
//! rmcp also checks the `Host` header against the loopback names and `--allow-host` values
//! (`403` otherwise).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

use super::{McpServer, Shared};
use crate::gateway::Credential;

/// The path the MCP endpoint is served at.
pub const PATH: &str = "/mcp";

/// What the HTTP transport is told.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Browser origins allowed besides the loopback ones (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// `Host` values allowed besides the loopback names and the listen address.
    pub allowed_hosts: Vec<String>,
}

/// Whether a request with `origin` (the header's value) may go on.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin.map(str::trim) else { return true };
    let bare = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(bare)) {
        return true;
    }
    let Some((scheme, rest)) = bare.split_once("://") else { return false };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") || rest.contains(['/', '@', '?', '#']) {
        return false;
    }
    // The host, without the port: `[::1]:8080` → `[::1]`, `localhost:3000` → `localhost`.
    let host = if rest.starts_with('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h).trim_start_matches('[')
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { rest })
    };
    matches!(host.to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "::1")
}

async fn check_origin(State(allowed): State<Arc<Vec<String>>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(axum::http::header::ORIGIN).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if origin_allowed(origin, &allowed) {
        return next.run(request).await;
    }
    tracing::warn!(origin = ?origin, "refused a request from a browser origin that is not allowed");
    (
        StatusCode::FORBIDDEN,
        Json(json!({"error": format!(
            "Origin {} is not allowed (only local origins are, unless kafclaw mcp-server --allow-origin names it)",
            origin.unwrap_or_default()
        )})),
    )
        .into_response()
}

/// The routes: `/mcp` (guarded) and `/healthz`.
pub fn router(
    shared: Arc<Shared>,
    credentials: Vec<Credential>,
    opts: &HttpOptions,
) -> (Router, impl FnOnce() + Send + 'static) {
    let mut hosts: Vec<String> =
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into(), opts.listen.ip().to_string()];
    hosts.extend(opts.allowed_hosts.iter().cloned());
    let config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    let cancel = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let guarded = Router::new()
        .nest_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(Arc::new(credentials), crate::gateway::require_token))
        .layer(axum::middleware::from_fn_with_state(Arc::new(opts.allowed_origins.clone()), check_origin));
    let router = Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" })).merge(guarded);
    (router, move || cancel.cancel())
}

/// Serves `router` on `listen` until `stop` resolves.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, path = PATH, "MCP server listening (Streamable HTTP)");
    crate::http_serve::serve(listener, router, stop).await
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn only_local_or_named_origins_pass() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(None, &none), "no Origin: not a browser");
        for ok in [
            "http://localhost",
            "http://localhost:6274",
            "https://127.0.0.1:8443",
            "http://[::1]:3000",
            "HTTP://LocalHost:1/",
        ] {
            assert!(origin_allowed(Some(ok), &none), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "null",
            "file://",
            "http://user@localhost",
            "ftp://localhost",
            "http://evil.example:localhost",
        ] {
            assert!(!origin_allowed(Some(bad), &none), "{bad}");
        }
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed(Some("https://app.example.com"), &allowed));
        assert!(!origin_allowed(Some("https://app.example.com:8443"), &allowed));
    }
}
