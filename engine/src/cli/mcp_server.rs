//! `kafclaw mcp-server`: an agent group's skills as MCP tools, over stdio (default) or
//! Streamable HTTP (`--listen`, behind the gateway's bearer tokens). See docs/mcp-server.md.

use std::time::Duration;

use super::common::KafkaArgs;
use crate::gateway::{Identity, TokenSource};
use crate::mcp_server::{Options, Transport, http::HttpOptions};

/// Arguments of `kafclaw mcp-server`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
#[command(after_long_help = "\
Tools: one per skill the group serves (announced by a live member of group.<g>.announce, or
with an existing group.<g>.skill.<s>.requests topic), named after the skill; `trace` (a task's
trace envelopes) and `group_members` (the live roster), both read-only. Clients are told
(notifications/tools/list_changed) when the skills change.

A skill call publishes a `skill_request` on group.<g>.skill.<s>.requests and returns the text
of the correlated answer, or an error result when the task failed, was rejected, or no answer
came by the deadline (--deadline, or the call's `deadline_seconds`).

stdio (default): the identity of the calls is --sender-id / --zone. The protocol owns stdout;
logs go to stderr.

HTTP (--listen ADDR): Streamable HTTP at http://ADDR/mcp, the gateway's token rule: the token in
the variable named by --token-env (identity --sender-id / --zone), or one per line of
--tokens-file (`name sender_id zone token`); it does not start without a token. Browser Origins
other than localhost are refused (403) unless named by --allow-origin.")]
pub struct Args {
    /// The group.
    #[arg(long)]
    pub group: String,
    /// Serve Streamable HTTP on this address (path /mcp) instead of stdio.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// The sender id of the skill requests (stdio, and the --token-env token over HTTP).
    #[arg(long, default_value = "mcp-server")]
    pub sender_id: String,
    /// The zone of the skill requests (default: none, group-wide).
    #[arg(long)]
    pub zone: Option<String>,
    /// HTTP: the environment variable holding the bearer token.
    #[arg(long, default_value = "KAFCLAW_MCP_TOKEN")]
    pub token_env: String,
    /// HTTP: several tokens, each with its identity: lines `name sender_id zone token`.
    #[arg(long, value_name = "PATH", env = "KAFCLAW_MCP_TOKENS_FILE", conflicts_with = "token_env")]
    pub tokens_file: Option<std::path::PathBuf>,
    /// HTTP: a browser Origin to accept besides localhost (`scheme://host[:port]`), repeatable.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// HTTP: a Host header value to accept besides the loopback names and the listen address
    /// (`name` or `name:port`), repeatable.
    #[arg(long, value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Seconds a skill call waits for its answer unless it says `deadline_seconds`.
    #[arg(long, default_value_t = 60.0, value_parser = deadline)]
    pub deadline: f64,
    /// The largest `description` a skill call may send, in bytes.
    #[arg(long, default_value_t = 65_536)]
    pub max_description_bytes: usize,
    /// Partitions of the group topics the server creates when missing.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

fn deadline(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= crate::mcp_server::call::MAX_DEADLINE.as_secs_f64() => Ok(v),
        _ => Err(format!("`{s}`: a number of seconds, more than 0 and at most 3600")),
    }
}

/// Serves until stopped (see [`crate::mcp_server::run`]).
pub(super) fn execute(args: Args) -> i32 {
    let zone = args.zone.clone().filter(|z| !z.trim().is_empty() && z != "-");
    let opts = Options {
        group: args.group,
        identity: Identity { name: "stdio".into(), sender_id: args.sender_id.clone(), zone: zone.clone() },
        deadline: Duration::from_secs_f64(args.deadline),
        max_description: args.max_description_bytes,
        partitions: args.partitions,
    };
    let transport = match args.listen {
        None => Transport::Stdio,
        Some(listen) => Transport::Http {
            opts: HttpOptions { listen, allowed_origins: args.allow_origin, allowed_hosts: args.allow_host },
            tokens: match args.tokens_file {
                Some(path) => TokenSource::File(path),
                None => TokenSource::Env { var: args.token_env, sender_id: args.sender_id, zone },
            },
        },
    };
    crate::mcp_server::run(opts, transport, args.kafka.brokers)
}
