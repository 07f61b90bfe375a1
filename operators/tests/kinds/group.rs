//! `guard`, `onboard`, `admissions`, `roster`: the group's gatekeeping and membership.

use serde_json::{Value, json};

use kafclaw_operators::api::kind::Kind;
use kafclaw_operators::api::operator::{Port, Ports};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::envelope::EnvelopeType;
use kafclaw_operators::group::guard::{self, GuardConfig, REFUSED, REFUSED_PORT};
use kafclaw_operators::group::onboard::{self, AdmissionsConfig, OnboardConfig, SharedAdmissions, sign};
use kafclaw_operators::group::roster::RosterConfig;
use kafclaw_operators::testing::{Tables, build_sync, record, run_sync, table_names};
use kafclaw_operators::{NoState, Record, TableSpec};

use super::{assert_store_failure, assert_writes_its_tables, build_errors, config, port, refused, sync};

fn request(zone: Option<&str>, payload: Value) -> Record {
    let mut v = json!({"id": "in-1", "sender_id": "alice", "payload": payload});
    if let Some(z) = zone {
        v["zone"] = z.into();
    }
    record(&v.to_string())
}

#[test]
fn guard_passes_refuses_and_audits_by_zone_depth_and_deadline() {
    let c: GuardConfig = config("agent = \"billing\"\nzones = [\"finance\"]\nmax_delegation_depth = 2");
    assert_eq!(c.ports(), Ports { default: true, named: vec![REFUSED.into(), guard::AUDIT.into()] });
    assert_eq!(port(&c, REFUSED), REFUSED_PORT);
    assert_eq!(port(&c, guard::AUDIT), guard::AUDIT_PORT);
    assert!(c.tables("guard").is_empty());
    let mut op = sync(&c, "guard");
    let inputs = [
        request(None, json!({"task_id": "t1", "delegation_depth": 2, "deadline_at": "2999-01-01T00:00:00Z"})),
        request(Some("public"), json!({})),
        request(Some("finance"), json!({})),
        request(Some("hr"), json!({"task_id": "t2"})),
        request(None, json!({"task_id": "t3", "delegation_depth": 3})),
        request(None, json!({"task_id": "t4", "deadline_at": "2000-01-01T00:00:00Z"})),
        request(None, json!({"task_id": "t5", "delegation_depth": "deep"})),
    ];
    // Stateless: `NoState` fails any state access.
    let run = run_sync(&mut *op, &mut NoState, inputs);
    assert!(run.failed.is_empty(), "the guard refuses, it never dead-letters: {:?}", run.failed);
    let (pass, refusal, audit) = (Port::DEFAULT, REFUSED_PORT, guard::AUDIT_PORT);
    assert_eq!(run.ports(), [pass, pass, pass, audit, audit, refusal, audit, refusal, audit, refusal]);
    let audits: Vec<&str> = run.on(audit).iter().map(|p| p["event_type"].as_str().unwrap()).collect();
    assert_eq!(audits, ["zone_violation", "delegation_too_deep", "deadline_passed", "payload_unreadable"]);
    assert_eq!(run.on(audit)[0]["details"]["task_id"], "t2");
    assert_eq!(run.on(audit)[3]["details"]["field"], "payload.delegation_depth");
    let statuses: Vec<&Value> = run.on(refusal);
    assert_eq!(
        statuses[0],
        &json!({"task_id": "t3", "responder_id": "billing", "status": "failed", "summary": "delegation depth 3 exceeds the limit of 2"})
    );
    assert_eq!(statuses[1]["summary"], "the deadline 2000-01-01T00:00:00Z has passed");
    for r in run.records(refusal) {
        assert_eq!((r.envelope.kind, r.envelope.sender_id.as_str()), (EnvelopeType::TaskStatus, "billing"));
    }
    for r in run.records(audit) {
        assert_eq!((r.envelope.kind, r.envelope.sender_id.as_str()), (EnvelopeType::Audit, "billing"));
    }
}

#[test]
fn guard_options_are_checked() {
    assert!(refused::<GuardConfig>("agent = \"a\"\nzone = [\"x\"]").contains("unknown field `zone`"));
    assert_eq!(build_errors(&config::<GuardConfig>("agent = \"\""), "g"), ["`agent` must name this agent"]);
    let unknown: GuardConfig = config("agent = \"billing\"\nadmitted = \"members\"");
    assert_eq!(build_errors(&unknown, "g"), ["`members` is not an admissions operator"]);
}

