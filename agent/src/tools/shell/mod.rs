//! `shell`: runs one allow-listed program with an argument vector. There is never a shell:
//! the program is executed directly. Two layers hold a hostile caller:
//!
//! 1. The argument checks ([`args`]): shell syntax, paths out of the root (in options'
//!    values too) and, per program, the options that run other programs are refused with a
//!    reason the model can read.
//! 2. The kernel sandbox ([`crate::sandbox`]): the program reads only the system's read-only
//!    trees, the root and the tool's `read` paths, writes only the root, executes only the
//!    allow-listed binaries, reaches the network only on `connect_ports`, within rlimits,
//!    in a process group killed whole at the time limit and after the run.
//!
//! The working directory is the root, the environment is `PATH` and `LANG` only, stdin is
//! empty, and stdout then stderr are handed back up to `limits.output_bytes`.

pub mod args;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{CallContext, Tool, ToolFuture, ToolOutput};
use crate::sandbox::{self, Limits, Mode, Policy, SandboxError};

/// Where allow-listed programs are looked up.
const PROGRAM_DIRS: [&str; 2] = ["/usr/bin", "/bin"];

/// The environment of every run.
const ENV: [(&str, &str); 2] = [("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8")];

/// How a shell tool is set up (`[tools.<name>]` of `type = "shell"`).
#[derive(Debug, Clone)]
pub struct ShellSpec {
    /// Program names that may run.
    pub allow: Vec<String>,
    /// The working directory, the only writable tree.
    pub root: PathBuf,
    /// Time limit of one run.
    pub timeout: Duration,
    /// What the model is told.
    pub description: Option<String>,
    /// Kernel sandbox or none.
    pub sandbox: Mode,
    /// Extra readable trees.
    pub read: Vec<PathBuf>,
    /// TCP ports programs may connect to.
    pub connect_ports: Vec<u16>,
    /// Resource limits.
    pub limits: Limits,
    /// Runs of this tool at once; a call past them is refused.
    pub concurrency: usize,
}

/// `shell`.
#[derive(Debug, Clone)]
pub struct Shell {
    allow: Vec<String>,
    /// Allowed program names with their paths (installed ones only).
    programs: Vec<(String, PathBuf)>,
    root: PathBuf,
    timeout: Duration,
    description: Option<String>,
    sandbox: sandbox::run::Sandbox,
    /// One permit per run in progress.
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    concurrency: usize,
}

/// A run the tool allows: the program's path and its arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    /// The program.
    pub program: PathBuf,
    /// Its arguments (with the options kafclaw adds first).
    pub args: Vec<String>,
}

impl Shell {
    /// A shell tool; in kernel mode the sandbox is prepared here, so a kernel without
    /// Landlock, a missing root or an allowed script stops the topology from starting.
    ///
    /// Errors: [`SandboxError`].
    pub fn new(spec: ShellSpec) -> Result<Self, SandboxError> {
        let root = spec.root.canonicalize().map_err(|source| SandboxError::Path { path: spec.root.clone(), source })?;
        let mut programs = Vec::new();
        for name in &spec.allow {
            if name.contains('/') {
                return Err(SandboxError::Executable(format!("`{name}`: allow names programs, not paths")));
            }
            let found = PROGRAM_DIRS.iter().map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file());
            if let Some(path) = found {
                let canonical = path.canonicalize().map_err(|source| SandboxError::Path { path, source })?;
                programs.push((name.clone(), canonical));
            }
        }
        let policy = Policy {
            read: spec.read.clone(),
            write: vec![root.clone()],
            exec: programs.iter().map(|(_, p)| p.clone()).collect(),
            connect_tcp: spec.connect_ports.clone(),
            limits: spec.limits.clone(),
        };
        let sandbox = sandbox::run::Sandbox::new(spec.sandbox, policy)?;
        let concurrency = spec.concurrency.max(1);
        Ok(Self {
            allow: spec.allow,
            programs,
            root,
            timeout: spec.timeout,
            description: spec.description,
            sandbox,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency)),
            concurrency,
        })
    }

    /// Checks an argument vector; the refusal says why.
    pub fn check(&self, argv: &[String]) -> Result<Checked, String> {
        let (program, rest) = argv.split_first().ok_or("refused: empty argv")?;
        if program.contains('/') || !self.allow.iter().any(|p| p == program) {
            return Err(format!(
                "refused: `{}` is not an allowed program ({})",
                program.escape_debug(),
                self.allow.join(", ")
            ));
        }
        args::check(program, rest)?;
        let path = self
            .programs
            .iter()
            .find(|(n, _)| n == program)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| format!("`{program}` is allowed but not installed"))?;
        let mut args: Vec<String> = args::forced_options(program).iter().map(|s| (*s).to_owned()).collect();
        args.extend(rest.iter().cloned());
        Ok(Checked { program: path, args })
    }

    /// Runs an argument vector; the program's output (stdout, then stderr) or why not.
    pub async fn run(&self, argv: Vec<String>) -> Result<String, String> {
        let checked = self.check(&argv)?;
        let Ok(_slot) = self.slots.try_acquire() else {
            return Err(format!(
                "refused: {} run(s) of this tool are in progress (its concurrency); try again when one has ended",
                self.concurrency
            ));
        };
        let outcome = self
            .sandbox
            .run(&checked.program, &checked.args, &self.root, &ENV, self.timeout)
            .await
            .map_err(|e| format!("`{}` could not start: {}", argv[0], e.source))?;
        let Some(status) = outcome.status else {
            return Err(format!(
                "`{}` ran past its {:?} limit and was killed, with every process it started",
                argv[0], self.timeout
            ));
        };
        let mut text = String::from_utf8_lossy(&outcome.stdout).into_owned();
        if !outcome.stderr.is_empty() {
            text.push_str(&String::from_utf8_lossy(&outcome.stderr));
        }
        if outcome.truncated {
            text.push_str(&format!(
                "\n[output truncated at {} bytes; `{}` was stopped]",
                self.sandbox.limits().output_bytes,
                argv[0]
            ));
            return Ok(text);
        }
        if status.success() { Ok(text) } else { Err(format!("`{}` failed ({status}): {text}", argv[0])) }
    }
}

