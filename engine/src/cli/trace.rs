//! `kafclaw trace`: print the causal chain of a task from a timeline (`kafclaw timeline`): its
//! events, what they caused across agents, and the memory items used, with who wrote them.

use std::path::PathBuf;

use crate::exit;

/// Arguments of `kafclaw trace`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The task's correlation id.
    pub correlation_id: String,
    /// The SQLite database (`kafclaw timeline`).
    #[arg(long, default_value = "kafclaw-timeline.db")]
    pub db: PathBuf,
    /// Print one JSON object per entry.
    #[arg(long)]
    pub json: bool,
}

/// Prints the chain, one line (or JSON object) per entry; exit 1 if there is none.
pub(super) fn execute(args: &Args) -> i32 {
    let (correlation_id, db, json) = (args.correlation_id.as_str(), args.db.as_path(), args.json);
    if !db.exists() {
        eprintln!("error: {}: no timeline here (run `kafclaw timeline --group <g> --db …` first)", db.display());
        return exit::INVALID;
    }
    let chain = match crate::timeline::Timeline::open(db).and_then(|t| t.chain(correlation_id)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    if chain.is_empty() {
        eprintln!("kafclaw: nothing in {} for `{correlation_id}`", db.display());
        return exit::RUNTIME;
    }
    for e in &chain {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", crate::timeline::describe(e));
        }
    }
    exit::OK
}
