//! `kafclaw gateway`: remote mode, an HTTP gateway in front of an agent group (submit
//! tasks, read their status, result and trace, scrape /metrics; A2A agent cards and JSON-RPC,
//! docs/a2a.md; the web console under /console), behind bearer tokens. Each
//! token has an identity (sender id and zone) that the gateway stamps on the tasks submitted
//! with it; a request body cannot choose them.

use super::common::KafkaArgs;
use crate::gateway::TokenSource;

/// Arguments of `kafclaw gateway`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
#[command(after_long_help = "\
Identity: every task gets its `sender_id` and `zone` from the token it was submitted with, never
from the request body (a body with `sender_id` or `zone` is refused with 400). Operators decide
what a sender may do from these (`internal_senders`, admissions, budgets, zones): give
internal identities only to tokens you would trust as internal agents.

One token: the environment variable named by --token-env (default KAFCLAW_GATEWAY_TOKEN), with
the identity --sender-id (default `gateway`) and --zone (default none).

Several tokens: --tokens-file PATH, one token per line (blank lines and # comments skipped):

    # name     sender_id      zone      token
    ops        ops-console    -         3f9c0e…
    partner    partner-acme   external  9a1b77…

`-` is no zone; names and tokens must be unique. With a file, the environment variable is not
read. Keep the file private (chmod 600): it holds the secrets.

Approvals (docs/approvals.md): only tokens whose sender_id is given with --approver (repeatable)
may list (GET /v1/approvals) or decide (POST /v1/approvals/{id}/approve|reject) approval
requests; any other token gets 403. Without --approver, no token may (fails closed).")]
pub struct Args {
    /// The group.
    #[arg(long)]
    pub group: String,
    /// Skills whose tasks may be submitted (`skill` in the body), repeatable.
    #[arg(long)]
    pub skill: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub listen: std::net::SocketAddr,
    /// Environment variable holding the bearer token (one of it or --tokens-file is required:
    /// there is no open mode).
    #[arg(long, default_value = "KAFCLAW_GATEWAY_TOKEN")]
    pub token_env: String,
    /// The sender id stamped on tasks submitted with the --token-env token.
    #[arg(long, default_value = "gateway", conflicts_with = "tokens_file")]
    pub sender_id: String,
    /// The zone stamped on tasks submitted with the --token-env token (default: none).
    #[arg(long, conflicts_with = "tokens_file")]
    pub zone: Option<String>,
    /// Several tokens, each with its identity: lines `name sender_id zone token` (see below).
    #[arg(long, value_name = "PATH", env = "KAFCLAW_GATEWAY_TOKENS_FILE", conflicts_with = "token_env")]
    pub tokens_file: Option<std::path::PathBuf>,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Partitions of the answer topics the gateway creates when missing.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// The gateway's public base URL, for the A2A agent cards' interfaces (e.g.
    /// `https://agents.example.com`); default: `http://` and the request's Host header.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// How long a blocking A2A `SendMessage` waits for the task to finish before it answers
    /// with the task as it stands (submitted or working).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub a2a_wait: std::time::Duration,
    /// A sender id whose tokens may list and decide approval requests (repeatable; none: no
    /// token may — the approvals routes answer 403).
    #[arg(long, value_name = "SENDER_ID")]
    pub approver: Vec<String>,
    /// How long a member of the group stays live after its last announce or heartbeat (the
    /// console's Group page, the agent cards' skills). Make it a few heartbeat intervals.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    pub member_ttl: std::time::Duration,
    /// Mark the console's session cookie `Secure`: set it when browsers reach the gateway
    /// over HTTPS (e.g. behind a TLS-terminating proxy).
    #[arg(long)]
    pub console_secure_cookie: bool,
    /// The SQLite timeline the console's Tasks pages read (the gateway follows the group's
    /// topics into it, as `kafclaw timeline` does, resuming where it stopped); default: a new
    /// one in a temporary directory, rebuilt from the topics at each start.
    #[arg(long, value_name = "PATH")]
    pub timeline: Option<std::path::PathBuf>,
    /// A dead-letter topic the console's Dead letters page shows and resubmits from
    /// (repeatable; a topology's is `<topology>.dlq` unless its `[dead_letter]` names another).
    /// A console user can write a letter's record back to the topic its `kafclaw.location`
    /// header names: restrict who may write these topics (Kafka ACLs).
    #[arg(long, value_name = "TOPIC")]
    pub dead_letters: Vec<String>,
    /// A sender id whose console users see every task of the group (others see the tasks they
    /// asked) and the dead letters (others: none), repeatable; none: no one (fails closed).
    #[arg(long, value_name = "SENDER_ID")]
    pub console_admin: Vec<String>,
}

/// Serves the gateway until stopped (see [`crate::gateway::run`]).
pub(super) fn execute(args: Args) -> i32 {
    let tokens = match args.tokens_file {
        Some(path) => {
            if std::env::var_os(&args.token_env).is_some() {
                tracing::warn!(var = %args.token_env, "ignored: --tokens-file gives the tokens");
            }
            TokenSource::File(path)
        }
        None => TokenSource::Env { var: args.token_env, sender_id: args.sender_id, zone: args.zone },
    };
    let a2a = crate::gateway::A2aSettings { public_url: args.public_url, wait: args.a2a_wait, bootstrap: None };
    let approvers = args.approver.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
    crate::gateway::run(
        &args.group,
        args.skill,
        args.listen,
        &tokens,
        args.kafka.brokers,
        args.partitions,
        a2a,
        approvers,
        crate::gateway::ConsoleSettings {
            secure_cookie: args.console_secure_cookie,
            admins: args.console_admin.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
        },
        args.member_ttl,
        args.timeline.as_deref(),
        args.dead_letters,
    )
}
