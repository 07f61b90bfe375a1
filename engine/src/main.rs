//! The `kafclaw` binary.

use std::io::IsTerminal;

use clap::Parser;
use kafclaw_engine::cli::{Cli, main_with};
use kafclaw_engine::{exit, telemetry};
use kafclaw_operators::api::secrets::RedactingWriter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// mimalloc instead of glibc's malloc: records are many small allocations made and freed by
/// the stream threads (envelopes, ids, CEL values) and, in local mode, freed by other threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // The trace spans (docs/operations.md, "Traces") go to the OTLP exporter only, never to
    // the log.
    let filter = filter.add_directive(format!("{}=off", telemetry::TARGET).parse().expect("a valid directive"));
    let log = tracing_subscriber::fmt::layer()
        // Every log line is redacted on its way out: no registered secret (model keys, group
        // secrets, Kafka passwords, URL credentials) reaches the log, whoever logged it.
        .with_writer(|| RedactingWriter::new(std::io::stderr()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);
    // Off unless OTEL_EXPORTER_OTLP_* / OTEL_TRACES_EXPORTER ask for it.
    let exporting = match telemetry::Exporting::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: traces: {e}");
            std::process::exit(exit::INVALID);
        }
    };
    let traces = exporting.as_ref().map(|e| e.layer());
    tracing_subscriber::registry().with(log).with(traces).init();
    let code = main_with(cli);
    // No MCP server (nor a process one started) outlives the instance.
    kafclaw_agent::sandbox::stop_servers();
    if let Some(e) = exporting {
        e.shutdown();
    }
    std::process::exit(code);
}
