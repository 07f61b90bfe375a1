//! `delegate`: the model hands a task to a peer agent or a skill: a `request` envelope is
//! published to `request_topic`, and the tool waits (a future, no thread held) for the
//! `response` with the same correlation id on `reply_topic`, up to `deadline` without a sign
//! of life, and never past `max_deadline`.
//!
//! ```toml
//! [tools.ask-billing]
//! type = "delegate"
//! request_topic = "group.acme.skill.billing.requests"
//! reply_topic = "group.acme.skill.billing.responses"
//! deadline = "60s"        # idle timeout: extended by each progress report
//! max_deadline = "10m"    # absolute cap from the first request (default: 10 × deadline)
//! ```
//! The request's `causation_id` is the id of the input the model was answering (so a
//! timeline links the delegation to it), its `parent_task_id` that input's task, its
//! `delegation_depth` one more than the input's (a receiving `guard` refuses chains past its
//! limit), and its `zone` the input's; its `correlation_id`, `id` and `payload.task_id` are
//! one id derived from the call (the input, the round and the model's call id).
//!
//! **Deadlines** ([`Clock`]). The request carries `payload.deadline_at` (sent + `deadline`;
//! a receiving `guard` refuses it once passed) and `payload.max_deadline_at` (sent +
//! `max_deadline`). A `task_status` on the reply topic with the call's correlation id and a
//! working status (`accepted`, `in_progress`, `working`, `streaming`) or a `payload.progress`
//! (a percentage, or a note) moves the deadline to its record time + `deadline`, never past
//! `max_deadline_at`; a final status (`completed`, `failed`, `rejected`, `canceled`, …) or a
//! `response`/`skill_response` ends the call. A status whose `status` or `progress` cannot be
//! read neither extends nor ends the call: it is logged and audited (`reply_unreadable`)
//! naming its topic, partition and offset.
//!
//! **Late replies are fenced by the call's id.** A reply stamped after the deadline, or read
//! after the call stopped waiting, never reaches the model: it is dropped and audited
//! (`late_reply_dropped`, with the call id, the deadline, the reply's time and sender) on
//! the group's `observe.audit` topic, and the model is told the deadline passed. A retry
//! after a crash does not restart the clock: before publishing, the bus reads the request
//! topic back for an earlier request with the same id; if there is one, it is not sent again
//! and its `deadline_at` counts, with the progress and replies already on the reply topic —
//! a retry after the deadline is told so without waiting, a retry before it waits for what
//! is left, and takes the reply its first attempt got if that came in time. Records are
//! judged by their Kafka timestamps, so a rerun reaches the verdict its first attempt did,
//! with one edge: a reply stamped before the deadline but read more than a second after it
//! (when the waiting call has given up) is dropped and audited by that call, while a rerun
//! after a crash before the call's outcome committed judges it by its stamp, as on time. The transport
//! (the [`Bus`]) is the engine's: Kafka, or none in local mode, where a call fails with a
//! message saying so.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use tracing::Instrument;
use tracing::field::Empty;

use super::{CallContext, Tool, ToolFuture, ToolOutput};

#[path = "delegate_clock.rs"]
mod clock;
pub use clock::{Clock, Deadlines, Reading, reading};
use kafclaw_operators::envelope::{Envelope, EnvelopeType, wire};

/// A reply on its way.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Result<Envelope, String>> + Send>>;

/// Publishes requests and hands back the correlated replies (the engine's Kafka I/O).
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Publishes `request` to `topic`, keyed by its correlation id (unless an earlier request
    /// with that id is there already: then its deadline counts), and resolves with the first
    /// final reply (`response`, `skill_response`, a final `task_status`) on `reply_topic`
    /// with the same correlation id that is within the deadline — which progress reports
    /// extend by `deadlines.idle`, up to `deadlines.max` — or an error once it has passed.
    fn request(&self, topic: &str, reply_topic: &str, request: Envelope, deadlines: Deadlines) -> ReplyFuture;
}

/// The name of the topology's [`BusSlot`] in its resources.
pub const BUS_SLOT: &str = "bus";

/// Where the runtime puts its bus; shared by every `delegate` tool of a topology.
#[derive(Debug, Default)]
pub struct BusSlot(OnceLock<Arc<dyn Bus>>);

impl BusSlot {
    /// Installs the bus (the first one wins).
    pub fn set(&self, bus: Arc<dyn Bus>) {
        let _ = self.0.set(bus);
    }

    /// The bus, once a runtime installed one.
    pub fn get(&self) -> Option<Arc<dyn Bus>> {
        self.0.get().cloned()
    }
}

