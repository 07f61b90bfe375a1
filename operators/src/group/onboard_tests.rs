//! Tests of `onboard` and `admissions` (red-team cases: forged decisions, unreadable and
//! repeated fields, unknown actions, exact HMAC answers).

use super::*;
use crate::envelope::Envelope;

#[test]
fn hmac_answers_verify_exactly_and_wrong_ones_do_not() {
    let answer = sign(b"s3cret", "abc");
    assert_eq!(answer.len(), 64);
    assert!(verify(b"s3cret", "abc", &answer));
    assert!(!verify(b"other", "abc", &answer));
    assert!(!verify(b"s3cret", "abd", &answer));
    assert!(!verify(b"s3cret", "abc", "not hex"));
    // Exact: no trimming, no other case, no prefix.
    for near in [format!(" {answer}"), format!("{answer} "), format!("{answer}\n"), answer.to_uppercase()] {
        assert!(!verify(b"s3cret", "abc", &near), "{near:?}");
    }
    assert!(!verify(b"s3cret", "abc", &format!("0x{}", &answer[2..])));
    assert!(!verify(b"s3cret", "abc", &answer[..62]));
    // RFC 4231 test case 2.
    assert_eq!(
        sign(b"Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

use crate::testing::Tables;

const SECRET: &str = "s3cret";

/// A gated gatekeeper (the secret set directly: tests do not touch the environment).
fn gated() -> Onboard {
    let config = OnboardConfig { mode: Spanned::new(0..0, "open".into()), secret_env: None, agent: default_agent() };
    let mut gate = config.onboard("gate").unwrap();
    gate.gated = true;
    gate.secret = Some(SECRET.into());
    gate
}

/// An `onboard` envelope from `sender`, decoded from its text as it comes off the wire.
fn from(sender: &str, payload: &str) -> Record {
    let text = format!(
        r#"{{"type":"onboard","correlation_id":"c","sender_id":"{sender}","timestamp":"2026-11-01T09:00:00Z","payload":{payload}}}"#
    );
    Record::detached(Envelope::decode(text.as_bytes()).unwrap())
}

/// The gatekeeper's outputs for `record`: (answers' payloads, audits' payloads).
fn step(gate: &Onboard, state: &mut Tables, record: &Record) -> (Vec<Value>, Vec<Value>) {
    let mut out = Emit::default();
    gate.apply(record, state, &mut out).unwrap();
    let (mut answers, mut audits) = (vec![], vec![]);
    for (port, r) in out.drain() {
        let v = (*r.envelope.payload).clone();
        if port == Port::DEFAULT { answers.push(v) } else { audits.push(v) }
    }
    (answers, audits)
}

/// Asks for a challenge for `who` and returns it.
fn challenge(gate: &Onboard, state: &mut Tables, who: &str) -> String {
    let (answers, _) =
        step(gate, state, &from(who, &format!(r#"{{"action":"onboard_request","requester_id":"{who}"}}"#)));
    answers[0]["challenge"].as_str().unwrap().to_owned()
}

fn response(who: &str, challenge: &str, response: &str) -> Record {
    from(
        who,
        &format!(
            r#"{{"action":"onboard_response","requester_id":"{who}","challenge":"{challenge}","response":{response}}}"#
        ),
    )
}

#[test]
fn unreadable_fields_are_rejected_and_audited_naming_the_field_and_spend_the_challenge() {
    let gate = gated();
    for (payload, field) in [
        (r#""response":null"#, "payload.response"),
        (r#""response":{}"#, "payload.response"),
        (r#""challenge":null,"response":"00""#, "payload.challenge"),
        (r#""challenge":"CH","response":"00","response":"RIGHT""#, "payload.response"),
    ] {
        let mut state = Tables::default();
        let ch = challenge(&gate, &mut state, "alice");
        let payload = payload.replace("CH", &ch).replace("RIGHT", &sign(SECRET.as_bytes(), &ch));
        let p = format!(r#"{{"action":"onboard_response","requester_id":"alice",{payload}}}"#);
        let (answers, audits) = step(&gate, &mut state, &from("alice", &p));
        assert_eq!(answers.len(), 1, "{payload}");
        assert_eq!((&answers[0]["action"], &answers[0]["requester_id"]), (&json!("onboard_reject"), &json!("alice")));
        assert!(answers[0]["reason"].as_str().unwrap().starts_with(&format!("`{field}`: ")), "{}", answers[0]);
        assert_eq!(audits[0]["event_type"], "onboard_unreadable");
        assert_eq!(audits[0]["details"]["field"], field);
        assert_eq!(audits[0]["details"]["sender_id"], "alice");
        // The challenge is spent: even the right answer now finds none pending.
        let (answers, _) =
            step(&gate, &mut state, &response("alice", &ch, &json!(sign(SECRET.as_bytes(), &ch)).to_string()));
        assert_eq!(answers[0]["reason"], "no challenge is pending for this requester", "{payload}");
    }
    // A requester that cannot be read: audited, no one to reject.
    let mut state = Tables::default();
    for p in [
        r#"{"action":"onboard_request","requester_id":5}"#,
        r#"{"action":"onboard_request","requester_id":"a","requester_id":"b"}"#,
    ] {
        let (answers, audits) = step(&gate, &mut state, &from("bob", p));
        assert!(answers.is_empty(), "{p}");
        assert_eq!(audits[0]["event_type"], "onboard_unreadable");
        assert_eq!(audits[0]["details"]["field"], "payload.requester_id");
        assert_eq!(audits[0]["details"]["requester_id"], Value::Null);
    }
    // An action that cannot be read: the sender is the requester.
    let (answers, audits) = step(&gate, &mut state, &from("bob", r#"{"action":["onboard_request"]}"#));
    assert_eq!(
        (answers[0]["requester_id"].as_str(), audits[0]["details"]["field"].as_str()),
        (Some("bob"), Some("payload.action"))
    );
}

#[test]
fn unknown_actions_are_audited_and_change_nothing() {
    let gate = gated();
    let mut state = Tables::default();
    for action in [r#""Onboard_Request""#, r#"" onboard_request""#, r#""onboard_request ""#, r#""""#] {
        let p = format!(r#"{{"action":{action},"requester_id":"bob"}}"#);
        let (answers, audits) = step(&gate, &mut state, &from("bob", &p));
        assert!(answers.is_empty(), "{action}");
        assert_eq!(audits.len(), 1, "{action}");
        assert_eq!(audits[0]["event_type"], "onboard_unknown_action");
        assert!(audits[0]["details"]["reason"].as_str().unwrap().starts_with("unknown action"));
    }
    assert!(state.is_empty());
}

#[test]
fn only_the_exact_answer_admits() {
    let gate = gated();
    let mut state = Tables::default();
    let ch = challenge(&gate, &mut state, "alice");
    let right_now = sign(SECRET.as_bytes(), &ch);
    let (answers, _) = step(&gate, &mut state, &response("alice", &ch, &json!(format!(" {right_now}")).to_string()));
    assert_eq!(answers[0]["reason"], "wrong answer to the challenge");
    let ch = challenge(&gate, &mut state, "alice");
    let (answers, audits) =
        step(&gate, &mut state, &response("alice", &ch, &json!(sign(SECRET.as_bytes(), &ch)).to_string()));
    assert_eq!(
        (answers[0]["action"].as_str(), audits[0]["event_type"].as_str()),
        (Some("onboard_complete"), Some("onboard_admitted"))
    );
    // An admitted member is never sent a reject (which would evict it): audited only.
    let (answers, audits) = step(&gate, &mut state, &response("alice", "00", r#""00""#));
    assert!(answers.is_empty());
    assert!(audits[0]["details"]["reason"].as_str().unwrap().contains("membership kept"));
}

#[test]
fn the_gatekeeper_audits_forged_decisions_and_passes_its_own() {
    let gate = gated();
    let mut state = Tables::default();
    let forged = |state: &mut Tables, sender: &str, payload: &str| {
        let (answers, audits) = step(&gate, state, &from(sender, payload));
        assert!(answers.is_empty());
        audits
            .first()
            .map(|a| (a["event_type"].clone(), a["details"]["reason"].clone(), a["details"]["sender_id"].clone()))
    };
    let complete = r#"{"action":"onboard_complete","requester_id":"mallory"}"#;
    let (event, reason, sender) = forged(&mut state, "mallory", complete).unwrap();
    assert_eq!((event, sender), (json!("onboard_forged"), json!("mallory")));
    assert_eq!(reason, "`onboard_complete` from `mallory`: only the gatekeeper `gatekeeper` decides");
    let reject_alice = r#"{"action":"onboard_reject","requester_id":"alice","reason":"x"}"#;
    assert_eq!(forged(&mut state, "mallory", reject_alice).unwrap().0, "onboard_forged");
    // Its own decisions, read back, pass without effect; a zone marks a forgery.
    let ch = challenge(&gate, &mut state, "alice");
    step(&gate, &mut state, &response("alice", &ch, &json!(sign(SECRET.as_bytes(), &ch)).to_string()));
    let own = r#"{"action":"onboard_complete","requester_id":"alice"}"#;
    assert_eq!(forged(&mut state, "gatekeeper", own), None);
    assert_eq!(forged(&mut state, "gatekeeper", own), None, "a replay of its own decision");
    assert_eq!(
        forged(&mut state, "gatekeeper", r#"{"action":"onboard_challenge","requester_id":"x","challenge":"00"}"#),
        None
    );
    assert_eq!(forged(&mut state, "gatekeeper", complete), None, "its id: not told from its own");
    let mut zoned = from("gatekeeper", own);
    zoned.envelope.zone = Some("hr".into());
    let (_, audits) = step(&gate, &mut state, &zoned);
    assert!(audits[0]["details"]["reason"].as_str().unwrap().contains("zone `hr`"));
}

/// Runs `admissions` (gatekeeper ids `gatekeeper`) over decisions: the failures' messages.
fn admissions(config: AdmissionsConfig) -> (Arc<SharedAdmissions>, impl FnMut(Record) -> Result<(), String>) {
    let mut resources = Resources::default();
    config.provides("admitted", &mut resources);
    let shared = resources.get::<SharedAdmissions>("admitted").unwrap();
    let mut op = config.admissions("admitted", &resources);
    let run =
        move |r: Record| op.process(r, &mut crate::api::state::NoState, &mut Emit::default()).map_err(|f| f.message());
    (shared, run)
}

#[test]
fn admissions_count_only_the_gatekeepers_decisions() {
    let (shared, mut run) = admissions(AdmissionsConfig { gatekeeper: None });
    let complete = |who: &str| format!(r#"{{"action":"onboard_complete","requester_id":"{who}"}}"#);
    let refused = run(from("mallory", &complete("mallory"))).unwrap_err();
    assert_eq!(
        refused,
        "forged decision refused: `onboard_complete` from `mallory`, who is not the gatekeeper (`gatekeeper`)"
    );
    assert!(run(from("mallory", &complete("mallory"))).is_err(), "a replay is refused again");
    assert!(!shared.contains("mallory"));
    run(from("gatekeeper", &complete("alice"))).unwrap();
    run(from("gatekeeper", &complete("alice"))).unwrap();
    assert!(shared.contains("alice"), "a replayed decision changes nothing");
    // A forged refusal does not evict.
    let reject = r#"{"action":"onboard_reject","requester_id":"alice"}"#;
    assert!(run(from("mallory", reject)).unwrap_err().contains("`onboard_reject` from `mallory`"));
    assert!(run(from("", reject)).is_err());
    // The gatekeeper's id in a zone: refused.
    let mut zoned = from("gatekeeper", reject);
    zoned.envelope.zone = Some("other-group".into());
    assert!(run(zoned).unwrap_err().contains("in zone `other-group`"));
    assert!(shared.contains("alice"));
    // Repeated fields: refused, naming the field.
    let twice = r#"{"action":"onboard_reject","requester_id":"bob","requester_id":"alice"}"#;
    assert_eq!(
        run(from("gatekeeper", twice)).unwrap_err(),
        "`payload.requester_id`: appears more than once in the payload"
    );
    assert!(shared.contains("alice"));
    // Requests and other actions pass without effect, from anyone.
    run(from("mallory", r#"{"action":"onboard_request","requester_id":7,"identity":[]}"#)).unwrap();
    run(from("gatekeeper", reject)).unwrap();
    assert!(!shared.contains("alice"));
}

#[test]
fn admissions_read_their_fields_fail_closed_and_follow_the_configured_gatekeeper() {
    let ids = Some(Ids::Many(vec!["gk-1".into(), "gk-2".into()]));
    let (shared, mut run) = admissions(AdmissionsConfig { gatekeeper: ids });
    run(from("gk-2", r#"{"action":"onboard_complete","requester_id":"alice"}"#)).unwrap();
    assert!(shared.contains("alice"));
    let e = run(from("gatekeeper", r#"{"action":"onboard_complete","requester_id":"bob"}"#)).unwrap_err();
    assert!(e.ends_with("who is not the gatekeeper (`gk-1`, `gk-2`)"), "{e}");
    let unread = run(from("gk-1", r#"{"action":"onboard_reject","requester_id":["alice"]}"#)).unwrap_err();
    assert_eq!(unread, r#"`payload.requester_id`: expected a string, got ["alice"]"#);
    assert!(run(from("gk-1", r#"{"action":"onboard_reject"}"#)).unwrap_err().contains("names no requester"));
    assert!(
        run(from("gk-1", r#"{"action":true,"requester_id":"alice"}"#)).unwrap_err().starts_with("`payload.action`")
    );
    assert!(shared.contains("alice"), "an unread refusal is a dead letter, not a removal");
    // No gatekeeper at all: every decision refused.
    let (shared, mut run) = admissions(AdmissionsConfig { gatekeeper: Some(Ids::Many(vec![])) });
    assert!(run(from("gatekeeper", r#"{"action":"onboard_complete","requester_id":"a"}"#)).is_err());
    assert!(!shared.contains("a"));
}
