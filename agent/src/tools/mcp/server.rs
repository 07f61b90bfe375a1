//! The runtime half of an MCP tool: one connection per instance, supervised on a tokio
//! runtime of its own thread (the executors of the stream threads come and go with
//! rebalances; the server stays).
//!
//! The supervisor connects (spawns the stdio server in its sandbox, or opens a Streamable
//! HTTP session), runs `initialize` and `tools/list` (every page), publishes the connection,
//! re-lists on `notifications/tools/list_changed`, and when the connection is lost (the
//! process exited, the transport closed, a call met a transport failure) connects again after
//! a backoff of 0.25 s doubling to 30 s (back to 0.25 s after a connection that lived a
//! minute). The server's stderr is forwarded line by line to `tracing` (target
//! `kafclaw::mcp`, field `server`). Dropping the [`Server`] stops the thread, which ends the
//! connection and kills the server's process group.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService, ServiceError};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, mpsc, watch};

use super::config::{McpSpec, OnError, Transport};
use super::content::{self, Listed};
use crate::sandbox::run::Sandbox;
use crate::sandbox::serve::Served;
use crate::tools::{FatalToolError, ToolOutput, ToolResult};

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(60);
/// Longest stderr line forwarded (bytes); the rest is cut.
const STDERR_LINE: usize = 4096;
/// Most `tools/list` pages read (MCP paginates with an opaque cursor: a server that always
/// gives another would be listed until memory runs out).
const MAX_PAGES: usize = 64;
/// Most tools a server may list.
const MAX_LISTED: usize = 1024;
/// Most tools offered to the model from one server (after `allow`): OpenAI's limit of tools
/// per request (128), which other providers share or undercut; each tool's schema and
/// description are sent with every model call.
pub(crate) const MAX_OFFERED: usize = 128;

/// Every page of the server's `tools/list`, at most [`MAX_PAGES`] pages and [`MAX_LISTED`]
/// tools, within `within`.
async fn list_tools(peer: &Peer<RoleClient>, within: Duration) -> Result<Vec<Listed>, String> {
    let all = async {
        let mut tools = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let params = rmcp::model::PaginatedRequestParams::default().with_cursor(cursor);
            let page = peer.list_tools(Some(params)).await.map_err(|e| format!("`tools/list` failed: {e}"))?;
            tools.extend(page.tools.iter().filter_map(|t| content::listed(&serde_json::to_value(t).ok()?)));
            if tools.len() > MAX_LISTED {
                return Err(format!("`tools/list` gives more than {MAX_LISTED} tools"));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(tools),
            }
        }
        Err(format!("`tools/list` has more than {MAX_PAGES} pages"))
    };
    tokio::time::timeout(within, all)
        .await
        .unwrap_or_else(|_| Err(format!("`tools/list` did not end within {}", secs(within))))
}

/// What the supervisor and the calls share.
pub(crate) struct Shared {
    pub(crate) spec: McpSpec,
    /// The stdio server's sandbox (prepared when the tool was built).
    sandbox: Option<Sandbox>,
    /// The live connection, if any.
    conn: watch::Sender<Option<Arc<Conn>>>,
    /// The offered tools (after `allow`), as last listed.
    listing: Mutex<Arc<Vec<Listed>>>,
}

/// One connection (one server process, one HTTP session).
pub(crate) struct Conn {
    generation: u64,
    peer: Peer<RoleClient>,
    /// Told when a call met a transport failure: the supervisor drops the connection.
    broken: Notify,
}

/// The client side of the connection: hears `tools/list_changed`.
struct Handler {
    changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Handler {
    fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) -> impl Future<Output = ()> + Send + '_ {
        let _ = self.changed.send(());
        std::future::ready(())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("kafclaw", env!("CARGO_PKG_VERSION")))
    }
}

/// The thread running a server's runtime; stopped when dropped.
struct RuntimeThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        // Not joined: the last holder may be a task of that very runtime.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An MCP server as the instance holds it: started by [`Server::open`].
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
    started: Mutex<Option<Result<(), String>>>,
    runtime: Mutex<Option<RuntimeThread>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("name", &self.shared.spec.name).finish_non_exhaustive()
    }
}

impl Server {
    pub(crate) fn new(spec: McpSpec, sandbox: Option<Sandbox>) -> Self {
        let shared = Arc::new(Shared { spec, sandbox, conn: watch::channel(None).0, listing: Mutex::default() });
        Self { shared, started: Mutex::new(None), runtime: Mutex::new(None) }
    }

