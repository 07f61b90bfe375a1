//! `delegate` deadlines on a real broker, against a fake peer written here (a thread reading
//! the request topic and answering on the reply topic by a script the task names):
//!
//! - progress reports keep a call alive past its base deadline, and the reply then reaches
//!   the model; without progress the call times out; progress never carries it past
//!   `max_deadline`; malformed progress neither extends nor ends it and is audited;
//! - a reply after the deadline is audited on the group's `observe.audit` and never reaches
//!   the model (the fake model's request log never holds its text);
//! - a kill -9 while the call waits and a restart after the deadline: the rerun is told the
//!   deadline passed, the late reply is not handed to it, and the request is not sent again;
//!   a restart before the deadline waits for what is left of it and takes the reply;
//! - a receiving `guard` bounds handoff chains (`max_handoffs`), refusing and auditing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

/// Text only late replies carry: it must never reach the model.
const LATE: &str = "LATE-TEXT";

/// A peer answering requests by the script their description names, with records of its own.
struct FakePeer {
    stop: Arc<AtomicBool>,
    /// Requests seen (envelopes), in order.
    seen: Arc<Mutex<Vec<Value>>>,
    /// Final replies sent, by correlation id.
    answered: Arc<Mutex<Vec<String>>>,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn now() -> String {
    kafclaw_operators::api::record::format_time_ms(kafclaw_operators::api::record::now_ms())
}

impl FakePeer {
    fn start(requests: &str, replies: &str) -> Self {
        let (stop, seen, answered) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
        let peer = Self { stop: stop.clone(), seen: Arc::clone(&seen), answered: Arc::clone(&answered) };
        let (requests, replies) = (requests.to_owned(), replies.to_owned());
        std::thread::spawn(move || {
            let c: BaseConsumer = config()
                .set("group.id", unique("fake-peer"))
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .create()
                .unwrap();
            let md = c.fetch_metadata(Some(&requests), Duration::from_secs(10)).unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in md.topics()[0].partitions() {
                tpl.add_partition_offset(&requests, p.id(), Offset::Beginning).unwrap();
            }
            c.assign(&tpl).unwrap();
            let producer: Arc<BaseProducer> =
                Arc::new(config().set("enable.idempotence", "true").set("linger.ms", "0").create().unwrap());
            while !stop.load(Ordering::SeqCst) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else { continue };
                let Ok(request) = serde_json::from_slice::<Value>(m.payload().unwrap_or_default()) else { continue };
                if request["type"] != "request" {
                    continue;
                }
                seen.lock().unwrap().push(request.clone());
                let (p, replies, answered, stop) = (producer.clone(), replies.clone(), answered.clone(), stop.clone());
                std::thread::spawn(move || act(&p, &replies, &request, &answered, &stop));
            }
        });
        peer
    }

    /// The requests seen whose description starts with `what`.
    fn requests(&self, what: &str) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|r| r["payload"]["description"].as_str().unwrap_or("").starts_with(what)).cloned().collect()
    }
}

fn send(p: &BaseProducer, topic: &str, kind: &str, id: &str, payload: Value) {
    send_stamped(p, topic, kind, id, payload, None);
}

