//! `fs_read` and `fs_write`: files under a root, held against a hostile model.
//!
//! A path is first checked lexically (relative, no `..`, not empty, no NUL byte); then every
//! open is a single `openat2` from a descriptor of the root with `RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS` (`beneath.rs`): the kernel resolves the path, symlinks included, and
//! refuses any step out of the root in the very call that opens the file, so swapping a folder
//! for a symlink mid-call cannot make it escape. Consequences, by design:
//!
//! - a symlink inside the root works when it is relative and stays inside; an absolute
//!   symlink is refused even when it names a place inside the root, and so is any
//!   `/proc` magic link (`/proc/self/root`, `/proc/self/fd/N`);
//! - `fs_read` returns regular files only (a FIFO or a device is refused without blocking)
//!   and never reads more than `max_bytes + 1` bytes, even from a file that grows;
//! - `fs_write` writes a temporary file with a random name created with `O_CREAT | O_EXCL |
//!   O_NOFOLLOW` in the target's folder, then renames it onto the final name within that
//!   folder: a symlink or a hard link at the final name is replaced, never written through.
//!   The folder must exist (none is created). Content over `max_bytes` is refused;
//! - a hard link inside the root to a file outside it (made beforehand by someone else) is a
//!   file of the root: it is read; a write replaces it and leaves the other file untouched.
//!
//! Errors are text for the model: they quote the path it gave, never a host path.

#[cfg(target_os = "linux")]
mod beneath;

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{CallContext, Tool, ToolFuture, ToolOutput, relative_path};

/// Default largest content `fs_write` accepts, in bytes (1 MiB).
pub const DEFAULT_WRITE_MAX_BYTES: u64 = 1024 * 1024;

/// `DEFAULT_WRITE_MAX_BYTES`, for serde.
pub(crate) fn default_write_max_bytes() -> u64 {
    DEFAULT_WRITE_MAX_BYTES
}

/// The path as the model gave it, for a message: control characters escaped, cut after 120
/// characters.
fn shown(arg: &str) -> String {
    let mut s = String::new();
    for (i, c) in arg.chars().enumerate() {
        if i == 120 {
            s.push('…');
            break;
        }
        if c.is_control() { s.extend(c.escape_debug()) } else { s.push(c) }
    }
    s
}

/// The lexical checks: [`relative_path`] first, then no NUL byte (the kernel takes C strings).
fn checked(arg: &str) -> Result<PathBuf, String> {
    let rel = relative_path(arg)?;
    if arg.contains('\0') {
        return Err(format!("refused: `{}` contains a NUL byte", shown(arg)));
    }
    Ok(rel)
}

/// Where the kernel checks are missing: every call is refused.
#[cfg(not(target_os = "linux"))]
mod beneath {
    use std::path::Path;

    /// Why an access failed: always the platform.
    #[derive(Debug)]
    pub(super) struct Failure;

    impl Failure {
        pub(super) fn message(&self, _: &str, _: u64) -> String {
            "refused: fs tools need Linux (openat2, 5.6 or later)".into()
        }
    }

    pub(super) fn read(_: &Path, _: &Path, _: u64) -> Result<Vec<u8>, Failure> {
        Err(Failure)
    }

    pub(super) fn write(_: &Path, _: &Path, _: &[u8]) -> Result<(), Failure> {
        Err(Failure)
    }
}

/// `fs_read`.
#[derive(Debug)]
pub struct FsRead {
    root: PathBuf,
    max_bytes: u64,
    description: Option<String>,
}

impl FsRead {
    /// A reader jailed to `root`, returning files of at most `max_bytes`.
    pub fn new(root: PathBuf, max_bytes: u64, description: Option<String>) -> Self {
        Self { root, max_bytes, description }
    }

    /// Reads `path` (relative to the root): a regular UTF-8 file of at most `max_bytes`.
    pub fn read(&self, path: &str) -> Result<String, String> {
        let rel = checked(path)?;
        let bytes =
            beneath::read(&self.root, &rel, self.max_bytes).map_err(|f| f.message(&shown(path), self.max_bytes))?;
        String::from_utf8(bytes).map_err(|_| format!("`{}` is not UTF-8 text", shown(path)))
    }
}