    /// Starts the server once (later calls give the first one's result): connected,
    /// initialised and listed, or why not, naming the tool and where it is declared.
    pub(crate) fn open(&self) -> Result<(), String> {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &*started {
            return r.clone();
        }
        let spec = &self.shared.spec;
        let result = self.start().map_err(|e| format!("tool `{}` ({}): {e}", spec.name, spec.site));
        *started = Some(result.clone());
        result
    }

    fn start(&self) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime for the MCP client: {e}"))?;
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("kafclaw-mcp-{}", self.shared.spec.name))
            .spawn(move || {
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| format!("no thread for the MCP client: {e}"))?;
        let thread = RuntimeThread { handle: handle.clone(), stop: Some(stop_tx) };
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        handle.spawn(supervise(self.shared.clone(), first_tx));
        let margin = self.shared.spec.start_timeout + Duration::from_secs(5);
        let first = first_rx.recv_timeout(margin).unwrap_or_else(|_| Err("the MCP client did not start".into()));
        if first.is_ok() {
            *self.runtime.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        }
        first
    }

    /// The offered tools, as last listed (empty before [`Server::open`]).
    pub(crate) fn listing(&self) -> Arc<Vec<Listed>> {
        self.shared.listing.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls `tool` with `args` on the server's runtime (see [`call`]), `key` as the
    /// request's idempotency key.
    pub(crate) fn call(
        &self,
        tool: String,
        args: Value,
        key: Option<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<ToolResult, FatalToolError>> + Send>> {
        let handle = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|t| t.handle.clone());
        let Some(handle) = handle else {
            let name = self.shared.spec.name.clone();
            return Box::pin(async move { Err(FatalToolError(format!("MCP server `{name}` was not started"))) });
        };
        let job = handle.spawn(call(self.shared.clone(), tool, args, key));
        let abort = AbortOnDrop(job.abort_handle());
        Box::pin(async move {
            let r = job.await;
            drop(abort);
            r.unwrap_or_else(|e| Err(FatalToolError(format!("the MCP call was stopped: {e}"))))
        })
    }
}

/// Aborts a call whose caller is gone.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Shared {
    /// The connection newer than generation `after`, waiting up to `within` for one.
    async fn conn_after(&self, after: u64, within: Duration) -> Result<Arc<Conn>, String> {
        let mut rx = self.conn.subscribe();
        let waited = tokio::time::timeout(within, async {
            rx.wait_for(|c| c.as_ref().is_some_and(|c| c.generation > after)).await.map(|c| c.clone())
        })
        .await;
        match waited {
            Ok(Ok(Some(conn))) => Ok(conn),
            Ok(_) => Err("the server's supervisor stopped".into()),
            Err(_) => Err(format!("the server was not reachable within {} (restarting)", secs(within))),
        }
    }

    /// The listed tools that `allow` lets through; with `strict`, an `allow` name the server
    /// does not list is an error.
    fn offered(&self, listed: Vec<Listed>, strict: bool) -> Result<Vec<Listed>, String> {
        let Some(allow) = &self.spec.allow else {
            if listed.len() > MAX_OFFERED {
                let message = format!(
                    "the server lists {} tools, more than the {MAX_OFFERED} offered to a model at most: name the ones the model needs in `allow`",
                    listed.len()
                );
                if !strict {
                    tracing::warn!(target: "kafclaw::mcp", server = %self.spec.name, "{message}; the last list stays");
                }
                return Err(message);
            }
            return Ok(listed);
        };
        let missing: Vec<&String> = allow.iter().filter(|a| !listed.iter().any(|t| &t.name == *a)).collect();
        if !missing.is_empty() {
            let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
            let message = format!(
                "`allow` names {}, which the server does not list (it lists: {})",
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                names.join(", ")
            );
            if strict {
                return Err(message);
            }
            tracing::warn!(target: "kafclaw::mcp", server = %self.spec.name, "{message}");
        }
        Ok(listed.into_iter().filter(|t| allow.contains(&t.name)).collect())
    }

    fn set_listing(&self, tools: Vec<Listed>) {
        *self.listing.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(tools);
    }
}

/// A connection as the supervisor holds it.
struct Live {
    running: RunningService<RoleClient, Handler>,
    changed: mpsc::UnboundedReceiver<()>,
    served: Option<Served>,
    tools: Vec<Listed>,
}

