//! The web console of `kafclaw gateway`, in a real browser (Debian's headless Chromium,
//! driven by playwright-core: `engine/tests/browser/console.mjs`) against a real group on the
//! test broker: the login (a wrong token refused, the session in an HttpOnly cookie), the
//! Group page showing the Python example agent join and, once it is killed, expire without a
//! reload, a pending approval of an `approve` operator approved from the Approvals page (the
//! record released downstream, the decision written with the session's identity as the
//! approver), the operator's dead letter (a refund that is not JSON) shown with its error
//! headers, corrected and resubmitted from the Dead letters page (it reaches the operator; the
//! resubmission is audited), and state-changing requests without the CSRF token refused. And
//! a task submitted from the Tasks page, answered by agent A delegating to agent B, whose
//! chain graph shows a lane for every agent of it. Screenshots of each page are written
//! to `<target>/tmp/console-screenshots/` (not committed). Also, from a plain HTTP client:
//! without a session every console route but the login page redirects or answers 401.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::fake_openai::FakeOpenAi;
use crate::gateway::start_gateway;
use crate::mcp_server::echo_agent_as;
use crate::support::*;
use crate::timeline::delegating_agents;

const TOKEN: &str = "console-token-5c2e";

/// A script of `engine/tests/browser` run by node against the console: each line it prints
/// is a step it reached; its screenshots go to `<target>/tmp/console-screenshots/<script>/`.
struct Browser {
    node: Instance,
    steps: mpsc::Receiver<String>,
    log: PathBuf,
    shots: PathBuf,
}

impl Browser {
    /// Starts `tests/browser/<script>.mjs` with `env`, logging to `dir/<script>.log`.
    fn start(script: &str, dir: &Path, env: &[(&str, &str)]) -> Self {
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots").join(script);
        // Screenshots of an earlier run must not pass for this one's.
        let _ = std::fs::remove_dir_all(&shots);
        let log = dir.join(format!("{script}.log"));
        let mut node = Instance(
            Command::new("node")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/browser/{script}.mjs")))
                .envs(env.iter().copied())
                .env("KAFCLAW_SCREENSHOTS", &shots)
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("node (scripts/test installs it, and playwright-core in engine/tests/browser)"),
        );
        let (tx, steps) = mpsc::channel();
        let out = node.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { node, steps, log, shots }
    }

    /// Waits for the next step, which must be `want` (its first word); returns its line. On
    /// anything else, panics with the script's log and the tails of `logs`.
    fn step(&self, want: &str, logs: &[&Path]) -> String {
        let got = self.steps.recv_timeout(Duration::from_secs(180)).unwrap_or_default();
        if got.split(' ').next() != Some(want) {
            let tails: Vec<String> = logs.iter().map(|l| format!("{}:\n{}", l.display(), log_tail(l))).collect();
            panic!("wanted `{want}`, got `{got}`\nbrowser:\n{}\n{}", log_tail(&self.log), tails.join("\n"));
        }
        got
    }

    /// Waits for the script to end well, and checks it wrote the screenshots `names`.
    fn finish(mut self, names: &[&str]) {
        assert_eq!(wait_exit(&mut self.node, Duration::from_secs(60)), Some(0), "{}", log_tail(&self.log));
        for name in names {
            let len = std::fs::metadata(self.shots.join(format!("{name}.png"))).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{name}.png: {len} bytes");
        }
    }
}

