//! deploy/compose/compose.yaml: valid against the Compose specification's JSON schema (the one
//! `check-jsonschema` ships as `vendor.compose-spec`), and what it runs is right: the roster and
//! the skill agent run shipped topologies that `kafclaw validate` accepts, every kafclaw
//! service names the same group, and the skill that the gateway serves is the one whose
//! topics are created and whose agent runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{assert_topology_validates, both, deploy_tool, repo, run, yaml_as_json};

fn check_compose_schema(file: &Path) -> std::process::Output {
    run(Command::new(deploy_tool("check-jsonschema")).args(["--builtin-schema", "vendor.compose-spec"]).arg(file))
}

#[test]
fn compose_file_follows_the_compose_specification() {
    let file = repo("deploy/compose/compose.yaml");
    let o = check_compose_schema(&file);
    assert!(o.status.success(), "{}", both(&o));

    // The schema is enforced, not merely parsed: a key the specification lacks is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("compose.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\n  roster:\n"));
    std::fs::write(&bad, text.replace("\n  roster:\n", "\n  roster:\n    restart_policy: always\n")).unwrap();
    let o = check_compose_schema(&bad);
    assert!(!o.status.success(), "a misspelt key passed the schema: {}", both(&o));
    assert!(both(&o).contains("restart_policy"), "{}", both(&o));
}

/// The value of `--flag` in a command.
fn flag<'a>(command: &'a [String], name: &str) -> Option<&'a str> {
    command.iter().position(|a| a == name).and_then(|i| command.get(i + 1)).map(String::as_str)
}

/// The host path of `container_path` through the service's bind mounts (relative to the file).
fn host_path(service: &Value, container_path: &str) -> PathBuf {
    for v in service["volumes"].as_array().into_iter().flatten() {
        let spec = v.as_str().unwrap();
        let mut parts = spec.split(':');
        let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
        if let Some(rest) = container_path.strip_prefix(dst)
            && src.starts_with('.')
        {
            return repo("deploy/compose").join(src).join(rest.trim_start_matches('/'));
        }
    }
    panic!("{container_path} is on no bind mount of {service}")
}

#[test]
fn compose_services_run_the_shipped_topologies_of_one_group() {
    let c = yaml_as_json(&repo("deploy/compose/compose.yaml"));
    let services = c["services"].as_object().unwrap();
    for s in ["kafka", "topics", "roster", "billing", "gateway"] {
        assert!(services.contains_key(s), "service {s} missing");
    }
    let mut groups = Vec::new();
    let mut skills_created = Vec::new();
    let mut skills_served = Vec::new();
    let mut skills_answered = Vec::new();
    for (name, s) in services.iter().filter(|(n, _)| *n != "kafka") {
        // Every kafclaw service: the image's unprivileged user, read-only, no capabilities.
        assert_eq!(s["user"], "65532:65532", "{name}");
        assert_eq!(s["read_only"], true, "{name}");
        assert_eq!(s["cap_drop"], serde_json::json!(["ALL"]), "{name}");
        assert_eq!(s["environment"]["KAFCLAW_BROKERS"], "kafka:9092", "{name}");
        let command: Vec<String> =
            s["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
        match command[0].as_str() {
            "run" => {
                let file = host_path(s, &command[1]);
                assert_topology_validates(&file);
                let t: toml::Value = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                groups.push(t["topology"]["group"].as_str().unwrap().to_owned());
                if let Some(agent) = t.get("agent") {
                    for sk in agent["skills"].as_array().unwrap() {
                        skills_answered.push(sk.as_str().unwrap().to_owned());
                    }
                }
                assert!(flag(&command, "--http").unwrap().starts_with("0.0.0.0:"), "{name}");
                // A non-loopback --http needs the token: run refuses to start without it.
                assert!(s["environment"]["KAFCLAW_HTTP_TOKEN"].is_string(), "{name}");
                assert!(s["environment"]["KAFCLAW_INSTANCE_ID"].is_string(), "{name}");
            }
            "group" => {
                assert_eq!(command[1], "create");
                groups.push(flag(&command, "--group").unwrap().to_owned());
                skills_created.push(flag(&command, "--skill").unwrap().to_owned());
            }
            "gateway" => {
                groups.push(flag(&command, "--group").unwrap().to_owned());
                skills_served.push(flag(&command, "--skill").unwrap().to_owned());
                assert!(s["environment"]["KAFCLAW_GATEWAY_TOKEN"].is_string(), "{name}");
            }
            other => panic!("{name}: unexpected kafclaw command {other}"),
        }
    }
    groups.sort();
    groups.dedup();
    assert_eq!(groups, ["acme"], "one group");
    assert_eq!(skills_created, skills_served);
    assert_eq!(skills_served, skills_answered);
}
