//! The parent's side: a prepared [`Sandbox`] (ruleset and filters built once, when the tool
//! is built) and [`Sandbox::run`], which starts one program in it and collects its output
//! under the time limit and the output cap.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::cgroup::RunGroup;
use super::child::Confinement;
use super::mounts::NoexecMounts;
use super::{Limits, Mode, Policy, SandboxError, elf, landlock, seccomp};

/// A sandbox prepared for one tool.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(super) mode: Mode,
    pub(super) limits: Limits,
    /// The writable trees, remounted `noexec` for each run (kernel mode).
    pub(super) noexec: Vec<CString>,
    /// Landlock ruleset and seccomp programs (kernel mode).
    pub(super) kernel: Option<Arc<Confinement>>,
}

/// What a run gave.
#[derive(Debug)]
pub struct Outcome {
    /// How the program ended (`None`: killed at the time limit).
    pub status: Option<ExitStatus>,
    /// Its standard output, up to the cap.
    pub stdout: Vec<u8>,
    /// Its standard error, up to what the cap left.
    pub stderr: Vec<u8>,
    /// Whether the output reached [`Limits::output_bytes`] (the run was then stopped).
    pub truncated: bool,
}

/// Why a program could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("`{program}` could not start: {source}")]
pub struct SpawnError {
    /// The program.
    pub program: String,
    /// Why.
    pub source: std::io::Error,
}

