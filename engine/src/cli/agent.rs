//! `kafclaw agent`: ask the standard agent (built in: topologies/agent.toml) one question,
//! locally, with a live OpenAI-compatible model or recorded responses.

use std::path::PathBuf;

use crate::exit;

/// Arguments of `kafclaw agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The message.
    #[arg(short, long)]
    pub message: String,
    /// Who asks (the request's sender_id).
    #[arg(long, default_value = "cli")]
    pub sender: String,
    /// Another agent topology (an `inbox` source and a `responses` sink).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Print the whole response envelope as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Asks the question and prints the answer (or the whole response envelope).
pub(super) fn execute(args: &Args) -> i32 {
    match crate::agent::run_agent(&args.message, &args.sender, args.topology.as_deref()) {
        Ok(a) => {
            if args.json {
                println!("{}", a.response);
            } else {
                println!("{}", a.response["payload"]["result"].as_str().unwrap_or_default());
            }
            if a.recorded {
                eprintln!(
                    "kafclaw: this answer is a recorded response (no live model configured); \
                     set KAFCLAW_MODEL_URL to an OpenAI-compatible endpoint for live answers"
                );
            }
            exit::OK
        }
        Err(e @ crate::agent::AgentError::Setup(_)) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}
