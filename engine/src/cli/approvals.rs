//! `kafclaw approvals`: human approval (docs/approvals.md): list a group's approval requests
//! (`approvals list`), decide one (`approvals approve <id>`, `approvals reject <id>
//! --reason …`). A decision is written to `group.<g>.approvals.decisions`, to the partition
//! the request names, with the approver's identity.

use clap::Subcommand;
use kafclaw_operators::api::record::now_ms;
use kafclaw_operators::envelope::approval::Verdict;

use super::common::KafkaArgs;
use crate::exit;
use crate::kafka::ClientSettings;
use crate::kafka::approvals::{self, DecideError, Status};

/// Arguments of `kafclaw approvals`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

/// `kafclaw approvals …`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// The group's approval requests still waiting (id, age, agent, summary); with --all,
    /// decided, expired and conflicting ones too.
    List(ListArgs),
    /// Approve a request: the waiting record or tool call goes on.
    Approve(DecideArgs),
    /// Reject a request: the waiting record goes to its operator's `rejected` output, a
    /// gated tool call is not made (the model is told).
    Reject(DecideArgs),
}

/// Arguments of `kafclaw approvals list`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
pub struct ListArgs {
    /// The agent group.
    #[arg(long)]
    pub group: String,
    /// Also decided, expired and conflicting requests.
    #[arg(long)]
    pub all: bool,
    /// One JSON object per request.
    #[arg(long)]
    pub json: bool,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Arguments of `kafclaw approvals approve|reject`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
pub struct DecideArgs {
    /// The request's id (`apr-…`, from `approvals list`).
    pub id: String,
    /// The agent group.
    #[arg(long)]
    pub group: String,
    /// Why (shown to the waiter: the model of a gated tool reads it).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who decides, as recorded in the decision (default: `$USER@<host>`, else `cli`).
    #[arg(long = "as", value_name = "APPROVER")]
    pub approver: Option<String>,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Runs an `approvals` subcommand.
pub(super) fn execute(args: Args) -> i32 {
    match args.command {
        ApprovalsCommand::List(a) => list(a),
        ApprovalsCommand::Approve(a) => decide(a, Verdict::Approved),
        ApprovalsCommand::Reject(a) => decide(a, Verdict::Rejected),
    }
}

/// `$USER@<host>`, or `cli`.
fn default_approver() -> String {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
    let host = std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty());
    match (user, host) {
        (Some(u), Some(h)) => format!("{u}@{h}"),
        (Some(u), None) => u,
        _ => "cli".to_owned(),
    }
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn list(args: ListArgs) -> i32 {
    let ListArgs { group, all, json, kafka } = args;
    let s = ClientSettings::from_env(kafka.brokers);
    let ledger = match approvals::ledger(&s, &group) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let now = now_ms();
    let mut shown = 0;
    let mut rows: Vec<&approvals::Entry> = ledger.entries.values().collect();
    rows.sort_by_key(|e| e.requested_at_ms);
    if !json {
        println!("{:<36} {:<11} {:>5}  {:<24} summary", "id", "status", "age", "agent");
    }
    for e in rows {
        let status = e.status(now);
        if !all && status != Status::Pending {
            continue;
        }
        shown += 1;
        if json {
            println!("{}", e.to_json(now));
        } else {
            // A tool call shows what a decision releases: the tool and its exact arguments.
            let shown = match (&e.payload.tool, &e.payload.arguments) {
                (tool, Some(args)) if !tool.is_empty() => format!("tool `{tool}` with {args}"),
                _ => e.payload.summary.replace('\n', " "),
            };
            println!(
                "{:<36} {:<11} {:>5}  {:<24} {}",
                e.payload.request_id,
                status.as_str(),
                age((now - e.requested_at_ms).max(0) / 1000),
                e.payload.agent_id,
                shown
            );
        }
    }
    eprintln!("kafclaw: {shown} {}request(s) in group `{group}`", if all { "" } else { "pending " });
    exit::OK
}

fn decide(args: DecideArgs, verdict: Verdict) -> i32 {
    let DecideArgs { id, group, reason, approver, kafka } = args;
    let s = ClientSettings::from_env(kafka.brokers);
    let approver = approver.filter(|a| !a.trim().is_empty()).unwrap_or_else(default_approver);
    match approvals::decide(&s, &group, &id, verdict, &approver, &reason) {
        Ok(decision) => {
            println!("{decision}");
            eprintln!("kafclaw: `{id}` {} by {approver}", verdict.as_str());
            exit::OK
        }
        Err(e @ DecideError::Kafka(_)) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
    }
}
