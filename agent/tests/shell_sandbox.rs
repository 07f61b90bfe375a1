//! The kernel sandbox of the `shell` tool, tried as an attacker would: the programs run for
//! real, under the real kernel's Landlock and seccomp. Most tests call the sandbox directly,
//! past the argument checks, to prove that the kernel layer holds on its own.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kafclaw_agent::sandbox::run::{Outcome, Sandbox};
use kafclaw_agent::sandbox::{Limits, Mode, Policy};
use kafclaw_agent::tools::shell::{Shell, ShellSpec};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// A root with a data file, beside a folder the sandbox must not touch.
struct Jail {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn jail() -> Jail {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("data.txt"), "b\na\nc\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "the secret\n").unwrap();
    Jail { root: root.canonicalize().unwrap(), outside: outside.canonicalize().unwrap(), _dir: dir }
}

fn sandbox(j: &Jail, exec: &[&str], ports: Vec<u16>, limits: Limits) -> Sandbox {
    let exec = exec.iter().map(|p| Path::new(p).canonicalize().unwrap()).collect();
    let policy = Policy { read: Vec::new(), write: vec![j.root.clone()], exec, connect_tcp: ports, limits };
    Sandbox::new(Mode::Kernel, policy).expect("this machine has Landlock ABI 6+ (see docs/security.md)")
}

async fn run(sb: &Sandbox, j: &Jail, program: &str, args: &[&str], timeout: Duration) -> Outcome {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env = [("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8")];
    sb.run(Path::new(program), &args, &j.root, &env, timeout).await.unwrap()
}

fn text(o: &Outcome) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test]
async fn programs_that_run_programs_cannot_run_one_off_the_list() {
    let j = jail();
    let sb = sandbox(
        &j,
        &["/usr/bin/sed", "/usr/bin/find", "/usr/bin/awk", "/usr/bin/timeout", "/usr/bin/xargs", "/usr/bin/env"],
        vec![],
        Limits::default(),
    );
    let t = Duration::from_secs(20);
    // sed's `e` command runs /bin/sh: not on the list.
    let o = run(&sb, &j, "/usr/bin/sed", &["-n", "1e cat /etc/passwd", "data.txt"], t).await;
    assert!(!text(&o).contains("root:"), "{}", text(&o));
    // find -exec, awk system(), and the launchers: touch is not on the list.
    run(&sb, &j, "/usr/bin/find", &[".", "-exec", "touch", "x1", "{}", "+"], t).await;
    run(&sb, &j, "/usr/bin/awk", &["BEGIN { system(\"touch x2\") }"], t).await;
    run(&sb, &j, "/usr/bin/timeout", &["5", "touch", "x3"], t).await;
    run(&sb, &j, "/usr/bin/env", &["touch", "x4"], t).await;
    std::fs::write(j.root.join("list"), "x5\n").unwrap();
    run(&sb, &j, "/usr/bin/xargs", &["-a", "list", "touch"], t).await;
    for made in ["x1", "x2", "x3", "x4", "x5"] {
        assert!(!j.root.join(made).exists(), "{made} was made: a program off the list ran");
    }
    // What is on the list does run through a launcher.
    let o = run(&sb, &j, "/usr/bin/env", &["sed", "-n", "1p", "data.txt"], t).await;
    assert_eq!(text(&o), "b\n");
}

#[tokio::test]
async fn writes_and_reads_stay_in_the_root_whatever_the_path_says() {
    let j = jail();
    let sb = sandbox(&j, &["/usr/bin/sort", "/usr/bin/cat", "/usr/bin/cp", "/usr/bin/ls"], vec![], Limits::default());
    let t = Duration::from_secs(20);
    let target = j.outside.join("x");
    let o = run(&sb, &j, "/usr/bin/sort", &[&format!("--output={}", target.display()), "data.txt"], t).await;
    assert!(!target.exists(), "sort wrote outside the root: {}", text(&o));
    // Symlinks already in the root, to a file and to a folder outside it.
    std::os::unix::fs::symlink(j.outside.join("secret.txt"), j.root.join("link")).unwrap();
    std::os::unix::fs::symlink(&j.outside, j.root.join("door")).unwrap();
    for args in [&["link"][..], &["door/secret.txt"], &["/etc/shadow"]] {
        let o = run(&sb, &j, "/usr/bin/cat", args, t).await;
        assert!(!text(&o).contains("the secret") && !o.status.unwrap().success(), "{args:?}: {}", text(&o));
    }
    run(&sb, &j, "/usr/bin/cp", &["data.txt", "door/copied.txt"], t).await;
    assert!(!j.outside.join("copied.txt").exists(), "cp wrote through a symlink out of the root");
    // The instance's environment, through /proc, is out of reach.
    std::os::unix::fs::symlink(format!("/proc/{}/environ", std::process::id()), j.root.join("env")).unwrap();
    let o = run(&sb, &j, "/usr/bin/cat", &["env"], t).await;
    assert!(o.stdout.is_empty() && !o.status.unwrap().success(), "{}", text(&o));
    // Inside the root, all is well.
    let o = run(&sb, &j, "/usr/bin/sort", &["--output=sorted.txt", "data.txt"], t).await;
    assert!(o.status.unwrap().success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(j.root.join("sorted.txt")).unwrap(), "a\nb\nc\n");
}

