//! How each contender is started: every one is a process of its own reading the same input
//! topic in its own consumer group and writing its own output topic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// `fetch.wait.max.ms` of every contender's consumer. The test broker answers a fetch with no
/// new data only when this wait is over, so librdkafka's default (500 ms) would be most of the
/// measured latency; every contender gets the same setting.
pub const FETCH_WAIT_MAX_MS: &str = "10";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    Raw,
    KafclawAtLeastOnce,
    KafclawExactlyOnce,
    Quix,
    QuixExactlyOnce,
}

impl Contender {
    pub const ALL: [Contender; 5] =
        [Self::Raw, Self::KafclawAtLeastOnce, Self::KafclawExactlyOnce, Self::Quix, Self::QuixExactlyOnce];

    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw rdkafka loop (at-least-once)",
            Self::KafclawAtLeastOnce => "kafclaw at-least-once",
            Self::KafclawExactlyOnce => "kafclaw exactly-once",
            Self::Quix => "Quix Streams 3.28.1 (at-least-once)",
            Self::QuixExactlyOnce => "Quix Streams 3.28.1 (exactly-once)",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::KafclawAtLeastOnce => "alo",
            Self::KafclawExactlyOnce => "eos",
            Self::Quix => "quix",
            Self::QuixExactlyOnce => "quix-eos",
        }
    }
}

/// Where a contender reads and writes.
pub struct Job<'a> {
    pub brokers: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub group: &'a str,
    pub partitions: i32,
}

/// Paths the contenders run from.
pub struct Tools {
    pub kafclaw: PathBuf,
    pub quix_venv: PathBuf,
    pub work_dir: PathBuf,
}

pub fn spawn(who: Contender, job: &Job<'_>, tools: &Tools) -> Result<Child> {
    let mut cmd = match who {
        Contender::Raw => {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["raw-loop", job.brokers, job.input, job.output, job.group]);
            c
        }
        Contender::KafclawAtLeastOnce => kafclaw(job, tools, "at-least-once")?,
        Contender::KafclawExactlyOnce => kafclaw(job, tools, "exactly-once")?,
        Contender::Quix | Contender::QuixExactlyOnce => {
            let guarantee = if who == Contender::Quix { "at-least-once" } else { "exactly-once" };
            let mut c = Command::new(quix_python(&tools.quix_venv)?);
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("quix/filter.py");
            c.arg(script).args([job.brokers, job.input, job.output, job.group, FETCH_WAIT_MAX_MS, guarantee]);
            c
        }
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    cmd.spawn().with_context(|| format!("starting {}", who.name()))
}

/// The filter topology, named after the group (a kafclaw topology's group is its name).
/// `KAFCLAW_E2E_COMMIT_INTERVAL_MS` sets its `commit_interval_ms` (default: the engine's).
pub fn topology(group: &str, guarantee: &str, partitions: i32, input: &str, output: &str) -> String {
    let commit = std::env::var("KAFCLAW_E2E_COMMIT_INTERVAL_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(String::new(), |ms| format!("commit_interval_ms = {ms}\n"));
    format!(
        r#"[topology]
name = "{group}"
guarantee = "{guarantee}"
partitions = {partitions}
{commit}
[sources.in]
type = "kafka"
topic = "{input}"

[operators.even]
type = "filter"
inputs = ["in"]
where = 'payload.n % 2 == 0'

[sinks.out]
type = "kafka"
inputs = ["even"]
topic = "{output}"
"#
    )
}

/// `kafclaw run` of the filter topology as a member of its group on the broker.
pub fn kafclaw(job: &Job<'_>, tools: &Tools, guarantee: &str) -> Result<Command> {
    let topo = tools.work_dir.join(format!("{}.toml", job.group));
    std::fs::write(&topo, topology(job.group, guarantee, job.partitions, job.input, job.output))?;
    let mut c = Command::new(&tools.kafclaw);
    c.args(["run", topo.to_str().unwrap_or_default(), "--instance-id", "bench", "--brokers", job.brokers])
        .arg("--state-dir")
        .arg(tools.work_dir.join(job.group))
        .env("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
        .env("KAFCLAW_KAFKA_FETCH_WAIT_MAX_MS", FETCH_WAIT_MAX_MS)
        .env("RUST_LOG", "warn");
    Ok(c)
}

/// The venv's Python, installing Quix Streams (bench/quix/requirements.txt) on first use.
fn quix_python(venv: &Path) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let ready = Command::new(&python).args(["-c", "import quixstreams"]).stderr(Stdio::null()).status();
    if ready.is_ok_and(|s| s.success()) {
        return Ok(python);
    }
    eprintln!("installing Quix Streams into {}…", venv.display());
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("quix/requirements.txt");
    let ok = Command::new("python3").arg("-m").arg("venv").arg(venv).status()?.success()
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements)
            .status()?
            .success();
    if !ok {
        bail!("could not install Quix Streams into {}", venv.display());
    }
    Ok(python)
}
