//! MCP client tools: `[tools.<name>] type = "mcp"` offers the tools of an MCP server (Model
//! Context Protocol, specification 2025-06-18 / 2025-11-25; client: the official Rust SDK,
//! `rmcp`) to the model, each as `<name>.<tool>` with the server's `inputSchema`
//! (docs/mcp.md).
//!
//! ```toml
//! [tools.everything]
//! type = "mcp"
//! command = "node"                     # stdio: a server process the instance starts
//! args = ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]
//! read = ["node_modules"]              # the kernel sandbox's extra read trees
//! allow = ["get-sum", "echo"]
//! timeout = "10s"
//!
//! [tools.remote]
//! type = "mcp"
//! url = "https://mcp.example.com/mcp"  # Streamable HTTP
//! headers_env = { Authorization = "REMOTE_MCP_AUTH" }
//! on_error = "model"
//! ```
//!
//! Halves: [`config`] (the table, checked when the topology compiles: no process, no
//! network), [`server`] (the connection: started when an instance opens the `llm` operators
//! listing the tool, supervised), [`names`] (the `^[a-zA-Z0-9_-]{1,64}$` names the model
//! sees), [`content`] (what the server says, as text).
//!
//! Calls run inside the `llm` call whose answer and tool results are journalled: a replay
//! answered from the journal makes no `tools/call`. A rerun of a step after a crash follows
//! the server's effect class (`effect`, docs/effects.md); the step's idempotency key goes in
//! the request's `_meta` as [`IDEMPOTENCY_META`].

pub mod config;
pub mod content;
pub mod names;
mod server;

use std::sync::Arc;

use serde_json::Value;

pub use config::{McpConfig, OnError};

/// The `_meta` key of a `tools/call` request holding the call's idempotency key (a
/// reverse-DNS prefix, as MCP asks of keys that are not the protocol's own).
pub const IDEMPOTENCY_META: &str = "io.kafclaw/idempotency-key";

use super::{CallContext, CheckedFuture, NamedTools, Tool, ToolFuture};
use server::Server;

/// An MCP server as a tool of the topology: it stands for the tools the server lists
/// ([`Tool::members`]).
#[derive(Debug)]
pub struct McpTool {
    server: Arc<Server>,
}

impl McpTool {
    /// Builds the tool of `config`, named `name` in the topology and declared at `site`
    /// (`file:line`); relative paths against `base`. Prepares the stdio server's sandbox (no
    /// process is started until [`Tool::open`]).
    ///
    /// Errors: every problem of the options; a sandbox the kernel cannot provide.
    pub fn new(
        config: &McpConfig,
        name: &str,
        site: &str,
        base: &std::path::Path,
        parse_ms: impl Fn(&str) -> Result<std::time::Duration, String>,
    ) -> Result<Self, Vec<String>> {
        let (spec, policy, mode) = config.spec(name, site, base, parse_ms)?;
        let sandbox = match policy {
            None => None,
            Some(policy) => {
                Some(crate::sandbox::run::Sandbox::new(mode, policy).map_err(|e| vec![format!("mcp tool: {e}")])?)
            }
        };
        Ok(Self { server: Arc::new(Server::new(spec, sandbox)) })
    }
}

impl Tool for McpTool {
    fn description(&self) -> String {
        format!("the tools of MCP server `{}`", self.server.shared.spec.name)
    }
    fn parameters(&self) -> Value {
        serde_json::json!({"type": "object"})
    }
    /// Unknown until listed: an MCP tool may change things.
    fn side_effects(&self) -> bool {
        true
    }
    fn tier(&self) -> u8 {
        self.server.shared.spec.tier.unwrap_or(2)
    }
    fn effect(&self) -> super::effect::Effect {
        self.server.shared.spec.effect
    }
    fn open(&self) -> Result<(), String> {
        self.server.open()
    }
    fn members(&self) -> Option<NamedTools> {
        let spec = &self.server.shared.spec;
        Some(
            self.server
                .listing()
                .iter()
                .map(|t| {
                    let description = match &spec.description {
                        Some(d) => format!("{d}\n{}", t.description),
                        None => t.description.clone(),
                    };
                    let f = McpFunction {
                        server: self.server.clone(),
                        tool: t.name.clone(),
                        description,
                        schema: t.input_schema.clone(),
                        read_only: t.read_only,
                    };
                    (t.name.clone(), Arc::new(f) as Arc<dyn Tool>)
                })
                .collect(),
        )
    }
    fn call(&self, _args: Value, _cx: CallContext) -> ToolFuture {
        let name = self.server.shared.spec.name.clone();
        Box::pin(async move { Err(format!("`{name}` is an MCP server; call one of its tools (`{name}.<tool>`)")) })
    }
}

/// One tool of an MCP server.
#[derive(Debug)]
struct McpFunction {
    server: Arc<Server>,
    tool: String,
    description: String,
    schema: Value,
    read_only: bool,
}

impl Tool for McpFunction {
    fn description(&self) -> String {
        self.description.clone()
    }
    fn parameters(&self) -> Value {
        self.schema.clone()
    }
    fn side_effects(&self) -> bool {
        !self.read_only
    }
    fn tier(&self) -> u8 {
        self.server.shared.spec.tier.unwrap_or(2)
    }
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let checked = self.call_checked(args, cx);
        Box::pin(async move { checked.await.unwrap_or_else(|e| Err(e.0)) })
    }
    fn effect(&self) -> super::effect::Effect {
        self.server.shared.spec.effect
    }
    /// With the call's idempotency key in `_meta` unless the class is `none`.
    fn call_checked(&self, args: Value, cx: CallContext) -> CheckedFuture {
        let key = (self.effect() != super::effect::Effect::None).then_some(cx.idempotency_key);
        self.server.call(self.tool.clone(), args, key)
    }
}
