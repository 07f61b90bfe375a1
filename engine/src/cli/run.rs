//! `kafclaw run`: run a topology, as a member of its Kafka consumer group (transactional, with
//! an optional HTTP endpoint), or locally over files and standard streams with `--local`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kafclaw_agent::resources::AgentResources;

use super::common::{KafkaArgs, compile_or_report, host_name, instance_exit, stop_on_signals};
use crate::compiler::Compiled;
use crate::exit;
use crate::kafka::{InstanceOptions, Stats, run_instance};
use crate::runtime::query::QuerySlot;
use crate::runtime::{LocalOptions, RunError, run_local_on};

/// Arguments of `kafclaw run`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::run_help))]
pub struct Args {
    /// Topology file.
    pub file: PathBuf,
    /// Run locally over files and standard streams, with no Kafka.
    #[arg(long)]
    pub local: bool,
    /// Kafka: this instance's stable id; with the topology name it forms the transactional
    /// id, so a restarted instance fences its previous incarnation. Default: the host name.
    #[arg(long, env = "KAFCLAW_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Stream threads (1 to 256). Kafka: each a consumer group member with its own producer
    /// and tasks. Local: workers of each sub-topology of stateless operators reading files.
    /// Default: `[topology] threads`, else 1 (Kafka) or the machine's cores (local).
    #[arg(long, env = "KAFCLAW_THREADS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Kafka: the bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Kafka: serve /healthz, /readyz, /metrics, /stats and /state on this address (e.g.
    /// 127.0.0.1:9464). A non-loopback address needs a token (see --http-token-env).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Kafka: environment variable holding the bearer token that /metrics, /stats and /state need
    /// (/healthz and /readyz stay open). Unset: they are open, and --http must be a loopback
    /// address (run refuses to start otherwise).
    #[arg(long, value_name = "VAR", default_value = "KAFCLAW_HTTP_TOKEN")]
    pub http_token_env: String,
    /// Kafka: folder of the local state stores (RocksDB), one per topology and instance.
    /// Local: the effect log of `at-most-once` and `reconcile` tools is kept in it
    /// (`<topology>/effects.local.jsonl`).
    #[arg(long, env = "KAFCLAW_STATE_DIR", default_value = ".kafclaw/state")]
    pub state_dir: PathBuf,
    /// Local: read source NAME from PATH instead of its configured input (repeatable).
    #[arg(long = "input", value_name = "NAME=PATH", value_parser = parse_assignment)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Local: write sink NAME to PATH instead of its configured output (repeatable).
    #[arg(long = "output", value_name = "NAME=PATH", value_parser = parse_assignment)]
    pub outputs: Vec<(String, PathBuf)>,
    /// Local: write dead letters to PATH.
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,
}

fn parse_assignment(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_owned(), PathBuf::from(path))),
        _ => Err(format!("expected NAME=PATH, got `{s}`")),
    }
}

/// Compiles the topology and runs it, in Kafka mode or (`--local`) locally.
pub(super) fn execute(args: Args) -> i32 {
    if !args.local
        && let Some(addr) = args.http
        && let Err(m) = crate::health::check_exposure(
            addr,
            crate::health::token_from_env(&args.http_token_env).is_some(),
            &args.http_token_env,
        )
    {
        eprintln!("error: {m}");
        return exit::INVALID;
    }
    let c = match compile_or_report(&args.file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.local {
        if !args.inputs.is_empty() || !args.outputs.is_empty() || args.dead_letter.is_some() {
            eprintln!(
                "error: --input, --output and --dead-letter are for --local runs; a Kafka run reads and writes the topics its topology names"
            );
            return exit::INVALID;
        }
        return run_kafka(&c, args);
    }
    let opts = LocalOptions {
        inputs: args.inputs.into_iter().collect::<HashMap<_, _>>(),
        outputs: args.outputs.into_iter().collect::<HashMap<_, _>>(),
        dead_letter: args.dead_letter,
        // Beside the Kafka mode's state stores: kept across local runs (docs/effects.md).
        effect_log: Some(args.state_dir.join(&c.plan.name).join("effects.local.jsonl")),
    };
    let result = run_local_on(&c, &opts, c.spec.topology.local_threads(args.threads));
    for m in c.resources.models() {
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
            eprintln!("error: {}", kafclaw_operators::api::secrets::redact(&e.to_string()));
            exit::INVALID
        }
        Err(e @ (RunError::Io(_) | RunError::State(_) | RunError::Stopped)) => {
            eprintln!("error: {}", kafclaw_operators::api::secrets::redact(&e.to_string()));
            exit::RUNTIME
        }
    }
}

/// Kafka mode: one instance of the topology's consumer group, until SIGTERM/SIGINT.
fn run_kafka(c: &Compiled, k: Args) -> i32 {
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stats = Arc::new(Stats::default());
    let state_query = QuerySlot::default();
    if let Some(addr) = k.http {
        let token = crate::health::token_from_env(&k.http_token_env);
        let token_required = token.is_some();
        let endpoint = crate::health::Endpoint {
            topology: c.plan.name.to_string(),
            stats: stats.clone(),
            state: state_query.clone(),
            models: c.resources.models(),
            token,
        };
        match crate::health::serve(addr, endpoint) {
            Ok(bound) => tracing::info!(%bound, token_required, "http endpoint listening"),
            Err(e) => {
                eprintln!("error: http endpoint {addr}: {e}");
                return exit::INVALID;
            }
        }
    }
    let opts = InstanceOptions {
        instance_id: k.instance_id.unwrap_or_else(host_name),
        threads: c.spec.topology.stream_threads(k.threads),
        settings: k.kafka.settings(c),
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
