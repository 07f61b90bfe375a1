//! Long-lived programs in a prepared [`Sandbox`]: the stdio servers of MCP tools
//! (`tools::mcp`). The same child side as [`Sandbox::run`] (process group, rlimits, no
//! capabilities, Landlock, seccomp, `noexec` writable trees, a `pids` control group where one
//! can be made), with three differences a server needs:
//!
//! - stdin, stdout and stderr are pipes handed to the caller (the MCP stdio transport:
//!   newline-delimited JSON-RPC on stdin/stdout, logs on stderr);
//! - no CPU-time limit (`RLIMIT_CPU` unlimited: the server lives as long as the instance; the
//!   per-call time limit is the tool's `timeout`);
//! - the child asks the kernel for `SIGKILL` when the thread that started it ends
//!   (`PR_SET_PDEATHSIG`); [`Served`] kills the whole process group and control group when
//!   dropped, and [`stop_all`] kills every server still running (the binary calls it before
//!   it exits, since `std::process::exit` runs no destructor), so neither a server nor a
//!   process it started outlives an instance that ends. An instance killed with `SIGKILL`
//!   takes its servers with it (the parent-death signal), not the processes they started:
//!   those stay confined (same sandbox and `pids` group) until they end (docs/mcp.md).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::cgroup::RunGroup;
use super::run::{Sandbox, SpawnError, kill_group, spawn};

/// A running server: its process (stdio taken by the caller) and everything that ends it.
/// Dropping it kills the process group (and the control group's processes).
#[derive(Debug)]
pub struct Served {
    /// The server process; `stdin`, `stdout` and `stderr` are pipes.
    pub child: tokio::process::Child,
    pgid: Option<i32>,
    group: Option<RunGroup>,
    /// Its entry in [`LIVE`].
    entry: u64,
}

/// A server running in this process: its entry, process group and control group folder.
type LiveServer = (u64, Option<i32>, Option<PathBuf>);

/// The servers running in this process.
static LIVE: Mutex<Vec<LiveServer>> = Mutex::new(Vec::new());
static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);

/// Kills every server still running and every process in their groups (process group and
/// control group), and removes the control groups it can. For the end of the process
/// (`std::process::exit` runs no destructor); a [`Served`] dropped afterwards finds nothing
/// left to kill.
pub fn stop_all() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|p| p.into_inner()));
    for (_, pgid, dir) in &live {
        kill_group(*pgid);
        if let Some(dir) = dir {
            super::cgroup::kill_dir(dir);
        }
    }
    // A group can be removed once its processes are reaped; killed ones go within
    // milliseconds (the kernel reaps those whose parent, this process, exits).
    for (_, _, dir) in &live {
        if let Some(dir) = dir {
            for _ in 0..20 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

impl Served {
    /// The server's process id (its process group's id too).
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).retain(|(e, _, _)| *e != self.entry);
        kill_group(self.pgid);
        if let Some(group) = self.group.take() {
            group.kill_all();
            // Removing the group waits for its processes to be reaped: off any runtime.
            std::thread::spawn(move || drop(group));
        }
    }
}

impl Sandbox {
    /// Starts `program` with `args` in `cwd`, with exactly the environment `env`, its stdio
    /// piped, as a long-lived server (see the [module docs](self)). Must be called from a
    /// thread that lives as long as the server should (the parent-death signal is tied to
    /// it) and inside a tokio runtime (the pipes are registered with it).
    ///
    /// Errors: [`SpawnError`] when the program cannot start (not found, not executable, the
    /// sandbox refused it).
    pub fn serve(
        &self,
        program: &Path,
        args: &[String],
        cwd: &Path,
        env: &[(String, String)],
    ) -> Result<Served, SpawnError> {
        let (confinement, group) = self.confinement(program, cwd, None)?;
        let confinement = Arc::new(confinement);
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child_side = Arc::clone(&confinement);
        // SAFETY: prctl and `apply` make only async-signal-safe system calls and do not
        // allocate.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                child_side.apply()
            });
        }
        let child = cmd.spawn().map_err(|e| spawn(program, e))?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        let entry = NEXT_ENTRY.fetch_add(1, Ordering::Relaxed);
        let dir = group.as_ref().map(|g| g.dir().to_path_buf());
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).push((entry, pgid, dir));
        Ok(Served { child, pgid, group, entry })
    }
}
