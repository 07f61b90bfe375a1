//! The deployment artefacts of `deploy/`, each checked with the tool that deploys it or with the
//! specification it must follow (docs/deploy.md):
//!
//! - [`container`]: the image is built with podman from `deploy/container/Containerfile` (its
//!   runtime stage, on a rootfs that `rootfs.sh` lays out from this build's binary) and runs
//!   `kafclaw validate` and `kafclaw agent -m hello`;
//! - [`helm`]: the chart is rendered by Helm (the Helm v4 SDK) with several values sets, each
//!   manifest validated against the Kubernetes schemas and the ServiceMonitor against the
//!   Prometheus Operator's CRD schema;
//! - [`compose`]: the Compose file against the Compose specification's schema, its topologies
//!   with `kafclaw validate`;
//! - [`systemd`]: the unit with `systemd-analyze verify` and `security`, and its system call
//!   filter against what kafclaw's tool sandbox calls;
//! - [`grafana`]: every metric and label the dashboard's PromQL names is one kafclaw serves.
//!
//! The Python and Node tools come from `scripts/test` (`KAFCLAW_DEPLOY_PYTHON`,
//! `deploy/tests/crd-check/node_modules`), the system ones from `scripts/install-deps --test`.

mod compose;
mod container;
mod grafana;
mod helm;
mod systemd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path in the repository.
fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The Python of the deployment tools' venv (Helm, kubernetes-validate, check-jsonschema).
fn deploy_python() -> PathBuf {
    let py = std::env::var_os("KAFCLAW_DEPLOY_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!("KAFCLAW_DEPLOY_PYTHON is unset: run scripts/test (it installs the deployment test tools)")
    });
    assert!(py.exists(), "{}: missing; run scripts/test", py.display());
    py
}

/// A program of the deployment tools' venv (next to its Python).
fn deploy_tool(name: &str) -> PathBuf {
    deploy_python().parent().unwrap().join(name)
}

/// `program` on PATH, or a panic naming the package that brings it.
fn system_tool(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{program}` is not installed: scripts/install-deps --test installs {package}"))
}

/// Runs a command and returns its output (the command must start).
fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Standard output and error of `o`, for assertion messages.
fn both(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A YAML file as JSON (PyYAML of the tools' venv: merge keys and anchors resolved).
fn yaml_as_json(path: &Path) -> serde_json::Value {
    let o = run(Command::new(deploy_python())
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(path));
    assert!(o.status.success(), "{}", both(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `kafclaw validate FILE` succeeds.
fn assert_topology_validates(file: &Path) {
    let o = run(Command::new(env!("CARGO_BIN_EXE_kafclaw")).arg("validate").arg(file));
    assert!(o.status.success(), "kafclaw validate {}: {}", file.display(), both(&o));
}