fn onboard(sender: &str, zone: Option<&str>, payload: Value) -> Record {
    let mut v = json!({"type": "onboard", "id": format!("{sender}-{}", payload["action"].as_str().unwrap_or("none")), "sender_id": sender, "payload": payload});
    if let Some(z) = zone {
        v["zone"] = z.into();
    }
    record(&v.to_string())
}

fn decision(sender: &str, action: &str, requester: &str) -> Record {
    onboard(sender, None, json!({"action": action, "requester_id": requester}))
}

#[test]
fn admissions_share_the_admitted_set_with_the_guards_that_name_them() {
    let a: AdmissionsConfig = config("gatekeeper = [\"gk-1\", \"gk-2\"]");
    assert_eq!(a.ports(), Ports::single());
    assert!(a.tables("members").is_empty(), "the set is the instance's, in memory");
    let mut resources = Resources::default();
    a.provides("members", &mut resources);
    let shared = resources.get::<SharedAdmissions>("members").expect("provided under the node's name");
    let g: GuardConfig = config("agent = \"billing\"\nadmitted = \"members\"");
    let mut admissions = build_sync(&a, "members", &resources);
    let mut guard = build_sync(&g, "guard", &resources);

    let hello = |who: &str| record(&json!({"sender_id": who, "payload": {"task_id": who}}).to_string());
    let run = run_sync(&mut *guard, &mut NoState, [hello("alice")]);
    assert_eq!(run.ports(), [guard::AUDIT_PORT]);
    assert_eq!(run.on(guard::AUDIT_PORT)[0]["event_type"], "not_admitted");

    let decisions = [
        decision("gk-1", "onboard_complete", "alice"),
        decision("gk-2", "onboard_complete", "bob"),
        decision("gk-1", "onboard_challenge", "carol"),
        record(r#"{"type":"request","sender_id":"mallory","payload":{}}"#),
    ];
    let run = run_sync(&mut *admissions, &mut NoState, decisions);
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    assert_eq!(run.ports(), [Port::DEFAULT; 4], "every envelope passes on");
    assert!(shared.contains("alice") && shared.contains("bob") && !shared.contains("carol"));

    let run = run_sync(&mut *guard, &mut NoState, [hello("alice"), hello("carol")]);
    assert_eq!(run.ports(), [Port::DEFAULT, guard::AUDIT_PORT]);

    // Forged, zoned or unreadable decisions are dead letters and change nothing.
    let bad = [
        decision("mallory", "onboard_complete", "mallory"),
        decision("mallory", "onboard_reject", "alice"),
        onboard("gk-1", Some("finance"), json!({"action": "onboard_reject", "requester_id": "alice"})),
        onboard("gk-1", None, json!({"action": "onboard_complete", "requester_id": 7})),
        onboard("gk-1", None, json!({"action": "onboard_complete"})),
    ];
    let run = run_sync(&mut *admissions, &mut NoState, bad);
    let dead = run.dead_lettered();
    assert_eq!(dead.len(), 5, "{:?}", run.emitted);
    assert!(dead[0].starts_with("forged decision refused: `onboard_complete` from `mallory`"), "{dead:?}");
    assert!(dead[2].contains("in zone `finance`"), "{dead:?}");
    assert!(run.state_failures().is_empty());
    assert!(shared.contains("alice") && !shared.contains("mallory"));

    run_sync(&mut *admissions, &mut NoState, [decision("gk-2", "onboard_reject", "alice")]);
    assert!(!shared.contains("alice"));
    let run = run_sync(&mut *guard, &mut NoState, [hello("alice"), hello("bob")]);
    assert_eq!(run.ports(), [guard::AUDIT_PORT, Port::DEFAULT]);
}

fn asks(who: &str, action: &str, extra: Value) -> Record {
    let mut payload = json!({"action": action, "requester_id": who});
    payload.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    onboard(who, None, payload)
}

#[test]
fn onboard_open_admits_every_request_and_audits_each_decision() {
    let c: OnboardConfig = config("mode = \"open\"");
    assert_eq!(c.ports(), Ports { default: true, named: vec![onboard::AUDIT.into()] });
    assert_eq!(port(&c, onboard::AUDIT), onboard::AUDIT_PORT);
    assert_eq!(c.tables("gate"), [TableSpec::kept("gate.admitted"), TableSpec::kept("gate.challenges")]);
    let mut op = sync(&c, "gate");
    let mut state = Tables::default();
    let inputs = [
        asks("alice", "onboard_request", json!({})),
        asks("alice", "onboard_response", json!({"response": "x"})), // admitted: audited only
        asks("bob", "onboard_response", json!({"response": "x"})),
        decision("gatekeeper", "onboard_complete", "alice"), // its own answer read back
        decision("mallory", "onboard_complete", "mallory"),
        asks("carol", "Onboard_Request", json!({})),
    ];
    let run = run_sync(&mut *op, &mut state, inputs);
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    let (answer, audit) = (Port::DEFAULT, onboard::AUDIT_PORT);
    assert_eq!(run.ports(), [answer, audit, audit, answer, audit, audit, audit]);
    let answers: Vec<(&str, &str)> =
        run.on(answer).iter().map(|p| (p["action"].as_str().unwrap(), p["requester_id"].as_str().unwrap())).collect();
    assert_eq!(answers, [("onboard_complete", "alice"), ("onboard_reject", "bob")]);
    let events: Vec<&str> = run.on(audit).iter().map(|p| p["event_type"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["onboard_admitted", "onboard_rejected", "onboard_rejected", "onboard_forged", "onboard_unknown_action"]
    );
    assert!(run.on(audit)[1]["details"]["reason"].as_str().unwrap().contains("membership kept"));
    for r in run.records(answer) {
        assert_eq!((r.envelope.kind, r.envelope.sender_id.as_str()), (EnvelopeType::Onboard, "gatekeeper"));
    }
    assert_eq!(state.keys_of("gate.admitted"), ["alice"]);
    // An open group asks no challenge: of its two tables, only `gate.admitted` is written.
    assert!(table_names(&c.tables("gate")).contains("gate.admitted"));
    assert_eq!(state.written(), ["gate.admitted".to_owned()].into());
}

#[test]
fn onboard_fails_on_a_broken_store_and_dead_letters_what_is_not_onboarding() {
    let c: OnboardConfig = config("mode = \"open\"\nagent = \"gk\"");
    let mut op = sync(&c, "gate");
    assert_store_failure(&mut *op, "gate.admitted", vec![asks("alice", "onboard_request", json!({}))]);
    let run = run_sync(&mut *op, &mut Tables::default(), [record(r#"{"type":"request","payload":{}}"#)]);
    assert_eq!(run.dead_lettered(), ["onboarding reads `onboard` envelopes, not `request`"]);
    assert!(run.emitted.is_empty());
}

/// A variable cargo sets for every test process it runs: the group secret of the gated
/// tests (read from the environment as `secret_env` is; nothing is written to it).
const SECRET_ENV: &str = "CARGO_MANIFEST_DIR";

#[test]
fn onboard_gated_admits_only_the_right_answer_to_the_pending_challenge() {
    let secret = std::env::var(SECRET_ENV).expect("cargo sets CARGO_MANIFEST_DIR when it runs a test");
    let c: OnboardConfig = config(&format!("mode = \"gated\"\nsecret_env = \"{SECRET_ENV}\""));
    let mut op = sync(&c, "gate");
    let mut state = Tables::default();
    let run = run_sync(
        &mut *op,
        &mut state,
        [asks("alice", "onboard_request", json!({})), asks("bob", "onboard_request", json!({}))],
    );
    assert_eq!(run.ports(), [Port::DEFAULT, Port::DEFAULT], "challenges, no decision yet");
    let challenge = |i: usize| run.on(Port::DEFAULT)[i]["challenge"].as_str().unwrap().to_owned();
    let (for_alice, for_bob) = (challenge(0), challenge(1));
    assert_ne!(for_alice, for_bob);
    assert_eq!(state.text("gate.challenges", b"alice"), Some(for_alice.clone()));
    assert!(state.keys_of("gate.admitted").is_empty());

    let answer = |who: &str, challenge: &str, response: String| {
        asks(who, "onboard_response", json!({"challenge": challenge, "response": response}))
    };
    let run = run_sync(
        &mut *op,
        &mut state,
        [
            answer("alice", &for_alice, sign(secret.as_bytes(), &for_alice)),
            answer("bob", &for_bob, sign(b"a guess", &for_bob)),
            answer("bob", &for_bob, sign(secret.as_bytes(), &for_bob)), // the challenge is spent
        ],
    );
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    let decisions: Vec<(&str, &str)> = run
        .on(Port::DEFAULT)
        .iter()
        .map(|p| (p["action"].as_str().unwrap(), p["requester_id"].as_str().unwrap()))
        .collect();
    assert_eq!(decisions, [("onboard_complete", "alice"), ("onboard_reject", "bob"), ("onboard_reject", "bob")]);
    let reasons: Vec<&str> =
        run.on(onboard::AUDIT_PORT).iter().map(|p| p["details"]["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["right answer", "wrong answer to the challenge", "no challenge is pending for this requester"]
    );
    assert_eq!(state.keys_of("gate.admitted"), ["alice"]);
    assert!(state.keys_of("gate.challenges").is_empty(), "answered challenges are spent");
    assert_writes_its_tables(&c, "gate", &state);
}

#[test]
fn onboard_gated_without_its_secret_dead_letters_requests() {
    let c: OnboardConfig = config("mode = \"gated\"\nsecret_env = \"KAFCLAW_KINDS_TEST_NO_SUCH_SECRET\"");
    let mut op = sync(&c, "gate");
    let run = run_sync(&mut *op, &mut Tables::default(), [asks("alice", "onboard_request", json!({}))]);
    assert_eq!(
        run.dead_lettered(),
        ["the group secret variable `KAFCLAW_KINDS_TEST_NO_SUCH_SECRET` is not set: gated onboarding cannot answer"]
    );
    assert!(build_errors(&config::<OnboardConfig>("mode = \"gated\""), "gate")[0].contains("needs `secret_env`"));
    assert!(build_errors(&config::<OnboardConfig>("mode = \"closed\""), "gate")[0].contains("mode `closed`"));
}

fn announce(time: &str, agent: &str, action: &str) -> Record {
    let kind = if action == "heartbeat" { "heartbeat" } else { "announce" };
    let payload = json!({"action": action, "identity": {"agent_id": agent, "agent_name": agent.to_uppercase()}});
    record(
        &json!({"type": kind, "sender_id": agent, "timestamp": format!("2026-11-01T{time}Z"), "payload": payload})
            .to_string(),
    )
}

#[test]
fn roster_tracks_members_and_expires_the_silent_ones() {
    let c: RosterConfig = config("ttl = \"15s\"");
    assert_eq!(c.ports(), Ports::single());
    assert_eq!(c.tables("roster"), [TableSpec::kept("roster.members")]);
    let mut op = sync(&c, "roster");
    let mut state = Tables::default();
    let inputs = [
        announce("09:00:00", "alice", "join"),
        announce("09:00:10", "bob", "join"),
        announce("09:00:20", "bob", "heartbeat"), // alice last seen 20 s ago: expired
        announce("09:00:21", "carol", "join"),
        announce("09:00:25", "bob", "leave"),
    ];
    let run = run_sync(&mut *op, &mut state, inputs);
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    let entries: Vec<(&str, &str, &str)> = run
        .on(Port::DEFAULT)
        .iter()
        .map(|p| (p["agent_id"].as_str().unwrap(), p["status"].as_str().unwrap(), p["last_seen"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        [
            ("alice", "active", "2026-11-01T09:00:00.000Z"),
            ("bob", "active", "2026-11-01T09:00:10.000Z"),
            ("bob", "active", "2026-11-01T09:00:20.000Z"),
            ("alice", "expired", "2026-11-01T09:00:00.000Z"),
            ("carol", "active", "2026-11-01T09:00:21.000Z"),
            ("bob", "left", "2026-11-01T09:00:25.000Z"),
        ]
    );
    let bob = run.on(Port::DEFAULT)[2];
    assert_eq!((bob["joined_at"].as_str(), bob["ttl_ms"].as_i64()), (Some("2026-11-01T09:00:10Z"), Some(15_000)));
    assert_eq!(bob["identity"]["agent_name"], "BOB");
    for r in run.records(Port::DEFAULT) {
        assert_eq!(r.envelope.kind, EnvelopeType::Roster);
        assert_eq!(r.envelope.correlation_id, r.envelope.payload["agent_id"].as_str().unwrap(), "keyed by member");
    }
    assert_eq!(state.keys_of("roster.members"), ["carol"]);
    assert_writes_its_tables(&c, "roster", &state);
}

#[test]
fn roster_fails_on_a_broken_store_and_dead_letters_what_is_not_an_announce() {
    let c: RosterConfig = config("");
    let mut op = sync(&c, "roster");
    assert_store_failure(&mut *op, "roster.members", vec![announce("09:00:00", "alice", "join")]);
    let run = run_sync(&mut *op, &mut Tables::default(), [record(r#"{"type":"request","payload":{}}"#)]);
    assert_eq!(run.dead_lettered(), ["a roster reads `announce` and `heartbeat` envelopes, not `request`"]);
    assert!(refused::<RosterConfig>("ttl = \"15s\"\nmembers = 3").contains("unknown field `members`"));
    assert_eq!(build_errors(&config::<RosterConfig>("ttl = \"never\""), "roster").len(), 1);
}
