//! `kafclaw gateway`: remote mode, a headless HTTP gateway in front of an agent group (submit
//! tasks, read their status, result and trace, scrape /metrics), behind a bearer token.

use super::common::KafkaArgs;

/// Arguments of `kafclaw gateway`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
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
    /// Environment variable holding the bearer token (required: there is no open mode).
    #[arg(long, default_value = "KAFCLAW_GATEWAY_TOKEN")]
    pub token_env: String,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Partitions of the answer topics the gateway creates when missing.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
}

/// Serves the gateway until stopped (see [`crate::gateway::run`]).
pub(super) fn execute(args: Args) -> i32 {
    crate::gateway::run(&args.group, args.skill, args.listen, &args.token_env, args.kafka.brokers, args.partitions)
}
