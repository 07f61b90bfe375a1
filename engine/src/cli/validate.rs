//! `kafclaw validate`: compile topology files and report every problem at once (no network).

use std::path::PathBuf;

use super::common::compile_or_report;
use crate::exit;

/// Arguments of `kafclaw validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Compiles every file, printing its diagnostics and a summary of the valid ones; returns the
/// worst exit code.
pub(super) fn execute(args: &Args) -> i32 {
    let mut code = exit::OK;
    for f in &args.files {
        match compile_or_report(f) {
            Ok(c) => {
                let p = &c.plan;
                eprintln!(
                    "{}: ok: topology `{}`, {} node(s), {} sub-topolog{} ({:?})",
                    f.display(),
                    p.name,
                    p.nodes.len(),
                    p.subtopologies.len(),
                    if p.subtopologies.len() == 1 { "y" } else { "ies" },
                    p.guarantee
                );
            }
            Err(c) => code = code.max(c),
        }
    }
    code
}
