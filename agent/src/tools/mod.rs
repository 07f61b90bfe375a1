//! Tools a model may call: declared as `[tools.<name>]` in a topology, offered to `llm`
//! operators that list them (`tools = ["read-notes", "ls"]`).
//!
//! ```toml
//! [tools.read-notes]
//! type = "fs_read"
//! root = "/srv/agent/notes"
//!
//! [tools.ls]
//! type = "shell"
//! allow = ["ls", "wc"]
//! root = "/srv/agent/work"
//! timeout = "5s"
//!
//! [tools.status]
//! type = "http"
//! allow_hosts = ["status.example.com"]
//!
//! [tools.memory]
//! type = "memory"
//! index = "remember"          # a memory-index operator of the topology
//! ```
//! Each tool has an effect class (`effect = "none" | "idempotent" | "at-most-once" |
//! "reconcile"`, a default per kind): what a run of the same step after a crash does about
//! a call that changed something outside kafclaw ([`effect`], docs/effects.md).

pub mod approval;
mod context;
pub mod delegate;
pub mod effect;
pub mod fs;
pub mod http;
pub mod mcp;
pub mod memory;
pub mod shell;
mod tiered;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::memory::SharedIndex;
use crate::model::SharedModel;
pub use context::CallContext;
use kafclaw_operators::api::config::ConfigError;
use kafclaw_operators::api::config::parse_duration_ms;
use kafclaw_operators::api::resources::Resources;
use tiered::Tiered;

/// What a successful tool call gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolOutput {
    /// The text handed back to the model.
    pub text: String,
    /// Items to remember: the `llm` operator emits each as a `memory` envelope on its
    /// `memories` output, in the output transaction (and journals them, so a replay emits
    /// the same items again without calling anything).
    pub remember: Vec<String>,
    /// Policy events of the call (`{"event_type": …, "details": …}`), each emitted as an
    /// `audit` envelope by the `llm` operator (journalled with its answer).
    pub audits: Vec<Value>,
}

impl From<String> for ToolOutput {
    fn from(text: String) -> Self {
        Self { text, ..Self::default() }
    }
}

/// What a tool call gives: its output, or why it was refused/failed (handed back as text,
/// so the model can recover).
pub type ToolResult = Result<ToolOutput, String>;

/// A tool call that failed in a way the model cannot recover from (an MCP server's transport,
/// with `on_error = "dead_letter"`): the whole `llm` call fails, and the record is
/// dead-lettered with this message, like a model that does not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FatalToolError(pub String);

/// A tool call in flight that may fail the whole `llm` call ([`Tool::call_checked`]).
pub type CheckedFuture = Pin<Box<dyn Future<Output = Result<ToolResult, FatalToolError>> + Send>>;

/// Tools by their names in the topology, in the order an operator lists them.
pub type NamedTools = Vec<(String, Arc<dyn Tool>)>;

/// A tool call in flight.
pub type ToolFuture = Pin<Box<dyn Future<Output = ToolResult> + Send>>;