/// Connects, initialises and lists the tools.
async fn connect(shared: &Shared) -> Result<Live, String> {
    let (tx, changed) = mpsc::unbounded_channel();
    let handler = Handler { changed: tx };
    let (running, served) = match &shared.spec.transport {
        Transport::Stdio { program, args, env, cwd } => {
            let sandbox = shared.sandbox.as_ref().ok_or("no sandbox prepared")?;
            let env: Vec<(String, String)> =
                env.iter().filter_map(|k| Some((k.clone(), std::env::var(k).ok()?))).collect();
            // A variable passed to a server is mostly a credential (a GitHub or Slack token):
            // no output, log, trace or dead letter shows its value, whatever the server echoes.
            for (_, value) in &env {
                kafclaw_operators::api::secrets::register(value);
            }
            let mut served = sandbox.serve(program, args, cwd, &env).map_err(|e| e.to_string())?;
            let stdin = served.child.stdin.take().ok_or("no stdin pipe")?;
            let stdout = served.child.stdout.take().ok_or("no stdout pipe")?;
            if let Some(stderr) = served.child.stderr.take() {
                tokio::spawn(forward_stderr(shared.spec.name.clone(), stderr));
            }
            let running = handler.serve((stdout, stdin)).await.map_err(|e| format!("`initialize` failed: {e}"))?;
            (running, Some(served))
        }
        Transport::Http { url, headers_env } => {
            kafclaw_operators::api::secrets::register_url(url.as_str());
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut headers = std::collections::HashMap::new();
            for (header, var) in headers_env {
                let value = std::env::var(var).map_err(|_| {
                    format!("`headers_env`: the environment variable `{var}` (header `{header}`) is not set")
                })?;
                // A header from the environment is a credential (`Authorization`, an API key):
                // no log line, trace or dead letter shows it, nor its bearer token alone.
                kafclaw_operators::api::secrets::register(&value);
                if let Some((_, token)) = value.split_once(' ') {
                    kafclaw_operators::api::secrets::register(token);
                }
                let name = reqwest::header::HeaderName::from_bytes(header.as_bytes()).map_err(|e| e.to_string())?;
                let value = reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| format!("`headers_env`: `{var}` is not a valid value of header `{header}`"))?;
                headers.insert(name, value);
            }
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers);
            let transport = StreamableHttpClientTransport::from_config(config);
            let running = handler.serve(transport).await.map_err(|e| format!("`initialize` at {url} failed: {e}"))?;
            (running, None)
        }
    };
    let tools = list_tools(running.peer(), shared.spec.start_timeout).await?;
    Ok(Live { running, changed, served, tools })
}

impl Live {
    /// Serves the connection until it is lost; says why.
    async fn run(self, shared: &Shared, conn: &Conn) -> String {
        let Live { running, mut changed, mut served, .. } = self;
        let peer = running.peer().clone();
        let waiting = running.waiting();
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                _ = conn.broken.notified() => return "a call met a transport failure".into(),
                quit = &mut waiting => return format!("the connection closed ({quit:?})"),
                status = async { served.as_mut().expect("guarded").child.wait().await }, if served.is_some() => {
                    return match status {
                        Ok(s) => format!("the server exited ({s})"),
                        Err(e) => format!("the server could not be waited for: {e}"),
                    };
                }
                // Bounded in pages, tools and time: the other arms wait while it lists.
                Some(()) = changed.recv() => match list_tools(&peer, shared.spec.start_timeout).await {
                    Ok(tools) => {
                        if let Ok(tools) = shared.offered(tools, false) {
                            tracing::info!(target: "kafclaw::mcp", server = %shared.spec.name, tools = tools.len(), "tool list changed");
                            shared.set_listing(tools);
                        }
                    }
                    Err(e) => tracing::warn!(target: "kafclaw::mcp", server = %shared.spec.name, "tools/list after list_changed failed, the last list stays: {e}"),
                },
            }
        }
    }
}