/// [`send`] with the record's CreateTime set to `stamp_ms` (a peer backdating its reply).
fn send_stamped(p: &BaseProducer, topic: &str, kind: &str, id: &str, payload: Value, stamp_ms: Option<i64>) {
    let v =
        json!({"type": kind, "correlation_id": id, "sender_id": "fake-peer", "timestamp": now(), "payload": payload});
    let text = v.to_string();
    let record = BaseRecord::to(topic).key(id).payload(&text);
    p.send(match stamp_ms {
        Some(ms) => record.timestamp(ms),
        None => record,
    })
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

/// The peer's script for one request (its pauses are the peer's behaviour, not assertions).
fn act(p: &BaseProducer, replies: &str, request: &Value, answered: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let id = request["correlation_id"].as_str().unwrap();
    let what = request["payload"]["description"].as_str().unwrap_or("");
    let pause = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
    let received_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let status = |payload: Value| send(p, replies, "task_status", id, payload);
    let answer = |text: &str| {
        send(p, replies, "response", id, json!({"task_id": id, "status": "completed", "content": text}));
        answered.lock().unwrap().push(id.to_owned());
    };
    if what.starts_with("progress then answer") {
        // 4 s of work, reported every 500 ms: twice the 2 s deadline.
        for k in 1..=8 {
            pause(500);
            status(json!({"task_id": id, "status": "in_progress", "progress": k * 10}));
        }
        answer("worked through 8 reports");
    } else if what.starts_with("late answer") {
        pause(4_500);
        answer(&format!("{LATE} no progress"));
    } else if what.starts_with("malformed progress") {
        for _ in 0..8 {
            pause(500);
            status(json!({"task_id": id, "status": "in_progress", "progress": true}));
        }
        answer(&format!("{LATE} malformed"));
    } else if what.starts_with("progress forever") {
        for _ in 0..24 {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            pause(500);
            status(json!({"task_id": id, "status": "working"}));
        }
        answer(&format!("{LATE} forever"));
    } else if what.starts_with("answer in six seconds") {
        pause(6_000);
        answer("answered in time");
    } else if what.starts_with("backdated answer after the kill") {
        // Answered past the deadline, stamped 1 s after the request: well within it.
        pause(7_000);
        let payload = json!({"task_id": id, "status": "completed", "content": format!("{LATE} backdated")});
        send_stamped(p, replies, "response", id, payload, Some(received_ms + 1_000));
        answered.lock().unwrap().push(id.to_owned());
    } else if what.starts_with("answer after the kill") {
        pause(7_000);
        answer(&format!("{LATE} after the kill"));
    }
}

/// An agent topology whose model may call `ask-peer` (a `delegate` tool).
fn agent_topology(
    dir: &std::path::Path,
    app: &str,
    model: &str,
    topics: [&str; 4],
    deadlines: &str,
) -> std::path::PathBuf {
    let [input, output, asks, replies] = topics;
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 2

[models.fake]
base_url = "{model}"
model = "fake-1"

[tools.ask-peer]
type = "delegate"
request_topic = "{asks}"
reply_topic = "{replies}"
{deadlines}

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.think]
type = "llm"
inputs = ["requests"]
model = "fake"
tools = ["ask-peer"]

[sinks.answers]
type = "kafka"
inputs = ["think"]
topic = "{output}"
"#
        ),
    )
}

fn tasks(input: &str, tasks: &[&str]) {
    produce(
        input,
        tasks.iter().enumerate().map(|(i, t)| {
            let v = json!({
                "type": "request", "correlation_id": format!("c{i}"), "sender_id": "bob", "id": format!("q{i}"),
                "timestamp": "2026-12-01T10:00:00Z", "payload": {"task_id": format!("q{i}"), "description": format!("delegate ask-peer: {t}")}
            });
            (format!("c{i}"), v.to_string())
        }),
    );
}

/// The answer to input `c`.
fn answer(answers: &[Got], c: &str) -> String {
    let a = answers.iter().find(|g| g.value["correlation_id"] == c).unwrap_or_else(|| panic!("no answer to {c}"));
    a.value["payload"]["answer"].as_str().unwrap().to_owned()
}

/// The audits of `event` on `topic` once at least `n` are there (or `timeout` passed).
fn audits(topic: &str, event: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let until = Instant::now() + timeout;
    loop {
        let all = consume_all(topic, 0, Duration::from_secs(3));
        let found: Vec<Value> =
            all.into_iter().map(|g| g.value).filter(|v| v["payload"]["event_type"] == event).collect();
        if found.len() >= n || Instant::now() >= until {
            return found;
        }
    }
}

/// No request the fake model was sent holds the late replies' text.
fn model_never_saw_late_text(server: &FakeOpenAi) {
    let requests = server.counters.requests.lock().unwrap();
    assert!(!requests.is_empty());
    for r in requests.iter() {
        assert!(!r.to_string().contains(LATE), "a late reply reached the model: {r}");
    }
}

