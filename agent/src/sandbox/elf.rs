//! What executing a file needs: the ELF interpreter (`PT_INTERP`, e.g.
//! `/lib64/ld-linux-x86-64.so.2`) the kernel opens for execution beside the binary. Shared
//! libraries are mapped by that interpreter, not executed, and need only read access.
//!
//! Format: the System V ABI's ELF header (`e_phoff` at byte 32 of ELF64, 28 of ELF32;
//! `e_phentsize`, `e_phnum` after the flags) and program headers of type 3 (`PT_INTERP`)
//! whose bytes are the interpreter's path, NUL-terminated.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::SandboxError;

const PT_INTERP: u32 = 3;

fn bad(path: &Path, why: &str) -> SandboxError {
    SandboxError::Executable(format!("`{}` {why}", path.display()))
}

/// The interpreter `path` names, if any (a static binary names none).
///
/// Errors: [`SandboxError::Executable`] when `path` is a script (`#!`: its interpreter would
/// have to be executable by anything in the sandbox) or not an ELF file of this machine's
/// byte order.
pub fn interpreter(path: &Path) -> Result<Option<PathBuf>, SandboxError> {
    let io = |e: std::io::Error| SandboxError::Path { path: path.to_owned(), source: e };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut head = [0u8; 64];
    let n = f.read(&mut head).map_err(io)?;
    if head.starts_with(b"#!") {
        return Err(bad(
            path,
            "is a script: the sandbox executes only allow-listed binaries, and a script's interpreter would become executable by every program of the tool; allow the interpreter itself, or set `sandbox = \"none\"`",
        ));
    }
    if n < 52 || &head[..4] != b"\x7fELF" {
        return Err(bad(path, "is not an ELF executable"));
    }
    if head[5] != 1 {
        return Err(bad(path, "is a big-endian ELF file"));
    }
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([head[o], head[o + 1]]));
    let u32_at = |o: usize| u64::from(u32::from_le_bytes(head[o..o + 4].try_into().unwrap_or_default()));
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap_or_default());
    let wide = match head[4] {
        2 if n == 64 => true,
        1 => false,
        _ => return Err(bad(path, "has an unknown ELF class")),
    };
    let (phoff, phentsize, phnum) =
        if wide { (u64_at(32), u16_at(54), u16_at(56)) } else { (u32_at(28), u16_at(42), u16_at(44)) };
    if phnum > 512 || phentsize < if wide { 56 } else { 32 } {
        return Err(bad(path, "has malformed program headers"));
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        f.seek(SeekFrom::Start(phoff + i * phentsize)).map_err(io)?;
        f.read_exact(&mut ph[..if wide { 56 } else { 32 }]).map_err(io)?;
        let le32 = |o: usize| u64::from(u32::from_le_bytes(ph[o..o + 4].try_into().unwrap_or_default()));
        let le64 = |o: usize| u64::from_le_bytes(ph[o..o + 8].try_into().unwrap_or_default());
        if le32(0) != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) = if wide { (le64(8), le64(32)) } else { (le32(4), le32(16)) };
        if size == 0 || size > 4096 {
            return Err(bad(path, "names a malformed interpreter"));
        }
        let mut name = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        f.read_exact(&mut name).map_err(io)?;
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        let name = std::str::from_utf8(&name[..end]).map_err(|_| bad(path, "names a non-UTF-8 interpreter"))?;
        let canonical =
            Path::new(name).canonicalize().map_err(|e| SandboxError::Path { path: name.into(), source: e })?;
        return Ok(Some(canonical));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_names_its_loader() {
        let ls = Path::new("/usr/bin/ls").canonicalize().unwrap();
        let interp = interpreter(&ls).unwrap().expect("ls is dynamically linked on Debian");
        assert!(interp.to_string_lossy().contains("ld-linux"), "{interp:?}");
    }

    #[test]
    fn scripts_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        assert!(interpreter(&script).unwrap_err().to_string().contains("is a script"));
        let text = dir.path().join("t");
        std::fs::write(&text, "hello").unwrap();
        assert!(interpreter(&text).unwrap_err().to_string().contains("not an ELF"));
        let trunc = dir.path().join("e");
        std::fs::write(&trunc, b"\x7fELF\x02\x01\x01").unwrap();
        assert!(interpreter(&trunc).is_err());
    }
}
