//! Serving an axum router on a listener that may face untrusted clients (the gateway,
//! `mcp-server`'s Streamable HTTP, an instance's `/metrics` endpoint), with the two limits
//! `axum::serve` lacks:
//!
//! - **a header-read timeout** ([`HEADER_READ_TIMEOUT`], hyper's `header_read_timeout`): a
//!   client that opens a connection and sends its request head slowly, or not at all, is
//!   dropped, instead of holding a file descriptor until it leaves (a "slowloris" of 20,000
//!   half-open connections exhausted the gateway's descriptors);
//! - **a cap on open connections** ([`MAX_CONNECTIONS`]): past it, new connections wait in the
//!   kernel's accept queue until one ends.
//!
//! HTTP/1.1 only (every client of these endpoints speaks it; server-sent events stream over
//! it). Shutdown is graceful: when `stop` resolves, no connection is accepted any more, each
//! open one finishes the response in progress, and connections still open after
//! [`SHUTDOWN_GRACE`] are dropped (an event stream never finishes on its own).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Longest wait for a request's head (request line and headers) once a connection is open or
/// idle between requests (seconds).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long open connections may run on after `stop` before they are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `stop` resolves (see the [module docs](self)).
///
/// Errors: none after the listener is bound; a failed `accept` (descriptors exhausted) is
/// logged and retried after a short pause.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
        let service = TowerToHyperService::new(router.clone());
        let mut closed = closed.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended");
                    }
                }
                () = async { let _ = closed.wait_for(|c| *c).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = closing.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::debug!(open = connections.len(), "connections still open at shutdown: dropped");
        connections.abort_all();
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT: the `stop` of a listener a command serves until it is
/// told to end (the gateway, `mcp-server`).
pub async fn shutdown_signal() {
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
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A connection that never sends its request head is closed by the server.
    #[test]
    fn a_silent_connection_is_dropped_and_others_are_served() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let addr = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
            tokio::spawn(serve(listener, router, async {
                let _ = stop_rx.await;
            }));
            addr
        });
        // A half-sent head: the server closes the connection at the timeout.
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        // Meanwhile another client is served.
        let mut fast = std::net::TcpStream::connect(addr).unwrap();
        fast.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        fast.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        slow.set_read_timeout(Some(HEADER_READ_TIMEOUT * 3)).unwrap();
        let mut rest = Vec::new();
        let read = slow.read_to_end(&mut rest);
        assert!(read.is_ok(), "the server closed the silent connection: {read:?}");
        let _ = stop_tx.send(());
    }
}
