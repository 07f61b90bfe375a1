//! `kafclaw doctor [topology…]`: diagnose the cluster with the runtime's own client settings —
//! connectivity, the broker's measured features, each topology's topics and consumer group —
//! one verdict per line, or one JSON document (`--json`, shape in [`crate::doctor::report`]).
//! Exits 1 when a check fails.

use std::path::PathBuf;
use std::time::Duration;

use super::common::{KafkaArgs, compile_or_report};
use crate::doctor::{self, Options, Target};
use crate::exit;
use crate::kafka::ClientSettings;

/// Arguments of `kafclaw doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology files whose topics and consumer groups to check too (their `[kafka]` tables
    /// give the client settings; the first one's are used for the cluster checks).
    pub files: Vec<PathBuf>,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Print one JSON document (version 1: `doctor`, `bootstrap_servers`, `verdict`, `counts`,
    /// `checks` with `id`, `area`, `topology`, `subject`, `verdict`, `reason`, `advice`, `facts`).
    #[arg(long)]
    pub json: bool,
    /// Skip the feature probe (which creates and deletes a `kafclaw-doctor-probe-*` topic,
    /// writes three records and joins two throw-away groups); its checks are then `unknown`.
    #[arg(long)]
    pub no_probe: bool,
    /// Warn when a topology's group lags by more than this many records in total.
    #[arg(long, value_name = "RECORDS")]
    pub max_lag: Option<i64>,
    /// How long a probe consumer may wait for its partition assignment, in seconds (a broker
    /// may hold a new group's first join for up to the session timeout).
    #[arg(long, default_value_t = 45, value_name = "SECONDS")]
    pub join_timeout: u64,
}

/// Runs the checks and prints the report; 0 unless a check fails (1) or a topology is invalid (2).
pub(super) fn execute(args: Args) -> i32 {
    let mut compiled = Vec::new();
    for f in &args.files {
        match compile_or_report(f) {
            Ok(c) => compiled.push(c),
            Err(code) => return code,
        }
    }
    let targets: Vec<Target<'_>> =
        compiled.iter().map(|c| Target { plan: &c.plan, settings: args.kafka.clone().settings(c) }).collect();
    let cluster = match targets.first() {
        Some(t) => t.settings.clone(),
        None => ClientSettings::from_env(args.kafka.brokers.clone()),
    };
    let opts =
        Options { probe: !args.no_probe, join_timeout: Duration::from_secs(args.join_timeout), max_lag: args.max_lag };
    let report = doctor::run(&cluster, &targets, &opts);
    if args.json {
        println!("{:#}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    if report.failed() { exit::RUNTIME } else { exit::OK }
}
