//! The `kafclaw` command line (clap). Every subcommand returns an exit code; see [`crate::exit`].
//!
//! One file per command: its `Args` (the flags, whose doc comments are the help text) and its
//! `execute`. The flags several commands share (`--brokers`) and the helpers they share
//! (compiling a topology, Kafka settings, exit codes) are in [`common`].

use clap::{Parser, Subcommand};

pub mod agent;
pub mod approvals;
pub mod chat;
pub mod common;
pub mod completions;
pub mod diff;
pub mod doctor;
pub mod gateway;
pub mod graph;
pub mod group;
pub mod journal;
pub mod mcp_server;
pub mod replay;
pub mod run;
pub mod state;
pub mod tap;
pub mod test;
pub mod timeline;
pub mod top;
pub mod topics;
pub mod trace;
pub mod validate;
pub mod version;

/// kafclaw: agent topologies on Apache Kafka.
///
/// Exit codes: 0 ok; 1 runtime failure (I/O error, failing test); 2 invalid input or
/// configuration (topology errors, missing files, bad flags).
#[derive(Debug, Parser)]
#[command(name = "kafclaw", version, about, long_about)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check topology files and report every problem at once (no network).
    Validate(validate::Args),
    /// Print a topology's graph.
    Graph(graph::Args),
    /// Run the [[tests]] written in topology files.
    Test(test::Args),
    /// Run a topology: as a member of its Kafka consumer group, or locally with --local.
    Run(run::Args),
    /// List a topology's Kafka topics with their partition counts on the cluster.
    Topics(topics::Args),
    /// Rebuild a topology's state by reprocessing its inputs: reset the group's offsets, wipe
    /// the state (local store and, by a reset marker, the changelogs), reprocess to the
    /// current end with a progress bar, and stop. Stop every instance first.
    Replay(replay::Args),
    /// Remote mode: a headless HTTP gateway in front of an agent group — submit tasks, read
    /// their status, result and trace, scrape /metrics. Every route but /healthz needs the
    /// bearer token.
    Gateway(gateway::Args),
    /// An agent group's skills as MCP tools (stdio, or Streamable HTTP with --listen behind
    /// the gateway's bearer tokens): a call sends the task to the skill's topic and returns the
    /// correlated answer; `trace` and `group_members` read the group.
    McpServer(mcp_server::Args),
    /// Follow a group's topics (requests, responses, statuses, traces, audit, shared memory,
    /// skill topics) into a local SQLite timeline, each record with its position in one
    /// transaction (resumes where it stopped).
    Timeline(timeline::Args),
    /// Print the causal chain of a task from a timeline (one SQL query): its events, what they
    /// caused across agents (delegations and their answers), and the memory items used, with
    /// who wrote them.
    Trace(trace::Args),
    /// Agent groups: create one (its topics), list who is in one.
    Group(group::Args),
    /// An interactive session with an agent group: type a request, see its model calls, tool
    /// calls and delegations as they happen and the answer as it streams; `/trace` shows the
    /// last task's causal chain. History with the arrow keys.
    Chat(chat::Args),
    /// Human approval: list a group's approval requests, approve or reject one (the decision
    /// goes to the partition the waiting record's task reads).
    Approvals(approvals::Args),
    /// Export the response journals (model answers, embeddings) kept in the
    /// topology's changelog topics.
    Journal(journal::Args),
    /// Live rates of running instances from their /metrics: records per second per topology
    /// and operator, commits, dead letters, consumer lag, model calls in flight.
    Top(top::Args),
    /// Query the state of a running instance over its HTTP endpoint (`run --http`).
    State(state::Args),
    /// Ask the standard agent (built in: topologies/agent.toml) one question, locally. With no
    /// live model configured it answers from recorded responses and says so; set
    /// KAFCLAW_MODEL_URL (and KAFCLAW_MODEL, KAFCLAW_API_KEY) to use an OpenAI-compatible
    /// endpoint.
    Agent(agent::Args),
    /// Compare two runs' outputs (JSON Lines), envelope by envelope by id; exit 1 if they
    /// differ.
    Diff(diff::Args),
    /// Diagnose the cluster with the runtime's client settings: connectivity (DNS, TCP, TLS,
    /// SASL), the broker's features measured by a probe (transactions, idempotence, aborted
    /// records under read_committed, committed offsets, compaction, group protocols), and each
    /// topology's topics and consumer group (lag). One verdict per line, or --json; exit 1 when
    /// a check fails.
    Doctor(doctor::Args),
    /// Follow a topic's envelopes, printing those a CEL condition keeps (the `filter`
    /// operator's `where`, same variables), one JSON line each.
    Tap(tap::Args),
    /// Print the version.
    Version,
    /// Print shell completions.
    Completions(completions::Args),
}

/// Runs the CLI; returns the exit code.
pub fn main_with(cli: Cli) -> i32 {
    if let Err(e) = crate::runtime::inject::check_env() {
        eprintln!("error: {e}");
        return crate::exit::INVALID;
    }
    match cli.command {
        Command::Validate(args) => validate::execute(&args),
        Command::Graph(args) => graph::execute(&args),
        Command::Test(args) => test::execute(&args),
        Command::Run(args) => run::execute(args),
        Command::Topics(args) => topics::execute(args),
        Command::Replay(args) => replay::execute(args),
        Command::Gateway(args) => gateway::execute(args),
        Command::McpServer(args) => mcp_server::execute(args),
        Command::Timeline(args) => timeline::execute(args),
        Command::Trace(args) => trace::execute(&args),
        Command::Group(args) => group::execute(args),
        Command::Journal(args) => journal::execute(args),
        Command::Approvals(args) => approvals::execute(args),
        Command::Chat(args) => chat::execute(args),
        Command::State(args) => state::execute(&args),
        Command::Top(args) => top::execute(&args),
        Command::Agent(args) => agent::execute(&args),
        Command::Diff(args) => diff::execute(&args),
        Command::Doctor(args) => doctor::execute(args),
        Command::Tap(args) => tap::execute(args),
        Command::Version => version::execute(),
        Command::Completions(args) => completions::execute(&args),
    }
}
