//! Tests of [`Gated`] with an in-memory channel (the Kafka one is tested end to end in
//! engine/tests/kafka/approvals.rs).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A tool counting its calls.
#[derive(Debug, Default)]
struct Counted(AtomicUsize);

impl Tool for Counted {
    fn description(&self) -> String {
        "pays".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn side_effects(&self) -> bool {
        true
    }
    fn tier(&self) -> u8 {
        3
    }
    fn call(&self, _: Value, _: CallContext) -> ToolFuture {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(ToolOutput::from("paid".to_owned())) })
    }
}

/// Requests by id, and the rulings to give.
#[derive(Debug, Default)]
struct Desk {
    asked: Mutex<Vec<Envelope>>,
    rulings: Mutex<HashMap<String, Ruling>>,
}

impl Approvals for Desk {
    fn ask(&self, request: Envelope) -> RulingFuture {
        let id = request.payload["request_id"].as_str().unwrap().to_owned();
        let mut asked = self.asked.lock().unwrap();
        if !asked.iter().any(|e| e.payload["request_id"] == id.as_str()) {
            asked.push(request);
        }
        let ruling = self.rulings.lock().unwrap().get(&id).cloned();
        Box::pin(async move { ruling.ok_or_else(|| "nobody decided (test)".to_owned()) })
    }
}

fn decided(verdict: Verdict, approver: &str) -> Ruling {
    Ruling::Decided(Decision {
        request_id: String::new(),
        verdict,
        approver: approver.into(),
        reason: "policy".into(),
        requester: None,
    })
}

fn gated(desk: Option<Arc<Desk>>) -> (Arc<Counted>, Arc<dyn Tool>) {
    let inner = Arc::new(Counted::default());
    let slot = Arc::new(ApprovalSlot::default());
    if let Some(d) = desk {
        slot.set(d);
    }
    let g = Gate { agent: "shop".into(), requester: "shop/answer".into(), timeout: Duration::from_secs(60), slot };
    let tools = gate(vec![("pay".into(), inner.clone() as Arc<dyn Tool>)], 2, &g);
    (inner, tools[0].1.clone())
}

fn block<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn an_approved_call_runs_and_the_same_step_asks_once() {
    let desk = Arc::new(Desk::default());
    let (inner, tool) = gated(Some(desk.clone()));
    let key = "shop/answer/in/0/7/0/0";
    desk.rulings
        .lock()
        .unwrap()
        .insert(request_id(key, "pay", &json!({"amount": 5})), decided(Verdict::Approved, "ana"));
    for _ in 0..2 {
        let out = block(tool.call_checked(json!({"amount": 5}), CallContext::from(key))).unwrap().unwrap();
        assert_eq!(out.text, "paid");
        assert_eq!(out.audits[0]["event_type"], "approval_granted");
    }
    let asked = desk.asked.lock().unwrap();
    assert_eq!(asked.len(), 1, "one request per step");
    let p = &asked[0].payload;
    assert_eq!((p["tool"].as_str(), p["requester"].as_str()), (Some("pay"), Some("shop/answer")));
    assert_eq!(p["arguments"]["amount"], 5);
    assert_eq!(asked[0].kind, EnvelopeType::ApprovalRequest);
    assert_eq!(inner.0.load(Ordering::SeqCst), 2, "the gate lets each approved attempt through to the tool");
}

#[test]
fn rejected_and_timed_out_calls_do_not_run_and_are_audited() {
    let desk = Arc::new(Desk::default());
    let (inner, tool) = gated(Some(desk.clone()));
    desk.rulings.lock().unwrap().insert(request_id("a", "pay", &json!({})), decided(Verdict::Rejected, "bob"));
    desk.rulings.lock().unwrap().insert(request_id("b", "pay", &json!({})), Ruling::TimedOut);
    let no = block(tool.call_checked(json!({}), CallContext::from("a"))).unwrap().unwrap();
    assert!(no.text.starts_with("not run: bob rejected") && no.text.contains("policy"), "{}", no.text);
    assert_eq!(no.audits[0]["event_type"], "approval_rejected");
    let late = block(tool.call_checked(json!({}), CallContext::from("b"))).unwrap().unwrap();
    assert!(late.text.contains("timed out"), "{}", late.text);
    assert_eq!(late.audits[0]["event_type"], "approval_timed_out");
    assert_eq!(inner.0.load(Ordering::SeqCst), 0);
    // A channel failure is the infrastructure's: the whole call fails, the tool is not called.
    let broken = block(tool.call_checked(json!({}), CallContext::from("c"))).unwrap_err();
    assert!(broken.0.starts_with("infrastructure:"), "{}", broken.0);
    assert_eq!(inner.0.load(Ordering::SeqCst), 0);
}

