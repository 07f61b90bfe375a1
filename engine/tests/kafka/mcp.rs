//! MCP tools on Kafka, exactly-once: an `llm` whose model calls server-everything (stdio,
//! behind a `tee` that logs every message kafclaw sends it) answers each request; then
//! `kafclaw replay --from earliest` reproduces the outputs byte for byte from the journal and
//! sends the server no `tools/call` (it may start and list the server: that is not a call).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

fn everything_js() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(p.exists(), "{} is missing: run scripts/test (it runs npm ci in engine/tests/interop)", p.display());
    p
}

/// `tools/call` requests in the log of what kafclaw sent the server.
fn calls_in(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter(|l| l.contains("\"tools/call\"")).count()
}

#[test]
fn a_replay_makes_no_mcp_call_and_reproduces_the_outputs() {
    const N: usize = 4;
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let (app, input, output) = (unique("mcp-app"), unique("mcp-in"), unique("mcp-out"));
    create_topic(&input, 2);
    let sent = dir.path().join("everything.log");
    let script = format!("/usr/bin/tee -a {} | node {} stdio", sent.display(), everything_js().display());
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 2

[models.fake]
base_url = "{}"
model = "fake-1"

[tools.everything]
type = "mcp"
command = "/bin/sh"
args = ["-c", {script:?}]
sandbox = "none"
env = ["PATH"]
allow = ["get-sum", "echo"]

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
tools = ["everything"]

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"
"#,
            server.base_url()
        ),
    );
    produce(
        &input,
        (0..N).map(|i| {
            let key = format!("conv-{i}");
            let calls = format!(
                r#"tool-script [[\"everything__get-sum\", {{\"a\": {i}, \"b\": 10}}], [\"everything__echo\", {{\"message\": \"m{i}\"}}]]"#
            );
            let v = format!(
                r#"{{"type":"request","correlation_id":"{key}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"q-{i}","payload":{{"task_id":"q-{i}","description":"{calls}"}}}}"#
            );
            (key, v)
        }),
    );
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    stop_once_committed(&mut a, &app, &input, 2, N as i64, &log, Duration::from_secs(120));
    let first = consume_all(&output, N, Duration::from_secs(60));
    assert_eq!(first.len(), N, "{}", log_tail(&log));
    for g in &first {
        let i: usize = g.value["payload"]["task_id"].as_str().unwrap()[2..].parse().unwrap();
        assert_eq!(
            g.value["payload"]["answer"],
            format!("done: The sum of {i} and 10 is {}. | Echo: m{i}", i + 10),
            "{}",
            g.value
        );
    }
    assert_eq!(calls_in(&sent), 2 * N, "two MCP calls per request: {}", log_tail(&log));
    let model_calls = server.counters.calls();

    let (code, stderr) = run_replay(&topo, "earliest", "a", &dir.path().join("state"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("replayed {N} record(s)")), "{stderr}");
    assert_eq!(calls_in(&sent), 2 * N, "the replay made no MCP call");
    assert_eq!(server.counters.calls(), model_calls, "and no model call");

    let all = consume_all(&output, 2 * N, Duration::from_secs(60));
    assert_eq!(all.len(), 2 * N);
    let by_id = |records: &[&Got]| -> BTreeMap<String, String> {
        records.iter().map(|g| (g.value["id"].as_str().unwrap().to_owned(), g.value.to_string())).collect()
    };
    let first_at: std::collections::HashSet<(i32, i64)> = first.iter().map(|g| (g.partition, g.offset)).collect();
    let (old, new): (Vec<&Got>, Vec<&Got>) = all.iter().partition(|g| first_at.contains(&(g.partition, g.offset)));
    assert_eq!(by_id(&old), by_id(&new), "the replay's outputs equal the first run's");
}
