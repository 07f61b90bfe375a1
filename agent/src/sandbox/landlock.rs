//! The Landlock layer: a ruleset built in the parent (the `landlock` crate, owned by
//! Landlock's maintainer), handed to the child as a descriptor and entered there with the
//! raw `landlock_restrict_self` system call (the crate's own call is not promised to be
//! async-signal-safe, which code between `fork` and `exec` must be).
//!
//! Rights (kernel documentation, `Documentation/userspace-api/landlock.rst`): every access
//! right of ABI 6 is *handled*, so whatever no rule grants is denied: reads beneath
//! [`SYSTEM_READ`], the policy's read paths and its write paths; writes (create, remove,
//! truncate, rename within) beneath the write paths only; execution of the listed files
//! only; TCP connect on the listed ports only and TCP bind nowhere; signals and abstract
//! unix sockets scoped to the sandbox.

use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope,
};

use super::{LANDLOCK_ABI, Policy, SYSTEM_DEVICES, SYSTEM_READ, SandboxError};

/// The ABI the rules are written against (see [`LANDLOCK_ABI`]).
const TARGET: ABI = ABI::V6;

/// The running kernel's Landlock ABI version (0 when Landlock is missing or disabled).
pub fn abi() -> i32 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) reads nothing.
    let v = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    i32::try_from(v).unwrap_or(0).max(0)
}

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

/// Grants `access` beneath `path` (a file gets only the rights a file can have). A missing
/// path is skipped when `optional`.
fn grant(
    ruleset: landlock::RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
    optional: bool,
) -> Result<landlock::RulesetCreated, SandboxError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(ruleset),
        Err(source) => return Err(SandboxError::Path { path: path.to_owned(), source }),
    };
    let access = if meta.is_dir() { access } else { access & AccessFs::from_file(TARGET) };
    let fd = PathFd::new(path)
        .map_err(|e| SandboxError::Path { path: path.to_owned(), source: std::io::Error::other(e.to_string()) })?;
    ruleset.add_rule(PathBeneath::new(fd, access)).map_err(setup)
}

/// Builds the ruleset of `policy` (with the interpreters already added to `policy.exec`).
///
/// Errors: [`SandboxError::Unsupported`] below ABI 6; [`SandboxError::Path`] when a
/// policy path cannot be opened.
pub fn ruleset(policy: &Policy) -> Result<OwnedFd, SandboxError> {
    let found = abi();
    if found < LANDLOCK_ABI {
        let what = if found == 0 { "no Landlock".to_owned() } else { format!("ABI {found}") };
        return Err(SandboxError::Unsupported(what));
    }
    let read = AccessFs::from_read(TARGET) & !AccessFs::Execute;
    // No symlinks made: one with an absolute target (a tar member, `ln -s` past the checks)
    // would name a file out of the root, the ELF interpreter say, by a relative path.
    let write = AccessFs::from_all(TARGET)
        & !(AccessFs::Execute
            | AccessFs::MakeChar
            | AccessFs::MakeBlock
            | AccessFs::MakeFifo
            | AccessFs::MakeSock
            | AccessFs::MakeSym);
    let mut r = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(TARGET))
        .map_err(setup)?
        .handle_access(AccessNet::from_all(TARGET))
        .map_err(setup)?
        .scope(Scope::from_all(TARGET))
        .map_err(setup)?
        .create()
        .map_err(setup)?;
    for p in SYSTEM_READ {
        r = grant(r, Path::new(p), read, true)?;
    }
    for p in SYSTEM_DEVICES {
        r = grant(r, Path::new(p), AccessFs::ReadFile | AccessFs::WriteFile, true)?;
    }
    for p in &policy.read {
        r = grant(r, p, read, false)?;
    }
    for p in &policy.write {
        r = grant(r, p, write, false)?;
    }
    for p in &policy.exec {
        r = grant(r, p, AccessFs::Execute | AccessFs::ReadFile, false)?;
    }
    for port in &policy.connect_tcp {
        r = r.add_rule(NetPort::new(*port, AccessNet::ConnectTcp)).map_err(setup)?;
    }
    Option::<OwnedFd>::from(r).ok_or_else(|| setup("Landlock gave no ruleset descriptor"))
}
