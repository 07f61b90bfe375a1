//! `kafclaw timeline`: follow a group's topics into a local SQLite timeline, each record with
//! its position in one transaction (resumes where it stopped).

use std::path::PathBuf;

use super::common::{KafkaArgs, stop_on_signals};
use crate::exit;
use crate::kafka::ClientSettings;

/// Arguments of `kafclaw timeline`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
pub struct Args {
    /// The group.
    #[arg(long)]
    pub group: String,
    /// The SQLite database.
    #[arg(long, default_value = "kafclaw-timeline.db")]
    pub db: PathBuf,
    /// Skills whose topics to follow too (repeatable).
    #[arg(long)]
    pub skill: Vec<String>,
    /// Read to the current end, then stop (default: follow until SIGTERM/SIGINT).
    #[arg(long)]
    pub once: bool,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Follows the group's topics (all but control, orchestrator and announce) into the timeline.
pub(super) fn execute(args: Args) -> i32 {
    let Args { group, db, skill: skills, once, kafka } = args;
    let s = ClientSettings::from_env(kafka.brokers);
    let mut timeline = match crate::timeline::Timeline::open(&db) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let topics = crate::kafka::group::timeline_topics(&group, &skills);
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    match crate::kafka::timeline_feed::follow(&s, &topics, &mut timeline, once, None, &stop) {
        Ok(f) => {
            eprintln!("kafclaw: timeline {}: {} event(s) recorded, {} skipped", db.display(), f.recorded, f.skipped);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}
