//! Kernel-checked file access beneath a root (Linux): every open is one `openat2` from a
//! descriptor of the root with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so the kernel
//! resolves the whole path, symlinks included, and refuses any step out of the root in the
//! same call that opens the file — there is no "check the path, then open it again" window.
//!
//! `RESOLVE_NO_XDEV` is not set: a mount point under the root can only be made by the
//! host's administrator (never by a model through these tools), and refusing to cross it
//! would break roots holding mounted volumes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Every resolution stays beneath the directory it starts from and never follows a
/// `/proc` magic link (`/proc/self/root`, `/proc/self/fd/N`, …). An absolute symlink is
/// refused too, even one naming a place inside the root (the kernel cannot tell).
fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

/// The step that failed (for the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Opening the configured root.
    Root,
    /// Opening the file to read.
    Open,
    /// Reading it.
    Read,
    /// Opening the folder a write goes to.
    Folder,
    /// Creating the temporary file.
    Temp,
    /// Writing the temporary file.
    Write,
    /// Renaming it onto the final name.
    Rename,
}

/// Why an access failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// A system call failed.
    Os(Step, Errno),
    /// The path names something other than a regular file (what it is).
    NotRegular(&'static str),
    /// The file is larger than the cap (its size, when `fstat` already said so; `None` when it
    /// grew while being read).
    TooBig(Option<u64>),
    /// The path names no file (`.`).
    NoName,
}

impl Failure {
    /// The text handed to the model. `arg` is the path as the model gave it (already made
    /// printable); no host path appears (errno texts carry none).
    pub(super) fn message(&self, arg: &str, max: u64) -> String {
        match self {
            Self::Os(Step::Root, e) => format!("the tool's root folder cannot be opened: {e}"),
            Self::Os(_, Errno::XDEV) => format!(
                "refused: `{arg}` resolves outside the tool's root (a symlink on the path points out of it, \
                 or is absolute — absolute symlinks are refused even when they point inside)"
            ),
            Self::Os(_, Errno::LOOP) => {
                format!("refused: `{arg}` goes through a /proc magic link or a loop of symlinks")
            }
            Self::Os(_, Errno::NOSYS) => "refused: this kernel lacks openat2 (Linux 5.6 or later is needed)".into(),
            Self::Os(_, Errno::NAMETOOLONG) => {
                format!("refused: `{arg}` is too long (a name over 255 bytes or a path over 4095)")
            }
            Self::Os(_, Errno::NOTDIR) => format!("`{arg}`: a folder on the path is not a folder"),
            Self::Os(Step::Open, Errno::NOENT) => format!("`{arg}`: no such file"),
            Self::Os(Step::Folder, Errno::NOENT) => {
                format!("`{arg}`: its folder does not exist (fs_write does not create folders)")
            }
            Self::Os(_, Errno::ISDIR) => format!("`{arg}` is a folder, not a file"),
            Self::Os(Step::Temp, Errno::EXIST) => {
                format!("`{arg}`: no free temporary name in its folder (try again)")
            }
            Self::Os(_, e) => format!("`{arg}`: {e}"),
            Self::NotRegular(kind) => format!("`{arg}` is not a regular file (it is {kind}); only files are read"),
            Self::TooBig(Some(size)) => format!("`{arg}` has {size} bytes, more than the {max} allowed"),
            Self::TooBig(None) => format!("`{arg}` has more than the {max} bytes allowed (it grew while read)"),
            Self::NoName => format!("`{arg}` names no file"),
        }
    }
}

/// `openat2(dir, rel, flags | O_CLOEXEC, mode, resolve())`, retried on `EAGAIN` (the kernel
/// saw a concurrent rename and could not rule out an escape) and `EINTR`, a few times.
fn beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, mode, resolve()) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

/// The configured root, as a descriptor every resolution starts from. The root's own path is
/// the administrator's (symlinks in it are followed); it is opened on each call, so a root
/// created or replaced after the tool was built is the one used.
fn open_root(root: &Path) -> Result<OwnedFd, Failure> {
    rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Failure::Os(Step::Root, e))
}

/// What a non-regular file is, for the message.
fn kind(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "a folder",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symlink",
        _ => "not a regular file",
    }
}

