//! `fs_read` and `fs_write` against a hostile model, on real files and the real kernel: the
//! tools are built from TOML as a topology declares them and called through [`Tool::call`].
//!
//! The two reported escapes (a symlink planted at the write's old temporary name; a folder
//! swapped for a symlink while calls run) and their family: /proc magic links, hard links,
//! FIFOs, device nodes, long paths, NUL bytes, folders as targets, size caps, growing files.
#![cfg(target_os = "linux")]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde_json::json;

use kafclaw_agent::tools::{Tool, ToolConfig, ToolFuture, ToolResult};
use kafclaw_operators::api::resources::Resources;

/// An `fs_read` or `fs_write` tool on `root`, `extra` more TOML lines.
fn tool(kind: &str, root: &Path, extra: &str) -> Arc<dyn Tool> {
    let root = toml::Value::String(root.to_str().unwrap().to_owned());
    let config: ToolConfig = toml::from_str(&format!("type = \"{kind}\"\nroot = {root}\n{extra}")).unwrap();
    config.build(&Resources::new("/", "fs-escape")).unwrap()
}

/// The fs tools never wait: their future is ready at the first poll.
fn now(mut f: ToolFuture) -> ToolResult {
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("an fs tool call waited"),
    }
}

fn read(t: &dyn Tool, path: &str) -> Result<String, String> {
    now(t.call(json!({ "path": path }), "k".into())).map(|o| o.text)
}

fn write(t: &dyn Tool, path: &str, content: &str) -> Result<String, String> {
    now(t.call(json!({ "path": path, "content": content }), "k".into())).map(|o| o.text)
}

/// A work folder with `root/` (holding `sub/note.txt`) and `outside/secret.txt`.
fn jail() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let (root, outside) = (d.path().join("root"), d.path().join("outside"));
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("sub/note.txt"), "inside").unwrap();
    std::fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    (d, root, outside)
}

/// Every file of `dir` (recursively, symlinks not followed) with its content.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            all.extend(snapshot(&p));
        } else {
            all.push((p.clone(), if m.is_file() { std::fs::read(&p).unwrap() } else { Vec::new() }));
        }
    }
    all.sort();
    all
}

fn temporaries(dir: &Path) -> Vec<String> {
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| n.contains("kafclaw-tmp")).collect()
}

/// A refusal the model can read, naming no host path.
#[track_caller]
fn refused(r: Result<String, String>, says: &str, host: &Path) -> String {
    let e = r.expect_err("should have been refused");
    assert!(e.contains(says), "`{e}` should say `{says}`");
    assert!(!e.contains(host.to_str().unwrap()), "`{e}` names a host path");
    e
}

/// Runs `f` on a thread; panics if it takes more than 10 s (a blocked open).
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(10)).expect("the call blocked")
}

/// Reported: `<root>/note.kafclaw-tmp -> /elsewhere` made a write of `note.txt` overwrite (or
/// create) a file outside the root through the temporary name.
#[test]
fn a_symlink_at_the_old_temporary_name_is_not_written_through() {
    let (d, root, outside) = jail();
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("note.kafclaw-tmp")).unwrap();
    std::os::unix::fs::symlink(outside.join("planted.txt"), root.join("sub/other.kafclaw-tmp")).unwrap();
    let before = snapshot(&outside);
    let w = tool("fs_write", &root, "");
    write(&*w, "note.txt", "pwned").unwrap();
    write(&*w, "sub/other.md", "pwned").unwrap();
    assert_eq!(snapshot(&outside), before, "nothing written outside the root");
    assert_eq!(std::fs::read_to_string(root.join("note.txt")).unwrap(), "pwned");
    assert!(std::fs::symlink_metadata(root.join("note.txt")).unwrap().is_file());
    assert!(std::fs::symlink_metadata(root.join("note.kafclaw-tmp")).unwrap().is_symlink(), "left alone");
    drop(d);
}

