//! `kafclaw completions`: print shell completions for the whole command line.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;
use crate::exit;

/// Arguments of `kafclaw completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for the shell to standard output.
pub(super) fn execute(args: &Args) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "kafclaw", &mut std::io::stdout());
    let _ = std::io::stdout().flush();
    exit::OK
}
