//! The OS sandbox of every program a tool starts (`shell` today, MCP stdio servers later).
//!
//! A model's tool calls are an attacker's: the argument checks of a tool are a first,
//! explainable refusal, and this module is what holds when they miss something (an
//! allow-listed program that interprets its own options: `sed 1e`, `find -exec`,
//! `sort --output`, `tar --to-command`, …). Layers, each set up in the child between `fork`
//! and `exec` ([`child`]), in this order:
//!
//! 1. **A process group of its own**, killed whole (`kill(-pgid, SIGKILL)`) at the time limit,
//!    at the output cap and after every run, so no child outlives its call; `setsid` and
//!    `setpgid` are refused by the seccomp layer, so no descendant leaves the group.
//! 2. **rlimits** ([`Limits`]): CPU seconds, address space, processes, file size, open files,
//!    no core dumps; and, where this process can make one, a `pids` control group per run
//!    ([`cgroup`]), the bound on processes that also holds for root.
//! 3. **No capabilities** when kafclaw runs as root: bounding, ambient, effective, permitted
//!    and inheritable sets emptied, `SECBIT_NOROOT` locked, so a child cannot raise its
//!    rlimits back or override file permissions.
//! 4. **Landlock** ([`landlock`], the kernel's unprivileged access control, ABI ≥ 6 required):
//!    reads only the system's library and data trees ([`SYSTEM_READ`]: not the program
//!    folders) and [`Policy::read`], writes only
//!    [`Policy::write`], **executes only [`Policy::exec`]** (the allow-listed binaries and the
//!    ELF interpreter they name), connects and binds TCP only on [`Policy::connect_tcp`], sends
//!    no signal and reaches no abstract unix socket outside its own sandbox, and cannot ptrace
//!    (or read `/proc/<pid>/environ` of) any process outside it.
//! 5. **seccomp** ([`seccomp`]) for what Landlock does not cover: sockets (none without
//!    network, TCP only with it: no UDP, no unix, no raw, no netlink), io_uring (which would
//!    bypass the socket rule), namespaces, mounts, ptrace, bpf, keyrings, kernel modules,
//!    `open_by_handle_at`, `setsid`/`setpgid`.
//! 6. Inherited descriptors are marked close-on-exec (`close_range`), so a child cannot use
//!    an open Kafka socket or RocksDB file of the instance.
//!
//! The parent side ([`run`]) reads stdout and stderr up to [`Limits::output_bytes`] in all
//! and says when it truncated.
//!
//! Limits (docs/security.md): as root, Linux does not enforce `RLIMIT_NPROC`: without a
//! `pids` control group a fork bomb is bounded by the time limit, not by a count; names resolve only through files (no UDP
//! means no DNS); a hard link placed in the root beforehand is a file of the root.

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod child;
#[cfg(target_os = "linux")]
pub mod elf;
#[cfg(target_os = "linux")]
mod landlock;
#[cfg(target_os = "linux")]
mod mounts;
#[cfg(target_os = "linux")]
pub mod run;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
pub mod serve;

use std::path::PathBuf;

use serde::Deserialize;

/// Kills every long-lived program a tool started (MCP stdio servers) and what they started:
/// for the end of the process, before `std::process::exit` (which runs no destructor).
pub fn stop_servers() {
    #[cfg(target_os = "linux")]
    serve::stop_all();
}

/// The Landlock ABI the sandbox needs: 6 (Linux 6.12) adds the signal and abstract unix
/// socket scopes; without them a tool's child could signal the instance.
pub const LANDLOCK_ABI: i32 = 6;

/// Paths every sandboxed program may read: the system's library and data trees and the few
/// files of `/etc` that the C library reads (the dynamic loader's cache, names of users and
/// groups, the time zone). Paths missing on a machine are skipped.
///
/// The program folders (`/usr/bin`, `/usr/sbin`, `/bin`, `/sbin`, `/usr/libexec`) are left
/// out on purpose: the ELF interpreter must be executable for any dynamic binary to start,
/// and run directly (`ld-linux-x86-64.so.2 /usr/bin/id`) it would load any program it can
/// read. Only the allow-listed binaries are readable there.
pub const SYSTEM_READ: [&str; 19] = [
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/usr/share",
    "/usr/local/lib",
    "/usr/local/share",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
];

