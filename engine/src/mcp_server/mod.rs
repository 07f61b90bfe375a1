//! `kafclaw mcp-server --group <g>`: an agent group's skills as MCP tools (docs/mcp-server.md).
//!
//! The server follows the group with the gateway's reader ([`crate::kafka::tasks::TaskIo`]),
//! one consumer with no consumer group: `announce` (the live members: its roster),
//! `tasks.status`, `traces` and `responses`, and each skill's response topic added to it
//! from the skill's first sight or call ([`TaskIo::follow`]); the skills whose request topic
//! exists are listed from the cluster's metadata. It offers one tool per skill ([`skills`])
//! plus the read-only `trace` and `group_members`. A call becomes a `skill_request` on
//! `group.<g>.skill.<s>.requests` and waits for the correlated answer until its deadline
//! ([`call`]). When the set of tools changes (a member joins, leaves or expires, a
//! skill topic appears), every connected client gets `notifications/tools/list_changed`
//! (MCP 2025-11-25, "Tools", list changed notification).
//!
//! Transports: stdio (the default; the protocol owns stdout, logs go to stderr) and
//! Streamable HTTP ([`http`]: `/mcp`, the gateway's bearer tokens, Origin checked).

pub mod call;
pub mod http;
pub mod skills;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, Peer, RequestContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::Value;

use crate::gateway::Identity;
use crate::kafka::ClientSettings;
use crate::kafka::group::skill_topics::skill_topics;
use crate::kafka::tasks::TaskIo;
use skills::{MEMBERS_TOOL, SkillTool, TRACE_TOOL};

/// How often the tool list is recomputed (members expire by the clock).
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How often the cluster's skill topics are listed again.
const TOPICS_EVERY: Duration = Duration::from_secs(10);
/// How often a waiting call looks for its answer.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How often a waiting call with a progress token reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the server is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// The group.
    pub group: String,
    /// The identity of calls over stdio (over HTTP: the token's).
    pub identity: Identity,
    /// How long a call waits for its answer unless it says `deadline_seconds`.
    pub deadline: Duration,
    /// The largest `description` accepted, in bytes.
    pub max_description: usize,
    /// Partitions of the topics the server creates when missing (announce, answers).
    pub partitions: i32,
}

/// What every session shares: the group's feeds and the current tools.
pub struct Shared {
    opts: Options,
    settings: ClientSettings,
    core: Arc<TaskIo>,
    topic_skills: RwLock<Vec<String>>,
    peers: Mutex<Vec<Peer<RoleServer>>>,
    stop: Arc<AtomicBool>,
}

impl Shared {
    /// Connects to the group: follows its announces and answer topics (creating them when
    /// missing). Blocking; call it outside the async runtime.
    pub fn start(opts: Options, settings: ClientSettings, stop: Arc<AtomicBool>) -> Result<Arc<Self>, String> {
        let g = &opts.group;
        let follow = ["announce", "tasks.status", "traces", "responses"].map(|t| format!("group.{g}.{t}"));
        let core = Arc::new(TaskIo::start(&settings, &follow, opts.partitions, stop.clone())?);
        let topic_skills = RwLock::new(skill_topics(&settings, g)?);
        Ok(Arc::new(Self { opts, settings, core, topic_skills, peers: Mutex::new(Vec::new()), stop }))
    }

    /// The skill tools now, and the skills left out for their names.
    fn catalog(&self) -> (Vec<SkillTool>, Vec<String>) {
        let roster = self.core.roster.lock().unwrap_or_else(|p| p.into_inner());
        let live = roster.live(kafclaw_operators::api::record::now_ms());
        let topics = self.topic_skills.read().unwrap_or_else(|p| p.into_inner());
        skills::skill_tools(&self.opts.group, &live, &topics)
    }

    /// Follows `skill`'s response topic on the one reader (from its first use on).
    async fn follow_skill(self: &Arc<Self>, skill: &str) -> Result<(), String> {
        let topic = format!("group.{}.skill.{skill}.responses", self.opts.group);
        let core = self.core.clone();
        let has_topics = self.topic_skills.read().unwrap_or_else(|p| p.into_inner()).iter().any(|s| s == skill);
        tokio::task::spawn_blocking(move || core.follow(&topic, has_topics)).await.map_err(|e| e.to_string())?
    }