impl Sandbox {
    /// Prepares the sandbox of `policy`: in kernel mode, the interpreters of the executables,
    /// the Landlock ruleset and the seccomp filters.
    ///
    /// Errors: [`SandboxError`]: the kernel lacks what kernel mode needs, a path cannot be
    /// opened, an executable is a script.
    pub fn new(mode: Mode, mut policy: Policy) -> Result<Self, SandboxError> {
        let mut noexec = Vec::new();
        if mode == Mode::Kernel {
            for tree in &policy.write {
                let canonical =
                    tree.canonicalize().map_err(|source| SandboxError::Path { path: tree.clone(), source })?;
                noexec.push(path_c(&canonical)?);
            }
        }
        let kernel = match mode {
            Mode::None => None,
            Mode::Kernel => {
                let mut interpreters = Vec::new();
                for exe in &policy.exec {
                    if let Some(interp) = elf::interpreter(exe)? {
                        interpreters.push(interp);
                    }
                }
                interpreters.sort();
                interpreters.dedup();
                policy.exec.extend(interpreters);
                let ruleset = landlock::ruleset(&policy)?;
                Some(Arc::new(Confinement {
                    rlimits: Vec::new(),
                    drop_capabilities: is_root(),
                    landlock: Some(ruleset),
                    seccomp: seccomp::programs(!policy.connect_tcp.is_empty())?,
                    cgroup: None,
                    mounts: None,
                }))
            }
        };
        Ok(Self { mode, limits: policy.limits, noexec, kernel })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The child side of one program in this sandbox, and its `pids` control group where one
    /// can be made: rlimits (`cpu_seconds` none: no CPU-time limit), the process count of a
    /// non-root user's own tasks added to `RLIMIT_NPROC`, and the kernel layers when the mode
    /// has them. Shared by [`Sandbox::run`] and [`Sandbox::serve`](super::serve).
    pub(super) fn confinement(
        &self,
        program: &Path,
        cwd: &Path,
        cpu_seconds: Option<u64>,
    ) -> Result<(Confinement, Option<RunGroup>), SpawnError> {
        let mut rlimits = Confinement::rlimits(&self.limits, cpu_seconds.unwrap_or(1));
        if cpu_seconds.is_none() {
            rlimits.retain(|(r, _)| *r != libc::RLIMIT_CPU);
        }
        if !is_root() {
            // RLIMIT_NPROC counts every task of the user (this instance's threads included).
            let nproc = self.limits.processes.saturating_add(user_tasks());
            rlimits.retain(|(r, _)| *r != libc::RLIMIT_NPROC);
            rlimits.push((libc::RLIMIT_NPROC, nproc));
        }
        let group = RunGroup::new(self.limits.processes);
        let cgroup = group.as_ref().map(|g| g.procs.clone());
        let confinement = match &self.kernel {
            Some(k) => Confinement {
                rlimits,
                drop_capabilities: k.drop_capabilities,
                landlock: k.landlock.as_ref().map(|fd| fd.try_clone()).transpose().map_err(|e| spawn(program, e))?,
                seccomp: k.seccomp.clone(),
                cgroup,
                mounts: Some(NoexecMounts {
                    trees: self.noexec.clone(),
                    cwd: path_c(cwd).map_err(|e| spawn(program, std::io::Error::other(e.to_string())))?,
                    // SAFETY: getuid and getgid have no arguments and cannot fail.
                    map_ids: (!is_root()).then(|| unsafe { (libc::getuid(), libc::getgid()) }),
                }),
            },
            None => Confinement {
                rlimits,
                drop_capabilities: false,
                landlock: None,
                seccomp: Vec::new(),
                cgroup,
                mounts: None,
            },
        };
        Ok((confinement, group))
    }

    /// Runs `program` with `args` in `cwd`, with exactly the environment `env`, no stdin,
    /// for at most `timeout`; the whole process group is killed when the program ends, at the
    /// time limit and at the output cap.
    pub async fn run(
        &self,
        program: &Path,
        args: &[String],
        cwd: &Path,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Outcome, SpawnError> {
        let (confinement, group) = self.confinement(program, cwd, Some(timeout.as_secs() + 1))?;
        let confinement = Arc::new(confinement);
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child_side = Arc::clone(&confinement);
        // SAFETY: `apply` makes only async-signal-safe system calls and does not allocate.
        unsafe {
            cmd.pre_exec(move || child_side.apply());
        }
        let mut child = cmd.spawn().map_err(|e| spawn(program, e))?;
        drop(confinement);
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        // Whatever ends this call (a dropped future too) ends the whole group.
        let _group_guard = KillOnDrop(pgid);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let cap = self.limits.output_bytes;
        let work = async {
            let reading = collect(stdout, stderr, cap, pgid);
            let waiting = async {
                let status = child.wait().await;
                // Whatever the program left running goes with it.
                kill_group(pgid);
                status
            };
            let ((out, err, truncated), status) = tokio::join!(reading, waiting);
            (out, err, truncated, status)
        };
        let outcome = match tokio::time::timeout(timeout, work).await {
            Ok((stdout, stderr, truncated, status)) => {
                status.map(|status| Outcome { status: Some(status), stdout, stderr, truncated })
            }
            Err(_) => {
                kill_group(pgid);
                let _ = child.wait().await;
                Ok(Outcome { status: None, stdout: Vec::new(), stderr: Vec::new(), truncated: false })
            }
        };
        if let Some(group) = group {
            // Removing the group waits for its killed processes to be reaped: off the runtime.
            group.kill_all();
            tokio::task::spawn_blocking(move || drop(group));
        }
        outcome.map_err(|e| spawn(program, e))
    }
}

pub(super) fn spawn(program: &Path, source: std::io::Error) -> SpawnError {
    SpawnError { program: program.display().to_string(), source }
}

/// Kills the process group when dropped.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// A path as a C string, for the child.
pub(super) fn path_c(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| SandboxError::Setup(format!("{} holds a NUL byte", path.display())))
}

/// Sends SIGKILL to the process group `pgid` (nothing when it is gone).
pub(super) fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid.filter(|p| *p > 1) {
        // SAFETY: kill with integer arguments; a negative pid names a process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Reads both pipes to their end, keeping at most `cap` bytes in all; at the cap the group
/// is killed and the result says it was truncated.
async fn collect(
    stdout: Option<impl AsyncRead + Unpin>,
    stderr: Option<impl AsyncRead + Unpin>,
    cap: u64,
    pgid: Option<i32>,
) -> (Vec<u8>, Vec<u8>, bool) {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut o, mut e) = (stdout, stderr);
    let (mut bo, mut be) = ([0u8; 8192], [0u8; 8192]);
    while o.is_some() || e.is_some() {
        let (n, into) = tokio::select! {
            r = async { o.as_mut().expect("guarded").read(&mut bo).await }, if o.is_some() => {
                let n = r.unwrap_or(0);
                if n == 0 { o = None; }
                (n, 0)
            }
            r = async { e.as_mut().expect("guarded").read(&mut be).await }, if e.is_some() => {
                let n = r.unwrap_or(0);
                if n == 0 { e = None; }
                (n, 1)
            }
        };
        let room = cap.saturating_sub(out.len() + err.len());
        let (buf, src) = if into == 0 { (&mut out, &bo) } else { (&mut err, &be) };
        buf.extend_from_slice(&src[..n.min(room)]);
        if n > room {
            kill_group(pgid);
            return (out, err, true);
        }
    }
    (out, err, false)
}

/// Whether this process runs as root (effective uid 0).
pub(super) fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Tasks (processes and threads) of this process's real user, from `/proc`.
pub(super) fn user_tasks() -> u64 {
    // SAFETY: getuid has no arguments and cannot fail.
    let uid = unsafe { libc::getuid() }.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    let mut tasks = 0u64;
    for entry in dir.flatten() {
        let path: PathBuf = entry.path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else { continue };
        let mut lines = status.lines();
        let real_uid = lines.clone().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
        if real_uid == Some(uid.as_str()) {
            tasks += lines.find_map(|l| l.strip_prefix("Threads:")).and_then(|t| t.trim().parse().ok()).unwrap_or(1);
        }
    }
    tasks
}
