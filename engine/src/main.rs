//! The `kafclaw` binary.

use std::io::IsTerminal;

use clap::Parser;
use kafclaw_engine::cli::{Cli, main_with};
use kafclaw_engine::exit;
use kafclaw_operators::api::secrets::RedactingWriter;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::INVALID } else { exit::OK };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every log line is redacted on its way out: no registered secret (model keys, group
        // secrets, Kafka passwords, URL credentials) reaches the log, whoever logged it.
        .with_writer(|| RedactingWriter::new(std::io::stderr()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    std::process::exit(main_with(cli));
}
