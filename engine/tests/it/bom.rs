//! Input text as real files come: a file saved "UTF-8 with BOM" starts with a byte-order
//! mark, which is skipped at the start of every JSON Lines input (file, stdin, recordings,
//! `kafclaw diff` inputs). CRLF and blank lines still work; a mark later in a file is data.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BOM: &str = "\u{feff}";

fn kafclaw(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(args)
        .current_dir(dir)
        .env_remove("KAFCLAW_MODEL_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn envelope(i: usize) -> String {
    format!(
        r#"{{"type":"request","correlation_id":"c-{i}","sender_id":"s","timestamp":"2026-11-23T10:00:00Z","payload":{{"description":"ticket {i}"}}}}"#
    )
}

fn lines_of(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

const FILE_TOPOLOGY: &str = r#"[topology]
name = "bom"

[sources.in]
type = "file"
path = "in.jsonl"

[operators.tag]
type = "map"
inputs = ["in"]
set = { "payload.seen" = 'true' }

[sinks.out]
type = "file"
inputs = ["tag"]
path = "out.jsonl"

[dead_letter]
path = "dead.jsonl"
"#;

/// Runs the file topology over `input`: the correlation ids out, and the dead letters.
fn run_file(input: &str) -> (Vec<String>, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), FILE_TOPOLOGY).unwrap();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let o = kafclaw(dir.path(), &["run", "t.toml", "--local"], None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default();
    let ids = lines_of(&out).iter().map(|v| v["correlation_id"].as_str().unwrap().to_owned()).collect();
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default();
    (ids, lines_of(&dead))
}

#[test]
fn a_byte_order_mark_loses_no_record() {
    let (ids, dead) = run_file(&format!("{BOM}{}\n{}\n{}\n", envelope(1), envelope(2), envelope(3)));
    assert_eq!(ids, ["c-1", "c-2", "c-3"]);
    assert!(dead.is_empty(), "{dead:?}");
}

#[test]
fn a_byte_order_mark_with_crlf_and_blank_lines() {
    let (ids, dead) = run_file(&format!("{BOM}{}\r\n\r\n{}\r\n  \r\n{}", envelope(1), envelope(2), envelope(3)));
    assert_eq!(ids, ["c-1", "c-2", "c-3"]);
    assert!(dead.is_empty(), "{dead:?}");
    // A blank first line after the mark.
    let (ids, dead) = run_file(&format!("{BOM}\r\n{}\r\n", envelope(1)));
    assert_eq!((ids.as_slice(), dead.len()), (&["c-1".to_owned()][..], 0));
}

#[test]
fn a_byte_order_mark_alone_is_an_empty_input() {
    for input in [BOM.to_owned(), format!("{BOM}\n"), format!("{BOM}\r\n\r\n")] {
        let (ids, dead) = run_file(&input);
        assert!(ids.is_empty() && dead.is_empty(), "{input:?}: {ids:?} {dead:?}");
    }
}

/// Only the first line's mark is skipped: on a later line it is data, that line is
/// dead-lettered (unchanged, with an error that names the mark) and the rest flow.
#[test]
fn a_byte_order_mark_later_in_the_file_is_data() {
    let second = format!("{BOM}{}", envelope(2));
    let (ids, dead) = run_file(&format!("{BOM}{}\n{second}\n{}\n", envelope(1), envelope(3)));
    assert_eq!(ids, ["c-1", "c-3"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["line"], 2);
    assert_eq!(dead[0]["stage"], "decode");
    assert_eq!(dead[0]["raw"], second.as_str(), "the line is kept as it was");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("byte-order mark (U+FEFF)"), "{error}");
}

#[test]
fn stdin_with_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        "[topology]\nname = \"bom\"\n\n[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"in\"]\n",
    )
    .unwrap();
    let input = format!("{BOM}{}\r\n\r\n{}\r\n", envelope(1), envelope(2));
    let o = kafclaw(dir.path(), &["run", "t.toml", "--local", "--dead-letter", "dead.jsonl"], Some(input.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = lines_of(&String::from_utf8_lossy(&o.stdout));
    let ids: Vec<&str> = out.iter().map(|v| v["correlation_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c-1", "c-2"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default(), "");
}

/// A model's recorded answers, saved with a mark and CRLF.
#[test]
fn a_recording_with_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        r#"[topology]
name = "bom"

[models.fake]
base_url = "http://127.0.0.1:9/v1"
model = "fake-1"
recorded = "recorded.jsonl"

[sources.in]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["in"]
model = "fake"
prompt = "{{ payload.description }}"

[sinks.out]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[dead_letter]
path = "dead.jsonl"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("recorded.jsonl"),
        format!(
            "{BOM}{{\"prompt\": \"ticket 1\", \"answer\": \"one\"}}\r\n\r\n{{\"prompt\": \"*\", \"answer\": \"any\"}}\r\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("in.jsonl"), format!("{}\n{}\n", envelope(1), envelope(2))).unwrap();
    let o = kafclaw(dir.path(), &["run", "t.toml", "--local"], None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("answers come from a recording"), "{stderr}");
    let out = lines_of(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    let answers: Vec<&str> = out.iter().map(|v| v["payload"]["answer"].as_str().unwrap()).collect();
    assert_eq!(answers, ["one", "any"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default(), "");
}

/// `kafclaw diff` reads a run saved with a mark like one without.
#[test]
fn diff_inputs_with_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let run = format!("{}\n{}\n", envelope(1).replace("\"type\"", "\"id\":\"a\",\"type\""), envelope(2));
    std::fs::write(dir.path().join("a.jsonl"), format!("{BOM}{}", run.replace('\n', "\r\n"))).unwrap();
    std::fs::write(dir.path().join("b.jsonl"), &run).unwrap();
    let o = kafclaw(dir.path(), &["diff", "a.jsonl", "b.jsonl"], None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `text` in a wide encoding, with its byte-order mark: (bytes, the name errors give).
fn wide(text: &str) -> Vec<(Vec<u8>, &'static str)> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let chars: Vec<u32> = text.chars().map(u32::from).collect();
    vec![
        ([0xFF, 0xFE].into_iter().chain(units.iter().flat_map(|u| u.to_le_bytes())).collect(), "UTF-16 (LE)"),
        ([0xFE, 0xFF].into_iter().chain(units.iter().flat_map(|u| u.to_be_bytes())).collect(), "UTF-16 (BE)"),
        ([0xFF, 0xFE, 0, 0].into_iter().chain(chars.iter().flat_map(|c| c.to_le_bytes())).collect(), "UTF-32 (LE)"),
        ([0, 0, 0xFE, 0xFF].into_iter().chain(chars.iter().flat_map(|c| c.to_be_bytes())).collect(), "UTF-32 (BE)"),
    ]
}

/// A UTF-16 or UTF-32 input (saved so by an editor) fails the run with one error naming the
/// encoding, rather than dead-lettering every garbled line and exiting 0; the same from a
/// file, from standard input, and for `kafclaw diff`.
#[test]
fn utf16_and_utf32_inputs_fail_with_one_error_naming_the_encoding() {
    let text = format!("{}\n{}\n", envelope(1), envelope(2));
    for (bytes, name) in wide(&text) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.toml"), FILE_TOPOLOGY).unwrap();
        std::fs::write(dir.path().join("in.jsonl"), &bytes).unwrap();
        let o = kafclaw(dir.path(), &["run", "t.toml", "--local"], None);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{name}: {stderr}");
        let want = format!("in.jsonl: the input is {name}; kafclaw reads UTF-8");
        assert!(stderr.contains(&want), "{name}: {stderr}");
        assert_eq!(std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default(), "", "{name}");

        std::fs::write(
            dir.path().join("s.toml"),
            "[topology]\nname = \"bom\"\n\n[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"in\"]\n",
        )
        .unwrap();
        let o = kafclaw(dir.path(), &["run", "s.toml", "--local", "--dead-letter", "d.jsonl"], Some(&bytes));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{name}: {stderr}");
        assert!(stderr.contains(&format!("<stdin>: the input is {name}; kafclaw reads UTF-8")), "{name}: {stderr}");
        assert!(o.stdout.is_empty(), "{name}");

        std::fs::write(dir.path().join("b.jsonl"), &text).unwrap();
        let o = kafclaw(dir.path(), &["diff", "in.jsonl", "b.jsonl"], None);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(&format!("in.jsonl: the input is {name}; kafclaw reads UTF-8")), "{name}: {stderr}");
    }
}
