//! The child's side: what runs between `fork` and `exec` (`CommandExt::pre_exec`). Only
//! async-signal-safe system calls, no allocation, no locks: the parent is multi-threaded, so
//! another thread may have held the allocator's lock at the fork.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use seccompiler::BpfProgram;

use super::Limits;

/// What the child applies to itself, prepared by the parent.
#[derive(Debug)]
pub struct Confinement {
    /// rlimits (resource, value) applied as both soft and hard limits.
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    /// Drop every capability (kafclaw runs as root).
    pub drop_capabilities: bool,
    /// The Landlock ruleset to enter (none: `sandbox = "none"`).
    pub landlock: Option<OwnedFd>,
    /// Seccomp programs to install, in order.
    pub seccomp: Vec<BpfProgram>,
    /// The `cgroup.procs` file of the run's `pids` control group, if one was made.
    pub cgroup: Option<std::ffi::CString>,
    /// The writable trees to remount `noexec` in a mount namespace of the run's own.
    pub mounts: Option<super::mounts::NoexecMounts>,
}

impl Confinement {
    /// The rlimits of `limits` for a run of `cpu_seconds`.
    pub fn rlimits(limits: &Limits, cpu_seconds: u64) -> Vec<(libc::__rlimit_resource_t, libc::rlim_t)> {
        vec![
            (libc::RLIMIT_CPU, cpu_seconds.max(1)),
            (libc::RLIMIT_AS, limits.memory_bytes),
            (libc::RLIMIT_NPROC, limits.processes),
            (libc::RLIMIT_FSIZE, limits.file_bytes),
            (libc::RLIMIT_NOFILE, limits.open_files),
            (libc::RLIMIT_CORE, 0),
        ]
    }

    /// Applies everything, in the child. The order matters: the control group, the mounts,
    /// rlimits and capabilities while
    /// the process may still change them, then Landlock, then seccomp (which would refuse
    /// nothing used afterwards but `execve`, which it allows).
    pub fn apply(&self) -> io::Result<()> {
        if let Some(procs) = &self.cgroup {
            super::cgroup::RunGroup::join(procs)?;
        }
        if let Some(mounts) = &self.mounts {
            mounts.apply()?;
        }
        for (resource, value) in &self.rlimits {
            let limit = libc::rlimit { rlim_cur: *value, rlim_max: *value };
            // SAFETY: setrlimit with a valid pointer to a stack value.
            check(unsafe { libc::setrlimit(*resource, &limit) })?;
        }
        // As root, or holding every capability of a user namespace of its own: none kept.
        if self.drop_capabilities || self.mounts.as_ref().is_some_and(|m| m.map_ids.is_some()) {
            drop_capabilities()?;
        }
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        if let Some(fd) = &self.landlock {
            let fd = fd.as_raw_fd();
            // SAFETY: landlock_restrict_self(ruleset_fd, 0) on a descriptor the parent created.
            let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
            check(rc as libc::c_int)?;
        }
        // Every descriptor past stderr closes at exec (the Landlock one included): an
        // inherited socket or file would be an open door no path rule sees.
        // SAFETY: close_range with integer arguments.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
        check(rc as libc::c_int)?;
        for program in &self.seccomp {
            seccompiler::apply_filter(program).map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
        }
        Ok(())
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `capset`'s header (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `capset`'s data, one per 32 capabilities.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;

/// Empties every capability set and locks root out of regaining them at exec.
fn drop_capabilities() -> io::Result<()> {
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED;
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) })?;
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; EINVAL past the last capability.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) })?;
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset with valid pointers to stack values of the kernel's layout.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    check(rc as libc::c_int)
}