/// A callable tool.
pub trait Tool: Send + Sync + std::fmt::Debug {
    /// What the model is told the tool does.
    fn description(&self) -> String;
    /// JSON Schema of the arguments.
    fn parameters(&self) -> Value;
    /// Whether a call changes something outside kafclaw.
    fn side_effects(&self) -> bool;
    /// Whether calls carry an idempotency key the other side honours.
    fn idempotent(&self) -> bool {
        !self.side_effects()
    }
    /// The effect class ([`effect::Effect`]): the configured one for a tool of a topology;
    /// by default `none` without side effects, `idempotent` with a key the other side
    /// honours, `at-most-once` otherwise.
    fn effect(&self) -> effect::Effect {
        effect::Effect::default_for(self.side_effects(), self.idempotent())
    }
    /// Asks the other side whether the call keyed `cx.idempotency_key` happened (the
    /// `reconcile` class); `None` when the tool has no reconcile action.
    fn reconcile(&self, _args: Value, _cx: CallContext) -> Option<effect::ReconcileFuture> {
        None
    }
    /// Whether calls may hand back items to remember ([`ToolOutput::remember`]).
    fn remembers(&self) -> bool {
        false
    }
    /// Trust tier (see [`ToolConfig`]): 1 without side effects, 2 with, unless configured.
    fn tier(&self) -> u8 {
        if self.side_effects() { 2 } else { 1 }
    }
    /// Calls the tool for one step of the input `cx` describes.
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture;
    /// Calls the tool as the `llm` tool loop does: `Ok` is the result the model reads (an
    /// `Err` inside it too), `Err` fails the whole `llm` call. Default: [`Tool::call`], which
    /// never fails the call.
    fn call_checked(&self, args: Value, cx: CallContext) -> CheckedFuture {
        let call = self.call(args, cx);
        Box::pin(async move { Ok(call.await) })
    }
    /// Starts what the tool needs before its first call (an MCP server: spawned or
    /// connected, initialised, listed), once per instance; called when an `llm` operator
    /// listing it opens. Errors stop the instance, saying why. Default: nothing to start.
    fn open(&self) -> Result<(), String> {
        Ok(())
    }
    /// The tools this one stands for, by their names under it (an MCP server's tools: offered
    /// to the model as `<name>.<member>`), as they are now; `None` for a plain tool.
    fn members(&self) -> Option<NamedTools> {
        None
    }
}

/// `tools` with every tool that stands for others ([`Tool::members`]) replaced by them, each
/// named `<name>.<member>`, in order.
pub fn expand(tools: &[(String, Arc<dyn Tool>)]) -> NamedTools {
    let mut out = Vec::with_capacity(tools.len());
    for (name, tool) in tools {
        match tool.members() {
            None => out.push((name.clone(), tool.clone())),
            Some(members) => out.extend(members.into_iter().map(|(m, t)| (format!("{name}.{m}"), t))),
        }
    }
    out
}

