//! The config half of an MCP tool: `[tools.<name>] type = "mcp"` as written, and the checks
//! that turn it into a [`McpSpec`] (no process started, no connection made: that is
//! [`super::server`]'s, when the instance starts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::{Limits, Mode};

/// `[tools.<name>] type = "mcp"`: the tools of an MCP server (Model Context Protocol,
/// specification 2025-06-18 / 2025-11-25), offered to the model as `<name>.<tool>`.
/// Exactly one of `command` (the stdio transport) or `url` (the Streamable HTTP transport).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// stdio transport: the server program, started once per instance and supervised
    /// (restarted on crash, with a backoff from 0.25 s doubling to 30 s). A name without a
    /// `/` is looked up in kafclaw's `PATH`; a relative path is resolved against the
    /// topology's folder. Under `sandbox = "kernel"` it must be an ELF binary (`node`, not a
    /// `#!` script: name the script in `args`).
    #[serde(default)]
    pub command: Option<String>,
    /// stdio transport: the program's arguments, passed as they are (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio transport: names of environment variables passed through from kafclaw's
    /// environment (a name not set is left out). Every other variable is scrubbed: the server
    /// sees only these (no `PATH`, no `HOME` unless listed). Their values are treated as
    /// secrets: redacted from outputs, logs, traces and dead letters.
    #[serde(default)]
    pub env: Vec<String>,
    /// stdio transport: the server's working directory (default: the topology's folder;
    /// relative to it). Under the kernel sandbox it is not readable unless listed in `read`.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Streamable HTTP transport: the server's MCP endpoint (`http://host:port/mcp`).
    #[serde(default)]
    pub url: Option<String>,
    /// Streamable HTTP transport: headers sent with every request, as header name →
    /// name of the environment variable holding its value (`{ Authorization = "MCP_TOKEN" }`,
    /// the variable holding `Bearer …`). Read when the instance starts; a variable not set
    /// fails the start, naming it.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// The server's tools that are offered, by their MCP names (default: all it lists). A
    /// name the server does not list fails the start, naming it.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Time limit of one `tools/call` (default `"30s"`); past it the call is cancelled
    /// (`notifications/cancelled`) and counts as a transport failure (see `on_error`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Time limit of starting: spawning or connecting, `initialize` and the first
    /// `tools/list` (default `"30s"`). Past it the instance does not start, saying why.
    #[serde(default = "default_timeout")]
    pub start_timeout: String,
    /// What a transport failure of a call does (the server died mid-call, the call timed
    /// out, the connection was refused), once `retries` are spent: `"dead_letter"` (default:
    /// the `llm` call fails and the record is dead-lettered, like a model that does not
    /// answer) or `"model"` (the error text goes to the model as the tool's result). A
    /// tool-level error (`isError: true` in the result, or a JSON-RPC error answer) always
    /// goes to the model.
    #[serde(default)]
    pub on_error: OnError,
    /// Calls made again after a transport failure (default 2), each after the stdio server
    /// was restarted or the HTTP session initialised again (a timed-out call is retried on
    /// the same connection).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Put before each tool's own description when the model is told about it.
    #[serde(default)]
    pub description: Option<String>,
    /// Trust tier of the server's tools: an `llm` operator offers them to an external sender
    /// only up to its `external_tool_tier`. Default 2 (an MCP tool may have side effects),
    /// whatever the server annotates: MCP says annotations of untrusted servers are
    /// untrusted, so a `readOnlyHint` does not lower it.
    #[serde(default)]
    pub tier: Option<u8>,
    /// Effect class of the server's tools (docs/effects.md): `"none"`, `"idempotent"`,
    /// `"at-most-once"` or `"reconcile"`. Default `"at-most-once"` (an MCP tool may change
    /// things, and a server's annotations are not trusted). Any class but `"none"` sends the
    /// call's idempotency key in the request's `_meta` (`io.kafclaw/idempotency-key`); under
    /// `"at-most-once"` and `"reconcile"` a call that failed in transport after it was sent
    /// is not made again (`retries` apply to `"none"` and `"idempotent"` only).
    #[serde(default)]
    pub effect: Option<crate::tools::effect::Effect>,
    /// The reconcile action of `effect = "reconcile"`: a tool of the same server (by its MCP
    /// name, listed and allowed) called with `{"idempotency_key": "<key>"}`, answering
    /// `{"found": true, "result": …}` (the call happened; `result` goes to the model) or
    /// `{"found": false}` (it did not, and is made now); anything else is an unknown outcome.
    #[serde(default)]
    pub reconcile_tool: Option<String>,
    /// stdio transport: `"kernel"` (default): the server runs in the kernel sandbox of the
    /// `shell` tool (Landlock ABI 6+, seccomp, rlimits, no capabilities; docs/security.md)
    /// and the tool refuses to start where the kernel lacks it. `"none"`: an explicit
    /// opt-out (the environment is still scrubbed, the process group still killed).
    #[serde(default)]
    pub sandbox: Mode,
    /// stdio transport: trees the server may read besides the system's read-only ones
    /// (`/usr`, `/lib`, a few files of `/etc`): its own files (a node package's folder) and
    /// the data it serves. Relative paths are resolved against the topology's folder.
    #[serde(default)]
    pub read: Vec<String>,
    /// stdio transport: trees the server may write (and read), remounted `noexec`.
    #[serde(default)]
    pub write: Vec<String>,
    /// stdio transport: TCP ports the server may connect to (default: none, no network).
    #[serde(default)]
    pub connect_ports: Vec<u16>,
    /// stdio transport: resource limits of the server process (`[tools.<name>.limits]`).
    /// Larger defaults than `shell`'s: a server is one long-lived process, and runtimes
    /// with a JIT reserve far more address space than they use (Node's V8 aborts with
    /// "out of memory" under a 1 GiB `RLIMIT_AS` while loading server-everything). No
    /// CPU-time limit.
    #[serde(default)]
    pub limits: ServerLimits,
}