#[test]
fn without_a_channel_a_gated_call_is_refused_and_low_tiers_are_not_gated() {
    let (inner, tool) = gated(None);
    let refused = block(tool.call_checked(json!({}), CallContext::from("k"))).unwrap().unwrap_err();
    assert!(refused.contains("needs a person's approval"), "{refused}");
    assert_eq!(inner.0.load(Ordering::SeqCst), 0);
    let g = Gate {
        agent: "a".into(),
        requester: "a/b".into(),
        timeout: Duration::from_secs(1),
        slot: Arc::new(ApprovalSlot::default()),
    };
    let low = Arc::new(Counted::default());
    let tools = gate(vec![("pay".into(), low.clone() as Arc<dyn Tool>)], 4, &g);
    block(tools[0].1.call_checked(json!({}), CallContext::from("k"))).unwrap().unwrap();
    assert_eq!(low.0.load(Ordering::SeqCst), 1, "tier 3 < 4: not gated");
    let none = json!({});
    assert_ne!(request_id("x", "pay", &none), request_id("y", "pay", &none));
    assert!(request_id("x", "pay", &none).starts_with("apr-") && request_id("x", "pay", &none).len() == 36);
}

#[test]
fn the_request_id_and_fingerprint_bind_the_tool_and_the_exact_arguments() {
    let (a, b) = (json!({"to": "alice", "amount": 1}), json!({"amount": 1, "to": "alice"}));
    let mallory = json!({"to": "mallory", "amount": 9999});
    assert_eq!(request_id("k", "pay", &a), request_id("k", "pay", &b), "key order does not matter");
    assert_ne!(request_id("k", "pay", &a), request_id("k", "pay", &mallory));
    assert_ne!(request_id("k", "pay", &a), request_id("k", "refund", &a));
    let p = |args: &Value, requester: &str| ApprovalRequestPayload {
        request_id: "apr-1".into(),
        requester: requester.into(),
        agent_id: "shop".into(),
        summary: "tool `pay`".into(),
        tool: "pay".into(),
        arguments: Some(args.clone()),
        requested_at: "2026-12-01T00:00:00Z".into(),
        ..ApprovalRequestPayload::default()
    };
    assert_eq!(fingerprint(&p(&a, "shop/answer")), fingerprint(&p(&b, "shop/answer")));
    let mut later = p(&a, "shop/answer");
    later.requested_at = "2026-12-02T00:00:00Z".into();
    later.expires_at = "2026-12-03T00:00:00Z".into();
    assert_eq!(fingerprint(&p(&a, "shop/answer")), fingerprint(&later), "times are not decided on");
    assert_ne!(fingerprint(&p(&a, "shop/answer")), fingerprint(&p(&mallory, "shop/answer")));
    assert_ne!(fingerprint(&p(&a, "shop/answer")), fingerprint(&p(&a, "other/node")));
}

#[test]
fn a_request_under_the_id_that_is_not_the_calls_own_refuses_the_call() {
    let desk = Arc::new(Desk::default());
    let (inner, tool) = gated(Some(desk.clone()));
    let args = json!({"to": "mallory", "amount": 9999});
    let found = "tool `pay`, requester `shop/answer`, arguments {\"to\":\"alice\",\"amount\":1}".to_owned();
    desk.rulings.lock().unwrap().insert(request_id("k", "pay", &args), Ruling::Mismatch(found));
    let out = block(tool.call_checked(args, CallContext::from("k"))).unwrap().unwrap();
    assert!(out.text.starts_with("refused, not run") && out.text.contains("alice"), "{}", out.text);
    assert_eq!(out.audits[0]["event_type"], "approval_request_mismatch");
    assert_eq!(inner.0.load(Ordering::SeqCst), 0, "never run");
}
