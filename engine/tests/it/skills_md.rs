//! Skills as `SKILL.md` (the Agent Skills format) on an `llm` operator, run by the real binary
//! in local mode against the fake OpenAI server, asserting on the requests the server got:
//! only names and descriptions are in the first request; a skill's body reaches the model
//! only as the result of the `read_skill` call it asked for; files of a skill are read
//! beneath its folder (the kernel refuses `..`, absolute paths and symlinks out); real-world
//! `SKILL.md` files (CRLF, byte-order mark, folded and literal descriptions, metadata, an
//! empty body, a huge body) load. Diagnostics are in `skills_md/diagnostics.rs`; the replay
//! from the journal is in the Kafka tests (`kafka/skills_md.rs`).

mod diagnostics;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::fake_openai::FakeOpenAi;

/// Writes `text` to `path`, creating its folders.
pub(super) fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The topology: one `llm` with `skills_line` (`skills = [...]`, or nothing) and its answers
/// and traces to files.
pub(super) fn topology(dir: &Path, base_url: &str, skills_line: &str) -> PathBuf {
    let text = format!(
        r#"[topology]
name = "skills-md"

[models.fake]
base_url = "{base_url}"
model = "fake-1"
timeout = "5s"

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
system = "You answer customers."
prompt = "{{{{ payload.description }}}}"
max_tool_steps = 8
{skills_line}

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"

[sinks.traces]
type = "file"
inputs = ["answer.traces"]
path = "traces.jsonl"

[dead_letter]
path = "dlq.jsonl"
"#
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the topology over one request whose description is `description`; the answers.
fn run(dir: &Path, topo: &Path, description: &str) -> Vec<Value> {
    let line = json!({
        "type": "request", "correlation_id": "conv-1", "sender_id": "erin",
        "timestamp": "2026-11-24T10:00:00Z", "id": "in-1",
        "payload": {"task_id": "t-1", "description": description}
    });
    std::fs::write(dir.join("in.jsonl"), format!("{line}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lines(&dir.join("out.jsonl"))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A script for the fake server: one tool call per answer, then `done: <results>`.
fn script(calls: &[(&str, Value)]) -> String {
    format!("script {}", serde_json::to_string(&calls.iter().map(|(t, a)| json!([t, a])).collect::<Vec<_>>()).unwrap())
}

/// The system message of a request.
fn system(request: &Value) -> String {
    request["messages"].as_array().unwrap().iter().find(|m| m["role"] == "system").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The tool results handed back in a request, in order.
fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// The names of the tools a request offered.
fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| t["function"]["name"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

const BODY: &str =
    "# Refunds\n\nREFUND-BODY: refunds up to 50 EUR need no approval.\nFor more, read `references/policy.md`.\n";

/// The `refunds` skill, with a reference file, in `dir/skills/refunds`.
pub(super) fn refunds_skill(dir: &Path) {
    write(
        &dir.join("skills/refunds/SKILL.md"),
        format!(
            "---\nname: refunds\ndescription: Refund rules. Use when a customer asks for money back.\n---\n\n{BODY}"
        ),
    );
    write(&dir.join("skills/refunds/references/policy.md"), "POLICY-FILE: above 50 EUR a manager approves.\n");
}

/// The acceptance: the body reaches the model only after the model asked for it — the first
/// request carries the name and description and not the body; the second carries the body as
/// the result of `read_skill`; a file of the skill comes in the third.
#[test]
fn a_skill_body_reaches_the_model_only_after_it_asked_for_it() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    refunds_skill(dir.path());
    let topo = topology(dir.path(), &server.base_url(), r#"skills = ["skills/refunds"]"#);
    let ask = script(&[
        ("read_skill", json!({"name": "refunds"})),
        ("read_skill", json!({"name": "refunds", "path": "references/policy.md"})),
    ]);
    let answers = run(dir.path(), &topo, &ask);
    let requests = server.counters.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "{requests:#?}");

    let first = &requests[0];
    let sys = system(first);
    assert!(sys.starts_with("You answer customers.\n\n"), "the topology's system prompt first: {sys}");
    assert!(sys.contains("<available_skills>\n  <skill>\n    <name>refunds</name>"), "{sys}");
    assert!(sys.contains("<description>Refund rules. Use when a customer asks for money back.</description>"), "{sys}");
    let whole = first.to_string();
    assert!(!whole.contains("REFUND-BODY") && !whole.contains("POLICY-FILE"), "no body, no file at first: {whole}");
    assert_eq!(offered(first), vec!["read_skill"]);
    let params = &first["tools"][0]["function"]["parameters"];
    assert_eq!(params["properties"]["name"]["enum"], json!(["refunds"]));

    let second = tool_results(&requests[1]);
    assert_eq!(second, vec![BODY.to_owned()], "the body, without its front matter, as the tool's result");
    assert!(!requests[1].to_string().contains("POLICY-FILE"));
    assert_eq!(system(&requests[1]), sys, "the catalog is not changed by reading");

    let third = tool_results(&requests[2]);
    assert_eq!(third[1], "POLICY-FILE: above 50 EUR a manager approves.\n");

    assert_eq!(answers.len(), 1);
    let answer = answers[0]["payload"]["answer"].as_str().unwrap();
    assert!(answer.starts_with("done: # Refunds") && answer.contains("POLICY-FILE"), "{answer}");
    let traces = lines(&dir.path().join("traces.jsonl"));
    let kinds: Vec<&str> = traces.iter().map(|t| t["payload"]["span_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["llm", "tool", "llm", "tool", "llm"]);
    assert_eq!(traces[1]["payload"]["title"], "tool read_skill", "{}", traces[1]);
}

/// `..`, an absolute path, a relative symlink out of the folder and an absolute symlink are
/// refused; the file outside never reaches the model. An unknown skill is an error the model
/// reads. An operator without skills offers no `read_skill` and no catalog.
#[test]
fn reads_outside_the_skill_folder_are_refused() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    refunds_skill(dir.path());
    write(&dir.path().join("skills/secret.txt"), "OUTSIDE-SECRET");
    let folder = dir.path().join("skills/refunds");
    std::os::unix::fs::symlink("../secret.txt", folder.join("up.md")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("skills/secret.txt"), folder.join("abs.md")).unwrap();
    std::os::unix::fs::symlink("references", folder.join("refs")).unwrap();
    let topo = topology(dir.path(), &server.base_url(), r#"skills = ["skills/refunds"]"#);
    let paths = ["../secret.txt", "/etc/passwd", "up.md", "abs.md", "refs/../../secret.txt", "refs/policy.md"];
    let mut calls: Vec<(&str, Value)> =
        paths.iter().map(|p| ("read_skill", json!({"name": "refunds", "path": p}))).collect();
    calls.push(("read_skill", json!({"name": "billing"})));
    run(dir.path(), &topo, &script(&calls));
    let requests = server.counters.requests.lock().unwrap().clone();
    let results = tool_results(requests.last().unwrap());
    assert_eq!(results.len(), 7, "{results:?}");
    for (r, why) in results.iter().zip([
        "climbs out with `..`",
        "is absolute",
        "resolves outside",
        "resolves outside",
        "climbs out",
    ]) {
        assert!(r.starts_with("error: refused:") && r.contains(why), "{r}");
    }
    assert_eq!(
        results[5], "POLICY-FILE: above 50 EUR a manager approves.\n",
        "a symlink inside the folder is followed"
    );
    assert!(results[6].contains("no skill `billing`"), "{}", results[6]);
    for r in &requests {
        assert!(!r.to_string().contains("OUTSIDE-SECRET"), "nothing outside the folder reached the model");
    }

    // Without `skills`: no tool, no catalog.
    let plain = FakeOpenAi::start();
    let topo = topology(dir.path(), &plain.base_url(), "");
    run(dir.path(), &topo, "hello");
    let requests = plain.counters.requests.lock().unwrap().clone();
    assert_eq!(offered(&requests[0]), Vec::<String>::new());
    assert_eq!(system(&requests[0]), "You answer customers.");
}

/// Copies the fixture folder `name` into `to`.
fn copy_fixture(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/skills_md/fixtures").join(name);
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    copy(&from, to);
}

/// Real-world `SKILL.md` files: Anthropic's `internal-comms`, the specification's
/// `pdf-processing`, folded and literal descriptions with quoting, metadata, `allowed-tools`
/// in both forms, an empty body, a file saved on Windows (byte-order mark, CRLF), and a body
/// of 200 KB (under the 256 KiB cap of a SKILL.md) whose read is cut at
/// `max_tool_output_bytes`. All validate without a diagnostic and are listed by name and
/// description.
#[test]
fn real_world_skill_files_load_and_are_listed() {
    let server = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let names = ["internal-comms", "pdf-processing", "release-notes", "triage-checklist"];
    for n in names {
        copy_fixture(n, &dir.path().join("skills").join(n));
    }
    write(
        &dir.path().join("skills/windows-saved/SKILL.md"),
        "\u{feff}---\r\nname: windows-saved\r\ndescription: \"Saved by Notepad: CRLF and a BOM.\"\r\n---\r\n\r\nWINDOWS-BODY line one\r\nline two\r\n",
    );
    let huge = "HUGE-BODY ".repeat(20_000);
    write(
        &dir.path().join("skills/huge/SKILL.md"),
        format!("---\nname: huge\ndescription: A very long skill.\n---\n{huge}\n"),
    );
    let all = ["internal-comms", "pdf-processing", "release-notes", "triage-checklist", "windows-saved", "huge"];
    let entries: Vec<String> = all.iter().map(|n| format!("\"skills/{n}\"")).collect();
    let topo = topology(dir.path(), &server.base_url(), &format!("skills = [{}]", entries.join(", ")));

    let v = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["validate", topo.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "{stderr}");
    assert!(!stderr.contains("warning") && !stderr.contains("error"), "{stderr}");

    let ask = script(&[
        ("read_skill", json!({"name": "windows-saved"})),
        ("read_skill", json!({"name": "triage-checklist"})),
        ("read_skill", json!({"name": "pdf-processing", "path": "references/REFERENCE.md"})),
        ("read_skill", json!({"name": "huge"})),
    ]);
    run(dir.path(), &topo, &ask);
    let requests = server.counters.requests.lock().unwrap().clone();
    let sys = system(&requests[0]);
    for n in all {
        assert!(sys.contains(&format!("<name>{n}</name>")), "{n}: {sys}");
    }
    assert!(sys.contains("Claude should use this skill whenever asked to write some sort of internal communications"));
    assert!(
        sys.contains("<description>Extract PDF text, fill forms, merge files. Use when handling PDFs.</description>")
    );
    // Folded: lines joined by spaces; literal: line breaks kept; quotes undone.
    assert!(sys.contains(
        "<description>Drafts release notes from merged changes. Use when the user asks for a changelog, release notes or \"what's new\".</description>"
    ), "{sys}");
    assert!(sys.contains(
        "<description>Checklist for triaging incoming incidents.\nUse when an alert or incident report arrives.</description>"
    ), "{sys}");
    assert!(sys.contains("<description>Saved by Notepad: CRLF and a BOM.</description>"));
    assert!(!sys.contains("HUGE-BODY") && !sys.contains("WINDOWS-BODY"), "no body at first");

    let results = tool_results(requests.last().unwrap());
    assert_eq!(results[0], "WINDOWS-BODY line one\nline two\n", "CRLF read as lines, no BOM");
    assert_eq!(results[1], "The skill `triage-checklist` has no instructions beyond its description.");
    assert_eq!(results[2], "# Reference\n\nUse pdfplumber for text extraction.\n");
    assert!(results[3].starts_with("HUGE-BODY HUGE-BODY"));
    assert!(results[3].contains("cut at 65536 of 200001 bytes (max_tool_output_bytes)"), "{}", &results[3][65000..]);
}
