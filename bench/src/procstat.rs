//! What a process used, from /proc: CPU seconds (user + system, all its threads, or per
//! thread) and resident memory (current and peak). Linux only; ticks of 10 ms.

use anyhow::{Context, Result};

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process's use of the machine so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU seconds, user + system, all threads.
    pub cpu_secs: f64,
    /// Resident memory now (VmRSS), MiB.
    pub rss_mb: f64,
    /// Peak resident memory (VmHWM), MiB.
    pub peak_rss_mb: f64,
}

/// The usage of process `pid`. Errors: its /proc files unreadable (the process is gone).
pub fn usage(pid: u32) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    let cpu_secs = stat_cpu_secs(&stat, 11);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or_default()
    };
    Ok(Usage { cpu_secs, rss_mb: kb("VmRSS:") / 1024.0, peak_rss_mb: kb("VmHWM:") / 1024.0 })
}

/// The first process whose command name is `comm` (the broker, to count its CPU too).
pub fn find(comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (name.trim() == comm).then_some(pid)
    })
}

/// Two CPU fields of a `/proc/.../stat` text, in seconds: counted from the field after the
/// command name (which may hold spaces), so `first` 11 is utime + stime (fields 14, 15) and 13
/// cutime + cstime (16, 17).
fn stat_cpu_secs(stat: &str, first: usize) -> f64 {
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or_default();
    (tick(first) + tick(first + 1)) / TICKS_PER_SECOND
}

/// CPU seconds of this process's waited-for children (cutime + cstime of /proc/self/stat): the
/// difference around one child's run and wait is that child's CPU, read after it exited.
pub fn children_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat").map_or(0.0, |s| stat_cpu_secs(&s, 13))
}

/// CPU seconds of this whole process (all threads, live and exited).
pub fn self_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat").map_or(0.0, |s| stat_cpu_secs(&s, 11))
}

/// One live thread of this process: its id, name (`comm`, e.g. librdkafka's `rdk:mock`) and
/// CPU seconds so far.
#[derive(Debug, Clone)]
pub struct Thread {
    /// Thread id.
    pub tid: u32,
    /// Thread name (`comm`).
    pub name: String,
    /// CPU seconds, user + system.
    pub cpu_secs: f64,
}

/// The live threads of this process (/proc/self/task).
pub fn threads() -> Vec<Thread> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?.trim().to_owned();
            let cpu_secs = stat_cpu_secs(&std::fs::read_to_string(e.path().join("stat")).ok()?, 11);
            Some(Thread { tid, name, cpu_secs })
        })
        .collect()
}
