//! `kafclaw gateway`: the remote mode — a headless HTTP gateway (axum) in front of an agent
//! group. Submit a task, read its status and result, read its trace, scrape `/metrics`; or
//! speak A2A to the group and its skills (docs/a2a.md).
//!
//! | route | |
//! |---|---|
//! | `GET /healthz` | alive (no token) |
//! | `GET /.well-known/agent-card.json` | the group's A2A agent card (public: no token) — [`a2a::card`] |
//! | `GET /a2a/{skill}/.well-known/agent-card.json` | a `--skill`'s agent card (public: no token; another skill: 404) |
//! | `POST /a2a` | A2A JSON-RPC (v1.0 `SendMessage`, `SendStreamingMessage` (SSE), `GetTask`, `CancelTask`, `SubscribeToTask`, and v0.3's `message/send`, `message/stream`, `tasks/get`, `tasks/cancel`, `tasks/resubscribe`): tasks on `group.<g>.requests` — [`a2a`] |
//! | `POST /a2a/{skill}` | the same for one `--skill`: tasks on `group.<g>.skill.<s>.requests` (another skill: 404) |
//! | `POST /v1/tasks` | `{"description", "skill"?}` → `202 {"task_id", "topic"}`: a `request` on `group.<g>.requests`, or a `skill_request` on `group.<g>.skill.<s>.requests` |
//! | `GET /v1/tasks/{id}` | `{"task_id", "status", "result"?, "answer"?}`: `pending` until a response, skill response or task status with that correlation id arrives |
//! | `GET /v1/traces/{id}` | the `trace` envelopes of the task, in arrival order |
//! | `GET /v1/approvals` | the group's pending approval requests (`?all=true`: all); approver tokens only (`--approver`, else 403) — [`approvals`] |
//! | `POST /v1/approvals/{id}/approve`, `…/reject` | `{"reason"?}` → the decision, approver = the token's `sender_id`; approver tokens only (docs/approvals.md) |
//! | `GET /metrics` | Prometheus text: tasks submitted, answers seen, requests by route and status |
//! | `/console/…` | the web console: login with a token, then a session cookie — [`console`] |
//!
//! Every route but `/healthz`, the agent cards and the console needs `Authorization: Bearer <token>`
//! (else `401`, JSON-RPC routes included), compared in constant time ([`auth`]); the gateway
//! does not start without a token. It binds 127.0.0.1 unless told otherwise.
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
//! Over A2A likewise: a message naming `sender_id` or `zone` is refused (-32602), and a task
//! is its starter's — another token continuing, reading or canceling it gets `TaskNotFound`.
//!
//! Tokens come from one of two places (see [`TokenSource`]):
//! - an environment variable (`--token-env`, default `KAFCLAW_GATEWAY_TOKEN`): one token,
//!   whose identity is `--sender-id` (default `gateway`) and `--zone` (default none);
//! - a tokens file (`--tokens-file`): one token per line, `name sender_id zone token`,
//!   whitespace-separated, `-` for no zone, `#` comments; names and tokens must be unique.
//!   With a file, the environment variable is not read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use serde_json::json;

pub mod a2a;
mod approvals;
mod auth;
pub mod console;
mod metrics;
mod tasks;

pub use self::tasks::new_task;

pub use self::a2a::A2aSettings;
pub use self::console::{ConsoleSettings, ConsoleTimeline, TopologyFeed};
// The bearer-token rule, for kafclaw's other HTTP servers (`health`, `mcp-server`).
pub use self::auth::{Credential, Identity, TokenSource, credentials, parse_tokens};
#[allow(unused_imports)]
pub(crate) use self::auth::{authorized, bearer, require_token};
use crate::kafka::tasks::TaskIo;

/// What the routes share.
#[derive(Clone)]
pub struct Gateway {
    group: String,
    skills: Arc<Vec<String>>,
    credentials: Arc<Vec<Credential>>,
    io: Arc<TaskIo>,
    metrics: Arc<metrics::Metrics>,
    registry: Arc<Mutex<Registry>>,
    a2a: Arc<A2aSettings>,
    a2a_tasks: Arc<Mutex<a2a::Tasks>>,
    /// The `sender_id`s whose tokens may list and decide approvals (none: no token may).
    approvers: Arc<Vec<String>>,
    /// The web console's settings (`/console`).
    console: Arc<ConsoleSettings>,
    /// The timeline the console's Tasks pages read.
    timeline: Option<Arc<ConsoleTimeline>>,
    /// The dead-letter topics the console shows (`--dead-letters`).
    dead_letters: Arc<Vec<String>>,
    /// The instances' statuses the console's Topologies page shows.
    topologies: Option<Arc<TopologyFeed>>,
}

impl Gateway {
    /// A gateway for `group`, serving `skills`, guarded by `credentials`.
    pub fn new(group: &str, skills: Vec<String>, credentials: Vec<Credential>, io: TaskIo) -> Self {
        let metrics = Arc::new(metrics::Metrics::default());
        let mut registry = Registry::with_prefix("kafclaw_gateway");
        metrics.register(&mut registry);
        Self {
            group: group.to_owned(),
            skills: Arc::new(skills),
            credentials: Arc::new(credentials),
            io: Arc::new(io),
            metrics,
            registry: Arc::new(Mutex::new(registry)),
            a2a: Arc::new(A2aSettings::default()),
            a2a_tasks: Arc::default(),
            approvers: Arc::default(),
            console: Arc::default(),
            timeline: None,
            dead_letters: Arc::default(),
            topologies: None,
        }
    }

