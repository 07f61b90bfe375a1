//! The seccomp layer (the `seccompiler` crate, from Firecracker): system calls Landlock does
//! not govern, refused with `EPERM` (or `ENOSYS` for `clone3`, so that the C library falls
//! back to `clone`, whose flags a filter can read). Every other call is allowed: this is a
//! deny-list on top of Landlock, not the whole sandbox.
//!
//! Refused: namespaces (`unshare`, `setns`, `clone` with a `CLONE_NEW*` flag or
//! `CLONE_PARENT`), mounts and
//! the new mount API, `chroot`, `pivot_root`; `ptrace`, `process_vm_*`, `pidfd_getfd`;
//! `bpf`, `perf_event_open`, `userfaultfd`, io_uring (its socket and connect operations
//! would bypass the socket rule); keyrings; modules, `kexec`, `reboot`, swap, `acct`,
//! `quotactl`; `open_by_handle_at`/`name_to_handle_at` (which open files by inode, around
//! path checks); `setsid`/`setpgid` (which would leave the process group killed at the time
//! limit); metadata changes by path (`chmod`, `chown`, `utimensat` with a path, `setxattr`…:
//! Landlock does not govern them); `memfd_create`; `listen`; and `socket` — any family
//! without network, only `AF_INET`/`AF_INET6` TCP stream sockets with it (not MPTCP; Landlock
//! then limits the ports).
//!
//! On x86-64 the x32 numbers of the same calls (`nr | 0x4000_0000`) are refused too;
//! other architectures' calls are killed by seccompiler's architecture check.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

use super::SandboxError;

/// System calls refused outright.
const DENIED: &[libc::c_long] = &[
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_fanotify_init,
    libc::SYS_setsid,
    libc::SYS_setpgid,
    // Metadata changes by path: Landlock does not govern them, and through a symlink they
    // would reach any file (by descriptor, on a file Landlock let the program open, they
    // stay allowed: fchmod, fchown, futimens, fsetxattr).
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_fchownat,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    // Executable memory from a file of no mount (memfd + fexecve), and listening sockets.
    libc::SYS_memfd_create,
    libc::SYS_listen,
];

/// The x86-64 system calls that aarch64 and riscv64 do not have (their `*at` forms are
/// above).
#[cfg(target_arch = "x86_64")]
const DENIED_LEGACY: &[libc::c_long] =
    &[libc::SYS_chmod, libc::SYS_chown, libc::SYS_lchown, libc::SYS_utime, libc::SYS_utimes, libc::SYS_futimesat];
#[cfg(not(target_arch = "x86_64"))]
const DENIED_LEGACY: &[libc::c_long] = &[];

/// `clone` flags refused: those that create namespaces, and `CLONE_PARENT` (a child of the
/// instance's, which it would never reap).
const CLONE_DENIED: [libc::c_int; 9] = [
    libc::CLONE_PARENT,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
    0x80, // CLONE_NEWTIME
];

/// The x32 ABI bit of x86-64 system call numbers.
#[cfg(target_arch = "x86_64")]
const X32: i64 = 0x4000_0000;

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(format!("seccomp: {e}"))
}

fn arch() -> Result<seccompiler::TargetArch, SandboxError> {
    std::env::consts::ARCH.try_into().map_err(setup)
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(setup)
}

/// Inserts `rules` for `nr` (and its x32 twin). seccompiler supports 64-bit targets only,
/// where `c_long` is `i64`.
fn insert(map: &mut BTreeMap<i64, Vec<SeccompRule>>, nr: libc::c_long, rules: Vec<SeccompRule>) {
    #[cfg(target_arch = "x86_64")]
    map.insert(nr | X32, rules.clone());
    map.insert(nr, rules);
}

/// The `socket` rules: any call without network; with it, anything but an `AF_INET` or
/// `AF_INET6` stream socket.
fn socket_rules(network: bool) -> Result<Vec<SeccompRule>, SandboxError> {
    if !network {
        return Ok(Vec::new());
    }
    let mut rules = vec![
        SeccompRule::new(vec![
            condition(0, SeccompCmpOp::Ne, libc::AF_INET as u64)?,
            condition(0, SeccompCmpOp::Ne, libc::AF_INET6 as u64)?,
        ])
        .map_err(setup)?,
    ];
    // The type's low four bits: every kind but SOCK_STREAM (the high bits are flags).
    for kind in (0..16u64).filter(|k| *k != libc::SOCK_STREAM as u64) {
        rules.push(SeccompRule::new(vec![condition(1, SeccompCmpOp::MaskedEq(0xf), kind)?]).map_err(setup)?);
    }
    // The protocol: TCP itself (0 or IPPROTO_TCP); MPTCP, which Landlock's port rules do not
    // cover, is refused.
    rules.push(
        SeccompRule::new(vec![
            condition(2, SeccompCmpOp::Ne, 0)?,
            condition(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64)?,
        ])
        .map_err(setup)?,
    );
    Ok(rules)
}

/// The filters, compiled in the parent (compiling allocates; the child only installs them).
/// Two programs: the `EPERM` refusals and `clone3` → `ENOSYS`.
pub fn programs(network: bool) -> Result<Vec<BpfProgram>, SandboxError> {
    let mut deny = BTreeMap::new();
    for nr in DENIED.iter().chain(DENIED_LEGACY) {
        insert(&mut deny, *nr, Vec::new());
    }
    // utimensat with a path (futimens passes none, and stays allowed).
    let with_path = SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, 0).map_err(setup)?;
    insert(&mut deny, libc::SYS_utimensat, vec![SeccompRule::new(vec![with_path]).map_err(setup)?]);
    insert(&mut deny, libc::SYS_socket, socket_rules(network)?);
    let clone_rules = CLONE_DENIED
        .iter()
        .map(|flag| {
            let flag = *flag as u64;
            SeccompRule::new(vec![condition(0, SeccompCmpOp::MaskedEq(flag), flag)?]).map_err(setup)
        })
        .collect::<Result<Vec<_>, _>>()?;
    insert(&mut deny, libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(deny, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch()?)
        .map_err(setup)?;
    let mut clone3 = BTreeMap::new();
    insert(&mut clone3, libc::SYS_clone3, Vec::new());
    let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch()?)
        .map_err(setup)?;
    Ok(vec![deny.try_into().map_err(setup)?, clone3.try_into().map_err(setup)?])
}
