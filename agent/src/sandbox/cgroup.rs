//! A `pids` control group per run, where this process may make one: the one bound on the
//! number of processes that holds for root (Linux does not apply `RLIMIT_NPROC` to uid 0),
//! so a fork bomb stops at [`super::Limits::processes`] instead of at the machine's pid limit.
//!
//! Found through `/proc/self/cgroup` and `/proc/self/mountinfo` (cgroup(7)): the v1 `pids`
//! hierarchy, or the v2 unified one when its `cgroup.subtree_control` already enables `pids`
//! (a delegated cgroup). The run's group is `<our group>/kafclaw-<pid>-<n>` with `pids.max`
//! set; the child joins it between `fork` and `exec` by writing `0` to its `cgroup.procs`.
//! Where none can be made (no controller, no permission), runs go without, and the process
//! group kill at the time limit still ends everything.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A run's control group; removed when dropped (after its processes are gone).
#[derive(Debug)]
pub struct RunGroup {
    dir: PathBuf,
    /// `<dir>/cgroup.procs`, for the child to open without allocating.
    pub procs: CString,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Where this process's `pids` controller sits, if it can be written (computed once).
fn base() -> Option<&'static Path> {
    static BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(find).as_deref()
}

fn find() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let v1 = controllers.split(',').any(|c| c == "pids");
        let v2 = controllers.is_empty();
        if !v1 && !v2 {
            continue;
        }
        for m in mounts.lines() {
            // mountinfo: id parent major:minor root mount-point options - fstype source super-options
            let fields: Vec<&str> = m.split_whitespace().collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
            let (Some(point), Some(fstype), Some(options)) =
                (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
            else {
                continue;
            };
            let fits =
                if v1 { *fstype == "cgroup" && options.split(',').any(|o| o == "pids") } else { *fstype == "cgroup2" };
            if !fits {
                continue;
            }
            let dir = Path::new(point).join(path.trim_start_matches('/'));
            let usable = if v1 {
                dir.join("pids.max").exists() || dir.join("tasks").exists()
            } else {
                std::fs::read_to_string(dir.join("cgroup.subtree_control")).is_ok_and(|s| s.contains("pids"))
            };
            if usable && writable(&dir) {
                return Some(dir);
            }
        }
    }
    None
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!("kafclaw-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

/// Whether runs get a `pids` control group here.
pub fn available() -> bool {
    base().is_some()
}

impl RunGroup {
    /// A new group allowing `processes` tasks, or none where none can be made.
    pub fn new(processes: u64) -> Option<Self> {
        let base = base()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("kafclaw-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let group =
            Self { procs: CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok()?, dir };
        std::fs::write(group.dir.join("pids.max"), processes.to_string()).ok()?;
        Some(group)
    }

    /// Kills every process of the group (a v2 group's `cgroup.kill`, else each pid listed).
    pub fn kill_all(&self) {
        kill_dir(&self.dir);
    }

    /// The group's folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Joins the group: the child's first step (open, write, close: async-signal-safe).
    pub fn join(procs: &CString) -> std::io::Result<()> {
        // SAFETY: a NUL-terminated path; a one-byte buffer on the stack.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rc = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if rc != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Kills every process of the group at `dir` (a v2 group's `cgroup.kill`, else each pid
/// listed).
pub fn kill_dir(dir: &std::path::Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill with integer arguments.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl Drop for RunGroup {
    fn drop(&mut self) {
        // A group can be removed once its last process is reaped; killed ones go quickly.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            self.kill_all();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        tracing::warn!(group = %self.dir.display(), "a tool run's pids cgroup could not be removed");
    }
}
