//! `kafclaw journal`: export the response journals (model answers, embeddings) kept in a
//! topology's changelog topics, to replay a run offline with the very same answers.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::common::{KafkaArgs, compile_or_report};
use crate::exit;

/// Arguments of `kafclaw journal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: JournalCommand,
}

/// `kafclaw journal …`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Write every journal entry as JSON Lines `{"operator", "key", "entry"}`: point a model's
    /// `recorded = "<file>"` at it to run the topology offline with the very same answers
    /// (`kafclaw diff` then compares the two runs).
    Export(ExportArgs),
}

/// Arguments of `kafclaw journal export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Topology file.
    pub file: PathBuf,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs a `journal` subcommand.
pub(super) fn execute(args: Args) -> i32 {
    match args.command {
        JournalCommand::Export(a) => export(a),
    }
}

/// `journal export`: reads the topology's journals and writes them as JSON Lines.
fn export(args: ExportArgs) -> i32 {
    let c = match compile_or_report(&args.file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let entries = match crate::kafka::journal::export_journals(&c.plan, &args.kafka.settings(&c)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let mut text = String::new();
    for e in &entries {
        text.push_str(&serde_json::to_string(e).unwrap_or_default());
        text.push('\n');
    }
    let written = match args.output.as_deref() {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stdout().write_all(text.as_bytes()).map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => {
            eprintln!(
                "kafclaw: exported {} journal entr{}",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" }
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}
