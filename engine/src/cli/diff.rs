//! `kafclaw diff`: compare two runs' outputs (JSON Lines) envelope by envelope; exit 1 if they
//! differ.

use std::path::PathBuf;

use crate::exit;

/// Arguments of `kafclaw diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first run's output.
    pub a: PathBuf,
    /// The second run's output.
    pub b: PathBuf,
    /// Dotted paths to leave out of the comparison (repeatable), e.g.
    /// payload.usage.latency_ms.
    #[arg(long)]
    pub ignore: Vec<String>,
    /// Match envelopes by this dotted path instead of `id` (e.g. `causation_id`, to
    /// compare a Kafka run with an offline run over the same inputs, whose output ids
    /// differ); repeats are matched in file order, and `id` is then not compared.
    #[arg(long, default_value = "id")]
    pub key: String,
}

/// Prints the differences and a summary; exit 1 if the runs differ, 2 if a file is unreadable.
pub(super) fn execute(args: &Args) -> i32 {
    let Args { a, b, ignore, key } = args;
    match crate::diff::diff_files(a, b, key, ignore) {
        Ok(r) => {
            for (_, d) in &r.changed {
                print!("{d}");
            }
            for id in &r.only_a {
                println!("only in {}: {id}", a.display());
            }
            for id in &r.only_b {
                println!("only in {}: {id}", b.display());
            }
            eprintln!(
                "kafclaw: {} envelope(s) compared: {} differ, {} only in the first, {} only in the second",
                r.compared,
                r.changed.len(),
                r.only_a.len(),
                r.only_b.len()
            );
            if r.same() { exit::OK } else { exit::RUNTIME }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
    }
}
