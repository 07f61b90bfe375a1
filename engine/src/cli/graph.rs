//! `kafclaw graph`: print a topology's graph (Graphviz DOT or a Mermaid flowchart).

use std::path::PathBuf;

use clap::ValueEnum;

use super::common::compile_or_report;
use crate::exit;

/// Graph output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Arguments of `kafclaw graph`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology file.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}

/// Compiles the topology and prints its graph in the chosen format.
pub(super) fn execute(args: &Args) -> i32 {
    match compile_or_report(&args.file) {
        Ok(c) => {
            let text = match args.format {
                GraphFormat::Dot => crate::render::dot(&c),
                GraphFormat::Mermaid => crate::render::mermaid(&c),
            };
            print!("{text}");
            exit::OK
        }
        Err(code) => code,
    }
}
