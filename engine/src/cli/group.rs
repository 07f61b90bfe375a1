//! `kafclaw group`: agent groups: create a group's topics (`group create`), list its live
//! members (`group members`).

use clap::Subcommand;

use super::common::KafkaArgs;
use crate::exit;
use crate::kafka::ClientSettings;

/// Arguments of `kafclaw group`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// `kafclaw group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create the group's topics (docs/ARCHITECTURE.md, "The envelope": announce, requests, responses, tasks.status,
    /// traces, observe.audit, memory.shared and control.roster compacted, memory.context,
    /// control.onboarding, orchestrator, and skill.<s>.requests/responses per --skill).
    Create(CreateArgs),
    /// The live members of a group (from `group.<g>.control.roster`, kept by a `roster`
    /// operator): active, and heard from within their TTL.
    Members(MembersArgs),
}

/// Arguments of `kafclaw group create`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
pub struct CreateArgs {
    /// The group.
    #[arg(long)]
    pub group: String,
    /// Skills to create request and response topics for (repeatable).
    #[arg(long)]
    pub skill: Vec<String>,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor (-1: the broker's default).
    #[arg(long, default_value_t = -1)]
    pub replication: i32,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Arguments of `kafclaw group members`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
pub struct MembersArgs {
    /// The group.
    #[arg(long)]
    pub group: String,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Print one JSON object per member.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `group` subcommand.
pub(super) fn execute(args: Args) -> i32 {
    match args.command {
        GroupCommand::Create(a) => create(a),
        GroupCommand::Members(a) => members(a),
    }
}

/// `group create`: creates the missing topics and lists them all, marking the new ones.
fn create(args: CreateArgs) -> i32 {
    let CreateArgs { group, skill, partitions, replication, kafka } = args;
    let s = ClientSettings::from_env(kafka.brokers);
    match crate::kafka::group::create_group_topics(&s, &group, &skill, partitions, replication) {
        Ok(created) => {
            for t in crate::kafka::group::group_topics(&group, &skill) {
                println!("{}{}", t.0, if created.contains(&t.0) { "  (created)" } else { "" });
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

/// `group members`: prints the live members as a table (or JSON objects).
fn members(args: MembersArgs) -> i32 {
    let MembersArgs { group, kafka, json } = args;
    let s = ClientSettings::from_env(kafka.brokers);
    let now = kafclaw_operators::api::record::now_ms();
    let members = match crate::kafka::group::live_members(&s, &group, now) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    if json {
        for m in &members {
            println!("{m}");
        }
    } else {
        println!("{:<32} {:<14} {:<24} {:<26} last seen", "agent", "role", "skills", "joined");
        for m in &members {
            let i = &m["identity"];
            let skills: Vec<&str> =
                i["capabilities"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).collect();
            println!(
                "{:<32} {:<14} {:<24} {:<26} {}",
                m["agent_id"].as_str().unwrap_or_default(),
                i["role"].as_str().unwrap_or_default(),
                skills.join(","),
                m["joined_at"].as_str().unwrap_or_default(),
                m["last_seen"].as_str().unwrap_or_default()
            );
        }
    }
    eprintln!("kafclaw: {} live member(s) in group `{group}`", members.len());
    exit::OK
}