/// Files every stdio server may read besides the system's trees: the OpenSSL configuration
/// and the public trust store (Node reads `/etc/ssl/openssl.cnf` at start and exits when
/// it cannot). Not `/etc/ssl/private`. Paths missing on a machine are skipped.
const TLS_READ: [&str; 3] = ["/etc/ssl/openssl.cnf", "/etc/ssl/certs", "/etc/pki/tls/certs"];

/// Resource limits of a stdio MCP server (`[tools.<name>.limits]`), each an rlimit of the
/// server process (and a `pids` control group where one can be made; docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Address space of each process (`RLIMIT_AS`), in bytes: virtual memory reserved, not
    /// memory used. Default 16 GiB (V8 and the JVM reserve gigabytes at start).
    pub memory_bytes: u64,
    /// Processes and threads at once (`RLIMIT_NPROC` and the `pids` group). Default 256
    /// (Node alone runs about a dozen threads).
    pub processes: u64,
    /// Largest file the server may write (`RLIMIT_FSIZE`), in bytes. Default 64 MiB.
    pub file_bytes: u64,
    /// Open files per process (`RLIMIT_NOFILE`). Default 1024.
    pub open_files: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self { memory_bytes: 16 << 30, processes: 256, file_bytes: 64 << 20, open_files: 1024 }
    }
}

impl ServerLimits {
    /// The sandbox's limits (its output cap unused: a server's messages are not capped
    /// there; results are cut at the `llm` operator's `max_tool_output_bytes`).
    fn to_limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes,
            processes: self.processes,
            file_bytes: self.file_bytes,
            open_files: self.open_files,
            ..Limits::default()
        }
    }
}

/// `on_error` of an MCP tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The `llm` call fails: the record is dead-lettered with the error.
    #[default]
    DeadLetter,
    /// The error text goes to the model as the tool's result.
    Model,
}

fn default_timeout() -> String {
    "30s".to_owned()
}

fn default_retries() -> u32 {
    2
}

/// How the server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A program kafclaw starts, speaking MCP on its stdin/stdout.
    Stdio {
        /// The program (absolute, canonical).
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// The variables passed through, by name.
        env: Vec<String>,
        /// Its working directory.
        cwd: PathBuf,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint.
        url: String,
        /// Header name → environment variable holding its value.
        headers_env: BTreeMap<String, String>,
    },
}

