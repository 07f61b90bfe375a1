//! Tests of `approve`'s runtime half through the operator test kit: parking, decisions,
//! duplicates, unknown and malformed decisions, timeouts by punctuation, replays.

use std::sync::Arc;

use super::*;
use crate::api::resources::Resources;
use crate::testing::{Run, Tables, record, run_sync_from, table_names};

const NODE: &str = "review";

fn config(extra: &str) -> ApproveConfig {
    toml::from_str(&format!("decisions = \"decisions\"\nsummary = \"refund {{{{ payload.amount }}}}\"\n{extra}"))
        .unwrap()
}

#[test]
fn a_bad_summary_template_is_an_option_error() {
    let c: ApproveConfig = toml::from_str("decisions = \"d\"\nsummary = \"{{ x\"").unwrap();
    let errors = c.check(NODE, &["a", "d"], &Resources::default());
    assert!(errors[0].message.contains("template line 1"), "{:?}", errors[0].message);
}

fn op(extra: &str) -> Approve {
    let mut a = config(extra).runtime(NODE, &Resources::new(".", "shop")).unwrap();
    a.clock = || 1_000_000;
    a
}

/// An input record at `offset` of partition 3 of topic `refunds`.
fn input(offset: i64, amount: u32) -> Record {
    let mut r = record(&format!(r#"{{"correlation_id":"c{offset}","payload":{{"amount":{amount}}}}}"#));
    let mut o = (*r.origin).clone();
    o.location = Arc::from("refunds");
    o.partition = 3;
    o.offset = offset;
    o.input_id = None;
    o.trace_id = format!("{offset:032x}");
    r.origin = Arc::new(o);
    r
}

fn decision(id: &str, verdict: &str, approver: &str, offset: i64) -> Record {
    let mut r = record(&format!(
        r#"{{"type":"approval","payload":{{"request_id":"{id}","decision":"{verdict}","approver":"{approver}","reason":"because","requester":"shop/review"}}}}"#
    ));
    let mut o = (*r.origin).clone();
    o.location = Arc::from("decisions");
    o.partition = 3;
    o.offset = offset;
    r.origin = Arc::new(o);
    r
}

fn run(a: &mut Approve, t: &mut Tables, inputs: Vec<(&'static str, Record)>) -> Run {
    run_sync_from(a, t, inputs)
}

fn request_ids(run: &Run) -> Vec<String> {
    run.on(REQUESTS_PORT).iter().map(|p| p["request_id"].as_str().unwrap().to_owned()).collect()
}

fn audit_events(run: &Run) -> Vec<String> {
    run.on(AUDIT_PORT).iter().map(|p| p["event_type"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_record_waits_and_an_approval_releases_it_once() {
    let mut a = op("timeout = \"30m\"");
    let mut t = Tables::default();
    let parked = run(&mut a, &mut t, vec![("refunds", input(7, 40)), ("refunds", input(8, 5))]);
    assert!(parked.on(Port::DEFAULT).is_empty(), "nothing passes before a decision");
    let ids = request_ids(&parked);
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let req = parked.on(REQUESTS_PORT)[0];
    assert_eq!((req["summary"].as_str(), req["partition"].as_i64()), (Some("refund 40"), Some(3)));
    assert_eq!(req["requester"], "shop/review");
    assert!(req["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(parked.records(REQUESTS_PORT)[0].envelope.kind, EnvelopeType::ApprovalRequest);
    assert_eq!(t.len("review.pending"), 2);
    assert_eq!(t.len("review.timeouts"), 2);

    let decided = run(
        &mut a,
        &mut t,
        vec![
            ("decisions", decision(&ids[1], "approved", "ana", 0)),
            ("decisions", decision(&ids[1], "rejected", "bob", 1)),
        ],
    );
    let out = decided.on(Port::DEFAULT);
    assert_eq!(out.len(), 1, "released once");
    assert_eq!(out[0]["amount"], 5);
    assert_eq!(out[0]["approval"]["approver"], "ana");
    assert_eq!(out[0]["approval"]["decision"], "approved");
    assert!(decided.on(REJECTED_PORT).is_empty(), "the duplicate is not applied");
    assert_eq!(audit_events(&decided), ["approval_granted", "approval_ignored"]);
    let released = decided.records(Port::DEFAULT)[0];
    assert_eq!(released.origin.trace_id, format!("{:032x}", 8), "the parked record's trace");
    assert_eq!(&*released.origin.location, "decisions", "output ids derive from the decision");
    assert_eq!(t.len("review.pending"), 1, "the other key still waits");
    assert_eq!(t.len("review.timeouts"), 1);
    assert_eq!(table_names(&config("").tables(NODE)), t.written());
}

#[test]
fn a_rejection_goes_to_rejected_with_reason_and_approver() {
    let mut a = op("");
    let mut t = Tables::default();
    let ids = request_ids(&run(&mut a, &mut t, vec![("refunds", input(1, 9))]));
    let out = run(&mut a, &mut t, vec![("decisions", decision(&ids[0], "rejected", "ana", 0))]);
    let r = out.on(REJECTED_PORT);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0]["approval"]["reason"].as_str(), r[0]["approval"]["approver"].as_str()),
        (Some("because"), Some("ana"))
    );
    assert_eq!(audit_events(&out), ["approval_rejected"]);
    assert_eq!(a.punctuation_interval(), None, "no timeout: no punctuation");
}

#[test]
fn unknown_foreign_and_malformed_decisions() {
    let mut a = op("");
    let mut t = Tables::default();
    let unknown = run(&mut a, &mut t, vec![("decisions", decision("apr-nope", "approved", "ana", 0))]);
    assert_eq!(audit_events(&unknown), ["approval_unknown"]);
    assert!(unknown.failed.is_empty());

    let mut foreign = decision("apr-x", "approved", "ana", 1);
    foreign.envelope.payload["requester"] = "other/node".into();
    let skipped = run(&mut a, &mut t, vec![("decisions", foreign)]);
    assert!(skipped.emitted.is_empty() && skipped.failed.is_empty(), "another waiter's decision is skipped");

    let mut bad = decision("apr-x", "approved", "ana", 2);
    bad.envelope.payload["decision"] = "maybe".into();
    let not_approval = record(r#"{"type":"request","payload":{"request_id":"x"}}"#);
    let failed = run(&mut a, &mut t, vec![("decisions", bad), ("decisions", not_approval)]);
    let dead = failed.dead_lettered();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead[0].contains("`maybe`"), "{}", dead[0]);
    assert!(dead[1].contains("not `approval`"), "{}", dead[1]);
}

#[test]
fn a_timeout_rejects_or_expires_by_punctuation() {
    for (on_timeout, port, verdict) in [("reject", REJECTED_PORT, "rejected"), ("expire", EXPIRED_PORT, "expired")] {
        let mut a = op(&format!("timeout = \"10m\"\non_timeout = \"{on_timeout}\""));
        assert_eq!(a.punctuation_interval(), Some(Duration::from_secs(1)));
        let mut t = Tables::default();
        let ids = request_ids(&run(&mut a, &mut t, vec![("refunds", input(1, 1))]));
        let mut emit = Emit::default();
        let deadline = 1_000_000 + 600_000;
        a.punctuate(deadline - 1, 3, &mut t, &mut emit).unwrap();
        assert_eq!(emit.drain().count(), 0, "not yet");
        a.punctuate(deadline, 3, &mut t, &mut emit).unwrap();
        let out: Vec<(Port, Record)> = emit.drain().collect();
        let ports: Vec<Port> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(ports, [AUDIT_PORT, port]);
        let released = &out[1].1;
        assert_eq!(released.envelope.payload["approval"]["decision"], verdict);
        assert_eq!(released.envelope.payload["approval"]["approver"], TIMEOUT_APPROVER);
        assert_eq!(released.origin.offset, 1, "a timeout releases under the parked record's origin");
        assert_eq!((t.len("review.pending"), t.len("review.timeouts")), (0, 0));
        a.punctuate(deadline + 5_000, 3, &mut t, &mut emit).unwrap();
        assert_eq!(emit.drain().count(), 0, "decided once");
        let late = run(&mut a, &mut t, vec![("decisions", decision(&ids[0], "approved", "ana", 0))]);
        assert!(late.on(Port::DEFAULT).is_empty());
        assert_eq!(audit_events(&late), ["approval_ignored"]);
    }
}

#[test]
fn a_decision_after_the_deadline_loses_to_the_timeout_even_before_punctuation() {
    let mut a = op("timeout = \"1s\"");
    let mut t = Tables::default();
    let ids = request_ids(&run(&mut a, &mut t, vec![("refunds", input(1, 1))]));
    a.clock = || 1_000_000 + 1_000;
    let out = run(&mut a, &mut t, vec![("decisions", decision(&ids[0], "approved", "ana", 0))]);
    assert!(out.on(Port::DEFAULT).is_empty());
    assert_eq!(out.on(REJECTED_PORT).len(), 1);
    assert_eq!(audit_events(&out), ["approval_timed_out", "approval_ignored"]);
}

#[test]
fn a_replay_asks_under_the_same_id_and_a_decided_request_is_not_asked_again() {
    let mut a = op("timeout = \"30m\"");
    let mut t = Tables::default();
    let first = request_ids(&run(&mut a, &mut t, vec![("refunds", input(4, 1))]));
    // The same input again while waiting (a redelivery: the runtime rebuilds its tasks after
    // an abort, a rebalance or a restart): no second request.
    let again = run(&mut op("timeout = \"30m\""), &mut t, vec![("refunds", input(4, 1))]);
    assert!(again.emitted.is_empty(), "{:?}", again.ports());
    run(&mut a, &mut t, vec![("decisions", decision(&first[0], "approved", "ana", 0))]);
    // `kafclaw replay` wipes every table but the journal: the input comes again.
    let mut wiped = Tables::default();
    for (table, key) in t.keys() {
        if table == "review.decisions" {
            let v = t.get(&table, &key).unwrap().unwrap();
            wiped.put(&table, &key, &v).unwrap();
        }
    }
    let mut fresh = op("timeout = \"30m\"");
    let replayed = run(&mut fresh, &mut wiped, vec![("refunds", input(4, 1))]);
    assert!(request_ids(&replayed).is_empty(), "not asked twice");
    let out = replayed.on(Port::DEFAULT);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["approval"]["approver"], "ana");
    // A fresh operator derives the same id for the same input.
    let mut other = op("");
    let same = request_ids(&run(&mut other, &mut Tables::default(), vec![("refunds", input(4, 1))]));
    assert_eq!(same, first);
}

#[test]
fn records_of_one_input_fanned_out_get_ids_of_their_own() {
    let mut a = op("");
    let mut t = Tables::default();
    let ids = request_ids(&run(&mut a, &mut t, vec![("refunds", input(4, 1)), ("refunds", input(4, 2))]));
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn store_failures_are_the_stores_fault() {
    let mut a = op("timeout = \"1m\"");
    let mut t = Tables::failing_on("review.pending");
    let out = run(&mut a, &mut t, vec![("refunds", input(1, 1))]);
    assert_eq!(out.state_failures().len(), 1);
    assert!(out.dead_lettered().is_empty());
    let mut emit = Emit::default();
    let mut broken = Tables::failing_on("review.timeouts");
    assert!(matches!(a.punctuate(0, 0, &mut broken, &mut emit), Err(Cause::State(_))));
}

#[test]
fn options_are_checked() {
    let r = Resources::default();
    let errs = |extra: &str| config(extra).check(NODE, &["refunds", "decisions"], &r);
    assert!(errs("").is_empty());
    assert!(errs("timeout = \"soon\"")[0].message.contains("not a duration"));
    let only = config("").check(NODE, &["decisions"], &r);
    assert!(only[0].message.contains("only input"), "{:?}", only[0].message);
    let missing = config("").check(NODE, &["a", "b"], &r);
    assert!(missing[0].message.contains("not one of the inputs"));
    assert!(toml::from_str::<ApproveConfig>("decisions = \"d\"\ntimeuot = \"1m\"").is_err());
    let ports = config("").ports();
    assert_eq!(ports.port(Some(REQUESTS)), Some(REQUESTS_PORT));
    assert_eq!(ports.port(Some(AUDIT)), Some(AUDIT_PORT));
    assert_eq!(ports.port(Some(EXPIRED)), Some(EXPIRED_PORT));
}

#[test]
fn lint_warns_when_nobody_is_asked_or_expired_records_are_dropped() {
    use std::collections::BTreeSet;
    let resources = Resources::default();
    let lint = |extra: &str, read: &[&str]| -> Vec<String> {
        let consumed: BTreeSet<String> = read.iter().map(|p| format!("{NODE}.{p}")).collect();
        let cx = LintContext { consumed: &consumed, exactly_once: true, resources: &resources };
        config(extra).lint(NODE, &cx).into_iter().map(|e| e.message).collect()
    };
    assert!(lint("", &[REQUESTS]).is_empty());
    assert!(lint("", &[])[0].contains("nobody is asked"));
    let dropped = lint("timeout = \"1m\"\non_timeout = \"expire\"", &[REQUESTS]);
    assert!(dropped[0].contains("timed-out records are dropped"), "{dropped:?}");
    assert!(lint("timeout = \"1m\"\non_timeout = \"expire\"", &[REQUESTS, EXPIRED]).is_empty());
}
