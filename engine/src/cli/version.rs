//! `kafclaw version`: print the version, with the envelope version it speaks and whether the
//! kernel sandbox of tools (docs/security.md) is available on this machine.

use crate::exit;

/// Prints `kafclaw <version> (envelope v<n>)`, then `tool sandbox: …`.
pub(super) fn execute() -> i32 {
    println!("kafclaw {} (envelope v{})", env!("CARGO_PKG_VERSION"), kafclaw_operators::envelope::ENVELOPE_VERSION);
    match kafclaw_agent::sandbox::support() {
        Ok(s) => println!("tool sandbox: {s}"),
        Err(e) => println!("tool sandbox: unavailable: {e}"),
    }
    exit::OK
}