/// Tries everything a sandboxed program should not do; prints what happened, as JSON.
const PROBE: &str = r#"
import ctypes, json, os, signal, socket, subprocess, sys
secret, outside, parent, port, loader = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
res = {}
def probe(name, f):
    try:
        f()
        res[name] = "ok"
    except BaseException as e:
        res[name] = "denied: %s %s" % (type(e).__name__, getattr(e, "errno", ""))
libc = ctypes.CDLL(None, use_errno=True)
def call(name, rc):
    if rc != 0:
        raise OSError(ctypes.get_errno(), name)
probe("read_outside", lambda: open(secret).read())
probe("write_outside", lambda: open(outside, "w").write("x"))
probe("read_shadow", lambda: open("/etc/shadow").read())
probe("read_parent_environ", lambda: open("/proc/%d/environ" % parent).read())
probe("exec_sh", lambda: subprocess.run(["/bin/sh", "-c", "true"], check=True))
probe("tcp_connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=3).close())
probe("udp_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
probe("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
probe("netlink_socket", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
probe("signal_parent", lambda: os.kill(parent, 0))
probe("setsid", lambda: os.setsid())
probe("setpgid", lambda: os.setpgid(0, 0))
probe("setuid", lambda: os.setresuid(1000, 1000, 1000))
probe("unshare_user", lambda: call("unshare", libc.unshare(0x10000000)))
probe("unshare_net", lambda: call("unshare", libc.unshare(0x40000000)))
probe("ptrace_parent", lambda: call("ptrace", libc.ptrace(16, parent, 0, 0)))
probe("write_root", lambda: open("inside.txt", "w").write("ok"))
probe("read_system", lambda: open("/etc/passwd").read())
probe("exec_via_loader", lambda: subprocess.run([loader, "/usr/bin/id"], check=True, capture_output=True))
probe("read_other_program", lambda: open("/usr/bin/id", "rb").read(4))
print(json.dumps(res))
"#;

/// Runs [`PROBE`]; `open_port` allows TCP to the test's listener.
async fn probe(open_port: bool) -> serde_json::Map<String, Value> {
    let j = jail();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ports = if open_port { vec![port] } else { vec![] };
    let sb = sandbox(&j, &[PYTHON], ports, Limits::default());
    let secret = j.outside.join("secret.txt");
    let written = j.outside.join("written.txt");
    let parent = std::process::id().to_string();
    let loader = kafclaw_agent::sandbox::elf::interpreter(Path::new(PYTHON)).unwrap().unwrap();
    let args = [
        "-I",
        "-c",
        PROBE,
        secret.to_str().unwrap(),
        written.to_str().unwrap(),
        &parent,
        &port.to_string(),
        loader.to_str().unwrap(),
    ];
    let o = run(&sb, &j, PYTHON, &args, Duration::from_secs(60)).await;
    assert!(!written.exists(), "wrote outside the root");
    let out = String::from_utf8_lossy(&o.stdout);
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn a_hostile_program_is_held_by_the_kernel() {
    let r = probe(false).await;
    for allowed in ["write_root", "read_system"] {
        assert_eq!(r[allowed], "ok", "{allowed}: {r:?}");
    }
    for name in [
        "read_outside",
        "write_outside",
        "read_shadow",
        "read_parent_environ",
        "exec_sh",
        "tcp_connect",
        "udp_socket",
        "unix_socket",
        "netlink_socket",
        "signal_parent",
        "setsid",
        "setpgid",
        "setuid",
        "unshare_user",
        "unshare_net",
        "ptrace_parent",
        "exec_via_loader",
        "read_other_program",
    ] {
        assert!(r[name].as_str().unwrap().starts_with("denied"), "{name} was not refused: {r:?}");
    }
}

#[tokio::test]
async fn a_connect_port_opens_tcp_to_that_port_only() {
    let r = probe(true).await;
    assert_eq!(r["tcp_connect"], "ok", "{r:?}");
    for name in ["udp_socket", "unix_socket", "netlink_socket", "read_outside", "exec_sh"] {
        assert!(r[name].as_str().unwrap().starts_with("denied"), "{name}: {r:?}");
    }
}

/// The red team's second round, as a program that can run any code in the sandbox would try
/// it: metadata changes through a symlink out of the root, MPTCP past the port rule, memfd,
/// listening, `CLONE_PARENT`, making symlinks, and code written into the root (a copied
/// binary run through the ELF interpreter, a copied library loaded).
const PROBE2: &str = r#"
import ctypes, json, os, shutil, socket, subprocess, sys
loader, port, lib = sys.argv[1], int(sys.argv[2]), sys.argv[3]
res = {}
def probe(name, f):
    try:
        f()
        res[name] = "ok"
    except BaseException as e:
        res[name] = "denied: %s %s" % (type(e).__name__, getattr(e, "errno", ""))
libc = ctypes.CDLL(None, use_errno=True)
def call(name, rc):
    if rc == -1:
        raise OSError(ctypes.get_errno(), name)
probe("chmod_through_symlink", lambda: os.chmod("out-link", 0o4777))
probe("utime_through_symlink", lambda: os.utime("out-link", (1, 1)))
probe("setxattr_through_symlink", lambda: os.setxattr("out-link", "user.k", b"v"))
probe("mptcp_connect", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).connect(("127.0.0.1", port)))
probe("memfd", lambda: os.memfd_create("x"))
probe("listen", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).listen(1))
probe("clone_parent", lambda: call("clone", libc.syscall(56, 0x8000 | 17, 0, 0, 0, 0)))
probe("make_symlink", lambda: os.symlink(loader, "ldso"))
shutil.copyfile(sys.executable, "copy")
shutil.copyfile(lib, "lib.so")
probe("run_copy_through_loader", lambda: subprocess.run([loader, "./copy", "-c", "print(1)"], check=True, capture_output=True))
probe("load_copied_library", lambda: ctypes.CDLL("./lib.so"))
probe("chmod_in_root_by_fd", lambda: os.chmod(os.open("copy", os.O_RDONLY), 0o600))
print(json.dumps(res))
"#;

#[tokio::test]
async fn metadata_mptcp_memfd_and_code_written_into_the_root_are_refused() {
    let j = jail();
    std::os::unix::fs::symlink(j.outside.join("secret.txt"), j.root.join("out-link")).unwrap();
    let before = std::fs::metadata(j.outside.join("secret.txt")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A port is open to plain TCP, so only the MPTCP rule can stop the MPTCP connect.
    let sb = sandbox(&j, &[PYTHON], vec![port], Limits::default());
    let loader = kafclaw_agent::sandbox::elf::interpreter(Path::new(PYTHON)).unwrap().unwrap();
    let lib = [
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/aarch64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("zlib is installed");
    let args = ["-I", "-c", PROBE2, loader.to_str().unwrap(), &port.to_string(), lib];
    let o = run(&sb, &j, PYTHON, &args, Duration::from_secs(60)).await;
    let r: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(r["chmod_in_root_by_fd"], "ok", "by descriptor, in the root, metadata may change: {r}");
    for name in [
        "chmod_through_symlink",
        "utime_through_symlink",
        "setxattr_through_symlink",
        "mptcp_connect",
        "memfd",
        "listen",
        "clone_parent",
        "make_symlink",
        "run_copy_through_loader",
        "load_copied_library",
    ] {
        assert!(r[name].as_str().unwrap().starts_with("denied"), "{name} was not refused: {r}");
    }
    let after = std::fs::metadata(j.outside.join("secret.txt")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((before.mode(), before.mtime()), (after.mode(), after.mtime()), "the file out of the root is untouched");
}

/// Forks `n` children that ignore SIGTERM, try to leave the process group and sleep; the
/// parent then sleeps too (`wait`) or exits at once (`exit`).
const FORKER: &str = r#"
import os, signal, sys, time
n, then = int(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for i in range(n):
    if os.fork() == 0:
        for leave in (os.setsid, lambda: os.setpgid(0, 0)):
            try:
                leave()
            except OSError:
                pass
        if os.fork() == 0:
            time.sleep(300)
        time.sleep(300)
        os._exit(0)
print("forked", flush=True)
if then == "wait":
    time.sleep(300)
"#;

/// Live (not zombie) processes whose command line holds `marker`.
fn live_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// The processes with `marker` still alive once the killed ones had time to be reaped
/// (SIGKILL is delivered at once, but a process leaves /proc only when it is reaped).
fn left_after_reaping(marker: &str) -> Vec<String> {
    let mut left = live_with(marker);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = live_with(marker);
    }
    left
}

#[tokio::test]
async fn no_process_outlives_its_call() {
    let j = jail();
    let sb = sandbox(&j, &[PYTHON], vec![], Limits::default());
    for then in ["exit", "wait"] {
        let marker = format!("kafclaw-forker-{}-{then}", std::process::id());
        let o = run(&sb, &j, PYTHON, &["-I", "-c", FORKER, &marker, "20", then], Duration::from_secs(3)).await;
        assert!(text(&o).contains("forked") || o.status.is_none(), "{}", text(&o));
        if then == "wait" {
            assert!(o.status.is_none(), "a run past its time limit is reported as such");
        }
        let left = left_after_reaping(&marker);
        assert!(left.is_empty(), "{then}: processes outlived the call: {left:?}");
    }
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_limit_and_is_gone_at_the_timeout() {
    assert!(
        kafclaw_agent::sandbox::processes_bounded(),
        "this test machine runs tests as root without a writable pids cgroup: a fork bomb would reach the machine's pid limit"
    );
    let j = jail();
    let sb = sandbox(&j, &[PYTHON], vec![], Limits { processes: 32, ..Limits::default() });
    let marker = format!("kafclaw-bomb-{}", std::process::id());
    let bomb = "import os, sys\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let o = run(&sb, &j, PYTHON, &["-I", "-c", bomb, &marker], Duration::from_secs(3)).await;
    assert!(o.status.is_none(), "the bomb ran to its time limit");
    let left = left_after_reaping(&marker);
    assert!(left.is_empty(), "bomb processes outlived the call: {}", left.len());
}

#[tokio::test]
async fn output_and_memory_are_capped() {
    let j = jail();
    let limits = Limits { output_bytes: 64 * 1024, memory_bytes: 256 << 20, ..Limits::default() };
    let sb = sandbox(&j, &["/usr/bin/yes", PYTHON], vec![], limits);
    let o = run(&sb, &j, "/usr/bin/yes", &[], Duration::from_secs(30)).await;
    assert!(o.truncated, "the cap stops an endless writer");
    assert_eq!(o.stdout.len() + o.stderr.len(), 64 * 1024);
    let o = run(
        &sb,
        &j,
        PYTHON,
        &["-I", "-c", "b = bytearray(1024 * 1024 * 1024); print('allocated')"],
        Duration::from_secs(30),
    )
    .await;
    assert!(!text(&o).contains("allocated") && text(&o).contains("MemoryError"), "{}", text(&o));
}

#[test]
fn a_script_cannot_be_made_executable() {
    let j = jail();
    let script = j.root.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\nid\n").unwrap();
    let policy = Policy { write: vec![j.root.clone()], exec: vec![script], ..Policy::default() };
    let e = Sandbox::new(Mode::Kernel, policy).unwrap_err().to_string();
    assert!(e.contains("is a script"), "{e}");
}

fn shell(j: &Jail, allow: &[&str]) -> Shell {
    Shell::new(ShellSpec {
        allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        root: j.root.clone(),
        timeout: Duration::from_secs(20),
        description: None,
        sandbox: Mode::Kernel,
        read: Vec::new(),
        connect_ports: Vec::new(),
        limits: Limits::default(),
        concurrency: 4,
    })
    .unwrap()
}

#[tokio::test]
async fn the_tool_refuses_first_and_the_kernel_holds_after() {
    let j = jail();
    let t = shell(&j, &["sed", "find", "sort", "env", "cat"]);
    let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // The reported inputs, through the tool.
    let e = t.run(argv(&["sed", "-n", "1e cat /etc/passwd", "data.txt"])).await.unwrap_err();
    assert!(!e.contains("root:") && e.contains("sandbox"), "sed runs with --sandbox: {e}");
    let e = t.run(argv(&["find", ".", "-exec", "touch", "x", "{}", "+"])).await.unwrap_err();
    assert!(e.starts_with("refused") && e.contains("-exec"), "{e}");
    let e = t.run(argv(&["sort", "--output=/tmp/x", "data.txt"])).await.unwrap_err();
    assert!(e.starts_with("refused") && e.contains("absolute"), "{e}");
    // SAFETY: a test-only variable, which the tool must not pass on.
    unsafe { std::env::set_var("KAFCLAW_TEST_API_KEY", "sk-never-shown") };
    let env = t.run(argv(&["env"])).await.unwrap();
    let mut lines: Vec<&str> = env.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["LANG=C.UTF-8", "PATH=/usr/bin:/bin"], "the environment is exactly these two");
    assert_eq!(t.run(argv(&["sed", "-n", "2p", "data.txt"])).await.unwrap(), "a\n");
}
