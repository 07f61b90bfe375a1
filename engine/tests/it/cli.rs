//! The `kafclaw` binary end to end: validate, test, run, graph, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kafclaw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(args).output().expect("kafclaw runs")
}

fn repo(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel).display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file with five different mistakes: five diagnostics, each at its line:col, exit 2.
#[test]
fn five_mistakes_five_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("five.toml");
    std::fs::write(
        &path,
        r#"[topology]
name = "five"

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.tickets]
type = "filter"
inputs = ["requests"]
where = 'type == "request" && && payload.x'
colour = "blue"

[operators.shape]
type = "mapp"
inputs = ["tickets"]

[operators.loop-a]
type = "filter"
inputs = ["loop-b", "tickets"]
where = 'true'

[operators.loop-b]
type = "filter"
inputs = ["loop-a"]
where = 'true'

[sinks.out]
type = "stdout"
inputs = ["shape", "tickest", "loop-b"]
"#,
    )
    .unwrap();
    let o = kafclaw(&["validate", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let p = path.display();
    let expected = [
        format!("{p}:11:31: error: CEL syntax: extraneous input '&&'"),
        format!("{p}:12:1: error: unknown field `colour`"),
        format!("{p}:15:8: error: unknown operator type `mapp`"),
        format!("{p}:20:10: error: cycle in `inputs`: loop-a → loop-b → loop-a"),
        format!("{p}:30:20: error: input `tickest` names no node"),
    ];
    for e in &expected {
        assert!(err.contains(e.as_str()), "missing `{e}` in:\n{err}");
    }
    assert_eq!(err.matches(": error: ").count(), 5, "{err}");
    assert!(err.contains("did you mean `tickets`?"), "{err}");
    assert!(err.contains("did you mean `map`?"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn validate_accepts_every_shipped_topology() {
    let o = kafclaw(&["validate", &repo("topologies/support-triage.toml"), &repo("topologies/skill-router.toml")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn missing_file_is_invalid_input() {
    let o = kafclaw(&["validate", "/nonexistent/x.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/x.toml"));
}

#[test]
fn test_command_passes_then_fails_with_a_diff() {
    let good = repo("topologies/support-triage.toml");
    let o = kafclaw(&["test", &good]);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 passed, 0 failed"));

    // Change one expected value: the test fails and shows both values in a diff.
    let text = std::fs::read_to_string(&good).unwrap();
    let changed =
        text.replace("summary = \"Escalated P5: Checkout is down\"", "summary = \"Escalated P4: Checkout is down\"");
    assert_ne!(text, changed);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("changed.toml");
    std::fs::write(&bad, changed).unwrap();
    let o = kafclaw(&["test", bad.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("-      \"summary\": \"Escalated P4: Checkout is down\""), "{out}");
    assert!(out.contains("+      \"summary\": \"Escalated P5: Checkout is down\""), "{out}");
    assert!(out.contains("2 passed, 1 failed"), "{out}");
}

fn envelope_line(i: usize) -> String {
    format!(
        r#"{{"type":"request","correlation_id":"c-{i}","sender_id":"load","timestamp":"2026-11-23T10:00:00Z","payload":{{"task_id":"c-{i}","description":"ticket {i}","priority":{}}}}}"#,
        i % 5 + 1
    )
}

/// 1,000 lines, one malformed: 999 outputs, one dead letter naming the line and the error.
#[test]
fn local_run_dead_letters_the_malformed_line_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("pass.toml");
    std::fs::write(
        &topo,
        r#"[topology]
name = "pass"

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
"#,
    )
    .unwrap();
    let mut lines: Vec<String> = (1..=1000).map(envelope_line).collect();
    lines[499] =
        r#"{"type":"request","correlation_id":"c-500","sender_id":"load","timestamp":"not a time","payload":{}}"#
            .into();
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let dlq = dir.path().join("dead.jsonl");
    let o = kafclaw(&["run", topo.to_str().unwrap(), "--local", "--dead-letter", dlq.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let outs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(outs.len(), 999);
    assert!(outs.iter().all(|o| o["payload"]["seen"] == true && o["id"].as_str().unwrap().len() == 32));
    let ids: std::collections::HashSet<&str> = outs.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 999, "ids are unique");

    let dead = std::fs::read_to_string(&dlq).unwrap();
    let dead: Vec<serde_json::Value> = dead.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["line"], 500);
    assert_eq!(dead[0]["stage"], "decode");
    assert!(dead[0]["error"].as_str().unwrap().contains("field `timestamp`"), "{}", dead[0]);
    assert!(dead[0]["location"].as_str().unwrap().ends_with("in.jsonl"));
    assert_eq!(dead[0]["raw"], lines[499].as_str());
    assert!(stderr(&o).contains("dead-lettered: 1"), "{}", stderr(&o));

    // Replaying the same input gives the same ids (deterministic ids).
    let o2 = kafclaw(&[
        "run",
        topo.to_str().unwrap(),
        "--local",
        "--dead-letter",
        dlq.to_str().unwrap(),
        "--output",
        &format!("out={}", dir.path().join("again.jsonl").display()),
    ]);
    assert_eq!(o2.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(dir.path().join("again.jsonl")).unwrap(), out);
}

#[test]
fn each_test_starts_from_nothing_whatever_ran_before() {
    // Test one indexes a fact; test two, in the same file, must not recall it: each test gets
    // fresh state and fresh linked resources (the memory index is one of them).
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("mem.toml");
    std::fs::write(&topology, MEMORY_TESTS).unwrap();
    let o = kafclaw(&["test", topology.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 passed, 0 failed"));
}

/// Two `[[tests]]` of one memory index: the second must not see the first's item.
const MEMORY_TESTS: &str = r#"[topology]
name = "mem"

[sources.shared]
type = "file"
path = "shared.jsonl"

[operators.remember]
type = "memory-index"
inputs = ["shared"]

[sources.requests]
type = "file"
path = "req.jsonl"

[operators.recall]
type = "memory-search"
inputs = ["requests"]
index = "remember"
k = 3

[sinks.out]
type = "file"
inputs = ["recall"]
path = "out.jsonl"

[sinks.idx]
type = "file"
inputs = ["remember"]
path = "idx.jsonl"

[[tests]]
name = "one: index a fact"
inputs = [
  { source = "shared", envelope = { type = "memory", correlation_id = "m1", sender_id = "s", timestamp = "2026-11-01T09:00:00Z", payload = { content = "refunds take five days" } } },
]
outputs = []

[[tests]]
name = "two: nothing indexed, so nothing recalled"
inputs = [
  { source = "requests", envelope = { type = "request", correlation_id = "r1", sender_id = "s", timestamp = "2026-11-01T09:00:00Z", payload = { description = "how long do refunds take" } } },
]
outputs = [
  { sink = "out", envelope = { correlation_id = "r1", payload = { memories = [] } } },
]
"#;

#[test]
fn run_with_unknown_override_is_invalid() {
    let o = kafclaw(&["run", &repo("topologies/support-triage.toml"), "--local", "--input", "nope=/tmp/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`nope` is not a source"));
}

/// The HTTP endpoint serves the state (journalled tool results included): on an address other
/// than loopback, `run` does not start without a token, and says which variable to set.
#[test]
fn run_refuses_an_open_endpoint_off_loopback() {
    for addr in ["0.0.0.0:9464", "[::]:9464", "192.0.2.7:9464"] {
        let o = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
            .args(["run", &repo("examples/kafka-triage.toml"), "--brokers", "127.0.0.1:1", "--http", addr])
            .env_remove("KAFCLAW_HTTP_TOKEN")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{addr}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("--http {addr} is not a loopback address")), "{err}");
        assert!(err.contains("set a bearer token in KAFCLAW_HTTP_TOKEN (--http-token-env)"), "{err}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", &repo("examples/kafka-triage.toml"), "--http", "0.0.0.0:9464", "--http-token-env", "MY_TOKEN"])
        .env_remove("MY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("set a bearer token in MY_TOKEN (--http-token-env)"), "{}", stderr(&o));
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok()
}

#[test]
fn graph_dot_renders_with_graphviz() {
    assert!(have("dot"), "graphviz `dot` is required (scripts/test installs it)");
    for t in ["topologies/support-triage.toml", "topologies/skill-router.toml"] {
        let o = kafclaw(&["graph", &repo(t), "--format", "dot"]);
        assert_eq!(o.status.code(), Some(0));
        let dir = tempfile::tempdir().unwrap();
        let dot_file = dir.path().join("g.dot");
        std::fs::write(&dot_file, &o.stdout).unwrap();
        let svg = Command::new("dot").arg("-Tsvg").arg(&dot_file).output().unwrap();
        assert!(svg.status.success(), "{}", String::from_utf8_lossy(&svg.stderr));
        let svg = String::from_utf8(svg.stdout).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("triage") || svg.contains("responses"), "{svg}");
    }
}

#[test]
fn graph_mermaid_renders_with_mermaid() {
    let renderer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mermaid-render/render.mjs");
    let modules = renderer.parent().unwrap().join("node_modules");
    assert!(modules.exists(), "run scripts/test (it installs the Mermaid renderer) first");
    for t in ["topologies/support-triage.toml", "topologies/skill-router.toml"] {
        let o = kafclaw(&["graph", &repo(t), "--format", "mermaid"]);
        assert_eq!(o.status.code(), Some(0));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("g.mmd");
        std::fs::write(&f, &o.stdout).unwrap();
        let r = Command::new("node").arg(&renderer).arg(&f).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(r.status.success(), "{text}\n{}", String::from_utf8_lossy(&r.stderr));
        let svg = String::from_utf8_lossy(&r.stdout);
        assert!(svg.starts_with("<svg") && svg.contains("flowchart"), "{svg}");
        // Every node's name is drawn.
        let c = kafclaw_engine::compiler::compile_file(Path::new(&repo(t))).unwrap();
        for n in &c.graph.nodes {
            assert!(svg.contains(&n.name), "`{}` missing from the rendered SVG", n.name);
        }
    }
}