    /// The same gateway, its console reading tasks' chains from `timeline`.
    pub fn with_timeline(mut self, timeline: ConsoleTimeline) -> Self {
        self.timeline = Some(Arc::new(timeline));
        self
    }

    /// The same gateway, its console showing the topologies `feed` follows.
    pub fn with_topologies(mut self, feed: Arc<TopologyFeed>) -> Self {
        self.topologies = Some(feed);
        self
    }

    /// The same gateway, its console showing the dead letters of `topics`.
    pub fn with_dead_letters(mut self, topics: Vec<String>) -> Self {
        self.dead_letters = Arc::new(topics);
        self
    }

    /// The same gateway, serving the web console with `settings`.
    pub fn with_console(mut self, settings: ConsoleSettings) -> Self {
        self.console = Arc::new(settings);
        self
    }

    /// The same gateway, letting the tokens of `approvers` (sender ids) list and decide
    /// approvals.
    pub fn with_approvers(mut self, approvers: Vec<String>) -> Self {
        self.approvers = Arc::new(approvers);
        self
    }

    /// The same gateway, serving A2A with `settings`.
    pub fn with_a2a(mut self, settings: A2aSettings) -> Self {
        self.a2a = Arc::new(settings);
        self
    }

    /// The routes.
    pub fn router(self) -> Router {
        let console = console::Console::new(
            &self.group,
            self.credentials.clone(),
            self.io.roster.clone(),
            self.approvers.clone(),
            (*self.console).clone(),
        )
        .with_tasks(self.skills.clone(), self.timeline.clone())
        .with_dead_letters(self.io.settings().clone(), self.dead_letters.clone())
        .with_topologies(self.topologies.clone());
        // Tasks and approvals, as the console's pages call them: the same handlers as `/v1`,
        // with the session's identity instead of a bearer token's.
        let console_api = Router::new()
            .route("/console/api/tasks", post(tasks::submit))
            .route("/console/api/tasks/{id}/status", get(tasks::task))
            .route("/console/api/tasks/{id}/trace", get(tasks::trace))
            .route("/console/api/approvals", get(approvals::list))
            .route("/console/api/approvals/{id}/{action}", post(approvals::decide))
            .route_layer(axum::middleware::from_fn_with_state(console.clone(), console::require_session))
            .layer(axum::middleware::from_fn(console::security_headers));
        let guarded = Router::new()
            .route("/v1/tasks", post(tasks::submit))
            .route("/v1/tasks/{id}", get(tasks::task))
            .route("/v1/traces/{id}", get(tasks::trace))
            .route("/metrics", get(metrics::metrics))
            .route("/v1/approvals", get(approvals::list))
            .route("/v1/approvals/{id}/{action}", post(approvals::decide))
            .route("/a2a", post(a2a::group_rpc))
            .route("/a2a/{skill}", post(a2a::skill_rpc))
            .route_layer(axum::middleware::from_fn_with_state(self.credentials.clone(), require_token));
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/.well-known/agent-card.json", get(a2a::card::group_card))
            .route("/a2a/{skill}/.well-known/agent-card.json", get(a2a::card::skill_card))
            .merge(guarded)
            .merge(console_api)
            .merge(console.router())
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), metrics::count))
            .with_state(self)
    }
}

/// Fields of the envelope that the gateway sets from the token's identity.
const STAMPED: [&str; 2] = ["sender_id", "zone"];

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({"error": message.into()}))).into_response()
}

fn new_task_id() -> String {
    format!("task-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// `kafclaw gateway`: reads the tokens, follows the group's answer topics, serves until
/// SIGTERM or SIGINT. Returns the exit code.
#[allow(clippy::too_many_arguments)] // the command line's settings, each used once here
pub fn run(
    group: &str,
    skills: Vec<String>,
    listen: SocketAddr,
    tokens: &TokenSource,
    brokers: Option<String>,
    partitions: i32,
    mut a2a: A2aSettings,
    approvers: Vec<String>,
    console: ConsoleSettings,
    member_ttl: std::time::Duration,
    timeline: Option<&std::path::Path>,
    dead_letters: Vec<String>,
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
        let approver = approvers.contains(&i.sender_id);
        tracing::info!(token = %i.name, sender_id = %i.sender_id, zone = ?i.zone, approver, "gateway token");
    }
    if let Some(a) = approvers.iter().find(|a| !credentials.iter().any(|c| &c.identity.sender_id == *a)) {
        tracing::warn!(approver = %a, "--approver names no token's sender_id");
    }
    let settings = crate::kafka::ClientSettings::from_env(brokers);
    let mut follow = vec![
        format!("group.{group}.responses"),
        format!("group.{group}.tasks.status"),
        format!("group.{group}.traces"),
        format!("group.{group}.announce"),
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
    io.roster.lock().unwrap_or_else(|p| p.into_inner()).set_ttl(member_ttl);
    let timeline = match ConsoleTimeline::start(&settings, group, &skills, timeline, stop.clone()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: the console's timeline: {e}");
            return crate::exit::RUNTIME;
        }
    };
    let topologies = match TopologyFeed::start(&settings, group, stop.clone()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: the console's topologies: {e}");
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
    if a2a.bootstrap.is_none() {
        a2a.bootstrap = settings.get("bootstrap.servers").map(str::to_owned);
    }
    let gateway = Gateway::new(group, skills, credentials, io)
        .with_a2a(a2a)
        .with_approvers(approvers)
        .with_console(console)
        .with_timeline(timeline)
        .with_dead_letters(dead_letters)
        .with_topologies(topologies);
    let result = rt.block_on(async move { serve(listen, gateway, crate::http_serve::shutdown_signal()).await });
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
    crate::http_serve::serve(listener, gateway.router(), stop).await
}
