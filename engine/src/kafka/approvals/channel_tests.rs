//! Tests of the approvals channel's book (the Kafka I/O is tested end to end in
//! engine/tests/kafka/approvals.rs).

use super::*;
use kafclaw_operators::api::record::format_time_ms;
use kafclaw_operators::envelope::approval::Verdict;
use serde_json::json;

const DAY: i64 = 86_400_000;

fn shared() -> Shared {
    Shared { book: Mutex::new(Book::default()), caught_up: watch::channel(false).1 }
}

fn request(id: &str, expires_at_ms: Option<i64>) -> Envelope {
    let expires = expires_at_ms.map(format_time_ms).unwrap_or_default();
    let payload = json!({ "request_id": id, "requester": "shop/answer", "expires_at": expires });
    Envelope::new(EnvelopeType::ApprovalRequest, "c", "shop", format_time_ms(0), payload)
}

fn decision(id: &str, written_ms: i64) -> Envelope {
    let d = Decision {
        request_id: id.into(),
        verdict: Verdict::Approved,
        approver: "ann".into(),
        reason: String::new(),
        requester: Some("shop/answer".into()),
    };
    Envelope::new(EnvelopeType::Approval, "c", "ann", format_time_ms(written_ms), d.payload())
}

fn asked(deadline: Option<i64>) -> Asked {
    Asked { deadline, ..Asked::of(&request("x", None).payload) }
}

/// A tool call's request from `requester` with `arguments`.
fn call(id: &str, requester: &str, arguments: Value) -> Envelope {
    let payload = json!({ "request_id": id, "requester": requester, "agent_id": "shop", "tool": "pay",
        "summary": "tool `pay`", "arguments": arguments, "requested_at": format_time_ms(0) });
    Envelope::new(EnvelopeType::ApprovalRequest, "c", "shop", format_time_ms(0), payload)
}

fn addressed(id: &str, requester: Option<&str>, verdict: Verdict, written_ms: i64) -> Envelope {
    let d = Decision {
        request_id: id.into(),
        verdict,
        approver: "ann".into(),
        reason: String::new(),
        requester: requester.map(Into::into),
    };
    Envelope::new(EnvelopeType::Approval, "c", "ann", format_time_ms(written_ms), d.payload())
}

fn ruled(e: Entered) -> Option<Ruling> {
    match e {
        Entered::Ruled(r) => Some(r),
        Entered::Wait { .. } => None,
    }
}

#[test]
fn a_request_pre_seeded_under_the_id_with_other_arguments_refuses_the_call() {
    let s = shared();
    let (real, forged) = (json!({"to": "mallory", "amount": 9999}), json!({"to": "alice", "amount": 1}));
    note(&s, &call("apr-1", "shop/answer", forged.clone()), Some(0));
    note(&s, &addressed("apr-1", Some("shop/answer"), Verdict::Approved, 1), Some(1));
    let mut book = s.book.lock().unwrap();
    let own = Asked::of(&call("apr-1", "shop/answer", real.clone()).payload);
    let Some(Ruling::Mismatch(why)) = ruled(book.enter("apr-1", own)) else { panic!("not refused") };
    assert!(why.contains("alice"), "{why}");
    assert!(book.waiting.is_empty(), "nothing waits on a forged request");
    // Another requester or tool under the id: refused too; the same call (keys in any
    // order) reuses it and its decision.
    let other = Asked::of(&call("apr-1", "other/node", forged.clone()).payload);
    assert!(matches!(ruled(book.enter("apr-1", other)), Some(Ruling::Mismatch(_))));
    let same = Asked::of(&call("apr-1", "shop/answer", json!({"amount": 1, "to": "alice"})).payload);
    assert!(matches!(ruled(book.enter("apr-1", same)), Some(Ruling::Decided(d)) if d.verdict == Verdict::Approved));
}