    /// Recomputes the tools every second (and the skill topics every ten) until stopped, and
    /// tells every connected client when they change.
    pub async fn watch(self: Arc<Self>) {
        // Changes from the moment the server starts are told (the first listing may come before
        // the first tick).
        let mut last: Option<Vec<SkillTool>> = Some(self.catalog().0);
        let mut logged_refused: Vec<String> = Vec::new();
        let mut topics_at = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(WATCH_EVERY).await;
            if topics_at.elapsed() >= TOPICS_EVERY {
                topics_at = Instant::now();
                let (settings, group) = (self.settings.clone(), self.opts.group.clone());
                match tokio::task::spawn_blocking(move || skill_topics(&settings, &group)).await {
                    Ok(Ok(t)) => *self.topic_skills.write().unwrap_or_else(|p| p.into_inner()) = t,
                    Ok(Err(e)) => tracing::warn!(error = %e, "listing the skill topics failed; keeping the last list"),
                    Err(e) => tracing::warn!(error = %e, "listing the skill topics failed"),
                }
            }
            let (now, refused) = self.catalog();
            let new: Vec<String> = refused.into_iter().filter(|r| !logged_refused.contains(r)).collect();
            for r in new {
                tracing::warn!(skill = %r, "a skill name that is not a valid MCP tool or topic name (A-Z a-z 0-9 _ - ., 1-128 characters): not offered");
                logged_refused.push(r);
            }
            if last.as_ref() == Some(&now) {
                continue;
            }
            let with_topics = self.topic_skills.read().unwrap_or_else(|p| p.into_inner()).clone();
            for s in now.iter().filter(|s| with_topics.contains(&s.skill)) {
                // Start following its answers before anyone asks (only a skill whose topics
                // exist: a name a member announces makes no topic).
                if let Err(e) = self.follow_skill(&s.skill).await {
                    tracing::warn!(skill = %s.skill, error = %e, "following the skill's responses failed");
                }
            }
            if last.is_some() {
                tracing::info!(tools = now.len(), "the group's skills changed; telling the clients");
                let peers: Vec<Peer<RoleServer>> = self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for p in &peers {
                    if let Err(e) = p.notify_tool_list_changed().await {
                        tracing::debug!(error = %e, "a client did not take the list_changed notification");
                    }
                }
                self.peers.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| !p.is_transport_closed());
            }
            last = Some(now);
        }
    }

    /// Calls `skill` as `who` and waits for its answer.
    async fn ask(
        self: &Arc<Self>,
        skill: &SkillTool,
        who: &Identity,
        args: call::SkillArgs,
        ctx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let fail = |m: String| CallToolResult::error(vec![ContentBlock::text(m)]);
        if let Err(e) = self.follow_skill(&skill.skill).await {
            return fail(format!("following the answers of skill `{}` failed: {e}", skill.skill));
        }
        let id = call::new_task_id();
        let envelope = call::request(&id, who, &args);
        let topic = format!("group.{}.skill.{}.requests", self.opts.group, skill.skill);
        if let Err(e) = self.core.submit(&topic, &envelope).await {
            return fail(format!("the request could not be published: {e}"));
        }
        tracing::debug!(task_id = %id, skill = %skill.skill, sender_id = %who.sender_id, "skill call published");
        let (start, token) = (Instant::now(), ctx.meta.get_progress_token());
        let mut reported = start;
        loop {
            let answer = self.core.view.lock().unwrap_or_else(|p| p.into_inner()).answer(&id).cloned();
            if let Some(a) = answer
                && let Some(o) = call::outcome(&a)
            {
                return call::result(&id, &skill.skill, args.deadline, Some(o), Some(&a));
            }
            if start.elapsed() >= args.deadline {
                return call::result(&id, &skill.skill, args.deadline, None, None);
            }
            if let Some(t) = &token
                && reported.elapsed() >= PROGRESS_EVERY
            {
                reported = Instant::now();
                let p = ProgressNotificationParam::new(t.clone(), start.elapsed().as_secs_f64())
                    .with_total(args.deadline.as_secs_f64())
                    .with_message(format!("waiting for skill `{}` to answer task {id}", skill.skill));
                let _ = ctx.peer.notify_progress(p).await;
            }
            tokio::select! {
                _ = ctx.ct.cancelled() => return fail(format!("cancelled by the client (task {id} stays published)")),
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
}

/// The MCP server of one session (stdio: the only one; HTTP: one per session), over the
/// shared group state.
#[derive(Clone)]
pub struct McpServer {
    shared: Arc<Shared>,
}

impl McpServer {
    /// A session's handler.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Who is calling: the HTTP token's identity (set by the auth layer), else, over stdio,
    /// the server's.
    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Identity, McpError> {
        match ctx.extensions.get::<axum::http::request::Parts>() {
            Some(parts) => parts
                .extensions
                .get::<Identity>()
                .cloned()
                .ok_or_else(|| McpError::internal_error("an HTTP request without a token identity", None)),
            None => Ok(self.shared.opts.identity.clone()),
        }
    }
}

fn text_result(v: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(serde_json::to_string_pretty(v).unwrap_or_default())])
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let g = &self.shared.opts.group;
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("kafclaw", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "The skills of kafclaw agent group `{g}`: each skill tool sends the task to the group and returns the answer of the member that took it. `trace` shows a task's trace; `group_members` who is in the group."
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let (skill_tools, _) = self.shared.catalog();
        Ok(ListToolsResult::with_all_items(skills::tools(
            &self.shared.opts.group,
            &skill_tools,
            self.shared.opts.max_description,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.as_ref();
        let result = match request.name.as_ref() {
            TRACE_TOOL => {
                let id = match args.and_then(|a| a.get("task_id")) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Err(McpError::invalid_params("missing required argument `task_id` (a string)", None)),
                };
                let spans = self.shared.core.view.lock().unwrap_or_else(|p| p.into_inner()).trace(&id).to_vec();
                text_result(&Value::Array(spans))
            }
            MEMBERS_TOOL => {
                let roster = self.shared.core.roster.lock().unwrap_or_else(|p| p.into_inner());
                let live = roster.live(kafclaw_operators::api::record::now_ms());
                text_result(&skills::members_json(&live))
            }
            name => {
                let (tools, _) = self.shared.catalog();
                let Some(skill) = tools.into_iter().find(|t| t.tool == name) else {
                    return Err(McpError::invalid_params(format!("unknown tool `{name}`"), None));
                };
                let args = call::parse_args(args, self.shared.opts.deadline, self.shared.opts.max_description)?;
                let who = self.caller(&ctx)?;
                self.shared.ask(&skill, &who, args, &ctx).await
            }
        };
        Ok(result.into())
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        self.shared.peers.lock().unwrap_or_else(|p| p.into_inner()).push(ctx.peer);
    }
}

/// How the server talks to its client(s).
#[derive(Debug)]
pub enum Transport {
    /// One client on stdin/stdout.
    Stdio,
    /// Streamable HTTP at `/mcp`, behind the gateway's bearer tokens.
    Http {
        /// Where and for whom.
        opts: http::HttpOptions,
        /// Where the tokens come from.
        tokens: crate::gateway::TokenSource,
    },
}

/// `kafclaw mcp-server`: connects to the group and serves MCP until the client closes stdin
/// (stdio) or SIGTERM/SIGINT. Returns the exit code.
pub fn run(opts: Options, transport: Transport, brokers: Option<String>) -> i32 {
    // The tokens first: no token, no server (and no Kafka client started for nothing).
    let credentials = match &transport {
        Transport::Stdio => Vec::new(),
        Transport::Http { tokens, .. } => match crate::gateway::credentials(tokens) {
            Ok(c) => c,
            Err(m) => {
                eprintln!("error: {m}");
                return crate::exit::INVALID;
            }
        },
    };
    let settings = ClientSettings::from_env(brokers);
    let stop = Arc::new(AtomicBool::new(false));
    let shared = match Shared::start(opts, settings, stop.clone()) {
        Ok(s) => s,
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
    let result: Result<(), String> = rt.block_on(async move {
        tokio::spawn(shared.clone().watch());
        match transport {
            Transport::Stdio => {
                use rmcp::ServiceExt;
                let running =
                    McpServer::new(shared).serve(rmcp::transport::stdio()).await.map_err(|e| e.to_string())?;
                tokio::select! {
                    r = running.waiting() => r.map(|_| ()).map_err(|e| e.to_string()),
                    _ = crate::http_serve::shutdown_signal() => Ok(()),
                }
            }
            Transport::Http { opts, .. } => {
                let (router, cancel) = http::router(shared, credentials, &opts);
                // The sessions' event streams end first, or the graceful shutdown would wait on them.
                let stop = async move {
                    crate::http_serve::shutdown_signal().await;
                    cancel();
                };
                http::serve(opts.listen, router, stop).await.map_err(|e| format!("{}: {e}", opts.listen))
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => crate::exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            crate::exit::RUNTIME
        }
    }
}
