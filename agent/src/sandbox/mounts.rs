//! The mount layer (child side): a mount namespace of the run's own in which every writable
//! tree is remounted `noexec`, `nosuid`, `nodev`. Landlock's execute right covers `execve`
//! but not `mmap(PROT_EXEC)`: without this, a program could write a shared library into its
//! root and have the dynamic loader map it (`LD_PRELOAD=./x`, `ld-linux… ./x`, a gconv
//! module). On a `noexec` mount the kernel refuses both `execve` and executable mappings of
//! its files (mount(2), `MS_NOEXEC`).
//!
//! As root the namespace is made directly; otherwise inside a new user namespace mapping the
//! user to itself (user_namespaces(7)), which needs unprivileged user namespaces. Where
//! neither works the run fails to start: the layer is not skipped silently.
//!
//! Everything here runs between `fork` and `exec`: system calls only, on buffers prepared by
//! the parent or on the stack.

use std::ffi::CString;
use std::io;

/// What the parent prepares: the trees to remount, and the ids to map when not root.
#[derive(Debug)]
pub struct NoexecMounts {
    /// The writable trees, canonical, NUL-terminated.
    pub trees: Vec<CString>,
    /// The working directory to enter again afterwards (the old one is on the old mount).
    pub cwd: CString,
    /// `Some((uid, gid))` when a user namespace is needed (not root).
    pub map_ids: Option<(u32, u32)>,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Writes `text` to the file at `path` (both NUL-terminated or plain bytes on the stack).
fn write_file(path: &[u8], text: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated (checked by the callers' literals); `text` is a slice.
    unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, text.as_ptr().cast(), text.len());
        libc::close(fd);
        if n != text.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `"<id> <id> 1\n"` into `buf`; the used part.
fn id_map(id: u32, buf: &mut [u8; 32]) -> &[u8] {
    let mut digits = [0u8; 10];
    let mut n = id;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    for _ in 0..2 {
        for i in (0..len).rev() {
            buf[at] = digits[i];
            at += 1;
        }
        buf[at] = b' ';
        at += 1;
    }
    buf[at] = b'1';
    buf[at + 1] = b'\n';
    &buf[..at + 2]
}

impl NoexecMounts {
    /// Enters a new mount namespace and remounts every tree `noexec,nosuid,nodev`.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: unshare, mount and chdir with NUL-terminated paths prepared by the parent.
        unsafe {
            match self.map_ids {
                None => check(libc::unshare(libc::CLONE_NEWNS))?,
                Some((uid, gid)) => {
                    check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
                    write_file(b"/proc/self/setgroups\0", b"deny")?;
                    let mut buf = [0u8; 32];
                    write_file(b"/proc/self/uid_map\0", id_map(uid, &mut buf))?;
                    let mut buf = [0u8; 32];
                    write_file(b"/proc/self/gid_map\0", id_map(gid, &mut buf))?;
                }
            }
            // Nothing done here may reach the host's mounts.
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for tree in &self.trees {
                check(libc::mount(
                    tree.as_ptr(),
                    tree.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV;
                check(libc::mount(std::ptr::null(), tree.as_ptr(), std::ptr::null(), flags, std::ptr::null()))?;
            }
            check(libc::chdir(self.cwd.as_ptr()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_are_written_without_allocating() {
        let mut buf = [0u8; 32];
        assert_eq!(id_map(0, &mut buf), b"0 0 1\n");
        let mut buf = [0u8; 32];
        assert_eq!(id_map(4_294_967_295, &mut buf), b"4294967295 4294967295 1\n");
    }
}