/// The supervisor: connects, serves, reconnects (see the [module docs](self)). The first
/// connection's outcome goes to `first`; a first failure ends the supervisor.
async fn supervise(shared: Arc<Shared>, first: std::sync::mpsc::Sender<Result<(), String>>) {
    let mut first = Some(first);
    let mut backoff = MIN_BACKOFF;
    let mut generation = 0;
    let name = shared.spec.name.clone();
    loop {
        generation += 1;
        let began = Instant::now();
        let within = shared.spec.start_timeout;
        let connected = tokio::time::timeout(within, connect(&shared)).await.unwrap_or_else(|_| {
            Err(format!(
                "the server did not complete `initialize` and `tools/list` within {} (start_timeout)",
                secs(within)
            ))
        });
        let outcome = connected.and_then(|mut live| {
            let tools = shared.offered(std::mem::take(&mut live.tools), first.is_some())?;
            Ok((live, tools))
        });
        match outcome {
            Ok((live, tools)) => {
                shared.set_listing(tools);
                let conn = Arc::new(Conn { generation, peer: live.running.peer().clone(), broken: Notify::new() });
                shared.conn.send_replace(Some(conn.clone()));
                if let Some(f) = first.take() {
                    let _ = f.send(Ok(()));
                }
                let why = live.run(&shared, &conn).await;
                shared.conn.send_replace(None);
                if began.elapsed() >= HEALTHY {
                    backoff = MIN_BACKOFF;
                }
                tracing::warn!(target: "kafclaw::mcp", server = %name, "connection lost: {why}; reconnecting in {}", secs(backoff));
            }
            Err(e) => {
                if let Some(f) = first.take() {
                    let _ = f.send(Err(e));
                    return;
                }
                tracing::warn!(target: "kafclaw::mcp", server = %name, "reconnecting failed: {e}; next try in {}", secs(backoff));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One `tools/call`, with the tool's time limit, retries and failure policy; `key` goes in
/// the request's `_meta`. A call the server may have received is not made again when the
/// effect class forbids repeats.
async fn call(
    shared: Arc<Shared>,
    tool: String,
    args: Value,
    key: Option<String>,
) -> Result<ToolResult, FatalToolError> {
    let spec = &shared.spec;
    let arguments = match args {
        Value::Object(m) => Some(m),
        Value::Null => None,
        other => return Ok(Err(format!("arguments must be a JSON object, got {other}"))),
    };
    let mut after = 0;
    let mut attempt = 0;
    let failure = loop {
        // Whether the request may have reached the server (a failure after it was sent).
        let mut sent = false;
        let failure = match shared.conn_after(after, spec.timeout).await {
            Err(e) => e,
            Ok(conn) => {
                sent = true;
                let mut params = CallToolRequestParams::new(tool.clone());
                params.arguments = arguments.clone();
                if let Some(key) = &key {
                    let mut meta = rmcp::model::RequestMetaObject::new();
                    meta.0.0.insert(super::IDEMPOTENCY_META.into(), Value::String(key.clone()));
                    params.meta = Some(meta);
                }
                match tokio::time::timeout(spec.timeout, conn.peer.call_tool(params)).await {
                    Ok(Ok(result)) => {
                        let json = serde_json::to_value(&result).unwrap_or(Value::Null);
                        let (is_error, text) = content::result_text(&json);
                        return Ok(if is_error {
                            Err(format!("the tool reported an error: {text}"))
                        } else {
                            Ok(ToolOutput::from(text))
                        });
                    }
                    Ok(Err(ServiceError::McpError(e))) => {
                        return Ok(Err(format!("the MCP server answered with error {}: {}", e.code.0, e.message)));
                    }
                    Ok(Err(e)) => {
                        conn.broken.notify_one();
                        after = conn.generation;
                        e.to_string()
                    }
                    Err(_) => {
                        // Slow, not gone: the same connection is used again.
                        after = conn.generation - 1;
                        format!("no answer within {} (timeout)", secs(spec.timeout))
                    }
                }
            }
        };
        if attempt >= spec.retries || (sent && spec.effect.logged()) {
            break failure;
        }
        attempt += 1;
        tracing::warn!(target: "kafclaw::mcp", server = %spec.name, tool = %tool, attempt, "tools/call failed ({failure}); calling again");
    };
    let message =
        format!("MCP server `{}`: tools/call `{tool}` failed after {} attempt(s): {failure}", spec.name, attempt + 1);
    match spec.on_error {
        OnError::DeadLetter => Err(FatalToolError(message)),
        OnError::Model => Ok(Err(message)),
    }
}

/// Forwards the server's stderr to `tracing`, a line at a time (each cut at [`STDERR_LINE`]
/// bytes, so a server writing without newlines holds no more than that).
async fn forward_stderr(server: String, stderr: tokio::process::ChildStderr) {
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut line = Vec::new();
    let emit = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        tracing::info!(target: "kafclaw::mcp", server = %server, "{}", text.trim_end());
    };
    loop {
        let (used, ended) = match reader.fill_buf().await {
            Ok(buf) if !buf.is_empty() => {
                let (chunk, used) = match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => (&buf[..i], i + 1),
                    None => (buf, buf.len()),
                };
                let room = STDERR_LINE.saturating_sub(line.len());
                line.extend_from_slice(&chunk[..chunk.len().min(room)]);
                (used, used > chunk.len())
            }
            _ => {
                if !line.is_empty() {
                    emit(&line);
                }
                return;
            }
        };
        reader.consume(used);
        if ended {
            emit(&line);
            line.clear();
        }
    }
}

/// A duration as seconds, for messages (`2s`, `0.25s`).
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