/// The `delegate` tool.
#[derive(Debug)]
pub struct Delegate {
    /// Who the requests are from (the topology's name).
    pub agent: String,
    /// Where requests go.
    pub request_topic: String,
    /// Where replies come.
    pub reply_topic: String,
    /// How long to wait for the reply or the next progress report (idle timeout).
    pub deadline: Duration,
    /// The absolute cap on a call, from its first request (default: 10 × `deadline`).
    pub max_deadline: Option<Duration>,
    /// What the model is told.
    pub description: Option<String>,
    /// The runtime's bus.
    pub bus: Arc<BusSlot>,
}

/// The id of a delegated task, derived from the call's idempotency key.
pub fn task_id(idempotency_key: &str) -> String {
    let d = sha2::Sha256::digest(idempotency_key.as_bytes());
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("dlg-{hex}")
}

/// What the model is handed for a reply: its text, or the error a failed one reports.
fn outcome(reply: &Envelope) -> Result<ToolOutput, String> {
    let p = &reply.payload;
    let text = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    // The status decides failure: one that cannot be read is not taken for success.
    let status = wire::string_field(p, "status")
        .map_err(|e| format!("`{}` answered with an unreadable status: {e}", reply.sender_id))?
        .unwrap_or_default();
    let body = text("content").or_else(|| text("result")).or_else(|| text("summary"));
    if (reply.kind == EnvelopeType::TaskStatus && status != "completed")
        || matches!(status, "failed" | "error" | "rejected")
    {
        return Err(format!(
            "`{}` answered {}: {}",
            reply.sender_id,
            if status.is_empty() { "without a result" } else { status },
            body.unwrap_or_default()
        ));
    }
    Ok(ToolOutput::from(body.unwrap_or_else(|| p.to_string())))
}

