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
    desk.rulings.lock().unwrap().insert(request_id(key), decided(Verdict::Approved, "ana"));
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
    desk.rulings.lock().unwrap().insert(request_id("a"), decided(Verdict::Rejected, "bob"));
    desk.rulings.lock().unwrap().insert(request_id("b"), Ruling::TimedOut);
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
    assert_ne!(request_id("x"), request_id("y"));
    assert!(request_id("x").starts_with("apr-") && request_id("x").len() == 36);
}
