//! The A2A binding over Kafka (docs/a2a-kafka.md, `urn:kafclaw:a2a:kafka:v1`), followed by its
//! Python client (`examples/python/a2a_kafka.py`, confluent-kafka only) against agents on the
//! real broker: the shipped skill agent (`topologies/skill-billing.toml`, answering from its
//! recording) and the Python example agent (`examples/python/agent.py`). Every line the client
//! prints is parsed by the official `a2a-sdk`'s types (`engine/tests/interop/a2a_validate.py`,
//! in `KAFCLAW_INTEROP_PYTHON`): a Task that is not A2A v1.0 fails the test. Hostile cases: a
//! message with no text part, a request delivered twice, an answer read before its status (and a
//! second, contradicting answer), a request of a foreign zone, one past its deadline, and no
//! agent at all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const CANNED: &str = "(recorded answer: no live model is configured, so this reply is canned. Set KAFCLAW_MODEL_URL to an OpenAI-compatible endpoint for real answers.)";

/// The Python with confluent-kafka that runs the examples: `KAFCLAW_PYTHON`, else `python3`.
fn python() -> String {
    let py = std::env::var("KAFCLAW_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py).args(["-c", "import confluent_kafka"]).status().is_ok_and(|s| s.success());
    assert!(
        ok,
        "{py} cannot import confluent_kafka: run scripts/test, or pip install -r examples/python/requirements.txt"
    );
    py
}

/// The Python with the official a2a-sdk: `KAFCLAW_INTEROP_PYTHON`, else the venv scripts/test
/// makes, if it is there.
fn interop_python() -> PathBuf {
    if let Some(p) = std::env::var_os("KAFCLAW_INTEROP_PYTHON") {
        return p.into();
    }
    let venv = Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/kafclaw/interop-tools/bin/python");
    assert!(venv.exists(), "KAFCLAW_INTEROP_PYTHON is not set and {} is missing: run scripts/test", venv.display());
    venv
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python").join(name)
}

/// What the client printed, each line validated by the a2a-sdk (and re-serialized by it).
struct Answer {
    code: Option<i32>,
    lines: Vec<Value>,
    stderr: String,
}

impl Answer {
    /// The Task of the last line.
    fn task(&self) -> &Value {
        let last = self.lines.last().unwrap_or_else(|| panic!("no output: {}", self.stderr));
        &last["task"]
    }

    /// The states of the stream's status updates, in order.
    fn updates(&self) -> Vec<&str> {
        self.lines.iter().filter_map(|l| l["statusUpdate"]["status"]["state"].as_str()).collect()
    }
}

/// Parses the client's standard output with the a2a-sdk; panics naming the line at fault.
fn validated(stdout: &[u8]) -> Vec<Value> {
    let mut child = Command::new(interop_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/a2a_validate.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the a2a-sdk refused the client's output: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(stdout)
    );
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The client's command for group `group`.
fn client(group: &str, args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(example("a2a_kafka.py")).args(["--brokers", &brokers(), "--group", group]).args(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Runs the client to its end (it has a deadline of its own; killed after 180 s).
fn ask(group: &str, args: &[&str]) -> Answer {
    finish(Instance(client(group, args).spawn().unwrap()))
}

fn finish(mut child: Instance) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the client did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stdout = Vec::new();
    let mut stderr = String::new();
    std::io::Read::read_to_end(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let code = child.try_wait().unwrap().and_then(|s| s.code());
    Answer { code, lines: validated(&stdout), stderr }
}

/// The group's topics the binding uses for skill `skill`: (requests, responses, tasks.status).
fn topics(group: &str, skill: &str) -> (String, String, String) {
    let t = (
        format!("group.{group}.skill.{skill}.requests"),
        format!("group.{group}.skill.{skill}.responses"),
        format!("group.{group}.tasks.status"),
    );
    for topic in [&t.0, &t.1, &t.2] {
        create_topic(topic, 3);
    }
    t
}

/// `<prefix>-<32 hex>`, unique (the form the client makes its ids in).
fn hex_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    format!("{prefix}-{nanos:016x}{:08x}{:08x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A completed exchange: the stream shows working before completed, the Task is completed with
/// the answer as its artifact, its contextId is the one sent and its id the record key; the
/// records on the topics are as the binding says. Then the same request is delivered again: the
/// agent answers once (it dedupes by envelope id = messageId), and GetTask (`--no-send`) still
/// reads the completed Task.
fn completed_exchange(group: &str, skill: &str, log: &Path, question: &str, answer_text: &str) {
    let (requests, responses) =
        (format!("group.{group}.skill.{skill}.requests"), format!("group.{group}.skill.{skill}.responses"));
    let (task_id, ctx, msg_id) = (hex_id("task"), hex_id("ctx"), hex_id("msg"));
    let got = ask(
        group,
        &[
            "--skill",
            skill,
            "--stream",
            "--deadline",
            "90",
            "--task-id",
            &task_id,
            "--context-id",
            &ctx,
            "--message-id",
            &msg_id,
            question,
        ],
    );
    assert_eq!(got.code, Some(0), "{}\n{}", got.stderr, log_tail(log));
    let task = got.task();
    assert_eq!(task["id"], task_id.as_str());
    assert_eq!(task["contextId"], ctx.as_str());
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(task["artifacts"][0]["artifactId"], "answer");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], answer_text);
    assert_eq!(task["history"][0]["parts"][0]["text"], question);
    assert_eq!(task["history"][0]["messageId"], msg_id.as_str());
    assert_eq!(task["history"][1]["role"], "ROLE_AGENT");
    assert_eq!(got.lines[0]["task"]["status"]["state"], "TASK_STATE_SUBMITTED", "a stream starts with the Task");
    assert_eq!(got.updates(), ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"], "{:?}", got.lines);

    // The request record, byte for byte what the binding says.
    let sent = consume_all(&requests, 1, Duration::from_secs(30));
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.key.as_deref(), Some(task_id.as_str()), "keyed by the task id");
    assert_eq!(r.headers.get("a2a-version").map(String::as_str), Some("1.0"));
    assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert!(r.headers.get("traceparent").is_some_and(|t| t.len() == 55 && t.starts_with("00-")), "{:?}", r.headers);
    let v = &r.value;
    assert_eq!(v["type"], "skill_request");
    assert_eq!(v["correlation_id"], task_id.as_str());
    assert_eq!(v["id"], msg_id.as_str());
    assert_eq!(v["payload"]["task_id"], task_id.as_str());
    assert_eq!(v["payload"]["description"], question);
    assert_eq!(v["payload"]["context_id"], ctx.as_str());
    assert_eq!(v["payload"]["a2a"]["message"]["messageId"], msg_id.as_str());
    assert_eq!(v["payload"]["a2a"]["message"]["parts"], json!([{"text": question}]));

    // The answer record: correlated, keyed by the task id, the context carried, the A2A
    // message not echoed.
    let answers = consume_all(&responses, 1, Duration::from_secs(30));
    assert_eq!(answers.len(), 1);
    let a = &answers[0];
    assert_eq!(a.key.as_deref(), Some(task_id.as_str()));
    assert_eq!(a.value["type"], "skill_response");
    assert_eq!(a.value["payload"]["task_id"], task_id.as_str());
    assert_eq!(a.value["payload"]["context_id"], ctx.as_str());
    assert_eq!(a.value["payload"]["status"], "completed");
    assert!(a.value["payload"].get("a2a").is_none(), "{}", a.value);

    // The same message delivered twice (an at-least-once producer's retry): answered once. A
    // later request on the same partition (keyed by the task id, another correlation id) is
    // the barrier: once it is answered, the duplicate before it has been handled.
    let raw = serde_json::to_string(&r.value).unwrap();
    let barrier = hex_id("task");
    let after = json!({
        "type": "skill_request", "correlation_id": barrier, "sender_id": "test", "timestamp": "2026-11-24T10:00:00Z",
        "id": hex_id("msg"), "payload": {"task_id": barrier, "description": "barrier"}
    });
    produce(&requests, [(task_id.clone(), raw), (task_id.clone(), after.to_string())]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let answers = loop {
        let answers = consume_all(&responses, 2, Duration::from_secs(10));
        if answers.iter().any(|g| g.value["correlation_id"] == barrier.as_str()) {
            break answers;
        }
        assert!(Instant::now() < deadline, "the barrier request was never answered: {}", log_tail(log));
    };
    let for_task = answers.iter().filter(|g| g.value["correlation_id"] == task_id.as_str()).count();
    assert_eq!(for_task, 1, "a duplicated message is answered once: {answers:?}");

    // GetTask: the latest state, derived from the topics.
    let again = ask(group, &["--skill", skill, "--no-send", "--task-id", &task_id, "--deadline", "30"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(again.task()["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(again.task()["artifacts"][0]["parts"][0]["text"], answer_text);
    assert_eq!(again.task()["contextId"], ctx.as_str());
}

/// A message the agent cannot read (a data part, no text part) ends `rejected`, the context kept.
fn no_text_part_is_rejected(group: &str, skill: &str, log: &Path, summary: &str) {
    let ctx = hex_id("ctx");
    let got = ask(group, &["--skill", skill, "--deadline", "60", "--context-id", &ctx, "--data", r#"{"invoice": 42}"#]);
    assert_eq!(got.code, Some(1), "{}\n{}", got.stderr, log_tail(log));
    let task = got.task();
    assert_eq!(task["status"]["state"], "TASK_STATE_REJECTED", "{task}");
    assert_eq!(task["status"]["message"]["parts"][0]["text"], summary);
    assert_eq!(task["contextId"], ctx.as_str());
    assert_eq!(task["history"][0]["parts"][0]["data"], json!({"invoice": 42.0}));
    assert!(task.get("artifacts").is_none(), "no answer, no artifact: {task}");
}

#[test]
fn a_kafclaw_skill_agent_answers_a2a_over_kafka() {
    let dir = TestDir::new();
    let group = unique("a2ak").replace('.', "-");
    let app = format!("skill-{group}-billing");
    let (requests, _, _) = topics(&group, "billing");
    let topo = shipped_topology(dir.path(), "skill-billing.toml", &group, &app, "");
    let log = dir.path().join("billing.log");
    let _agent = spawn_instance(&topo, "a", &log);

    completed_exchange(&group, "billing", &log, "Refund invoice 42?", CANNED);
    no_text_part_is_rejected(&group, "billing", &log, "the billing skill reads text: the request has none");

    // Refused on receive: a foreign zone is `rejected`, a passed deadline `failed`. Sent by a
    // plain client that sets those fields, followed with GetTask.
    let (zone_task, late_task) = (hex_id("task"), hex_id("task"));
    let request = |task: &str, zone: &str, deadline: &str| {
        let mut v = json!({
            "type": "skill_request", "correlation_id": task, "sender_id": "hr-bot", "timestamp": "2026-11-24T10:00:00Z",
            "id": hex_id("msg"),
            "payload": {"task_id": task, "description": "Salaries?", "context_id": "ctx-h", "deadline_at": deadline}
        });
        if !zone.is_empty() {
            v["zone"] = json!(zone);
        }
        (task.to_owned(), v.to_string())
    };
    produce(
        &requests,
        [request(&zone_task, "hr", "2099-01-01T00:00:00Z"), request(&late_task, "", "2020-01-01T00:00:00Z")],
    );
    for (task, state, summary) in [
        (&zone_task, "TASK_STATE_REJECTED", "the billing skill does not serve zone hr"),
        (&late_task, "TASK_STATE_FAILED", "the deadline 2020-01-01T00:00:00Z has passed"),
    ] {
        let got = ask(&group, &["--skill", "billing", "--no-send", "--task-id", task, "--deadline", "60"]);
        assert_eq!(got.code, Some(1), "{}\n{}", got.stderr, log_tail(&log));
        assert_eq!(got.task()["status"]["state"], state);
        assert_eq!(got.task()["status"]["message"]["parts"][0]["text"], summary);
    }
}

#[test]
fn the_python_example_agent_answers_a2a_over_kafka() {
    let dir = TestDir::new();
    let group = unique("a2ap").replace('.', "-");
    topics(&group, "echo");
    let log = dir.path().join("python.log");
    let _agent = Instance(
        Command::new(python())
            .arg(example("agent.py"))
            .args(["--brokers", &brokers(), "--group", &group, "--skill", "echo", "--agent-id", "echo-py"])
            .env("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    completed_exchange(&group, "echo", &log, "hello over Kafka", "echo from python: hello over Kafka");
    no_text_part_is_rejected(&group, "echo", &log, "echo-py reads text: the request has none");
}

/// No agent: the test writes the answers. The final answer is read before a status written after
/// it, and a second, contradicting answer follows: the first final answer stands, whatever the
/// order the client reads the two topics in. With no answer at all, the deadline ends the wait
/// (exit 3) with the Task as last known, still valid A2A.
#[test]
fn the_first_final_answer_stands_and_the_deadline_ends_the_wait() {
    let group = unique("a2ah").replace('.', "-");
    let (requests, responses, status) = topics(&group, "late");
    let (task_id, ctx) = (hex_id("task"), hex_id("ctx"));
    let waiting = Instance(
        client(
            &group,
            &["--skill", "late", "--stream", "--deadline", "90", "--task-id", &task_id, "--context-id", &ctx, "hi"],
        )
        .spawn()
        .unwrap(),
    );
    assert_eq!(consume_all(&requests, 1, Duration::from_secs(60)).len(), 1, "the client sent its request");
    let answer = |status: &str, content: &str| {
        json!({"type": "skill_response", "correlation_id": task_id, "sender_id": "fake", "timestamp": "2026-11-24T10:00:01Z",
               "payload": {"task_id": task_id, "status": status, "content": content, "context_id": ctx}})
        .to_string()
    };
    produce(&responses, [(task_id.clone(), answer("completed", "done"))]);
    let working = json!({"type": "task_status", "correlation_id": task_id, "sender_id": "fake", "timestamp": "2026-11-24T10:00:02Z",
                         "payload": {"task_id": task_id, "status": "in_progress"}});
    produce(&status, [(task_id.clone(), working.to_string())]);
    produce(&responses, [(task_id.clone(), answer("failed", "too late"))]);
    let got = finish(waiting);
    assert_eq!(got.code, Some(0), "{}", got.stderr);
    assert_eq!(got.task()["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(got.task()["artifacts"][0]["parts"][0]["text"], "done");
    assert_eq!(got.updates().last(), Some(&"TASK_STATE_COMPLETED"), "the stream ends with the final state");
    assert!(!got.updates().contains(&"TASK_STATE_FAILED"), "{:?}", got.lines);

    // Nobody answers: the deadline.
    let got = ask(&group, &["--skill", "late", "--deadline", "3", "unanswered"]);
    assert_eq!(got.code, Some(3), "{}", got.stderr);
    assert_eq!(got.task()["status"]["state"], "TASK_STATE_SUBMITTED");
    assert!(got.stderr.contains("no final state"), "{}", got.stderr);
}