/// Reported: a folder of the root swapped for a symlink out of it while calls run; the old code
/// checked the path, then opened it again, and about a third of the calls escaped.
#[test]
fn swapping_a_folder_for_a_symlink_never_lets_a_read_or_write_escape() {
    let (_d, root, outside) = jail();
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::write(root.join("d/secret.txt"), "inside").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let before = snapshot(&outside);
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (root, stop, swaps) = (root.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            let at = |n: &str| root.join(n);
            while !stop.load(Ordering::Relaxed) {
                std::fs::rename(at("d"), at("real")).unwrap();
                std::fs::rename(at("link"), at("d")).unwrap();
                std::fs::rename(at("d"), at("link")).unwrap();
                std::fs::rename(at("real"), at("d")).unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (r, w) = (tool("fs_read", &root, ""), tool("fs_write", &root, ""));
    let reader = std::thread::spawn(move || {
        let (mut ok, mut out, mut escaped) = (0, 0, 0);
        for _ in 0..10_000 {
            match read(&*r, "d/secret.txt") {
                Ok(text) if text == "SECRET" => escaped += 1,
                Ok(_) => ok += 1,
                Err(e) if e.contains("outside the tool's root") => out += 1,
                Err(_) => {}
            }
        }
        (ok, out, escaped)
    });
    let writer = std::thread::spawn(move || {
        let (mut ok, mut out) = (0, 0);
        for i in 0..10_000 {
            match write(&*w, &format!("d/w{}.txt", i % 7), "written") {
                Ok(_) => ok += 1,
                Err(e) if e.contains("outside the tool's root") => out += 1,
                Err(_) => {}
            }
        }
        (ok, out)
    });
    let (reads_ok, reads_out, escaped) = reader.join().unwrap();
    let (writes_ok, writes_out) = writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!(
        "swaps {}; reads: {reads_ok} inside, {reads_out} refused, {escaped} escaped; \
         writes: {writes_ok} inside, {writes_out} refused",
        swaps.load(Ordering::Relaxed)
    );
    assert_eq!(escaped, 0, "reads returned the outside secret");
    assert_eq!(snapshot(&outside), before, "files written outside the root");
    // Not vacuous: reads found the folder in place, and reads and writes met the symlink.
    assert!(reads_ok > 0, "no read found the folder in place");
    assert!(reads_out > 0 && writes_out > 0, "the race was not hit");
    assert_eq!(temporaries(&root.join("d")), Vec::<String>::new(), "failed writes left no temporary file");
}

/// /proc magic links: reached from a root that holds them, or through a symlink in the root.
#[test]
fn proc_magic_links_are_refused() {
    let (d, root, outside) = jail();
    let secret = std::fs::File::open(outside.join("secret.txt")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&secret);
    let proc = tool("fs_read", Path::new("/proc/self"), "");
    for path in ["root/etc/hostname", "cwd/Cargo.toml", &format!("fd/{fd}"), "exe"] {
        let e = read(&*proc, path).expect_err(path);
        assert!(e.contains("refused"), "{path}: {e}");
    }
    let name = format!("escaped-{}.txt", std::process::id());
    let e = write(&*tool("fs_write", Path::new("/proc/self"), ""), &format!("cwd/{name}"), "x").unwrap_err();
    assert!(e.contains("magic link"), "{e}");
    assert!(!Path::new(&name).exists());
    // Symlinks in an ordinary root leading to /proc/self/root or /proc/self/fd/N.
    std::os::unix::fs::symlink("/proc/self/root", root.join("abs-proc")).unwrap();
    std::os::unix::fs::symlink(format!("/proc/self/fd/{fd}"), root.join("abs-fd")).unwrap();
    let up = "../".repeat(root.components().count() + 2);
    std::os::unix::fs::symlink(format!("{up}proc/self/root"), root.join("rel-proc")).unwrap();
    let r = tool("fs_read", &root, "");
    for path in ["abs-proc/etc/hostname", "abs-fd", "rel-proc/etc/hostname"] {
        refused(read(&*r, path), "outside the tool's root", d.path());
    }
    let w = tool("fs_write", &root, "");
    refused(write(&*w, "abs-proc/tmp/escaped.txt", "x"), "outside the tool's root", d.path());
    refused(write(&*w, "rel-proc/tmp/escaped.txt", "x"), "outside the tool's root", d.path());
    assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).unwrap(), "SECRET");
}

/// A /proc file reports a size of 0 and has more: the cap is kept by the read itself, the
/// same path a file growing between `fstat` and `read` takes.
#[test]
fn a_file_larger_than_its_reported_size_is_capped() {
    let e = read(&*tool("fs_read", Path::new("/proc/self"), "max_bytes = 16"), "status").unwrap_err();
    assert!(e.contains("more than the 16 bytes allowed"), "{e}");
}

#[test]
fn a_growing_file_is_never_returned_past_the_cap() {
    let (_d, root, _) = jail();
    let path = root.join("grow.log");
    std::fs::write(&path, "").unwrap();
    let grower = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        for _ in 0..2048 {
            f.write_all(&[b'x'; 4096]).unwrap();
        }
    });
    let r = tool("fs_read", &root, "max_bytes = 1048576");
    let (mut ok, mut capped) = (0, 0);
    while !grower.is_finished() {
        match read(&*r, "grow.log") {
            Ok(text) => {
                assert!(text.len() <= 1 << 20, "{} bytes returned", text.len());
                ok += 1;
            }
            Err(e) => {
                assert!(e.contains("more than"), "{e}");
                capped += 1;
            }
        }
    }
    grower.join().unwrap();
    assert!(read(&*r, "grow.log").unwrap_err().contains("8388608 bytes, more than the 1048576 allowed"));
    eprintln!("{ok} reads within the cap, {capped} refused");
}