#[test]
fn progress_extends_a_call_and_late_replies_never_reach_the_model() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let g = unique("dlgdl");
    let (app, input, output) = (unique("dl-agent"), unique("dl-in"), unique("dl-out"));
    let (asks, replies, audit) = (
        format!("group.{g}.skill.peer.requests"),
        format!("group.{g}.skill.peer.responses"),
        format!("group.{g}.observe.audit"),
    );
    for t in [&input, &asks, &replies, &audit] {
        create_topic(t, 2);
    }
    let agent = agent_topology(
        dir.path(),
        &app,
        &server.base_url(),
        [&input, &output, &asks, &replies],
        "deadline = \"2s\"\nmax_deadline = \"8s\"",
    );
    let peer = FakePeer::start(&asks, &replies);
    let scripts = ["progress then answer", "late answer", "malformed progress", "progress forever"];
    tasks(&input, &scripts);
    let log = dir.path().join("agent.log");
    let _a = spawn_instance(&agent, "a", &log);
    let answers = consume_all(&output, scripts.len(), Duration::from_secs(120));
    assert_eq!(answers.len(), scripts.len(), "{}", log_tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("no end of partition"), "the reply reader found the topic's end: {text}");

    // Alive past its 2 s deadline while the peer reported progress: the reply reached the model.
    assert_eq!(answer(&answers, "c0"), "done: worked through 8 reports");
    // Without progress (or with unreadable progress), the call ended at its deadline.
    for c in ["c1", "c2"] {
        let a = answer(&answers, c);
        assert!(a.starts_with(&format!("done: error: no response on `{replies}` within 2s")), "{c}: {a}");
    }
    // Progress forever: capped by max_deadline (8 s after the request).
    let forever = &peer.requests("progress forever")[0];
    let cap = forever["payload"]["max_deadline_at"].as_str().unwrap().to_owned();
    let a = answer(&answers, "c3");
    assert!(a.contains(&format!("the deadline {cap} passed")), "capped at {cap}: {a}");

    // Every late reply was dropped and audited, named by its call.
    let late = audits(&audit, "late_reply_dropped", 3, Duration::from_secs(60));
    let ids: Vec<String> = ["late answer", "malformed progress", "progress forever"]
        .iter()
        .map(|w| peer.requests(w)[0]["correlation_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(late.len(), 3, "{late:?}");
    for id in &ids {
        let a = late.iter().find(|a| a["correlation_id"] == id.as_str()).unwrap_or_else(|| panic!("{id}: {late:?}"));
        let d = &a["payload"]["details"];
        assert_eq!((d["task_id"].as_str(), d["sender_id"].as_str()), (Some(id.as_str()), Some("fake-peer")), "{a}");
        assert_eq!(d["topic"], replies.as_str());
        assert!(d["partition"].is_i64() && d["offset"].is_i64() && d["deadline"].is_string(), "{a}");
        assert!(d["reply_at"].as_str().unwrap() > d["deadline"].as_str().unwrap(), "{a}");
        assert_eq!((a["type"].as_str(), a["sender_id"].as_str()), (Some("audit"), Some(app.as_str())));
    }
    let capped = late.iter().find(|a| a["correlation_id"] == ids[2].as_str()).unwrap();
    assert_eq!(capped["payload"]["details"]["deadline"], cap.as_str());

    // Unreadable progress: audited with its coordinates, never extended the call.
    let unreadable = audits(&audit, "reply_unreadable", 8, Duration::from_secs(30));
    assert!(!unreadable.is_empty());
    for a in &unreadable {
        let d = &a["payload"]["details"];
        assert_eq!(a["correlation_id"], ids[1].as_str());
        assert!(d["reason"].as_str().unwrap().starts_with("`payload.progress`: expected a percentage"), "{a}");
        assert!(d["partition"].is_i64() && d["offset"].is_i64(), "{a}");
    }
    model_never_saw_late_text(&server);
    assert_eq!(consume_all(&asks, 4, Duration::from_secs(10)).len(), 4, "one request per call");
}

#[test]
fn a_restart_after_the_deadline_never_hands_the_late_reply_to_the_rerun() {
    restart_after_the_deadline("answer after the kill");
}

/// The red team's case: the late reply's CreateTime is backdated into the deadline. The reply
/// topic is stamped by its producer (and Tansu stamps none itself), so the rerun judges it by
/// when it read it.
#[test]
fn a_restart_after_the_deadline_never_hands_a_backdated_late_reply_to_the_rerun() {
    restart_after_the_deadline("backdated answer after the kill");
}

fn restart_after_the_deadline(what: &str) {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let g = unique("dlgkill");
    let (app, input, output) = (unique("dlk-agent"), unique("dlk-in"), unique("dlk-out"));
    let (asks, replies, audit) = (
        format!("group.{g}.skill.peer.requests"),
        format!("group.{g}.skill.peer.responses"),
        format!("group.{g}.observe.audit"),
    );
    for t in [&input, &asks, &replies, &audit] {
        create_topic(t, 2);
    }
    let agent = agent_topology(
        dir.path(),
        &app,
        &server.base_url(),
        [&input, &output, &asks, &replies],
        "deadline = \"3s\"\nmax_deadline = \"6s\"",
    );
    let peer = FakePeer::start(&asks, &replies);
    tasks(&input, &[what]);
    let (log1, log2) = (dir.path().join("agent1.log"), dir.path().join("agent2.log"));
    let mut first = spawn_instance(&agent, "a", &log1);
    // The call is waiting once the peer has its request: kill -9 then.
    let until = Instant::now() + Duration::from_secs(90);
    while peer.requests(what).is_empty() {
        assert!(Instant::now() < until, "no request sent: {}", log_tail(&log1));
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let request = peer.requests(what)[0].clone();
    let id = request["correlation_id"].as_str().unwrap().to_owned();
    // The peer answers 7 s after the request, past the 3 s deadline: restart after that.
    while !peer.answered.lock().unwrap().contains(&id) {
        assert!(Instant::now() < until + Duration::from_secs(30), "the peer never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _second = spawn_instance(&agent, "a", &log2);
    let answers = consume_all(&output, 1, Duration::from_secs(120));
    assert_eq!(answers.len(), 1, "{}", log_tail(&log2));
    let a = answer(&answers, "c0");
    let due = request["payload"]["deadline_at"].as_str().unwrap();
    assert!(a.starts_with(&format!("done: error: the deadline {due} passed before `fake-peer` answered")), "{a}");
    model_never_saw_late_text(&server);
    let late = audits(&audit, "late_reply_dropped", 1, Duration::from_secs(30));
    assert!(!late.is_empty() && late.iter().all(|a| a["payload"]["details"]["task_id"] == id.as_str()), "{late:?}");
    assert_eq!(late[0]["payload"]["details"]["deadline"], due);
    // The rerun found the first request and did not send it again.
    let sent = consume_all(&asks, 1, Duration::from_secs(10));
    assert_eq!(sent.len(), 1, "{sent:?}");
}

#[test]
fn a_restart_before_the_deadline_waits_for_the_reply_without_asking_again() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let g = unique("dlgrerun");
    let (app, input, output) = (unique("dlr-agent"), unique("dlr-in"), unique("dlr-out"));
    let (asks, replies, audit) = (
        format!("group.{g}.skill.peer.requests"),
        format!("group.{g}.skill.peer.responses"),
        format!("group.{g}.observe.audit"),
    );
    for t in [&input, &asks, &replies, &audit] {
        create_topic(t, 2);
    }
    let agent =
        agent_topology(dir.path(), &app, &server.base_url(), [&input, &output, &asks, &replies], "deadline = \"20s\"");
    let peer = FakePeer::start(&asks, &replies);
    tasks(&input, &["answer in six seconds"]);
    let (log1, log2) = (dir.path().join("agent1.log"), dir.path().join("agent2.log"));
    let mut first = spawn_instance(&agent, "a", &log1);
    let until = Instant::now() + Duration::from_secs(90);
    while peer.requests("answer in six seconds").is_empty() {
        assert!(Instant::now() < until, "no request sent: {}", log_tail(&log1));
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let _second = spawn_instance(&agent, "a", &log2);
    let answers = consume_all(&output, 1, Duration::from_secs(120));
    assert_eq!(answers.len(), 1, "{}", log_tail(&log2));
    assert_eq!(answer(&answers, "c0"), "done: answered in time");
    assert_eq!(consume_all(&asks, 1, Duration::from_secs(10)).len(), 1, "the rerun did not ask again");
    assert!(audits(&audit, "late_reply_dropped", 0, Duration::ZERO).is_empty());
}

#[test]
fn a_guard_refuses_and_audits_a_handoff_chain_over_its_bound() {
    let dir = TestDir::new();
    let (app, asks, replies, audit) =
        (unique("ho-billing"), unique("ho-asks"), unique("ho-replies"), unique("ho-audit"));
    for t in [&asks, &replies, &audit] {
        create_topic(t, 1);
    }
    let topology = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 1

[sources.asks]
type = "kafka"
topic = "{asks}"

[operators.guard]
type = "guard"
inputs = ["asks"]
agent = "billing"
max_handoffs = 2

[operators.answer]
type = "map"
inputs = ["guard"]
set = {{ "type" = '"response"', "sender_id" = '"billing"', "payload.status" = '"completed"', "payload.content" = '"billing says: " + payload.description' }}

[sinks.replies]
type = "kafka"
inputs = ["answer", "guard.refused"]
topic = "{replies}"

[sinks.audit]
type = "kafka"
inputs = ["guard.audit"]
topic = "{audit}"
"#
        ),
    );
    let hops = [json!(2), json!(3), json!("three")];
    produce(
        &asks,
        hops.iter().enumerate().map(|(i, h)| {
            let v = json!({
                "type": "request", "correlation_id": format!("h{i}"), "sender_id": "router", "timestamp": "2026-12-01T10:00:00Z",
                "payload": {"task_id": format!("t{i}"), "description": "invoice", "requester_id": "router",
                            "original_requester_id": "bob", "handoffs": h}
            });
            (format!("h{i}"), v.to_string())
        }),
    );
    let log = dir.path().join("billing.log");
    let _b = spawn_instance(&topology, "b", &log);
    let out = consume_all(&replies, 3, Duration::from_secs(90));
    assert_eq!(out.len(), 3, "{}", log_tail(&log));
    let by = |c: &str| out.iter().find(|g| g.value["correlation_id"] == c).unwrap().value.clone();
    assert_eq!(by("h0")["payload"]["content"], "billing says: invoice", "2 handoffs: within the bound");
    let too_many = by("h1");
    assert_eq!(
        (too_many["type"].as_str(), too_many["payload"]["status"].as_str()),
        (Some("task_status"), Some("failed"))
    );
    assert_eq!(too_many["payload"]["summary"], "the task was handed off 3 times, over the limit of 2");
    assert_eq!(by("h2")["payload"]["status"], "failed");
    let audited = consume_all(&audit, 2, Duration::from_secs(30));
    let event = |c: &str| {
        let a = audited.iter().find(|g| g.value["correlation_id"] == c).unwrap_or_else(|| panic!("{c}: {audited:?}"));
        (a.value["payload"]["event_type"].as_str().unwrap().to_owned(), a.value["payload"]["details"].clone())
    };
    let (e1, d1) = event("h1");
    assert_eq!((e1.as_str(), d1["task_id"].as_str()), ("too_many_handoffs", Some("t1")));
    let (e2, d2) = event("h2");
    assert_eq!((e2.as_str(), d2["field"].as_str()), ("payload_unreadable", Some("payload.handoffs")));
    assert_eq!(audited.len(), 2, "the passed request is not audited");
}

#[test]
fn a_max_deadline_shorter_than_the_deadline_is_a_configuration_error() {
    let dir = TestDir::new();
    let topology = agent_topology(
        dir.path(),
        "dl-config",
        "http://127.0.0.1:1/v1",
        ["in", "out", "asks", "replies"],
        "deadline = \"10s\"\nmax_deadline = \"1s\"",
    );
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_kafclaw")).arg("validate").arg(&topology).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "dl-config.toml:10:8: error: delegate tool: `max_deadline` (1s) is shorter than `deadline` (10s)"
        ),
        "{stderr}"
    );
}
