//! Every shipped topology validates cleanly and passes its own `[[tests]]` (golden tests).

use std::path::PathBuf;

use kafclaw_engine::compiler::{Severity, compile_file};
use kafclaw_engine::test_runner::run_tests;

fn shipped() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "at least two topologies ship");
    files
}

#[test]
fn every_shipped_topology_validates_without_warnings() {
    for f in shipped() {
        let c = compile_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let warnings: Vec<_> = c.diagnostics.items.iter().filter(|d| d.severity == Severity::Warning).collect();
        assert!(warnings.is_empty(), "{}: {}", f.display(), c.diagnostics.render(&c.file));
    }
}

#[test]
fn every_shipped_topology_passes_its_tests() {
    for f in shipped() {
        let c = compile_file(&f).unwrap();
        assert!(!c.spec.tests.is_empty(), "{} ships without [[tests]]", f.display());
        for r in run_tests(&c).unwrap() {
            assert!(r.failure.is_none(), "{} :: {}\n{}", f.display(), r.name, r.failure.unwrap());
        }
    }
}