/// Reads the regular file `rel` beneath `root`: at most `max` bytes.
///
/// The open is non-blocking and never makes a terminal the controlling one, so a FIFO or a
/// device node opens at once and is refused by `fstat` before any read.
pub(super) fn read(root: &Path, rel: &Path, max: u64) -> Result<Vec<u8>, Failure> {
    let root = open_root(root)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = beneath(root.as_fd(), rel, flags, Mode::empty()).map_err(|e| Failure::Os(Step::Open, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Failure::Os(Step::Open, e))?;
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(Failure::NotRegular(kind(t)));
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > max {
        return Err(Failure::TooBig(Some(size)));
    }
    read_capped(File::from(fd), max, size)
}

/// Reads `file` through its descriptor, never more than `max + 1` bytes: the cap holds even
/// when the file grew after `fstat` (or, like a /proc file, reports a size of 0).
pub(super) fn read_capped(file: File, max: u64, size_hint: u64) -> Result<Vec<u8>, Failure> {
    let cap = usize::try_from(size_hint.min(max)).unwrap_or(0).saturating_add(1).min(1 << 24);
    let mut buf = Vec::with_capacity(cap);
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Failure::Os(Step::Read, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    if buf.len() as u64 > max {
        return Err(Failure::TooBig(None));
    }
    Ok(buf)
}

/// Splits `rel` into its folder (`.` when none) and its last name.
fn split(rel: &Path) -> Result<(PathBuf, &std::ffi::OsStr), Failure> {
    let mut parts: Vec<Component<'_>> = rel.components().collect();
    let Some(Component::Normal(name)) = parts.pop() else {
        return Err(Failure::NoName);
    };
    let folder: PathBuf = parts.iter().collect();
    Ok((if folder.as_os_str().is_empty() { PathBuf::from(".") } else { folder }, name))
}

/// Writes `content` to `rel` beneath `root`, replacing the file atomically. The folder must
/// exist (it is not created). A symlink at the final name is replaced, not followed; a hard
/// link there is replaced too (the other names of the old file keep the old content).
pub(super) fn write(root: &Path, rel: &Path, content: &[u8]) -> Result<(), Failure> {
    let (folder, name) = split(rel)?;
    let root = open_root(root)?;
    let dir = beneath(root.as_fd(), &folder, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| Failure::Os(Step::Folder, e))?;
    write_in(dir.as_fd(), name, content, &mut temp_names())
}

/// Fresh temporary names: hidden, with 64 random bits (fastrand's per-thread generator is
/// seeded from the OS), so a name cannot be planted in advance; a collision is skipped anyway.
fn temp_names() -> impl Iterator<Item = String> {
    std::iter::repeat_with(|| format!(".kafclaw-tmp.{:016x}", fastrand::u64(..)))
}

/// The write proper, in the folder `dir`: a temporary file created there (`O_CREAT | O_EXCL |
/// O_NOFOLLOW`: a name already taken — by a file, a symlink, anything — is never opened, the
/// next name is tried), written, then renamed onto `name` within `dir`. The temporary file is
/// removed on any failure.
pub(super) fn write_in(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    content: &[u8],
    names: &mut dyn Iterator<Item = String>,
) -> Result<(), Failure> {
    let (file, temp) = create_temp(dir, names)?;
    let mut temp = Temp { dir, name: Some(temp) };
    (&file).write_all(content).map_err(|e| Failure::Os(Step::Write, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    drop(file);
    let from = temp.name.as_deref().unwrap_or_default();
    rustix::fs::renameat(dir, from, dir, name).map_err(|e| Failure::Os(Step::Rename, e))?;
    temp.name = None;
    Ok(())
}

/// Creates the temporary file under the first free name `names` gives (16 tries).
fn create_temp(dir: BorrowedFd<'_>, names: &mut dyn Iterator<Item = String>) -> Result<(File, String), Failure> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::NOCTTY;
    for name in names.take(16) {
        match beneath(dir, Path::new(&name), flags, Mode::from_raw_mode(0o666)) {
            Ok(fd) => return Ok((File::from(fd), name)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(Failure::Os(Step::Temp, e)),
        }
    }
    Err(Failure::Os(Step::Temp, Errno::EXIST))
}

/// A temporary file, unlinked on drop unless renamed.
struct Temp<'a> {
    dir: BorrowedFd<'a>,
    name: Option<String>,
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = rustix::fs::unlinkat(self.dir, name.as_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("kafclaw-tmp"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_taken_temporary_name_is_skipped_never_opened() {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&outside, "outside").unwrap();
        // The first two names are taken: a symlink out of the root, then a plain file.
        std::os::unix::fs::symlink(&outside, root.join("t1")).unwrap();
        std::fs::write(root.join("t2"), "someone's").unwrap();
        let dir = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut names = ["t1", "t2", "t3"].into_iter().map(String::from);
        write_in(dir.as_fd(), "note.txt".as_ref(), b"new", &mut names).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "outside");
        assert_eq!(std::fs::read_to_string(root.join("t2")).unwrap(), "someone's");
        assert!(std::fs::symlink_metadata(root.join("t1")).unwrap().file_type().is_symlink());
        assert!(!root.join("t3").exists(), "the temporary file was renamed");
        assert_eq!(std::fs::read_to_string(root.join("note.txt")).unwrap(), "new");
        // Every name taken: refused, nothing written.
        let mut names = ["t1", "t2"].into_iter().map(String::from);
        let e = write_in(dir.as_fd(), "other.txt".as_ref(), b"x", &mut names).unwrap_err();
        assert!(e.message("other.txt", 0).contains("no free temporary name"), "{e:?}");
        assert!(!root.join("other.txt").exists());
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("folder")).unwrap();
        let dir = rustix::fs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let e = write_in(dir.as_fd(), "folder".as_ref(), b"x", &mut temp_names()).unwrap_err();
        assert!(matches!(e, Failure::Os(Step::Rename, Errno::ISDIR)), "{e:?}");
        assert_eq!(leftovers(d.path()), Vec::<String>::new());
    }

    #[test]
    fn the_read_cap_is_enforced_by_reading_not_by_fstat() {
        // /proc files report a size of 0: only the capped read can catch them.
        let file = File::open("/proc/self/status").unwrap();
        assert!(matches!(read_capped(file, 16, 0), Err(Failure::TooBig(None))));
        let file = File::open("/proc/self/status").unwrap();
        assert!(read_capped(file, 1 << 20, 0).unwrap().len() > 16);
    }

    #[test]
    fn split_names_the_folder_and_the_file() {
        let (f, n) = split(Path::new("a/b/c.txt")).unwrap();
        assert_eq!((f.as_path(), n), (Path::new("a/b"), "c.txt".as_ref()));
        let (f, n) = split(Path::new("./c.txt")).unwrap();
        assert_eq!((f.as_path(), n), (Path::new("."), "c.txt".as_ref()));
        let (f, _) = split(Path::new("c.txt")).unwrap();
        assert_eq!(f, Path::new("."));
        assert!(matches!(split(Path::new(".")), Err(Failure::NoName)));
    }
}
