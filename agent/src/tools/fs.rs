//! `fs_read` and `fs_write`: files under a root. A path must be relative, without `..`, and
//! after every symlink is resolved (canonicalisation) it must still be inside the root, so a
//! symlink pointing out of the jail is refused, not followed.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{CallContext, Tool, ToolFuture, ToolOutput, relative_path};

/// Resolves `arg` under `root`; the canonical result must stay inside the canonical root.
fn inside(root: &Path, arg: &str, must_exist: bool) -> Result<PathBuf, String> {
    let rel = relative_path(arg)?;
    let root = root.canonicalize().map_err(|e| format!("tool root {}: {e}", root.display()))?;
    let joined = root.join(&rel);
    let resolved = if must_exist {
        joined.canonicalize().map_err(|e| format!("`{arg}`: {e}"))?
    } else {
        // The file may not exist yet: resolve its folder, and refuse a symlink as the file.
        let parent = joined.parent().ok_or_else(|| format!("`{arg}` has no folder"))?;
        let parent = parent.canonicalize().map_err(|e| format!("`{arg}`: folder: {e}"))?;
        let name = joined.file_name().ok_or_else(|| format!("`{arg}` names no file"))?;
        let target = parent.join(name);
        if target.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!("refused: `{arg}` is a symlink"));
        }
        target
    };
    if !resolved.starts_with(&root) {
        return Err(format!("refused: `{arg}` resolves outside the tool's root"));
    }
    Ok(resolved)
}

/// `fs_read`.
#[derive(Debug)]
pub struct FsRead {
    root: PathBuf,
    max_bytes: u64,
    description: Option<String>,
}

impl FsRead {
    /// A reader jailed to `root`.
    pub fn new(root: PathBuf, max_bytes: u64, description: Option<String>) -> Self {
        Self { root, max_bytes, description }
    }

    /// Reads `path` (relative to the root).
    pub fn read(&self, path: &str) -> Result<String, String> {
        let p = inside(&self.root, path, true)?;
        let meta = std::fs::metadata(&p).map_err(|e| format!("`{path}`: {e}"))?;
        if !meta.is_file() {
            return Err(format!("`{path}` is not a file"));
        }
        if meta.len() > self.max_bytes {
            return Err(format!("`{path}` has {} bytes, more than the {} allowed", meta.len(), self.max_bytes));
        }
        let bytes = std::fs::read(&p).map_err(|e| format!("`{path}`: {e}"))?;
        String::from_utf8(bytes).map_err(|_| format!("`{path}` is not UTF-8 text"))
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
    description: Option<String>,
}

impl FsWrite {
    /// A writer jailed to `root`.
    pub fn new(root: PathBuf, description: Option<String>) -> Self {
        Self { root, description }
    }

    /// Writes `content` to `path` (relative to the root), atomically (write, then rename).
    pub fn write(&self, path: &str, content: &str) -> Result<String, String> {
        let p = inside(&self.root, path, false)?;
        let tmp = p.with_extension("kafclaw-tmp");
        std::fs::write(&tmp, content).map_err(|e| format!("`{path}`: {e}"))?;
        std::fs::rename(&tmp, &p).map_err(|e| format!("`{path}`: {e}"))?;
        Ok(format!("wrote {} bytes to {path}", content.len()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jail() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/note.txt"), "inside").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
        (dir, root)
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
        let e = FsWrite::new(root, None).write("../escape.txt", "x").unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }

    #[test]
    fn refuses_absolute_paths() {
        let (d, root) = jail();
        let abs = d.path().join("secret.txt");
        let e = FsRead::new(root.clone(), 1024, None).read(abs.to_str().unwrap()).unwrap_err();
        assert!(e.contains("refused") && e.contains("absolute"), "{e}");
        let e = FsWrite::new(root, None).write("/tmp/x", "x").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn refuses_symlinks_out_of_the_root() {
        let (d, root) = jail();
        std::os::unix::fs::symlink(d.path().join("secret.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("door")).unwrap();
        let r = FsRead::new(root.clone(), 1024, None);
        assert!(r.read("link.txt").unwrap_err().contains("outside"));
        assert!(r.read("door/secret.txt").unwrap_err().contains("outside"));
        let w = FsWrite::new(root.clone(), None);
        assert!(w.write("link.txt", "x").unwrap_err().contains("symlink"));
        assert!(w.write("door/new.txt", "x").unwrap_err().contains("outside"));
        assert_eq!(std::fs::read_to_string(d.path().join("secret.txt")).unwrap(), "outside", "untouched");
        // A symlink that stays inside the root is fine.
        std::os::unix::fs::symlink(root.join("sub/note.txt"), root.join("inner")).unwrap();
        assert_eq!(r.read("inner").unwrap(), "inside");
    }

    #[test]
    fn writes_inside_the_root() {
        let (_d, root) = jail();
        FsWrite::new(root.clone(), None).write("sub/out.txt", "hello").unwrap();
        assert_eq!(std::fs::read_to_string(root.join("sub/out.txt")).unwrap(), "hello");
    }
}