fn path_arg(args: &Value) -> Result<String, String> {
    args["path"].as_str().map(str::to_owned).ok_or_else(|| "argument `path` (a string) is missing".to_owned())
}

impl Tool for FsRead {
    fn description(&self) -> String {
        self.description.clone().unwrap_or_else(|| "Read a text file, by path relative to the notes folder.".into())
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    }
    fn side_effects(&self) -> bool {
        false
    }
    fn call(&self, args: Value, _: CallContext) -> ToolFuture {
        let result = path_arg(&args).and_then(|p| self.read(&p));
        Box::pin(async move { result.map(ToolOutput::from) })
    }
}

/// `fs_write`.
#[derive(Debug)]
pub struct FsWrite {
    root: PathBuf,
    max_bytes: u64,
    description: Option<String>,
}

impl FsWrite {
    /// A writer jailed to `root`, accepting content of at most `max_bytes`.
    pub fn new(root: PathBuf, max_bytes: u64, description: Option<String>) -> Self {
        Self { root, max_bytes, description }
    }

    /// Writes `content` to `path` (relative to the root; its folder must exist), atomically
    /// (a temporary file in the same folder, then a rename).
    pub fn write(&self, path: &str, content: &str) -> Result<String, String> {
        let rel = checked(path)?;
        if content.len() as u64 > self.max_bytes {
            return Err(format!(
                "refused: the content has {} bytes, more than the {} fs_write allows",
                content.len(),
                self.max_bytes
            ));
        }
        beneath::write(&self.root, &rel, content.as_bytes()).map_err(|f| f.message(&shown(path), self.max_bytes))?;
        Ok(format!("wrote {} bytes to {}", content.len(), shown(path)))
    }
}

impl Tool for FsWrite {
    fn description(&self) -> String {
        self.description.clone().unwrap_or_else(|| "Write a text file, by path relative to the work folder.".into())
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"]})
    }
    fn side_effects(&self) -> bool {
        true
    }
    fn idempotent(&self) -> bool {
        // Writing the same content to the same path twice leaves the same file.
        true
    }
    fn call(&self, args: Value, _: CallContext) -> ToolFuture {
        let result = path_arg(&args).and_then(|p| {
            let content = args["content"].as_str().ok_or("argument `content` (a string) is missing")?;
            self.write(&p, content)
        });
        Box::pin(async move { result.map(ToolOutput::from) })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::path::Path;

    use super::*;

    fn jail() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/note.txt"), "inside").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
        (dir, root)
    }

    fn writer(root: &Path) -> FsWrite {
        FsWrite::new(root.to_path_buf(), DEFAULT_WRITE_MAX_BYTES, None)
    }

    #[test]
    fn reads_inside_the_root() {
        let (_d, root) = jail();
        assert_eq!(FsRead::new(root, 1024, None).read("sub/note.txt").unwrap(), "inside");
    }

    #[test]
    fn refuses_parent_components() {
        let (_d, root) = jail();
        let e = FsRead::new(root.clone(), 1024, None).read("../secret.txt").unwrap_err();
        assert!(e.contains("refused") && e.contains(".."), "{e}");
        let e = FsRead::new(root.clone(), 1024, None).read("sub/../../secret.txt").unwrap_err();
        assert!(e.contains("refused"), "{e}");
        let e = writer(&root).write("../escape.txt", "x").unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }

    #[test]
    fn refuses_absolute_paths() {
        let (d, root) = jail();
        let abs = d.path().join("secret.txt");
        let e = FsRead::new(root.clone(), 1024, None).read(abs.to_str().unwrap()).unwrap_err();
        assert!(e.contains("refused") && e.contains("absolute"), "{e}");
        let e = writer(&root).write("/tmp/x", "x").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn refuses_symlinks_out_of_the_root() {
        let (d, root) = jail();
        std::os::unix::fs::symlink(d.path().join("secret.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("door")).unwrap();
        std::os::unix::fs::symlink("../../secret.txt", root.join("sub/up")).unwrap();
        let r = FsRead::new(root.clone(), 1024, None);
        for path in ["link.txt", "door/secret.txt", "sub/up"] {
            let e = r.read(path).unwrap_err();
            assert!(e.contains("refused") && e.contains("outside"), "{e}");
            assert!(!e.contains(d.path().to_str().unwrap()), "no host path: {e}");
        }
        let w = writer(&root);
        assert!(w.write("door/new.txt", "x").unwrap_err().contains("outside"));
        // A symlink as the file written is replaced, not followed.
        w.write("link.txt", "x").unwrap();
        assert!(std::fs::symlink_metadata(root.join("link.txt")).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(d.path().join("secret.txt")).unwrap(), "outside", "untouched");
        assert!(!d.path().join("new.txt").exists());
    }

    #[test]
    fn a_relative_symlink_inside_the_root_is_followed_an_absolute_one_refused() {
        let (_d, root) = jail();
        std::os::unix::fs::symlink("sub/note.txt", root.join("inner")).unwrap();
        std::os::unix::fs::symlink("../sub", root.join("sub/again")).unwrap();
        let r = FsRead::new(root.clone(), 1024, None);
        assert_eq!(r.read("inner").unwrap(), "inside");
        assert_eq!(r.read("sub/again/note.txt").unwrap(), "inside");
        // Absolute, even though it names a file inside the root: RESOLVE_BENEATH refuses it.
        std::os::unix::fs::symlink(root.join("sub/note.txt"), root.join("absolute")).unwrap();
        assert!(r.read("absolute").unwrap_err().contains("absolute symlinks are refused"));
    }

    #[test]
    fn writes_inside_the_root_and_needs_the_folder() {
        let (_d, root) = jail();
        let w = writer(&root);
        assert_eq!(w.write("sub/out.txt", "hello").unwrap(), "wrote 5 bytes to sub/out.txt");
        assert_eq!(std::fs::read_to_string(root.join("sub/out.txt")).unwrap(), "hello");
        w.write("top.txt", "top").unwrap();
        assert_eq!(std::fs::read_to_string(root.join("top.txt")).unwrap(), "top");
        let e = w.write("missing/out.txt", "x").unwrap_err();
        assert!(e.contains("folder does not exist"), "{e}");
        assert!(!root.join("missing").exists());
        assert!(w.write(".", "x").unwrap_err().contains("names no file"));
        let e = w.write("sub/note.txt/x", "x").unwrap_err();
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn refuses_a_missing_root_without_naming_it() {
        let (d, root) = jail();
        let gone = root.join("nowhere");
        let e = FsRead::new(gone.clone(), 1024, None).read("x").unwrap_err();
        assert!(e.contains("root folder cannot be opened") && !e.contains(d.path().to_str().unwrap()), "{e}");
        assert!(writer(&gone).write("x", "x").unwrap_err().contains("root folder cannot be opened"));
    }

    #[test]
    fn reads_only_utf8_files_within_the_cap() {
        let (_d, root) = jail();
        std::fs::write(root.join("bin"), [0xff, 0xfe]).unwrap();
        std::fs::write(root.join("big"), "x".repeat(2000)).unwrap();
        let r = FsRead::new(root.clone(), 1024, None);
        assert!(r.read("bin").unwrap_err().contains("not UTF-8"));
        assert_eq!(r.read("big").unwrap_err(), "`big` has 2000 bytes, more than the 1024 allowed");
        assert!(r.read("sub").unwrap_err().contains("is not a regular file (it is a folder)"));
        assert!(r.read("nothing").unwrap_err().contains("no such file"));
    }

    #[test]
    fn messages_escape_and_shorten_the_path() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"é".repeat(200)).chars().count(), 121);
    }
}
