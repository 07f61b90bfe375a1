//! deploy/container/Containerfile built and run with podman: `rootfs.sh` lays out the runtime
//! root from this build's binary, the Containerfile's `runtime` stage is built on it (handed in
//! as the `build` stage with `--build-context`, as docs/deploy.md shows, since no registry can
//! be reached for the build stage's base image), and the image runs `kafclaw validate` and
//! `kafclaw agent -m hello` as uid 65532 with no network, a read-only root and no shell.
//!
//! podman works in a private `--root`/`--runroot` with the vfs driver, so nothing of the host's
//! container storage is touched. Skipped, with the reason printed, only where the host cannot
//! run containers at all (podman itself fails to start one: exit 125), or, not as root, where
//! rootless podman cannot build.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{both, repo, run, system_tool};

/// podman with the test's own storage, and runc where installed (crun 1.8 refuses hosts with
/// a cgroup v1/v2 hybrid layout, such as this project's machines).
fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new(system_tool("podman", "podman"));
    cmd.arg("--root").arg(dir.join("storage")).arg("--runroot").arg(dir.join("run")).args([
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "none",
    ]);
    if let Some(runc) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
    {
        cmd.arg("--runtime").arg(runc);
    }
    cmd
}

/// `podman run` of the image, confined: no network, read-only root, the topologies mounted.
/// The rlimits are set at or below the test's own: raising them needs CAP_SYS_RESOURCE.
fn podman_run(dir: &Path, image: &str, entrypoint: Option<&str>, args: &[&str]) -> std::process::Output {
    let limit = |flag: &str| {
        let o = run(Command::new("sh").args(["-c", &format!("ulimit -S{flag}")]));
        let n = String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().unwrap_or(1024).min(4096);
        format!("{n}:{n}")
    };
    let mut cmd = podman(dir);
    cmd.args(["run", "--rm", "--pull=never", "--network", "none", "--read-only"])
        .args(["--ulimit", &format!("nofile={}", limit("n")), "--ulimit", &format!("nproc={}", limit("u"))])
        .arg("-v")
        .arg(format!("{}:/etc/kafclaw:ro", repo("topologies").canonicalize().unwrap().display()));
    if let Some(e) = entrypoint {
        cmd.args(["--entrypoint", e]);
    }
    cmd.arg(image).args(args);
    run(&mut cmd)
}

fn is_root() -> bool {
    let o = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&o.stdout).trim() == "0"
}

#[test]
fn container_image_builds_from_scratch_and_runs_kafclaw() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let started = Instant::now();

    // The runtime root, from this build's binary, with the script the image's build stage runs.
    let o = run(Command::new(repo("deploy/container/rootfs.sh")).arg(env!("CARGO_BIN_EXE_kafclaw")).arg(d.join("out")));
    assert!(o.status.success(), "{}", both(&o));
    let rootfs = d.join("out/rootfs");
    assert!(!rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin").exists(), "no shell, no programs");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("kafclaw:x:65532:65532:")), "{passwd}");

    // The Containerfile's runtime stage on it.
    let image = format!("localhost/kafclaw-test:{}", std::process::id());
    std::fs::create_dir(d.join("context")).unwrap();
    let o = run(podman(d)
        .args(["build", "--quiet", "--pull=never", "--target", "runtime", "-t", &image, "-f"])
        .arg(repo("deploy/container/Containerfile"))
        .arg("--build-context")
        .arg(format!("build={}", d.display()))
        .arg(d.join("context")));
    if !o.status.success() && !is_root() {
        // Rootless podman needs subordinate ids (uidmap, /etc/subuid) for the image's owner
        // 65532; as root (CI, the project's machines) a failed build is a failure.
        eprintln!("SKIPPED the container test: rootless podman cannot build here:\n{}", both(&o));
        return;
    }
    assert!(o.status.success(), "podman build: {}", both(&o));

    let o = run(podman(d).args(["image", "inspect", &image]));
    assert!(o.status.success(), "{}", both(&o));
    let inspect: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/kafclaw"]));
    assert!(config["ExposedPorts"].get("9464/tcp").is_some(), "{config}");
    assert!(config["Volumes"].get("/var/lib/kafclaw").is_some(), "{config}");
    let size = inspect[0]["Size"].as_u64().unwrap();
    eprintln!(
        "container image: {:.1} MiB (stripped test-profile binary; the release binary is smaller), built in {:.1?}",
        size as f64 / 1048576.0,
        started.elapsed()
    );

    // Can this host run a container at all? podman's own failures exit 125.
    let o = podman_run(d, &image, None, &["--version"]);
    if o.status.code() == Some(125) {
        eprintln!("SKIPPED the container run: podman cannot start containers here:\n{}", both(&o));
        return;
    }
    assert!(o.status.success(), "kafclaw --version in the image: {}", both(&o));

    let o = podman_run(
        d,
        &image,
        None,
        &["validate", "/etc/kafclaw/support-triage.toml", "/etc/kafclaw/skill-billing.toml"],
    );
    assert!(o.status.success(), "kafclaw validate in the image: {}", both(&o));

    // The standard agent answers from its recording, with no network and a read-only root.
    let o = podman_run(d, &image, None, &["agent", "-m", "hello"]);
    assert!(o.status.success(), "kafclaw agent in the image: {}", both(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty(), "{}", both(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("recorded response"), "{}", both(&o));

    // There is no shell to run (127: the OCI runtime found no such executable).
    let o = podman_run(d, &image, Some("/bin/sh"), &["-c", "true"]);
    assert_eq!(o.status.code(), Some(127), "the image has a shell? {}", both(&o));

    let o = run(podman(d).args(["rmi", "--force", &image]));
    assert!(o.status.success(), "{}", both(&o));
    eprintln!("container test: {:.1?} in all", started.elapsed());
}