#[test]
fn the_console_shows_a_python_agent_join_and_expire_behind_its_login() {
    let dir = TestDir::new();
    let group = unique("console").replace('.', "-");
    for t in ["announce", "skill.echo.requests", "skill.echo.responses"] {
        create_topic(&format!("group.{group}.{t}"), 1);
    }
    // An `approve` operator that parks a refund until a person decides.
    let (input, approved) = (unique("console-in"), unique("console-ok"));
    let (requests, decisions) =
        (format!("group.{group}.approvals.requests"), format!("group.{group}.approvals.decisions"));
    for t in [&input, &decisions, &format!("group.{group}.observe.audit")] {
        create_topic(t, 1);
    }
    let app = unique("console-refunds");
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
group = "{group}"
partitions = 1

[sources.refunds]
type = "kafka"
topic = "{input}"

[sources.decisions]
type = "kafka"
topic = "{decisions}"

[operators.review]
type = "approve"
inputs = ["refunds", "decisions"]
decisions = "decisions"
summary = "refund {{{{ payload.amount }}}} to {{{{ payload.customer }}}}"
timeout = "600s"

[sinks.asks]
type = "kafka"
inputs = ["review.requests"]
topic = "{requests}"

[sinks.approved]
type = "kafka"
inputs = ["review"]
topic = "{approved}"
"#
        ),
    );
    let refunds_log = dir.path().join("refunds.log");
    let _refunds = spawn_instance(&topo, "c1", &refunds_log);
    let refund = serde_json::json!({
        "type": "request", "correlation_id": "refund-ben", "sender_id": "billing",
        "timestamp": "2026-12-02T10:00:00Z", "payload": {"customer": "ben", "amount": 900},
    });
    produce(&input, [("ben".to_owned(), refund.to_string())]);
    // A refund that is not JSON: dead-lettered, then corrected and resubmitted in the console.
    produce(&input, [("cid".to_owned(), r#"{"type":"request","correlation_id":"refund-cid","payload":{"#.to_owned())]);
    let fixed = serde_json::json!({
        "type": "request", "correlation_id": "refund-cid", "sender_id": "billing",
        "timestamp": "2026-12-02T10:00:00Z", "payload": {"customer": "cid", "amount": 5},
    });

    let log = dir.path().join("gateway.log");
    let (mut gw, base) = start_gateway(
        &group,
        &[
            "--skill",
            "echo",
            "--member-ttl",
            "5s",
            "--approver",
            "gateway",
            "--dead-letters",
            &format!("{app}.dlq"),
            "--console-admin",
            "gateway",
        ],
        &[("KAFCLAW_GATEWAY_TOKEN", TOKEN)],
        &log,
    );

    // Without a session: pages go to the login page, everything else is 401.
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/console", "/console/"] {
        let r = http.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
    }
    for path in ["/console/api/members", "/console/assets/console.js"] {
        assert_eq!(http.get(format!("{base}{path}")).send().unwrap().status().as_u16(), 401, "{path}");
        let r = http.get(format!("{base}{path}")).bearer_auth(TOKEN).send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}: the API token is no console session");
    }
    assert_eq!(http.post(format!("{base}/console/logout")).send().unwrap().status().as_u16(), 401);
    assert_eq!(http.get(format!("{base}/console/login")).send().unwrap().status().as_u16(), 200);
    assert_eq!(http.get(format!("{base}/healthz")).send().unwrap().status().as_u16(), 200);

    let agent_id = format!("echo-{}", &group[group.len() - 8..]);
    let browser = Browser::start(
        "console",
        dir.path(),
        &[
            ("KAFCLAW_CONSOLE", &base),
            ("KAFCLAW_TOKEN", TOKEN),
            ("KAFCLAW_AGENT_ID", &agent_id),
            ("KAFCLAW_APPROVAL_SUMMARY", "refund 900 to ben"),
            ("KAFCLAW_DLQ_FIX", &fixed.to_string()),
            ("KAFCLAW_TOPOLOGY", &app),
        ],
    );
    let echo_log = dir.path().join("echo.log");
    let logs = [log.as_path(), echo_log.as_path(), refunds_log.as_path()];
    let step = |want: &str| browser.step(want, &logs);

    step("ready");
    let mut agent = echo_agent_as(dir.path(), &group, &agent_id);
    step("joined");
    // Killed, it sends no `leave`: the page must drop it when its heartbeats stop.
    agent.kill().unwrap();
    let _ = agent.wait();
    step("expired");
    let line = step("approved");
    let request_id = line.trim_start_matches("approved ").to_owned();
    // Released downstream, and the decision names the session's identity as the approver.
    let out = consume_all(&approved, 1, Duration::from_secs(60));
    assert_eq!(out[0].value["payload"]["customer"], "ben", "{}", log_tail(&refunds_log));
    let decided = consume_all(&decisions, 1, Duration::from_secs(30));
    let d = &decided[0].value["payload"];
    assert_eq!(
        (d["request_id"].as_str(), d["decision"].as_str()),
        (Some(request_id.as_str()), Some("approved")),
        "{d}"
    );
    assert_eq!(d["approver"], "gateway", "{d}");
    assert_eq!(d["reason"], "checked in the console test", "{d}");
    let line = step("resubmitted");
    // The corrected record reached the operator (it asks for approval), with headers naming
    // where it came from; the resubmission is audited with who did it.
    let asks = consume_all(&requests, 2, Duration::from_secs(60));
    assert!(asks.iter().any(|r| r.value["payload"]["summary"] == "refund 5 to cid"), "{}", log_tail(&refunds_log));
    let back = consume_all(&input, 3, Duration::from_secs(30));
    let back =
        back.iter().find(|r| r.headers.contains_key("kafclaw.resubmitted.from")).expect("the resubmitted record");
    assert_eq!(back.headers["kafclaw.resubmitted.by"], "gateway");
    assert!(back.headers["kafclaw.resubmitted.from"].starts_with(&format!("{app}.dlq 0 ")), "{:?}", back.headers);
    let audits = consume_all(&format!("group.{group}.observe.audit"), 1, Duration::from_secs(30));
    let a = &audits[0].value;
    assert_eq!(
        (a["type"].as_str(), a["payload"]["event_type"].as_str()),
        (Some("audit"), Some("dead_letter_resubmitted")),
        "{a}"
    );
    assert_eq!((a["sender_id"].as_str(), a["payload"]["edited"].as_bool()), (Some("gateway"), Some(true)), "{a}");
    let letter = line.trim_start_matches("resubmitted ");
    assert_eq!(
        format!("{}-{}", a["payload"]["dead_letter"]["partition"], a["payload"]["dead_letter"]["offset"]),
        letter
    );
    step("done");
    browser.finish(&[
        "login",
        "login-refused",
        "group-joined",
        "group-expired",
        "approvals",
        "approvals-decided",
        "topologies",
        "dead-letters",
        "dead-letters-resubmitted",
    ]);

    sigterm(&mut gw);
    assert_eq!(wait_exit(&mut gw, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
}

#[test]
fn a_task_submitted_in_the_console_is_answered_and_its_chain_shows_both_agents() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let group = unique("console-t").replace('.', "-");
    let (a_app, _a, _b) = delegating_agents(dir.path(), &group, &server);
    let log = dir.path().join("gateway.log");
    let (mut gw, base) = start_gateway(&group, &["--skill", "billing"], &[("KAFCLAW_GATEWAY_TOKEN", TOKEN)], &log);
    let task = "delegate ask-billing: refunds over 50 EUR";
    let agents = format!("gateway,{a_app},agent-b,agent-c,agent-a");
    let browser = Browser::start(
        "tasks",
        dir.path(),
        &[("KAFCLAW_CONSOLE", &base), ("KAFCLAW_TOKEN", TOKEN), ("KAFCLAW_TASK", task), ("KAFCLAW_AGENTS", &agents)],
    );
    let (a_log, b_log) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let logs = [log.as_path(), a_log.as_path(), b_log.as_path()];
    let line = browser.step("answered", &logs);
    let task_id = line.trim_start_matches("answered ");
    // The task the page submitted: the session's identity, the group's requests topic.
    let asked = consume_all(&format!("group.{group}.requests"), 1, Duration::from_secs(30));
    let asked = asked.iter().find(|r| r.value["correlation_id"] == task_id).expect("the submitted task");
    assert_eq!(
        (asked.value["sender_id"].as_str(), asked.value["payload"]["description"].as_str()),
        (Some("gateway"), Some(task))
    );
    let answered = consume_all(&format!("group.{group}.responses"), 1, Duration::from_secs(30));
    assert!(answered.iter().any(|r| r.value["correlation_id"] == task_id && r.value["sender_id"] == "agent-a"));
    browser.step("done", &logs);
    browser.finish(&["task", "tasks"]);
    sigterm(&mut gw);
    assert_eq!(wait_exit(&mut gw, Duration::from_secs(30)), Some(0), "{}", log_tail(&log));
}
