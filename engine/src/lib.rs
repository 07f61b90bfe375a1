//! kafclaw engine: the topology compiler ([`compiler`]), the runtimes ([`runtime`]), the
//! in-file test runner ([`test_runner`]), graph rendering ([`render`]) and the CLI ([`cli`]).
//! See `docs/ARCHITECTURE.md` for the map.

#![warn(missing_docs)]

pub mod agent;
pub mod cli;
pub mod compiler;
pub mod diff;
pub mod doctor;
pub mod gateway;
pub mod health;
pub mod http_serve;
pub mod kafka;
pub mod mcp_server;
pub mod metrics;
pub mod progress;
pub mod render;
pub mod runtime;
pub mod telemetry;
pub mod test_runner;
pub mod timeline;

/// Process exit codes (documented in the README and `kafclaw --help`).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A runtime failure (I/O, a failing test).
    pub const RUNTIME: i32 = 1;
    /// Invalid input or configuration (a topology with errors, a missing file, a bad flag).
    pub const INVALID: i32 = 2;
}