/// `[tools.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolConfig {
    /// Runs an allow-listed program with argv (never a shell), in a jail folder.
    Shell {
        /// Programs that may run (names looked up in /usr/bin and /bin).
        allow: Vec<String>,
        /// Working directory; arguments cannot point outside it.
        root: String,
        /// Time limit of one run; the program and every process it started are killed at it.
        #[serde(default = "default_timeout")]
        timeout: String,
        /// What the model is told.
        #[serde(default)]
        description: Option<String>,
        /// Trust tier: an `llm` operator offers a tool to an external sender only up to its
        /// `external_tool_tier`. Default 1 for tools without side effects, 2 for the others.
        #[serde(default)]
        tier: Option<u8>,
        /// Effect class (docs/effects.md): `"none"`, `"idempotent"`, `"at-most-once"` or
        /// `"reconcile"`. Default: `"at-most-once"`.
        #[serde(default)]
        effect: Option<effect::Effect>,
        /// `"kernel"` (default): programs run in the kernel sandbox (Landlock ABI 6+, seccomp,
        /// rlimits; docs/security.md), and the tool refuses to start where the kernel lacks
        /// it. `"none"`: an explicit opt-out; only the argument checks, the time limit and
        /// the output cap remain.
        #[serde(default)]
        sandbox: crate::sandbox::Mode,
        /// Trees the programs may read besides the root and the system's read-only ones
        /// (`/usr`, `/lib`, a few files of `/etc`). Relative paths are resolved against the
        /// topology's folder.
        #[serde(default)]
        read: Vec<String>,
        /// TCP ports the programs may connect to, on any address (default: none — no network
        /// at all; UDP, unix and raw sockets are never allowed, so names resolve only
        /// through `/etc/hosts`).
        #[serde(default)]
        connect_ports: Vec<u16>,
        /// Resource limits of one run.
        #[serde(default)]
        limits: crate::sandbox::Limits,
        /// Runs of this tool at once (default 4); a call past them is refused, saying so.
        #[serde(default = "default_concurrency")]
        concurrency: usize,
    },
    /// Reads a file under a root.
    FsRead {
        /// The folder files are read from (paths are relative to it).
        root: String,
        /// Largest file returned, in bytes.
        #[serde(default = "default_max_bytes")]
        max_bytes: u64,
        /// What the model is told.
        #[serde(default)]
        description: Option<String>,
        /// Trust tier: an `llm` operator offers a tool to an external sender only up to its
        /// `external_tool_tier`. Default 1 for tools without side effects, 2 for the others.
        #[serde(default)]
        tier: Option<u8>,
        /// Effect class (docs/effects.md): `"none"`, `"idempotent"`, `"at-most-once"` or
        /// `"reconcile"`. Default: `"none"`.
        #[serde(default)]
        effect: Option<effect::Effect>,
    },
    /// Writes a file under a root.
    FsWrite {
        /// The folder files are written to (paths are relative to it; a file's folder must
        /// exist).
        root: String,
        /// Largest content written, in bytes (default 1 MiB); bigger content is refused.
        #[serde(default = "fs::default_write_max_bytes")]
        max_bytes: u64,
        /// What the model is told.
        #[serde(default)]
        description: Option<String>,
        /// Trust tier: an `llm` operator offers a tool to an external sender only up to its
        /// `external_tool_tier`. Default 1 for tools without side effects, 2 for the others.
        #[serde(default)]
        tier: Option<u8>,
        /// Effect class (docs/effects.md): `"none"`, `"idempotent"`, `"at-most-once"` or
        /// `"reconcile"`. Default: `"idempotent"`.
        #[serde(default)]
        effect: Option<effect::Effect>,
    },
    /// Calls an HTTP endpoint on an allow-listed host and port. Redirects are followed only to
    /// allow-listed hosts and ports, names are resolved once and only to permitted addresses
    /// (the connection goes to the checked address), proxies are ignored, bodies and time
    /// are capped (see `kafclaw_agent::tools::http`).
    Http {
        /// Hosts that may be called, on the first hop and on every redirect. Each entry is
        /// `host` (the scheme's default port only: 80 for http, 443 for https), `host:port`,
        /// `[v6addr]` or `[v6addr]:port`, or `*.example.com[:port]` (any subdomain of
        /// example.com, not example.com itself; the domain needs two labels at least). Hosts
        /// are compared as the URL parser normalises them (lowercase, `127.1` is `127.0.0.1`,
        /// one trailing dot ignored). Listing a host does not open a special address: see
        /// `allow_addresses`.
        allow_hosts: Vec<String>,
        /// Addresses (`127.0.0.1`, `::1`) or CIDR ranges (`10.0.0.0/8`) that may be reached
        /// although special. Without an entry naming them, loopback, private (RFC 1918),
        /// link-local, unique-local (fc00::/7), CGNAT (100.64.0.0/10), unspecified,
        /// broadcast, multicast, documentation and reserved ranges, cloud metadata endpoints
        /// (169.254.169.254, fd00:ec2::254, 168.63.129.16) and IPv6 forms embedding such an
        /// IPv4 address (`::ffff:127.0.0.1`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are
        /// refused, whether a URL names them or a host name resolves to them. An IPv6 form
        /// embedding a named IPv4 address is opened with it. Default: none.
        #[serde(default)]
        allow_addresses: Vec<String>,
        /// `GET` (default) or `POST`; POST has side effects (its default class, `idempotent`,
        /// sends an `Idempotency-Key`).
        /// A 307/308 redirect repeats the POST; 301/302/303 continue with a GET.
        #[serde(default = "default_method")]
        method: String,
        /// Time limit of one call, covering connecting, every redirect and reading the body.
        #[serde(default = "default_timeout")]
        timeout: String,
        /// Most redirects followed in one call (each re-checked against `allow_hosts` and the
        /// address rules); one more fails the call. 0 follows none.
        #[serde(default = "http::default_max_redirects")]
        max_redirects: u32,
        /// Largest body handed to the model, in bytes (default 1 MiB). A longer body is read
        /// no further: the result is its first `max_bytes` bytes and a last line saying it
        /// was truncated.
        #[serde(default = "http::default_max_bytes")]
        max_bytes: u64,
        /// What the model is told.
        #[serde(default)]
        description: Option<String>,
        /// Trust tier: an `llm` operator offers a tool to an external sender only up to its
        /// `external_tool_tier`. Default 1 for tools without side effects, 2 for the others.
        #[serde(default)]
        tier: Option<u8>,
        /// Effect class (docs/effects.md): `"none"`, `"idempotent"`, `"at-most-once"` or
        /// `"reconcile"`. Default: `"none"` for GET, `"idempotent"` for POST. Any class but
        /// `"none"` sends the call's `Idempotency-Key`.
        #[serde(default)]
        effect: Option<effect::Effect>,
        /// The reconcile action of `effect = "reconcile"`: a status URL (on `allow_hosts`) with
        /// `{idempotency_key}`, replaced by the call's key (percent-encoded) and fetched with a
        /// GET. 2xx: the call happened, the body is its result; 404: it did not, and is made
        /// now; anything else: the outcome is unknown.
        #[serde(default)]
        reconcile_url: Option<String>,
    },
    /// Remembers (a `memory` envelope on the `llm` operator's `memories` output) and recalls
    /// (a search of a `memory-index` operator's index).
    Memory {
        /// The `memory-index` operator whose items are recalled.
        index: String,
        /// The model whose `/v1/embeddings` endpoint embeds recall queries; it must be the
        /// one the index's items were embedded with. Default: the built-in local embedder.
        #[serde(default)]
        embedder: Option<String>,
        /// How many items a recall returns.
        #[serde(default = "default_k")]
        k: usize,
        /// What the model is told.
        #[serde(default)]
        description: Option<String>,
        /// Trust tier: an `llm` operator offers a tool to an external sender only up to its
        /// `external_tool_tier`. Default 1 for tools without side effects, 2 for the others.
        #[serde(default)]
        tier: Option<u8>,
        /// Effect class (docs/effects.md): `"none"`, `"idempotent"`, `"at-most-once"` or
        /// `"reconcile"`. Default: `"none"`.
        #[serde(default)]
        effect: Option<effect::Effect>,
    },
    /// Hands a task to a peer agent or a skill over Kafka and waits for the correlated
    /// response (Kafka mode only).
    Delegate {
        /// Topic the `request` envelope is published to (e.g.
        /// `group.<g>.skill.<s>.requests`).
        request_topic: String,
        /// Topic the `response` with the request's correlation id is awaited on.
        reply_topic: String,
        /// How long to wait for the response, or the peer's next progress report (a
        /// `task_status` with a working status or `payload.progress`), before the call fails:
        /// an idle timeout, which each progress report restarts.
        #[serde(default = "default_deadline")]
        deadline: String,
        /// The absolute cap on a call from its first request, however long the peer keeps
        /// reporting progress (default: 10 × `deadline`; a shorter one is a configuration error).
        #[serde(default)]
        max_deadline: Option<String>,
        /// What the model is told.
        #[serde(default)]
        description: Option<String>,
        /// Trust tier: an `llm` operator offers a tool to an external sender only up to its
        /// `external_tool_tier`. Default 1 for tools without side effects, 2 for the others.
        #[serde(default)]
        tier: Option<u8>,
        /// Effect class (docs/effects.md): `"none"`, `"idempotent"`, `"at-most-once"` or
        /// `"reconcile"`. Default: `"idempotent"`.
        #[serde(default)]
        effect: Option<effect::Effect>,
    },
    /// The tools of an MCP server (stdio or Streamable HTTP), each offered as
    /// `<name>.<tool>` (see [`mcp::McpConfig`] and docs/mcp.md).
    Mcp(mcp::McpConfig),
}

