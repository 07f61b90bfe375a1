//! What the commands share: the Kafka flags ([`KafkaArgs`], flattened into every command that
//! talks to Kafka), compiling a topology with its diagnostics on stderr, the Kafka client
//! settings, signal handling, and the exit code of a Kafka instance's result.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::compiler::{self, CompileError, Compiled};
use crate::exit;
use crate::kafka::{ClientSettings, InstanceError};

/// The Kafka flags: `--brokers` (env KAFCLAW_BROKERS), declared here only and flattened
/// (`#[command(flatten)]`) into every command that talks to Kafka.
///
/// Its help reads as for a topology's commands; `run` and the commands with no topology
/// reword it with `#[command(mut_args(KafkaArgs::run_help))]` or
/// `#[command(mut_args(KafkaArgs::no_topology_help))]` (`mut_args`, not `mut_arg`, which
/// would move the flag to the end of the completion scripts).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS).
    #[arg(long, env = "KAFCLAW_BROKERS")]
    pub brokers: Option<String>,
}

impl KafkaArgs {
    /// The id of `--brokers`.
    const BROKERS: &str = "brokers";

    /// The help of `--brokers` in `run`, where every Kafka flag says it is one (for
    /// `mut_args`: leaves the other flags alone).
    pub(super) fn run_help(arg: clap::Arg) -> clap::Arg {
        Self::reword(arg, "Kafka: bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS)")
    }

    /// The help of `--brokers` in the commands with no topology (so no `[kafka]` table):
    /// group, timeline, gateway (for `mut_args`: leaves the other flags alone).
    pub(super) fn no_topology_help(arg: clap::Arg) -> clap::Arg {
        Self::reword(arg, "Bootstrap servers (default: KAFCLAW_KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)")
    }

    /// `arg` with `help` if it is `--brokers`, else unchanged.
    fn reword(arg: clap::Arg, help: &'static str) -> clap::Arg {
        if arg.get_id() == Self::BROKERS { arg.help(help) } else { arg }
    }

    /// The client settings of topology `c`: its `[kafka]` table and the environment, with
    /// `--brokers` over both.
    pub(super) fn settings(self, c: &Compiled) -> ClientSettings {
        let mut s = ClientSettings::new(&c.spec.kafka, std::env::vars());
        if let Some(b) = self.brokers {
            s.set("bootstrap.servers", b);
        }
        s
    }
}

/// Compiles the topology at `path`, printing its diagnostics (warnings included) to stderr;
/// on failure, the exit code.
pub(super) fn compile_or_report(path: &std::path::Path) -> Result<Compiled, i32> {
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

/// The default instance id: the host name (HOSTNAME, else /etc/hostname, else `kafclaw`).
pub(super) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kafclaw".to_owned())
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

/// The exit code of a Kafka instance's result (`run`, `replay`), printing the error: a setup
/// or build error is invalid configuration, a fatal one a runtime failure.
pub(super) fn instance_exit(result: Result<(), InstanceError>) -> i32 {
    match result {
        Ok(()) => exit::OK,
        Err(e @ (InstanceError::Setup(_) | InstanceError::Build(_))) => {
            eprintln!("error: {}", kafclaw_operators::api::secrets::redact(&e.to_string()));
            exit::INVALID
        }
        Err(e @ InstanceError::Fatal(_)) => {
            eprintln!("error: {}", kafclaw_operators::api::secrets::redact(&e.to_string()));
            exit::RUNTIME
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use crate::cli::Cli;

    /// clap's own consistency checks over the whole command line (flattened ids, groups, …).
    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `--brokers` is the one flag flattened everywhere: same env var in every command, and
    /// the help each command had before `KafkaArgs` (`mut_args` would silently miss a rename).
    #[test]
    fn brokers_keeps_its_env_and_help_in_every_command() {
        const TOPOLOGY: &str = "Bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS)";
        const NO_TOPOLOGY: &str = "Bootstrap servers (default: KAFCLAW_KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)";
        const RUN: &str = "Kafka: bootstrap servers (overrides `[kafka]` and KAFCLAW_KAFKA_BOOTSTRAP_SERVERS)";
        let cases: [(&[&str], &str); 8] = [
            (&["run"], RUN),
            (&["topics"], TOPOLOGY),
            (&["replay"], TOPOLOGY),
            (&["journal", "export"], TOPOLOGY),
            (&["gateway"], NO_TOPOLOGY),
            (&["timeline"], NO_TOPOLOGY),
            (&["group", "create"], NO_TOPOLOGY),
            (&["group", "members"], NO_TOPOLOGY),
        ];
        let cli = Cli::command();
        for (path, help) in cases {
            let cmd = path.iter().fold(&cli, |c, name| c.find_subcommand(name).expect("subcommand"));
            let arg = cmd.get_arguments().find(|a| a.get_id() == "brokers").expect("--brokers");
            assert_eq!(arg.get_long(), Some("brokers"), "{path:?}");
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some("KAFCLAW_BROKERS"), "{path:?}");
            assert_eq!(arg.get_help().map(ToString::to_string).as_deref(), Some(help), "{path:?}");
        }
    }
}
