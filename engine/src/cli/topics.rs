//! `kafclaw topics`: list a topology's Kafka topics with their partition counts on the cluster,
//! optionally creating the missing ones it writes.

use std::path::PathBuf;
use std::time::Duration;

use super::common::{KafkaArgs, compile_or_report};
use crate::exit;
use crate::kafka::topics::{ensure_topics, partition_counts, topic_uses};

/// Arguments of `kafclaw topics`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology file.
    pub file: PathBuf,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Create the missing topics the topology writes.
    #[arg(long)]
    pub create: bool,
}

/// Compiles the topology, creates its missing topics if asked, and prints a table of its
/// topics, roles, partition counts and nodes.
pub(super) fn execute(args: Args) -> i32 {
    let c = match compile_or_report(&args.file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = args.kafka.settings(&c);
    if args.create {
        let t = &c.spec.topology;
        match ensure_topics(&s, &c.plan, t.partitions, t.replication, Duration::from_secs(30)) {
            Ok(created) => {
                eprintln!("created: {}", if created.is_empty() { "nothing".to_owned() } else { created.join(", ") })
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::RUNTIME;
            }
        }
    }
    let uses = topic_uses(&c.plan);
    let names: Vec<&str> = uses.iter().map(|u| u.topic.as_str()).collect();
    let counts = match partition_counts(&s, &names, Duration::from_secs(30)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    println!("{:<48} {:<12} {:>10}  nodes", "topic", "role", "partitions");
    for (u, n) in uses.iter().zip(counts) {
        let n = n.map_or("missing".to_owned(), |n| n.to_string());
        println!("{:<48} {:<12} {:>10}  {}", u.topic, u.role.as_str(), n, u.nodes.join(", "));
    }
    exit::OK
}
