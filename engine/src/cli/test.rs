//! `kafclaw test`: run the `[[tests]]` written in topology files and print a pass/fail report.

use std::path::PathBuf;

use super::common::compile_or_report;
use crate::exit;

/// Arguments of `kafclaw test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs every file's tests; exit 1 if one fails, 2 if a file does not compile.
pub(super) fn execute(args: &Args) -> i32 {
    let mut code = exit::OK;
    let (mut passed, mut failed) = (0, 0);
    for f in &args.files {
        let c = match compile_or_report(f) {
            Ok(c) => c,
            Err(e) => {
                code = code.max(e);
                continue;
            }
        };
        match crate::test_runner::run_tests(&c) {
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
