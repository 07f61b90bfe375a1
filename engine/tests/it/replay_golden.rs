//! Replays topologies recorded before the renovation (issue 15, at commit c531ffe) and checks
//! that every output and dead letter is byte-identical to what that build wrote.
//!
//! The fixture `tests/replay_golden/` is frozen: its own copy of the topologies, their inputs
//! (`examples/data`) and the recorded model answers, and `expected/` as written then. Only the
//! wall-clock fields of the spans the `llm` operator writes (trace envelopes with a
//! `span_type`: `timestamp`, `started_at`, `ended_at`) are masked: they say when the model call ran, not what it returned. Everything else (ids, order, key
//! order, number spelling, dead-letter headers) must match to the byte.
//!
//! To re-record after an intended change of output (never during a refactoring), run with
//! `KAFCLAW_GOLDEN_WRITE=1` and say why in the commit.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/replay_golden")
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p.strip_prefix(dir).unwrap().to_path_buf()) }
        }
    }
    out.sort();
    out
}

/// Masks the wall-clock fields of span envelopes (see the module doc); other lines unchanged.
fn masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !(line.starts_with(r#"{"type":"trace""#) && line.contains(r#""span_type":"#)) {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        'scan: while !rest.is_empty() {
            for field in ["\"timestamp\":\"", "\"started_at\":\"", "\"ended_at\":\""] {
                if rest.starts_with(field) {
                    out.push_str(field);
                    rest = &rest[field.len()..];
                    let end = rest.find('"').expect("a closed string");
                    out.push_str("<clock>");
                    rest = &rest[end..];
                    continue 'scan;
                }
            }
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[test]
fn replay_of_recorded_topologies_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    copy_dir(&fixture().join("topologies"), &work.join("topologies"));
    copy_dir(&fixture().join("examples"), &work.join("examples"));
    let mut topologies: Vec<PathBuf> = std::fs::read_dir(work.join("topologies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    topologies.sort();
    assert_eq!(topologies.len(), 6, "the six local topologies of the fixture");
    for t in &topologies {
        let rel = t.strip_prefix(work).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
            .current_dir(work)
            .args(["run", "--local"])
            .arg(rel)
            .env_remove("KAFCLAW_MODEL_URL")
            .env_remove("KAFCLAW_API_KEY")
            .env_remove("KAFCLAW_MODEL")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", rel.display(), String::from_utf8_lossy(&out.stderr));
    }
    // What the run wrote: out/** and the dead-letter files in the working directory.
    let written = tempfile::tempdir().unwrap();
    copy_dir(&work.join("out"), written.path());
    for e in std::fs::read_dir(work).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".dlq.jsonl") {
            std::fs::copy(&p, written.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let expected = fixture().join("expected");
    if std::env::var_os("KAFCLAW_GOLDEN_WRITE").is_some() {
        let _ = std::fs::remove_dir_all(&expected);
        copy_dir(written.path(), &expected);
        return;
    }
    assert_eq!(files(written.path()), files(&expected), "the same files are written");
    for f in files(&expected) {
        let want = std::fs::read_to_string(expected.join(&f)).unwrap();
        let got = std::fs::read_to_string(written.path().join(&f)).unwrap();
        let (want, got) = (masked(&want), masked(&got));
        if want != got {
            let line = want.lines().zip(got.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{}: differs from the recording at line {}\nwant: {}\ngot:  {}",
                f.display(),
                line + 1,
                want.lines().nth(line).unwrap_or("<end>"),
                got.lines().nth(line).unwrap_or("<end>")
            );
        }
    }
}

#[test]
fn the_mask_hides_only_trace_clocks() {
    let line = "{\"type\":\"trace\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"payload\":{\"span_type\":\"llm\",\"started_at\":\"x\"}}\n";
    assert_eq!(
        masked(line),
        "{\"type\":\"trace\",\"timestamp\":\"<clock>\",\"payload\":{\"span_type\":\"llm\",\"started_at\":\"<clock>\"}}\n"
    );
    for other in [
        "{\"type\":\"result\",\"timestamp\":\"2026-01-01T00:00:00Z\"}\n",
        "{\"type\":\"trace\",\"timestamp\":\"2026-01-01T00:00:00Z\"}\n",
    ] {
        assert_eq!(masked(other), other);
    }
}
