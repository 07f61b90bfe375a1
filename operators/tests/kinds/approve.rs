//! `approve` through its public surface: options read as a topology writes them, the runtime
//! half built with `Kind::build`, records in and out per port (the details: the unit tests
//! next to the kind, `operators/src/group/approve_tests.rs`).

use kafclaw_operators::api::operator::Port;
use kafclaw_operators::group::approve::{AUDIT, ApproveConfig, REJECTED, REQUESTS};
use kafclaw_operators::testing::{Tables, record, run_sync_from};

use super::{assert_store_failure, assert_writes_its_tables, build_errors, config, port, refused, sync};

fn approve() -> ApproveConfig {
    config("decisions = \"decisions\"\ntimeout = \"30m\"\non_timeout = \"expire\"")
}

#[test]
fn a_record_waits_for_its_decision_and_a_bad_decision_is_dead_lettered() {
    let kind = approve();
    let mut op = sync(&kind, "review");
    let mut state = Tables::default();
    let parked = run_sync_from(&mut *op, &mut state, [("refunds", record(r#"{"payload":{"amount":3}}"#))]);
    let requests = parked.on(port(&kind, REQUESTS));
    assert_eq!(requests.len(), 1);
    assert!(parked.on(Port::DEFAULT).is_empty());
    let id = requests[0]["request_id"].as_str().unwrap().to_owned();
    assert_eq!(requests[0]["requester"], "kafclaw/review");
    let decision = format!(
        r#"{{"type":"approval","payload":{{"request_id":"{id}","decision":"rejected","approver":"ana","requester":"kafclaw/review"}}}}"#
    );
    let bad = r#"{"type":"approval","payload":{"decision":"approved"}}"#;
    let decided = run_sync_from(&mut *op, &mut state, [("decisions", record(&decision)), ("decisions", record(bad))]);
    let released = decided.on(port(&kind, REJECTED));
    assert_eq!((released.len(), released[0]["amount"].as_i64()), (1, Some(3)));
    assert_eq!(decided.on(port(&kind, AUDIT))[0]["event_type"], "approval_rejected");
    assert_eq!(decided.dead_lettered().len(), 1);
    assert!(decided.dead_lettered()[0].contains("request_id"), "{:?}", decided.dead_lettered());
    assert_writes_its_tables(&kind, "review", &state);
}

#[test]
fn bad_options_and_store_failures() {
    assert!(refused::<ApproveConfig>("decisions = \"d\"\non_timeout = \"ignore\"").contains("ignore"));
    let errors = build_errors(&config::<ApproveConfig>("decisions = \"d\"\ntimeout = \"0s\""), "review");
    assert!(errors[0].contains("zero"), "{errors:?}");
    let kind = approve();
    let mut op = sync(&kind, "review");
    assert_store_failure(&mut *op, "review.decisions", vec![record("{}")]);
}
