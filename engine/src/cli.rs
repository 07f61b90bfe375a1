//! The `kafclaw` command line (clap). Every subcommand returns an exit code; see [`crate::exit`].

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::compiler::{self, CompileError, Compiled};
use crate::exit;
use crate::runtime::{LocalOptions, RunError, run_local};

/// kafclaw: agent topologies on Apache Kafka.
///
/// Exit codes: 0 ok; 1 runtime failure (I/O error, failing test); 2 invalid input or
/// configuration (topology errors, missing files, bad flags).
#[derive(Debug, Parser)]
#[command(name = "kafclaw", version, about, long_about)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check topology files and report every problem at once (no network).
    Validate {
        /// Topology files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a topology's graph.
    Graph {
        /// Topology file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Run the [[tests]] written in topology files.
    Test {
        /// Topology files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a topology.
    Run {
        /// Topology file.
        file: PathBuf,
        /// Run locally over files and standard streams, with no Kafka.
        #[arg(long)]
        local: bool,
        /// Read source NAME from PATH instead of its configured input (repeatable).
        #[arg(long = "input", value_name = "NAME=PATH", value_parser = parse_assignment)]
        inputs: Vec<(String, PathBuf)>,
        /// Write sink NAME to PATH instead of its configured output (repeatable).
        #[arg(long = "output", value_name = "NAME=PATH", value_parser = parse_assignment)]
        outputs: Vec<(String, PathBuf)>,
        /// Write dead letters to PATH.
        #[arg(long, value_name = "PATH")]
        dead_letter: Option<PathBuf>,
    },
    /// Print the version.
    Version,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn parse_assignment(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_owned(), PathBuf::from(path))),
        _ => Err(format!("expected NAME=PATH, got `{s}`")),
    }
}

fn compile_or_report(path: &std::path::Path) -> Result<Compiled, i32> {
    match compiler::compile_file(path) {
        Ok(c) => {
            eprint!("{}", c.diagnostics.render(&c.file));
            Ok(c)
        }
        Err(CompileError::Read(p, e)) => {
            eprintln!("{p}: error: {e}");
            Err(exit::INVALID)
        }
        Err(CompileError::Invalid(f)) => {
            eprint!("{f}");
            eprintln!("{}: {} error(s)", f.file.path.display(), f.diagnostics.error_count());
            Err(exit::INVALID)
        }
    }
}

fn validate(files: &[PathBuf]) -> i32 {
    let mut code = exit::OK;
    for f in files {
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

fn test(files: &[PathBuf]) -> i32 {
    let mut code = exit::OK;
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        let c = match compile_or_report(f) {
            Ok(c) => c,
            Err(e) => {
                code = code.max(e);
                continue;
            }
        };
        match crate::testing::run_tests(&c) {
            Ok(results) => {
                if results.is_empty() {
                    eprintln!("{}: no [[tests]]", f.display());
                }
                for r in results {
                    match r.failure {
                        None => {
                            passed += 1;
                            println!("test {} :: {} ... ok", f.display(), r.name);
                        }
                        Some(report) => {
                            failed += 1;
                            println!("test {} :: {} ... FAILED\n{report}", f.display(), r.name);
                            code = code.max(exit::RUNTIME);
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                code = code.max(exit::INVALID);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    code
}

fn run(file: &std::path::Path, local: bool, opts: LocalOptions) -> i32 {
    if !local {
        eprintln!(
            "error: only local mode runs in this build; pass --local (the Kafka runtime is the next milestone, see docs/ARCHITECTURE.md)"
        );
        return exit::INVALID;
    }
    let c = match compile_or_report(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run_local(&c, &opts) {
        Ok(s) => {
            let written = s.written.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            eprintln!(
                "kafclaw: read {} record(s); written: {}; dead-lettered: {} ({})",
                s.read,
                if written.is_empty() { "none".to_owned() } else { written },
                s.dead_letters,
                s.dead_letter_target
            );
            exit::OK
        }
        Err(e @ (RunError::Setup(_) | RunError::Build(_))) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
        Err(e @ RunError::Io(_)) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

/// Runs the CLI; returns the exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Graph { file, format } => match compile_or_report(&file) {
            Ok(c) => {
                let text = match format {
                    GraphFormat::Dot => crate::render::dot(&c),
                    GraphFormat::Mermaid => crate::render::mermaid(&c),
                };
                print!("{text}");
                exit::OK
            }
            Err(code) => code,
        },
        Command::Test { files } => test(&files),
        Command::Run { file, local, inputs, outputs, dead_letter } => {
            let opts = LocalOptions {
                inputs: inputs.into_iter().collect::<HashMap<_, _>>(),
                outputs: outputs.into_iter().collect::<HashMap<_, _>>(),
                dead_letter,
            };
            run(&file, local, opts)
        }
        Command::Version => {
            println!(
                "kafclaw {} (envelope v{})",
                env!("CARGO_PKG_VERSION"),
                kafclaw_operators::envelope::ENVELOPE_VERSION
            );
            exit::OK
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "kafclaw", &mut std::io::stdout());
            let _ = std::io::stdout().flush();
            exit::OK
        }
    }
}