impl Tool for Shell {
    fn description(&self) -> String {
        self.description
            .clone()
            .unwrap_or_else(|| format!("Run one of these programs with arguments: {}.", self.allow.join(", ")))
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"argv": {"type": "array", "items": {"type": "string"}}}, "required": ["argv"]})
    }
    fn side_effects(&self) -> bool {
        true
    }
    fn call(&self, args: Value, _: CallContext) -> ToolFuture {
        // Every item must be a string: dropping the others would run a command nobody asked for.
        let argv: Option<Vec<String>> =
            args["argv"].as_array().and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
        let me = self.clone();
        Box::pin(async move {
            match argv {
                Some(argv) => me.run(argv).await.map(ToolOutput::from),
                None => Err("argument `argv` (a list of strings) is missing or holds something else".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(root: PathBuf) -> Shell {
        Shell::new(ShellSpec {
            allow: vec!["ls".into(), "echo".into(), "sleep".into(), "env".into()],
            root,
            timeout: Duration::from_millis(500),
            description: None,
            sandbox: Mode::Kernel,
            read: Vec::new(),
            connect_ports: Vec::new(),
            limits: Limits::default(),
            concurrency: 1,
        })
        .unwrap()
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn refuses_shell_syntax() {
        let t = tool(PathBuf::from("/tmp"));
        for bad in [
            &["echo", "a;", "rm"][..],
            &["echo", "a", "|", "cat"],
            &["echo", "a", "&&", "ls"],
            &["echo", "`id`"],
            &["echo", "$(id)"],
            &["echo", "hi", ">", "out.txt"],
            &["echo", "<", "in.txt"],
            &["ls", "2>/dev/null"],
        ] {
            let e = t.check(&argv(bad)).unwrap_err();
            assert!(e.contains("refused") && e.contains("no shell"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn refuses_programs_not_allowed() {
        let t = tool(PathBuf::from("/tmp"));
        for bad in [&["rm", "x"][..], &["/bin/ls"], &["sh", "-c", "ls"], &["./ls"]] {
            let e = t.check(&argv(bad)).unwrap_err();
            assert!(e.contains("not an allowed program"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn refuses_paths_out_of_the_jail() {
        let t = tool(PathBuf::from("/tmp"));
        for bad in [&["ls", ".."][..], &["ls", "../etc"], &["ls", "a/../../b"], &["ls", "/etc"], &["ls", "--dir=../x"]]
        {
            let e = t.check(&argv(bad)).unwrap_err();
            assert!(e.contains("refused"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_call_with_a_non_string_argument_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let t = tool(dir.path().to_path_buf());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let e = rt.block_on(t.call(json!({"argv": ["ls", 5]}), CallContext::default())).unwrap_err();
        assert!(e.contains("holds something else"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_in_the_root_with_a_scrubbed_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here.txt"), "x").unwrap();
        // SAFETY: a test-only variable; the tool must not pass it on.
        unsafe { std::env::set_var("KAFCLAW_SECRET_FOR_TEST", "leak") };
        let t = tool(dir.path().to_path_buf());
        assert_eq!(t.run(argv(&["ls"])).await.unwrap(), "here.txt\n");
        let env = t.run(argv(&["env"])).await.unwrap();
        assert!(!env.contains("KAFCLAW_SECRET_FOR_TEST"), "{env}");
        assert!(env.contains("PATH=/usr/bin:/bin"));
    }

    #[tokio::test]
    async fn a_run_past_the_concurrency_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = tool(dir.path().to_path_buf());
        let busy = t.clone();
        let first = tokio::spawn(async move { busy.run(argv(&["sleep", "0.3"])).await });
        while t.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let e = t.run(argv(&["echo", "hi"])).await.unwrap_err();
        assert!(e.starts_with("refused") && e.contains("concurrency"), "{e}");
        first.await.unwrap().unwrap();
        assert_eq!(t.run(argv(&["echo", "hi"])).await.unwrap(), "hi\n", "the slot is free again");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn kills_runs_past_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let t = tool(dir.path().to_path_buf());
        let e = t.run(argv(&["sleep", "5"])).await.unwrap_err();
        assert!(e.contains("killed"), "{e}");
    }
}