#[test]
fn only_a_decision_addressed_to_the_requests_waiter_and_written_after_it_counts() {
    let s = shared();
    let args = json!({"amount": 5});
    // Read before the request the call writes itself: on no request of the call's.
    note(&s, &addressed("apr-2", None, Verdict::Approved, 1), Some(1));
    let own = || Asked::of(&call("apr-2", "shop/answer", args.clone()).payload);
    let Entered::Wait { mut rx, first, .. } = s.book.lock().unwrap().enter("apr-2", own()) else {
        panic!("a decision before the request decided it")
    };
    assert!(first, "the call writes its request");
    // Its own request read back: the same, not a conflict.
    note(&s, &call("apr-2", "shop/answer", args.clone()), Some(2));
    // Addressed to another waiter: skipped, as the `approve` operator skips it.
    note(&s, &addressed("apr-2", Some("other/node"), Verdict::Approved, 3), Some(3));
    assert!(rx.try_recv().is_err());
    assert!(s.book.lock().unwrap().ruling("apr-2").is_none());
    note(&s, &addressed("apr-2", Some("shop/answer"), Verdict::Rejected, 4), Some(4));
    assert!(matches!(rx.try_recv(), Ok(Ruling::Decided(d)) if d.verdict == Verdict::Rejected));
    // A different request written later under the id: calls waiting on it are refused.
    let Entered::Wait { mut rx, .. } = s.book.lock().unwrap().enter("apr-3", own()) else { panic!() };
    note(&s, &call("apr-3", "shop/answer", json!({"amount": 500})), Some(5));
    assert!(matches!(rx.try_recv(), Ok(Ruling::Mismatch(_))));
    assert!(matches!(ruled(s.book.lock().unwrap().enter("apr-3", own())), Some(Ruling::Mismatch(_))));
}

fn known(book: &Book) -> Vec<&str> {
    let mut ids: Vec<&str> = book.touched.keys().map(String::as_str).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn forgets_ids_settled_longer_ago_than_the_retention_unless_a_call_waits() {
    let s = shared();
    // Decided long ago.
    note(&s, &request("decided-old", Some(DAY)), Some(0));
    note(&s, &decision("decided-old", 2 * DAY), Some(2 * DAY));
    // Asked long ago, its deadline recent: a step run again must still time out at once.
    note(&s, &request("deadline-recent", Some(15 * DAY)), Some(DAY));
    // Asked long ago, decided recently.
    note(&s, &request("decided-recent", None), Some(0));
    note(&s, &decision("decided-recent", 14 * DAY), Some(14 * DAY));
    // Exactly the retention old, no deadline.
    note(&s, &request("edge", None), Some(13 * DAY));
    let mut book = s.book.lock().unwrap();
    // A call still waiting on an old request without deadline, and one that timed out.
    let (live, _rx) = oneshot::channel();
    book.asked.insert("waited".into(), asked(None));
    book.touch("waited", 0);
    book.waiting.insert("waited".into(), vec![live]);
    let (ended, rx) = oneshot::channel();
    drop(rx);
    book.asked.insert("timed-out".into(), asked(Some(DAY)));
    book.touch("timed-out", 0);
    book.waiting.insert("timed-out".into(), vec![ended]);

    assert_eq!(forget(&mut book, 20 * DAY, 7 * DAY), 3);
    assert_eq!(known(&book), ["deadline-recent", "decided-recent", "waited"]);
    let mut asked: Vec<&str> = book.asked.keys().map(String::as_str).collect();
    asked.sort_unstable();
    assert_eq!(asked, ["deadline-recent", "decided-recent", "waited"]);
    assert_eq!(book.decided.keys().collect::<Vec<_>>(), ["decided-recent"]);
    assert_eq!(book.waiting.keys().collect::<Vec<_>>(), ["waited"]);
    assert!(book.ruling("decided-recent").is_some());
    // Nothing more within the retention; everything but the waited id past a short one.
    assert_eq!(forget(&mut book, 20 * DAY, 7 * DAY), 0);
    assert_eq!(forget(&mut book, 20 * DAY, DAY), 2);
    assert_eq!(known(&book), ["waited"]);
}

#[test]
fn a_later_record_of_an_id_moves_its_time_on_and_a_missing_timestamp_takes_the_envelopes() {
    let s = shared();
    note(&s, &request("a", None), Some(DAY));
    note(&s, &decision("a", 5 * DAY), None);
    // A second decision (ignored as a ruling) still counts as a record of the id.
    note(&s, &decision("a", 6 * DAY), Some(6 * DAY));
    let mut book = s.book.lock().unwrap();
    assert_eq!(book.touched["a"], 6 * DAY);
    assert_eq!(forget(&mut book, 12 * DAY, 7 * DAY), 0);
    assert_eq!(forget(&mut book, 13 * DAY, 7 * DAY), 1);
    assert!(book.asked.is_empty() && book.decided.is_empty());
}