/// A hard link inside the root to a file outside (made by someone else) is a file of the
/// root and is read; a write replaces the link and never writes through it.
#[test]
fn a_hard_link_to_an_outside_file_is_never_written_through() {
    let (_d, root, outside) = jail();
    std::fs::hard_link(outside.join("secret.txt"), root.join("hard.txt")).unwrap();
    assert_eq!(read(&*tool("fs_read", &root, ""), "hard.txt").unwrap(), "SECRET", "indistinguishable: documented");
    write(&*tool("fs_write", &root, ""), "hard.txt", "new").unwrap();
    assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).unwrap(), "SECRET");
    assert_eq!(std::fs::read_to_string(root.join("hard.txt")).unwrap(), "new");
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(outside.join("secret.txt")).unwrap()), 1);
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let (d, root, _) = jail();
    let dir = std::fs::File::open(&root).unwrap();
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(dir.as_fd(), "pipe", rustix::fs::FileType::Fifo, mode, 0).unwrap();
    let (r, w) = (tool("fs_read", &root, ""), tool("fs_write", &root, ""));
    let e = within(move || read(&*r, "pipe"));
    refused(e, "not a regular file (it is a FIFO", d.path());
    // A write replaces the FIFO's name (it is never opened).
    within(move || write(&*w, "pipe", "text")).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("pipe")).unwrap(), "text");
}

#[test]
fn a_device_node_is_refused() {
    let (d, root, _) = jail();
    std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
    let r = tool("fs_read", &root, "");
    refused(read(&*r, "zero"), "outside the tool's root", d.path());
    // A node made in the root (needs CAP_MKNOD; skipped without it).
    let dir = std::fs::File::open(&root).unwrap();
    let (kind, mode) = (rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::from_raw_mode(0o666));
    match rustix::fs::mknodat(dir.as_fd(), "null", kind, mode, rustix::fs::makedev(1, 3)) {
        Ok(()) => {
            let e = within(move || read(&*r, "null"));
            refused(e, "not a regular file (it is a device)", d.path());
        }
        Err(e) => eprintln!("no device node made ({e}): that part is skipped"),
    }
}

#[test]
fn long_paths_and_nul_bytes_are_refused_clearly() {
    let (d, root, _) = jail();
    let (r, w) = (tool("fs_read", &root, ""), tool("fs_write", &root, ""));
    let long_name = "a".repeat(300);
    let long_path = format!("{}x", "d/".repeat(2100));
    for path in [&long_name, &long_path] {
        let e = refused(read(&*r, path), "too long", d.path());
        assert!(e.len() < 400, "the message is short: {} bytes", e.len());
        refused(write(&*w, path, "x"), "too long", d.path());
    }
    // A name of 255 bytes is fine: the temporary name does not grow with it.
    write(&*w, &"b".repeat(255), "x").unwrap();
    for path in ["a\0b", "sub/note.txt\0.png"] {
        let e = refused(read(&*r, path), "NUL byte", d.path());
        assert!(!e.contains('\0'), "{e:?}");
        refused(write(&*w, path, "x"), "NUL byte", d.path());
    }
    assert_eq!(temporaries(&root), Vec::<String>::new());
}

#[test]
fn writing_onto_a_folder_fails_and_leaves_no_temporary_file() {
    let (d, root, _) = jail();
    let w = tool("fs_write", &root, "");
    refused(write(&*w, "sub", "x"), "is a folder", d.path());
    refused(write(&*w, "sub/", "x"), "is a folder", d.path());
    assert_eq!(temporaries(&root), Vec::<String>::new());
    assert_eq!(std::fs::read_to_string(root.join("sub/note.txt")).unwrap(), "inside");
}

#[test]
fn content_over_the_write_cap_is_refused() {
    let (d, root, _) = jail();
    let w = tool("fs_write", &root, ""); // default: 1 MiB
    let e = refused(write(&*w, "big.txt", &"x".repeat(2 << 20)), "more than the 1048576", d.path());
    assert!(e.contains("2097152 bytes"), "{e}");
    assert!(!root.join("big.txt").exists());
    assert!(write(&*w, "big.txt", &"x".repeat(1 << 20)).is_ok(), "exactly the cap is fine");
    let small = tool("fs_write", &root, "max_bytes = 4");
    refused(write(&*small, "five.txt", "12345"), "more than the 4 fs_write allows", d.path());
    write(&*small, "four.txt", "1234").unwrap();
}
