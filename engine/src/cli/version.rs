//! `kafclaw version`: print the version, with the envelope version it speaks.

use crate::exit;

/// Prints `kafclaw <version> (envelope v<n>)`.
pub(super) fn execute() -> i32 {
    println!("kafclaw {} (envelope v{})", env!("CARGO_PKG_VERSION"), kafclaw_operators::envelope::ENVELOPE_VERSION);
    exit::OK
}
