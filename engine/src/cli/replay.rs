//! `kafclaw replay`: rebuild a topology's state by reprocessing its inputs from a point in
//! time (offsets reset, state wiped, changelogs reset by marker), with a progress bar.

use std::path::PathBuf;
use std::sync::Arc;

use super::common::{KafkaArgs, compile_or_report, host_name, instance_exit, stop_on_signals};
use crate::exit;
use crate::kafka::{InstanceOptions, Stats};
use crate::runtime::query::QuerySlot;

/// Arguments of `kafclaw replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology file.
    pub file: PathBuf,
    /// Where to start: `earliest`, or an RFC 3339 time (the first record at or after it).
    #[arg(long, value_name = "earliest|TIME")]
    pub from: crate::kafka::ReplayFrom,
    /// This instance's stable id (see `run`). Default: the host name.
    #[arg(long, env = "KAFCLAW_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Folder of the local state stores.
    #[arg(long, env = "KAFCLAW_STATE_DIR", default_value = ".kafclaw/state")]
    pub state_dir: PathBuf,
}

/// Compiles the topology and replays it to the current end; exit 1 if interrupted.
pub(super) fn execute(args: Args) -> i32 {
    let c = match compile_or_report(&args.file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stats = Arc::new(Stats::default());
    let opts = InstanceOptions {
        instance_id: args.instance_id.unwrap_or_else(host_name),
        // A replay ends at each source partition's end, which one stream thread sees.
        threads: 1,
        settings: args.kafka.settings(&c),
        stop: stop.clone(),
        stats: stats.clone(),
        state_dir: args.state_dir,
        until: None,
        state_query: QuerySlot::default(),
    };
    let started = std::time::Instant::now();
    let result = crate::kafka::replay(&c, args.from, opts);
    let s = stats.snapshot();
    match result {
        Ok(summary) if stop.load(std::sync::atomic::Ordering::Relaxed) => {
            eprintln!(
                "kafclaw: replay interrupted after {} of {} record(s); run it again to finish",
                s.consumed, summary.records
            );
            exit::RUNTIME
        }
        Ok(summary) => {
            eprintln!(
                "kafclaw: replayed {} record(s) from {} partition(s) in {:.1}s: produced {}, dead-lettered {}, \
                 deduplicated {}; {} changelog partition(s) reset",
                s.consumed,
                summary.partitions,
                started.elapsed().as_secs_f64(),
                s.produced,
                s.dead_lettered,
                s.deduplicated,
                summary.markers
            );
            exit::OK
        }
        Err(e) => instance_exit(Err(e)),
    }
}