/// A checked MCP tool config.
#[derive(Debug, Clone)]
pub struct McpSpec {
    /// The tool's name in the topology (the `<name>` of `<name>.<tool>`).
    pub name: String,
    /// Where it is declared (`file:line`), for errors at start.
    pub site: String,
    /// How the server is reached.
    pub transport: Transport,
    /// The tools offered, by MCP name (`None`: all).
    pub allow: Option<Vec<String>>,
    /// Per call.
    pub timeout: Duration,
    /// For starting.
    pub start_timeout: Duration,
    /// After the retries.
    pub on_error: OnError,
    /// Calls made again after a transport failure.
    pub retries: u32,
    /// Put before each tool's description.
    pub description: Option<String>,
    /// Configured tier.
    pub tier: Option<u8>,
    /// The effect class of the server's tools.
    pub effect: crate::tools::effect::Effect,
}

impl McpConfig {
    /// Checks the options: exactly one transport, stdio-only options only with `command`,
    /// durations, header names; resolves paths against `base` (the topology's folder).
    /// `parse_ms` reads a duration.
    ///
    /// Errors: one message per problem, naming the option.
    pub fn spec(
        &self,
        name: &str,
        site: &str,
        base: &Path,
        parse_ms: impl Fn(&str) -> Result<Duration, String>,
    ) -> Result<(McpSpec, Option<crate::sandbox::Policy>, Mode), Vec<String>> {
        let mut errors = Vec::new();
        let resolve = |p: &str| -> PathBuf {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let mut duration = |what: &str, text: &str| match parse_ms(text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                errors.push(format!("mcp tool: `{what}` must be more than 0"));
                Duration::from_secs(1)
            }
            Err(e) => {
                errors.push(format!("mcp tool: `{what}`: {e}"));
                Duration::from_secs(1)
            }
        };
        let timeout = duration("timeout", &self.timeout);
        let start_timeout = duration("start_timeout", &self.start_timeout);
        let stdio_only = [
            ("args", !self.args.is_empty()),
            ("env", !self.env.is_empty()),
            ("cwd", self.cwd.is_some()),
            ("read", !self.read.is_empty()),
            ("write", !self.write.is_empty()),
            ("connect_ports", !self.connect_ports.is_empty()),
            ("sandbox", self.sandbox != Mode::Kernel),
            ("limits", self.limits != ServerLimits::default()),
        ];
        let mut policy = None;
        let transport = match (&self.command, &self.url) {
            (Some(command), None) => {
                if !self.headers_env.is_empty() {
                    errors.push("mcp tool: `headers_env` is an option of the HTTP transport (`url`)".into());
                }
                match find_program(command, base) {
                    Ok(program) => {
                        let cwd = self.cwd.as_deref().map_or_else(|| base.to_path_buf(), resolve);
                        policy = Some(crate::sandbox::Policy {
                            read: self
                                .read
                                .iter()
                                .map(|p| resolve(p))
                                .chain(TLS_READ.iter().map(PathBuf::from).filter(|p| p.exists()))
                                .collect(),
                            write: self.write.iter().map(|p| resolve(p)).collect(),
                            exec: vec![program.clone()],
                            connect_tcp: self.connect_ports.clone(),
                            limits: self.limits.to_limits(),
                        });
                        Some(Transport::Stdio { program, args: self.args.clone(), env: self.env.clone(), cwd })
                    }
                    Err(e) => {
                        errors.push(format!("mcp tool: `command`: {e}"));
                        None
                    }
                }
            }
            (None, Some(url)) => {
                for (option, _) in stdio_only.iter().filter(|(_, set)| *set) {
                    errors.push(format!("mcp tool: `{option}` is an option of the stdio transport (`command`)"));
                }
                match reqwest::Url::parse(url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    Ok(u) => {
                        errors.push(format!("mcp tool: `url` `{url}`: scheme `{}`, expected http or https", u.scheme()))
                    }
                    Err(e) => errors.push(format!("mcp tool: `url` `{url}`: {e}")),
                }
                for header in self.headers_env.keys() {
                    if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        errors.push(format!("mcp tool: `headers_env`: `{header}` is not a valid header name"));
                    }
                }
                Some(Transport::Http { url: url.clone(), headers_env: self.headers_env.clone() })
            }
            (Some(_), Some(_)) => {
                errors.push("mcp tool: `command` (stdio) and `url` (Streamable HTTP) are exclusive; give one".into());
                None
            }
            (None, None) => {
                errors.push("mcp tool: give `command` (a stdio server) or `url` (a Streamable HTTP server)".into());
                None
            }
        };
        if let Some(allow) = &self.allow
            && allow.is_empty()
        {
            errors.push("mcp tool: `allow` is empty: no tool would be offered (leave it out to offer all)".into());
        }
        match transport {
            Some(transport) if errors.is_empty() => Ok((
                McpSpec {
                    name: name.to_owned(),
                    site: site.to_owned(),
                    transport,
                    allow: self.allow.clone(),
                    timeout,
                    start_timeout,
                    on_error: self.on_error,
                    retries: self.retries,
                    description: self.description.clone(),
                    tier: self.tier,
                    effect: self.effect.unwrap_or(crate::tools::effect::Effect::AtMostOnce),
                },
                policy,
                self.sandbox,
            )),
            _ => Err(errors),
        }
    }
}