impl Tool for Delegate {
    fn description(&self) -> String {
        self.description
            .clone()
            .unwrap_or_else(|| format!("Hand a task to another agent (via {}) and get its answer.", self.request_topic))
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"description": {"type": "string", "description": "the task, fully stated"}},
            "required": ["description"]
        })
    }

    fn side_effects(&self) -> bool {
        true
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let description = args["description"].as_str().unwrap_or_default().trim().to_owned();
        let bus = self.bus.get();
        let (topic, reply_topic) = (self.request_topic.clone(), self.reply_topic.clone());
        let deadlines = Deadlines::new(self.deadline, self.max_deadline);
        let agent = self.agent.clone();
        let span = invoke_agent_span(&topic, &cx);
        let traced = span.clone();
        let call: ToolFuture = Box::pin(async move {
            if description.is_empty() {
                return Err("argument `description` (a non-empty string) is missing".into());
            }
            let bus = bus.ok_or("delegate needs Kafka: this topology runs locally (--local), with no peers to ask")?;
            let depth = cx.delegation_depth.checked_add(1).ok_or_else(|| {
                format!("this task is already {} delegations deep: it cannot be delegated further", cx.delegation_depth)
            })?;
            let id = task_id(&cx.idempotency_key);
            let mut request = Envelope::new(
                EnvelopeType::Request,
                id.clone(),
                agent.clone(),
                String::new(),
                json!({
                    "task_id": id,
                    "description": description,
                    "requester_id": agent,
                    "parent_task_id": cx.task_id,
                    "delegation_depth": depth,
                }),
            );
            // Re-stamped by the bus when it actually sends the request.
            deadlines.stamp(&mut request, kafclaw_operators::api::record::now_ms());
            request.id = Some(id);
            // Caused by the input the model was answering; a zone's task stays in its zone.
            request.causation_id = cx.input_id.clone();
            request.zone = cx.zone.clone();
            // Published in the span: the bus carries its context to the peer (`traceparent`).
            let reply = bus.request(&topic, &reply_topic, request, deadlines).await?;
            outcome(&reply)
        });
        Box::pin(
            async move {
                let result = call.await;
                if let Err(e) = &result {
                    traced.record("otel.status_code", "error");
                    traced.record("otel.status_description", e.as_str());
                    traced.record("error.type", "delegation_failed");
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The `invoke_agent {topic}` span of a delegation (OpenTelemetry GenAI conventions: a
/// remote agent invoked; kind client), with the Kafka destination it is published to.
fn invoke_agent_span(topic: &str, cx: &CallContext) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::TARGET,
        "invoke_agent",
        otel.name = %format!("invoke_agent {topic}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        "error.type" = Empty,
        gen_ai.operation.name = "invoke_agent",
        gen_ai.conversation.id = cx.conversation_id.as_str(),
        messaging.system = "kafka",
        messaging.destination.name = topic,
        kafclaw.delegation.task_id = %task_id(&cx.idempotency_key),
        kafclaw.delegation.depth = cx.delegation_depth.saturating_add(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Echo;
    impl Bus for Echo {
        fn request(&self, topic: &str, reply: &str, request: Envelope, _: Deadlines) -> ReplyFuture {
            let text = format!("{topic}->{reply}: {}", request.payload["description"].as_str().unwrap());
            let status = if text.contains("fail") { "failed" } else { "completed" };
            let mut r = Envelope::new(EnvelopeType::Response, request.correlation_id, "peer", "t", json!({}));
            *r.payload = json!({"task_id": r.correlation_id, "content": text, "status": status});
            Box::pin(std::future::ready(Ok(r)))
        }
    }

    fn tool(bus: Option<Arc<dyn Bus>>) -> Delegate {
        let slot = Arc::new(BusSlot::default());
        if let Some(b) = bus {
            slot.set(b);
        }
        Delegate {
            agent: "me".into(),
            request_topic: "req".into(),
            reply_topic: "rep".into(),
            deadline: Duration::from_secs(1),
            max_deadline: None,
            description: None,
            bus: slot,
        }
    }

    #[derive(Debug)]
    struct Capture(std::sync::Mutex<Vec<Envelope>>);
    impl Bus for Capture {
        fn request(&self, _: &str, _: &str, request: Envelope, _: Deadlines) -> ReplyFuture {
            self.0.lock().unwrap().push(request.clone());
            let r =
                Envelope::new(EnvelopeType::Response, request.correlation_id, "peer", "t", json!({"content": "ok"}));
            Box::pin(std::future::ready(Ok(r)))
        }
    }

    #[tokio::test]
    async fn a_delegation_is_one_level_deeper_in_the_same_zone() {
        let bus = Arc::new(Capture(std::sync::Mutex::new(Vec::new())));
        let t = tool(Some(bus.clone()));
        let cx = CallContext {
            idempotency_key: "in-9/0/call_1".into(),
            input_id: Some("in-9".into()),
            task_id: "task-9".into(),
            delegation_depth: 2,
            zone: Some("finance".into()),
            conversation_id: "conv-9".into(),
        };
        t.call(json!({"description": "x"}), cx).await.unwrap();
        let sent = bus.0.lock().unwrap()[0].clone();
        assert_eq!(sent.payload["delegation_depth"], 3);
        assert_eq!(sent.payload["parent_task_id"], "task-9");
        assert_eq!((sent.causation_id.as_deref(), sent.zone.as_deref()), (Some("in-9"), Some("finance")));
        // Deadlines from the request's time: `deadline` (1 s), and the default cap (10 ×).
        let ms = |t: &Value| kafclaw_operators::envelope::time::event_time_ms(t.as_str().unwrap()).unwrap();
        let sent_at = ms(&json!(sent.timestamp));
        assert_eq!(ms(&sent.payload["deadline_at"]) - sent_at, 1_000);
        assert_eq!(ms(&sent.payload["max_deadline_at"]) - sent_at, 10_000);

        let deepest = CallContext { delegation_depth: u32::MAX, ..CallContext::from("k") };
        let refused = t.call(json!({"description": "x"}), deepest).await.unwrap_err();
        assert!(refused.contains("cannot be delegated further"), "{refused}");
        assert_eq!(bus.0.lock().unwrap().len(), 1, "nothing sent");
    }

    #[test]
    fn an_unreadable_status_is_not_success() {
        let reply = |p: Value| Envelope::new(EnvelopeType::Response, "c", "peer", "t", p);
        let status = |p: Value| Envelope::new(EnvelopeType::TaskStatus, "c", "peer", "t", p);
        assert_eq!(outcome(&status(json!({"status": "completed", "summary": "42"}))).unwrap().text, "42");
        let e = outcome(&status(json!({"status": "canceled", "summary": "by bob"}))).unwrap_err();
        assert_eq!(e, "`peer` answered canceled: by bob");
        assert!(outcome(&reply(json!({"status": "completed", "content": "ok"}))).is_ok());
        let e = outcome(&reply(json!({"status": 0, "content": "ok"}))).unwrap_err();
        assert_eq!(e, "`peer` answered with an unreadable status: `payload.status`: expected a string, got 0");
        assert!(outcome(&reply(json!({"status": ["completed"]}))).is_err());
    }

    #[tokio::test]
    async fn hands_back_the_reply_or_says_why_not() {
        let t = tool(Some(Arc::new(Echo)));
        let ok = t.call(json!({"description": "sum invoice 42"}), "in-1/0/call_1".into()).await.unwrap();
        assert_eq!(ok.text, "req->rep: sum invoice 42");
        let failed = t.call(json!({"description": "fail please"}), "k".into()).await.unwrap_err();
        assert!(failed.starts_with("`peer` answered failed: req->rep: fail please"), "{failed}");
        assert!(t.call(json!({}), "k".into()).await.unwrap_err().contains("`description`"));
        let local = tool(None).call(json!({"description": "x"}), "k".into()).await.unwrap_err();
        assert!(local.contains("delegate needs Kafka"), "{local}");
        assert_eq!(task_id("in-1/0/call_1"), task_id("in-1/0/call_1"));
        assert_ne!(task_id("in-1/0/call_1"), task_id("in-1/0/call_2"));
        assert_eq!(task_id("a").len(), 4 + 32);
    }
}