fn default_deadline() -> String {
    "60s".to_owned()
}

fn default_concurrency() -> usize {
    4
}

fn default_k() -> usize {
    5
}

fn default_timeout() -> String {
    "10s".to_owned()
}
fn default_max_bytes() -> u64 {
    256 * 1024
}
fn default_method() -> String {
    "GET".to_owned()
}

impl ToolConfig {
    /// The tier written in the table, if any.
    fn tier(&self) -> Option<u8> {
        match self {
            Self::Shell { tier, .. }
            | Self::FsRead { tier, .. }
            | Self::FsWrite { tier, .. }
            | Self::Http { tier, .. }
            | Self::Memory { tier, .. }
            | Self::Delegate { tier, .. } => *tier,
            // Applied by the tool to each of the server's tools.
            Self::Mcp(_) => None,
        }
    }

    /// Builds the tool with the topology's resources: its folder (relative roots are resolved
    /// against it), the `memory-index` operators' indexes and the declared models, by name,
    /// its name (who delegated requests are from) and the bus slot (for `delegate`).
    pub fn build(&self, resources: &Resources) -> Result<Arc<dyn Tool>, Vec<ConfigError>> {
        self.build_at("tool", "?", resources)
    }

    /// [`ToolConfig::build`] for the table `[tools.<name>]` declared at `site` (`file:line`),
    /// which tools that start something at run time name in their errors.
    pub fn build_at(&self, name: &str, site: &str, resources: &Resources) -> Result<Arc<dyn Tool>, Vec<ConfigError>> {
        let tool = self.with_effect(self.build_untiered(name, site, resources)?, name, resources)?;
        Ok(match self.tier() {
            Some(tier) => Arc::new(Tiered { inner: tool, tier }),
            None => tool,
        })
    }