/// The program `command` names: a path (relative to `base`) or a name looked up in `PATH`;
/// canonical (the sandbox grants execution by path).
fn find_program(command: &str, base: &Path) -> Result<PathBuf, String> {
    if command.is_empty() {
        return Err("empty".into());
    }
    let found = if command.contains('/') {
        let p = Path::new(command);
        Some(if p.is_absolute() { p.to_path_buf() } else { base.join(p) })
    } else {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).map(|d| d.join(command)).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file())
    };
    let Some(found) = found else { return Err(format!("`{command}` is not found in PATH")) };
    found.canonicalize().map_err(|e| format!("`{}`: {e}", found.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(McpSpec, Option<crate::sandbox::Policy>, Mode), Vec<String>> {
        let c: McpConfig = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        c.spec("srv", "t.toml:3", Path::new("/srv/topo"), |t| {
            t.strip_suffix('s').and_then(|n| n.parse().ok()).map(Duration::from_secs).ok_or_else(|| "bad".into())
        })
    }

    #[test]
    fn a_stdio_server_is_resolved_and_confined_to_its_folders() {
        let (spec, policy, mode) =
            parse("command = \"sh\"\nargs = [\"-c\", \"x\"]\nread = [\"pkg\"]\nenv = [\"HOME\"]\n").unwrap();
        let Transport::Stdio { program, args, env, cwd } = spec.transport else { panic!() };
        assert!(program.is_absolute() && program.exists(), "{program:?}");
        assert_eq!((args.len(), env, cwd.as_path()), (2, vec!["HOME".to_owned()], Path::new("/srv/topo")));
        let policy = policy.unwrap();
        let tls = TLS_READ.iter().map(PathBuf::from).filter(|p| p.exists());
        // Not the working directory (the topology's folder by default: keys, outputs, state).
        let expected: Vec<PathBuf> = [PathBuf::from("/srv/topo/pkg")].into_iter().chain(tls).collect();
        assert_eq!(policy.read, expected);
        assert!(!policy.read.iter().any(|p| p.starts_with("/etc/ssl/private")));
        assert_eq!(policy.exec, vec![program]);
        assert_eq!(
            (mode, spec.timeout, spec.retries, spec.on_error),
            (Mode::Kernel, Duration::from_secs(30), 2, OnError::DeadLetter)
        );
    }

    #[test]
    fn bad_options_are_each_named() {
        let e = parse("url = \"http://127.0.0.1:1/mcp\"\nargs = [\"x\"]\nread = [\"y\"]\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("`args` is an option of the stdio transport"), "{e:?}");
        let e = parse("url = \"ftp://x/\"\ncommand = \"sh\"\n").unwrap_err();
        assert!(e.iter().any(|m| m.contains("exclusive")), "{e:?}");
        let e = parse("timeout = \"0s\"\n").unwrap_err();
        assert!(e.iter().any(|m| m.contains("`timeout` must be more than 0")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("give `command`")), "{e:?}");
        let e = parse("command = \"no-such-program-kafclaw\"\n").unwrap_err();
        assert!(e[0].contains("not found in PATH"), "{e:?}");
        let e = parse("url = \"http://x/mcp\"\nheaders_env = { \"bad header\" = \"T\" }\nallow = []\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        let e = parse("url = \"http://x/mcp\"\non_error = \"ignore\"\n").unwrap_err();
        assert!(e[0].contains("unknown variant `ignore`"), "{e:?}");
        let e = parse("url = \"http://x/mcp\"\nallowed = []\n").unwrap_err();
        assert!(e[0].contains("unknown field `allowed`"), "{e:?}");
    }
}
