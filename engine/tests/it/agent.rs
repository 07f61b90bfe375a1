//! The main job: `kafclaw agent -m` runs the built-in standard agent once, locally — from
//! recorded responses (labelled) when no live model is configured, against a live
//! OpenAI-compatible server when KAFCLAW_MODEL_URL points at one. `kafclaw diff` compares
//! two runs.

use std::process::Command;

use crate::fake_openai::FakeOpenAi;

fn agent(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kafclaw"));
    c.arg("agent").args(args).env_remove("KAFCLAW_MODEL_URL").env_remove("KAFCLAW_API_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn answers_from_the_recording_and_says_so() {
    let out = agent(&["-m", "hello"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Hello! I am the acme support agent (recorded answer: no live model is configured). Ask me about refunds, invoices or escalations."
    );
    assert!(stderr.contains("recorded response"), "{stderr}");
    let out = agent(&["-m", "what about invoice 42?", "--json"], &[]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "response");
    assert_eq!(v["payload"]["usage"]["model"], "recorded:gpt-4o-mini");
    assert!(v["payload"]["result"].as_str().unwrap().contains("recorded answer"));
}

#[test]
fn one_setting_makes_it_live() {
    let server = FakeOpenAi::start();
    let url = server.base_url();
    let out = agent(
        &["-m", "Can I get a refund for invoice 42?", "--json"],
        &[("KAFCLAW_MODEL_URL", &url), ("KAFCLAW_MODEL", "fake-1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("recorded response"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = v["payload"]["result"].as_str().unwrap();
    // The fake model echoes its prompt: the request and the memories found for it.
    assert!(result.starts_with("answer: Can I get a refund for invoice 42?"), "{result}");
    assert!(result.contains("Invoice 42 was paid twice"), "memory search found the related item: {result}");
    assert_eq!(v["payload"]["usage"]["model"], "fake-1");
    assert_eq!(server.counters.calls(), 1);
}

#[test]
fn diff_compares_runs_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let topo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/usage-meter.toml");
    let run = |name: &str| {
        let out = dir.path().join(name);
        let o = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
            .args(["run", topo.to_str().unwrap(), "--local", "--output"])
            .arg(format!("totals={}", out.display()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let (a, b) = (run("a.jsonl"), run("b.jsonl"));
    let same = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["diff"]).arg(&a).arg(&b).output().unwrap();
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stderr));
    let text = std::fs::read_to_string(&b).unwrap().replacen("\"sum\":100", "\"sum\":101", 1);
    std::fs::write(&b, text).unwrap();
    let differ = Command::new(env!("CARGO_BIN_EXE_kafclaw")).args(["diff"]).arg(&a).arg(&b).output().unwrap();
    assert_eq!(differ.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&differ.stdout);
    let line = |sign: char, text: &str| stdout.lines().any(|l| l.starts_with(sign) && l.contains(text));
    assert!(line('-', "\"sum\": 100") && line('+', "\"sum\": 101"), "{stdout}");
}
