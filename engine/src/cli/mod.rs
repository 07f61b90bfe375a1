//! The `kafclaw` command line (clap). Every subcommand returns an exit code; see [`crate::exit`].

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::compiler::{self, CompileError, Compiled};
use crate::exit;
use crate::kafka::topics::{ensure_topics, partition_counts, topic_uses};
use crate::kafka::{ClientSettings, InstanceError, InstanceOptions, Stats, run_instance};
use crate::runtime::query::QuerySlot;
use crate::runtime::{LocalOptions, RunError, run_local};

mod groups;
use groups::{group_create, group_members, journal_export, timeline_follow, trace};

/// kafclaw: agent topologies on Apache Kafka.
///
/// Exit codes: 0 ok; 1 runtime failure (I/O error, failing test); 2 invalid input or
/// configuration (topology errors, missing files, bad flags).
#[derive(Debug, Parser)]
#[command(name = "kafclaw", version, about, long_about)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check topology files and report every problem at once (no network).
    Validate {
        /// Topology files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a topology's graph.
    Graph {
        /// Topology file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Run the [[tests]] written in topology files.
    Test {
        /// Topology files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a topology: as a member of its Kafka consumer group, or locally with --local.
    Run {
        /// Topology file.
        file: PathBuf,
        /// Run locally over files and standard streams, with no Kafka.
        #[arg(long)]
        local: bool,
        /// Kafka: this instance's stable id; with the topology name it forms the transactional
        /// id, so a restarted instance fences its previous incarnation. Default: the host name.
        #[arg(long, env = "KAFCLAW_INSTANCE_ID")]
        instance_id: Option<String>,
        /// Kafka: bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
        /// Kafka: serve /healthz, /readyz and /stats on this address (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Kafka: folder of the local state stores (RocksDB), one per topology and instance.
        #[arg(long, env = "KAFCLAW_STATE_DIR", default_value = ".kafclaw/state")]
        state_dir: PathBuf,
        /// Read source NAME from PATH instead of its configured input (repeatable).
        #[arg(long = "input", value_name = "NAME=PATH", value_parser = parse_assignment)]
        inputs: Vec<(String, PathBuf)>,
        /// Write sink NAME to PATH instead of its configured output (repeatable).
        #[arg(long = "output", value_name = "NAME=PATH", value_parser = parse_assignment)]
        outputs: Vec<(String, PathBuf)>,
        /// Write dead letters to PATH.
        #[arg(long, value_name = "PATH")]
        dead_letter: Option<PathBuf>,
    },
    /// List a topology's Kafka topics with their partition counts on the cluster.
    Topics {
        /// Topology file.
        file: PathBuf,
        /// Bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
        /// Create the missing topics the topology writes.
        #[arg(long)]
        create: bool,
    },
    /// Rebuild a topology's state by reprocessing its inputs: reset the group's offsets, wipe
    /// the state (local store and, by a reset marker, the changelogs), reprocess to the
    /// current end with a progress bar, and stop. Stop every instance first.
    Replay {
        /// Topology file.
        file: PathBuf,
        /// Where to start: `earliest`, or an RFC 3339 time (the first record at or after it).
        #[arg(long, value_name = "earliest|TIME")]
        from: crate::kafka::ReplayFrom,
        /// This instance's stable id (see `run`). Default: the host name.
        #[arg(long, env = "KAFCLAW_INSTANCE_ID")]
        instance_id: Option<String>,
        /// Bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
        /// Folder of the local state stores.
        #[arg(long, env = "KAFCLAW_STATE_DIR", default_value = ".kafclaw/state")]
        state_dir: PathBuf,
    },
    /// Remote mode: a headless HTTP gateway in front of an agent group — submit tasks, read
    /// their status, result and trace, scrape /metrics. Every route but /healthz needs the
    /// bearer token.
    Gateway {
        /// The group.
        #[arg(long)]
        group: String,
        /// Skills whose tasks may be submitted (`skill` in the body), repeatable.
        #[arg(long)]
        skill: Vec<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8470")]
        listen: std::net::SocketAddr,
        /// Environment variable holding the bearer token (required: there is no open mode).
        #[arg(long, default_value = "KAFCLAW_GATEWAY_TOKEN")]
        token_env: String,
        /// Bootstrap servers (default: KAFCLAW_KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
        /// Partitions of the answer topics the gateway creates when missing.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
    /// Follow a group's topics (requests, responses, statuses, traces, audit, shared memory,
    /// skill topics) into a local SQLite timeline, each record with its position in one
    /// transaction (resumes where it stopped).
    Timeline {
        /// The group.
        #[arg(long)]
        group: String,
        /// The SQLite database.
        #[arg(long, default_value = "kafclaw-timeline.db")]
        db: PathBuf,
        /// Skills whose topics to follow too (repeatable).
        #[arg(long)]
        skill: Vec<String>,
        /// Read to the current end, then stop (default: follow until SIGTERM/SIGINT).
        #[arg(long)]
        once: bool,
        /// Bootstrap servers (default: KAFCLAW_KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
    },
    /// Print the causal chain of a task from a timeline (one SQL query): its events, what they
    /// caused across agents (delegations and their answers), and the memory items used, with
    /// who wrote them.
    Trace {
        /// The task's correlation id.
        correlation_id: String,
        /// The SQLite database (`kafclaw timeline`).
        #[arg(long, default_value = "kafclaw-timeline.db")]
        db: PathBuf,
        /// Print one JSON object per entry.
        #[arg(long)]
        json: bool,
    },
    /// Agent groups: who is in one.
    Group {
        /// What to do.
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Export or inspect the response journals (model answers, embeddings) kept in the
    /// topology's changelog topics.
    Journal {
        /// What to do.
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Query the state of a running instance over its HTTP endpoint (`run --http`).
    State {
        /// What to query.
        #[command(subcommand)]
        query: StateCommand,
    },
    /// Ask the standard agent (built in: topologies/agent.toml) one question, locally. With no
    /// live model configured it answers from recorded responses and says so; set
    /// KAFCLAW_MODEL_URL (and KAFCLAW_MODEL, KAFCLAW_API_KEY) to use an OpenAI-compatible
    /// endpoint.
    Agent {
        /// The message.
        #[arg(short, long)]
        message: String,
        /// Who asks (the request's sender_id).
        #[arg(long, default_value = "cli")]
        sender: String,
        /// Another agent topology (an `inbox` source and a `responses` sink).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Print the whole response envelope as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two runs' outputs (JSON Lines), envelope by envelope by id; exit 1 if they
    /// differ.
    Diff {
        /// The first run's output.
        a: PathBuf,
        /// The second run's output.
        b: PathBuf,
        /// Dotted paths to leave out of the comparison (repeatable), e.g.
        /// payload.usage.latency_ms.
        #[arg(long)]
        ignore: Vec<String>,
        /// Match envelopes by this dotted path instead of `id` (e.g. `causation_id`, to
        /// compare a Kafka run with an offline run over the same inputs, whose output ids
        /// differ); repeats are matched in file order, and `id` is then not compared.
        #[arg(long, default_value = "id")]
        key: String,
    },
    /// Print the version.
    Version,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `kafclaw group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create the group's topics (DESIGN §4: announce, requests, responses, tasks.status,
    /// traces, observe.audit, memory.shared and control.roster compacted, memory.context,
    /// control.onboarding, orchestrator, and skill.<s>.requests/responses per --skill).
    Create {
        /// The group.
        #[arg(long)]
        group: String,
        /// Skills to create request and response topics for (repeatable).
        #[arg(long)]
        skill: Vec<String>,
        /// Partitions of each topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Replication factor (-1: the broker's default).
        #[arg(long, default_value_t = -1)]
        replication: i32,
        /// Bootstrap servers (default: KAFCLAW_KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
    },
    /// The live members of a group (from `group.<g>.control.roster`, kept by a `roster`
    /// operator): active, and heard from within their TTL.
    Members {
        /// The group.
        #[arg(long)]
        group: String,
        /// Bootstrap servers (default: KAFCLAW_KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
        /// Print one JSON object per member.
        #[arg(long)]
        json: bool,
    },
}

/// `kafclaw journal …`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Write every journal entry as JSON Lines `{"operator", "key", "entry"}`: point a model's
    /// `recorded = "<file>"` at it to run the topology offline with the very same answers
    /// (`kafclaw diff` then compares the two runs).
    Export {
        /// Topology file.
        file: PathBuf,
        /// Bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS).
        #[arg(long, env = "KAFCLAW_BROKERS")]
        brokers: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// `kafclaw state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Tables with key counts, sizes and sample keys.
    Inspect {
        /// The instance's HTTP endpoint (`run --http`).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
        http: String,
        /// Sample keys per table.
        #[arg(long, default_value_t = 5)]
        samples: usize,
        /// Print the JSON as served.
        #[arg(long)]
        json: bool,
    },
    /// The committed value of one key.
    Get {
        /// Table.
        table: String,
        /// Key.
        key: String,
        /// The instance's HTTP endpoint (`run --http`).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
        http: String,
    },
}

fn parse_assignment(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_owned(), PathBuf::from(path))),
        _ => Err(format!("expected NAME=PATH, got `{s}`")),
    }
}

fn compile_or_report(path: &std::path::Path) -> Result<Compiled, i32> {
    match compiler::compile_file(path) {
        Ok(c) => {
            eprint!("{}", c.diagnostics.render(&c.file));
            Ok(c)
        }
        Err(CompileError::Read(p, e)) => {
            eprintln!("{p}: error: {e}");
            Err(exit::INVALID)
        }
        Err(CompileError::Invalid(f)) => {
            eprint!("{f}");
            eprintln!("{}: {} error(s)", f.file.path.display(), f.diagnostics.error_count());
            Err(exit::INVALID)
        }
    }
}

fn validate(files: &[PathBuf]) -> i32 {
    let mut code = exit::OK;
    for f in files {
        match compile_or_report(f) {
            Ok(c) => {
                let p = &c.plan;
                eprintln!(
                    "{}: ok: topology `{}`, {} node(s), {} sub-topolog{} ({:?})",
                    f.display(),
                    p.name,
                    p.nodes.len(),
                    p.subtopologies.len(),
                    if p.subtopologies.len() == 1 { "y" } else { "ies" },
                    p.guarantee
                );
            }
            Err(c) => code = code.max(c),
        }
    }
    code
}

fn test(files: &[PathBuf]) -> i32 {
    let mut code = exit::OK;
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        let c = match compile_or_report(f) {
            Ok(c) => c,
            Err(e) => {
                code = code.max(e);
                continue;
            }
        };
        match crate::testing::run_tests(&c) {
            Ok(results) => {
                if results.is_empty() {
                    eprintln!("{}: no [[tests]]", f.display());
                }
                for r in results {
                    match r.failure {
                        None => {
                            passed += 1;
                            println!("test {} :: {} ... ok", f.display(), r.name);
                        }
                        Some(report) => {
                            failed += 1;
                            println!("test {} :: {} ... FAILED\n{report}", f.display(), r.name);
                            code = code.max(exit::RUNTIME);
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                code = code.max(exit::INVALID);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    code
}

fn settings(c: &Compiled, brokers: Option<String>) -> ClientSettings {
    let mut s = ClientSettings::new(&c.spec.kafka, std::env::vars());
    if let Some(b) = brokers {
        s.set("bootstrap.servers", b);
    }
    s
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kafclaw".to_owned())
}

/// Options of `kafclaw run` in Kafka mode.
struct KafkaRun {
    instance_id: Option<String>,
    brokers: Option<String>,
    http: Option<std::net::SocketAddr>,
    state_dir: PathBuf,
}

/// A flag that SIGTERM and SIGINT set (a clean stop), or the exit code when they cannot be
/// handled.
pub(crate) fn stop_on_signals() -> Result<Arc<AtomicBool>, i32> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("error: cannot handle signal {sig}: {e}");
            return Err(exit::RUNTIME);
        }
    }
    Ok(stop)
}

fn run_kafka(c: &Compiled, k: KafkaRun) -> i32 {
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stats = Arc::new(Stats::default());
    let state_query = QuerySlot::default();
    if let Some(addr) = k.http {
        let endpoint = crate::health::Endpoint {
            stats: stats.clone(),
            state: state_query.clone(),
            models: c.spec.models.values().cloned().collect(),
        };
        match crate::health::serve(addr, endpoint) {
            Ok(bound) => tracing::info!(%bound, "http endpoint listening"),
            Err(e) => {
                eprintln!("error: http endpoint {addr}: {e}");
                return exit::INVALID;
            }
        }
    }
    let opts = InstanceOptions {
        instance_id: k.instance_id.unwrap_or_else(host_name),
        settings: settings(c, k.brokers),
        stop,
        stats: stats.clone(),
        state_dir: k.state_dir,
        until: None,
        state_query,
    };
    let result = run_instance(c, opts);
    let s = stats.snapshot();
    eprintln!(
        "kafclaw: consumed {}, produced {}, dead-lettered {}, deduplicated {}, commits {}, aborts {}",
        s.consumed, s.produced, s.dead_lettered, s.deduplicated, s.commits, s.aborts
    );
    instance_exit(result)
}

fn instance_exit(result: Result<(), InstanceError>) -> i32 {
    match result {
        Ok(()) => exit::OK,
        Err(e @ (InstanceError::Setup(_) | InstanceError::Build(_))) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
        Err(e @ InstanceError::Fatal(_)) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

/// Options of `kafclaw replay`.
struct ReplayRun {
    from: crate::kafka::ReplayFrom,
    instance_id: Option<String>,
    brokers: Option<String>,
    state_dir: PathBuf,
}

fn replay(file: &std::path::Path, r: ReplayRun) -> i32 {
    let c = match compile_or_report(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stats = Arc::new(Stats::default());
    let opts = InstanceOptions {
        instance_id: r.instance_id.unwrap_or_else(host_name),
        settings: settings(&c, r.brokers),
        stop: stop.clone(),
        stats: stats.clone(),
        state_dir: r.state_dir,
        until: None,
        state_query: QuerySlot::default(),
    };
    let started = std::time::Instant::now();
    let result = crate::kafka::replay(&c, r.from, opts);
    let s = stats.snapshot();
    match result {
        Ok(summary) if stop.load(std::sync::atomic::Ordering::Relaxed) => {
            eprintln!(
                "kafclaw: replay interrupted after {} of {} record(s); run it again to finish",
                s.consumed, summary.records
            );
            exit::RUNTIME
        }
        Ok(summary) => {
            eprintln!(
                "kafclaw: replayed {} record(s) from {} partition(s) in {:.1}s: produced {}, dead-lettered {}, \
                 deduplicated {}; {} changelog partition(s) reset",
                s.consumed,
                summary.partitions,
                started.elapsed().as_secs_f64(),
                s.produced,
                s.dead_lettered,
                s.deduplicated,
                summary.markers
            );
            exit::OK
        }
        Err(e) => instance_exit(Err(e)),
    }
}

/// `GET` of `segments` (each percent-encoded as one path segment) on the endpoint at `addr`.
fn http_get(addr: &str, segments: &[&str], query: Option<&str>) -> Result<(reqwest::StatusCode, String), String> {
    let base = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let mut url = reqwest::Url::parse(&base).map_err(|e| format!("`{addr}`: {e}"))?;
    url.path_segments_mut().map_err(|()| format!("`{addr}` cannot take a path"))?.pop_if_empty().extend(segments);
    url.set_query(query);
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let resp = client.get(url.clone()).send().map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    Ok((status, resp.text().map_err(|e| e.to_string())?))
}

fn state(cmd: StateCommand) -> i32 {
    use crate::runtime::query::TableReport;
    let (addr, segments, query, json) = match &cmd {
        StateCommand::Inspect { http, samples, json } => {
            (http, vec!["state"], Some(format!("samples={samples}")), *json)
        }
        StateCommand::Get { table, key, http } => (http, vec!["state", table.as_str(), key.as_str()], None, true),
    };
    let (status, body) = match http_get(addr, &segments, query.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    if status == reqwest::StatusCode::NOT_FOUND {
        eprint!("{body}");
        return exit::RUNTIME;
    }
    if !status.is_success() {
        eprintln!("error: {status}: {}", body.trim_end());
        return exit::RUNTIME;
    }
    if json {
        println!("{}", body.trim_end());
        return exit::OK;
    }
    let tables: Vec<TableReport> = match serde_json::from_str(&body) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: unexpected answer from {addr}: {e}");
            return exit::RUNTIME;
        }
    };
    println!("{:<32} {:>10} {:>12} {:>10}  sample keys", "table", "keys", "bytes", "partitions");
    for t in tables {
        println!(
            "{:<32} {:>10} {:>12} {:>10}  {}",
            t.table,
            t.keys,
            t.bytes,
            t.partitions.len(),
            t.sample_keys.join(", ")
        );
    }
    exit::OK
}

fn topics(file: &std::path::Path, brokers: Option<String>, create: bool) -> i32 {
    let c = match compile_or_report(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = settings(&c, brokers);
    if create {
        let t = &c.spec.topology;
        match ensure_topics(&s, &c.plan, t.partitions, t.replication, Duration::from_secs(30)) {
            Ok(created) => {
                eprintln!("created: {}", if created.is_empty() { "nothing".to_owned() } else { created.join(", ") })
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::RUNTIME;
            }
        }
    }
    let uses = topic_uses(&c.plan);
    let names: Vec<&str> = uses.iter().map(|u| u.topic.as_str()).collect();
    let counts = match partition_counts(&s, &names, Duration::from_secs(30)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    println!("{:<48} {:<12} {:>10}  nodes", "topic", "role", "partitions");
    for (u, n) in uses.iter().zip(counts) {
        let n = n.map_or("missing".to_owned(), |n| n.to_string());
        println!("{:<48} {:<12} {:>10}  {}", u.topic, u.role.as_str(), n, u.nodes.join(", "));
    }
    exit::OK
}

fn run(file: &std::path::Path, local: bool, opts: LocalOptions, kafka: KafkaRun) -> i32 {
    let c = match compile_or_report(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !local {
        return run_kafka(&c, kafka);
    }
    let result = run_local(&c, &opts);
    for m in c.spec.models.values() {
        if let Some(u) = m.usage() {
            eprintln!(
                "kafclaw: model `{}`: {} call(s), {} attempt(s), {} throttled, {} failed; {} prompt + {} completion tokens; peak {} in flight",
                m.name,
                u.calls,
                u.attempts,
                u.throttled,
                u.failures,
                u.prompt_tokens,
                u.completion_tokens,
                u.peak_in_flight
            );
        }
    }
    match result {
        Ok(s) => {
            let written = s.written.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            eprintln!(
                "kafclaw: read {} record(s); written: {}; dead-lettered: {} ({})",
                s.read,
                if written.is_empty() { "none".to_owned() } else { written },
                s.dead_letters,
                s.dead_letter_target
            );
            exit::OK
        }
        Err(e @ (RunError::Setup(_) | RunError::Build(_))) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
        Err(e @ RunError::Io(_)) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

/// Runs the CLI; returns the exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Graph { file, format } => match compile_or_report(&file) {
            Ok(c) => {
                let text = match format {
                    GraphFormat::Dot => crate::render::dot(&c),
                    GraphFormat::Mermaid => crate::render::mermaid(&c),
                };
                print!("{text}");
                exit::OK
            }
            Err(code) => code,
        },
        Command::Test { files } => test(&files),
        Command::Run { file, local, instance_id, brokers, http, state_dir, inputs, outputs, dead_letter } => {
            let opts = LocalOptions {
                inputs: inputs.into_iter().collect::<HashMap<_, _>>(),
                outputs: outputs.into_iter().collect::<HashMap<_, _>>(),
                dead_letter,
            };
            run(&file, local, opts, KafkaRun { instance_id, brokers, http, state_dir })
        }
        Command::Topics { file, brokers, create } => topics(&file, brokers, create),
        Command::Replay { file, from, instance_id, brokers, state_dir } => {
            replay(&file, ReplayRun { from, instance_id, brokers, state_dir })
        }
        Command::State { query } => state(query),
        Command::Group { command: GroupCommand::Members { group, brokers, json } } => {
            group_members(&group, brokers, json)
        }
        Command::Group { command: GroupCommand::Create { group, skill, partitions, replication, brokers } } => {
            group_create(&group, &skill, partitions, replication, brokers)
        }
        Command::Timeline { group, db, skill, once, brokers } => timeline_follow(&group, &db, &skill, once, brokers),
        Command::Trace { correlation_id, db, json } => trace(&correlation_id, &db, json),
        Command::Gateway { group, skill, listen, token_env, brokers, partitions } => {
            crate::gateway::run(&group, skill, listen, &token_env, brokers, partitions)
        }
        Command::Journal { command: JournalCommand::Export { file, brokers, output } } => {
            journal_export(&file, brokers, output.as_deref())
        }
        Command::Agent { message, sender, topology, json } => {
            match crate::agent::run_agent(&message, &sender, topology.as_deref()) {
                Ok(a) => {
                    if json {
                        println!("{}", a.response);
                    } else {
                        println!("{}", a.response["payload"]["result"].as_str().unwrap_or_default());
                    }
                    if a.recorded {
                        eprintln!(
                            "kafclaw: this answer is a recorded response (no live model configured); \
                             set KAFCLAW_MODEL_URL to an OpenAI-compatible endpoint for live answers"
                        );
                    }
                    exit::OK
                }
                Err(e @ crate::agent::AgentError::Setup(_)) => {
                    eprintln!("error: {e}");
                    exit::INVALID
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::RUNTIME
                }
            }
        }
        Command::Diff { a, b, ignore, key } => match crate::diff::diff_files(&a, &b, &key, &ignore) {
            Ok(r) => {
                for (_, d) in &r.changed {
                    print!("{d}");
                }
                for id in &r.only_a {
                    println!("only in {}: {id}", a.display());
                }
                for id in &r.only_b {
                    println!("only in {}: {id}", b.display());
                }
                eprintln!(
                    "kafclaw: {} envelope(s) compared: {} differ, {} only in the first, {} only in the second",
                    r.compared,
                    r.changed.len(),
                    r.only_a.len(),
                    r.only_b.len()
                );
                if r.same() { exit::OK } else { exit::RUNTIME }
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::INVALID
            }
        },
        Command::Version => {
            println!(
                "kafclaw {} (envelope v{})",
                env!("CARGO_PKG_VERSION"),
                kafclaw_operators::envelope::ENVELOPE_VERSION
            );
            exit::OK
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "kafclaw", &mut std::io::stdout());
            let _ = std::io::stdout().flush();
            exit::OK
        }
    }
}