/// Device files every sandboxed program may read and write.
pub const SYSTEM_DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];

/// Whether a tool's programs run in the kernel sandbox (`sandbox = "kernel"`, the default)
/// or not at all (`sandbox = "none"`: an explicit opt-out, for kernels without Landlock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Landlock, seccomp, rlimits, no capabilities, a process group.
    #[default]
    Kernel,
    /// No kernel layers (the argument checks, the time limit, the process group and the
    /// output cap still apply).
    None,
}

/// Resource limits of one tool run (`[tools.<name>.limits]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes of stdout and stderr handed back, in all; past it the run is stopped and the
    /// result says so. Default 1 MiB.
    pub output_bytes: u64,
    /// Address space of each process (`RLIMIT_AS`), in bytes. Default 1 GiB.
    pub memory_bytes: u64,
    /// Processes (and threads) of the user at once (`RLIMIT_NPROC`; not enforced by Linux
    /// for root). Default 64.
    pub processes: u64,
    /// Largest file a run may write (`RLIMIT_FSIZE`), in bytes. Default 64 MiB.
    pub file_bytes: u64,
    /// Open files per process (`RLIMIT_NOFILE`). Default 256.
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { output_bytes: 1 << 20, memory_bytes: 1 << 30, processes: 64, file_bytes: 64 << 20, open_files: 256 }
    }
}

/// What a sandboxed program may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Trees and files readable (besides [`SYSTEM_READ`] and [`SYSTEM_DEVICES`]).
    pub read: Vec<PathBuf>,
    /// Trees writable (and readable).
    pub write: Vec<PathBuf>,
    /// Files that may be executed: canonical paths of ELF binaries; the interpreter each
    /// names (`PT_INTERP`) is added when the sandbox is prepared.
    pub exec: Vec<PathBuf>,
    /// TCP ports the programs may connect to (any address); empty: no network at all.
    pub connect_tcp: Vec<u16>,
    /// Resource limits.
    pub limits: Limits,
}

/// Why a sandbox cannot be prepared: the tool refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel lacks Landlock, or an ABI older than [`LANDLOCK_ABI`].
    #[error(
        "the kernel sandbox needs Landlock ABI {LANDLOCK_ABI} (Linux 6.12+); this kernel has {0}; set `sandbox = \"none\"` on the tool to run its programs without it"
    )]
    Unsupported(String),
    /// A path of the policy could not be opened.
    #[error("sandbox path {path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An executable is not an ELF binary of this machine (a script needs its interpreter,
    /// which would then be executable by anything in the sandbox).
    #[error("{0}")]
    Executable(String),
    /// Landlock or seccomp refused the rules (a bug or a kernel quirk).
    #[error("sandbox setup: {0}")]
    Setup(String),
}

/// What this kernel offers the sandbox: the Landlock ABI version (0: none).
pub fn landlock_abi() -> i32 {
    #[cfg(target_os = "linux")]
    {
        landlock::abi()
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Whether [`Limits::processes`] binds here: `RLIMIT_NPROC` binds every user but root, and a
/// `pids` control group binds root too.
pub fn processes_bounded() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: geteuid has no arguments and cannot fail.
        (unsafe { libc::geteuid() } != 0) || cgroup::available()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// A one-line account of the sandbox on this machine, for `validate` and `version`.
pub fn support() -> Result<String, SandboxError> {
    match landlock_abi() {
        abi if abi >= LANDLOCK_ABI => Ok(format!(
            "kernel sandbox available (Landlock ABI {abi}, seccomp); process count {}",
            if processes_bounded() { "bounded" } else { "not bounded (root without a pids cgroup)" }
        )),
        0 => Err(SandboxError::Unsupported("no Landlock".into())),
        abi => Err(SandboxError::Unsupported(format!("ABI {abi}"))),
    }
}