    fn build_untiered(&self, name: &str, site: &str, resources: &Resources) -> Result<Arc<dyn Tool>, Vec<ConfigError>> {
        let root = |r: &String| -> PathBuf {
            let p = PathBuf::from(r);
            if p.is_absolute() { p } else { resources.base_dir().join(p) }
        };
        // (Internally tagged enums cannot hold spans: errors point at the tool's name.)
        let ms = |t: &String| {
            parse_duration_ms(&Spanned::new(0..0, t.clone())).map(|m| std::time::Duration::from_millis(m as u64))
        };
        Ok(match self {
            Self::Shell {
                allow,
                root: r,
                timeout,
                description,
                sandbox,
                read,
                connect_ports,
                limits,
                concurrency,
                ..
            } => {
                let spec = shell::ShellSpec {
                    allow: allow.clone(),
                    root: root(r),
                    timeout: ms(timeout)?,
                    description: description.clone(),
                    sandbox: *sandbox,
                    read: read.iter().map(root).collect(),
                    connect_ports: connect_ports.clone(),
                    limits: limits.clone(),
                    concurrency: *concurrency,
                };
                Arc::new(shell::Shell::new(spec).map_err(|e| vec![ConfigError::at(0..0, format!("shell tool: {e}"))])?)
            }
            Self::FsRead { root: r, max_bytes, description, .. } => {
                Arc::new(fs::FsRead::new(root(r), *max_bytes, description.clone()))
            }
            Self::FsWrite { root: r, max_bytes, description, .. } => {
                Arc::new(fs::FsWrite::new(root(r), *max_bytes, description.clone()))
            }
            Self::Http {
                allow_hosts,
                allow_addresses,
                method,
                timeout,
                max_redirects,
                max_bytes,
                description,
                effect,
                reconcile_url,
                ..
            } => {
                let method = method.to_ascii_uppercase();
                if method != "GET" && method != "POST" {
                    return Err(vec![ConfigError::at(0..0, format!("http tool method `{method}`: GET or POST"))]);
                }
                let options = http::HttpOptions {
                    allow_hosts: allow_hosts.clone(),
                    allow_addresses: allow_addresses.clone(),
                    method,
                    timeout: ms(timeout)?,
                    max_redirects: *max_redirects,
                    max_bytes: *max_bytes,
                    description: description.clone(),
                    effect: *effect,
                    reconcile_url: reconcile_url.clone(),
                };
                Arc::new(
                    http::HttpTool::with_options(options)
                        .map_err(|e| vec![ConfigError::at(0..0, format!("http tool: {e}"))])?,
                )
            }
            Self::Memory { index, embedder, k, description, .. } => {
                let Some(shared) = resources.get::<SharedIndex>(index) else {
                    return Err(vec![ConfigError::at(
                        0..0,
                        format!("memory tool: `{index}` is not a memory-index operator of this topology"),
                    )]);
                };
                let embedder = match embedder {
                    None => None,
                    Some(m) => match resources.get::<SharedModel>(m) {
                        Some(model) => Some(model),
                        None => {
                            return Err(vec![ConfigError::at(
                                0..0,
                                format!("memory tool: model `{m}` is not declared (add a [models.{m}] table)"),
                            )]);
                        }
                    },
                };
                Arc::new(memory::MemoryTool::new(shared, embedder, (*k).max(1), description.clone()))
            }
            Self::Delegate { request_topic, reply_topic, deadline, max_deadline, description, .. } => {
                for t in [request_topic, reply_topic] {
                    if !kafclaw_operators::api::config::valid_topic(t) {
                        return Err(vec![ConfigError::at(
                            0..0,
                            format!("delegate tool: `{t}` is not a valid Kafka topic name"),
                        )]);
                    }
                }
                let (deadline, max_deadline) = (ms(deadline)?, max_deadline.as_ref().map(ms).transpose()?);
                if let Some(max) = max_deadline.filter(|m| *m < deadline) {
                    return Err(vec![ConfigError::at(
                        0..0,
                        format!("delegate tool: `max_deadline` ({max:?}) is shorter than `deadline` ({deadline:?})"),
                    )]);
                }
                Arc::new(delegate::Delegate {
                    agent: resources.topology().to_owned(),
                    request_topic: request_topic.clone(),
                    reply_topic: reply_topic.clone(),
                    deadline,
                    max_deadline,
                    description: description.clone(),
                    // Without a slot (not linked by the engine) no bus is ever installed: a
                    // call fails saying so, as in local mode.
                    bus: resources.get::<delegate::BusSlot>(delegate::BUS_SLOT).unwrap_or_default(),
                })
            }
            Self::Mcp(config) => {
                let ms = |t: &str| {
                    parse_duration_ms(&Spanned::new(0..0, t.to_owned()))
                        .map(|m| std::time::Duration::from_millis(m as u64))
                        .map_err(|es| es.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; "))
                };
                let tool = mcp::McpTool::new(config, name, site, resources.base_dir(), ms)
                    .map_err(|es| es.into_iter().map(|e| ConfigError::at(0..0, e)).collect::<Vec<_>>())?;
                Arc::new(tool)
            }
        })
    }
}

/// A relative path argument, checked lexically: not absolute, no `..`, not empty.
pub(crate) fn relative_path(arg: &str) -> Result<PathBuf, String> {
    let p = std::path::Path::new(arg);
    if arg.is_empty() {
        return Err("refused: empty path".into());
    }
    if p.is_absolute() {
        return Err(format!("refused: `{arg}` is absolute; paths are relative to the tool's root"));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("refused: `{arg}` climbs out with `..`"));
    }
    Ok(p.to_path_buf())
}
