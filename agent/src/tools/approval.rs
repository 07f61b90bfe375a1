//! Approval-gated tools: an `llm` operator with `approval_tool_tier = N` wraps every tool of
//! tier N and above in [`Gated`]. A call of such a tool first asks a person: an
//! `approval_request` (request id derived from the call's idempotency key, the tool, its
//! arguments) goes to `group.<g>.approvals.requests`, and the call waits — a future, no
//! thread held — for the `approval` with that id on `group.<g>.approvals.decisions`
//! (`kafclaw approvals approve|reject`, the gateway's `/v1/approvals`). Approved, the tool is
//! called (once: its effect class, [`super::effect`], guards the call itself); rejected or
//! not decided by `approval_timeout`, it is not, the model is told why, and an `audit` says so.
//!
//! The request id depends on the step, the tool and its arguments only, so a run of the same
//! step after a crash finds its request (asked once) and its decision, if one came: nothing
//! is asked twice, and an approved step is not asked again. A decision binds to what the
//! person saw: a request already under the id is reused only when its [`fingerprint`] (the
//! agent, the requester, the tool, its exact arguments, the summary) is the call's own; any
//! other request there — someone who can write the requests topic pre-seeding the id with
//! harmless-looking arguments — is [`Ruling::Mismatch`]: the call is refused, never run, the
//! model is told, and an `approval_request_mismatch` audit says so. The timeout runs from the first request's
//! `expires_at`, not from the restart. The transport (the [`Approvals`] channel) is the
//! engine's: Kafka, or none in local mode, where a gated call is refused, saying so.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;

use super::{CallContext, CheckedFuture, FatalToolError, NamedTools, Tool, ToolFuture, ToolOutput, ToolResult};
use kafclaw_operators::api::record::{format_time_ms, now_ms};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::envelope::approval::{ApprovalRequestPayload, Decision, Verdict};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};

/// What became of an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ruling {
    /// A person decided.
    Decided(Decision),
    /// Nobody decided before the request's `expires_at`.
    TimedOut,
    /// The request under the call's id is not the call's own (another agent, requester, tool,
    /// arguments or summary): what a person would decide on is not this call. The text says
    /// what is there.
    Mismatch(String),
}

/// A ruling on its way; `Err` when the channel failed (the infrastructure's fault).
pub type RulingFuture = Pin<Box<dyn Future<Output = Result<Ruling, String>> + Send>>;

/// Asks people and hands back their decisions (the engine's Kafka I/O).
pub trait Approvals: Send + Sync + std::fmt::Debug {
    /// Publishes `request` (an `approval_request` envelope) unless an earlier attempt
    /// published one with the same `request_id`, and resolves with the first decision on that
    /// id — or [`Ruling::TimedOut`] once the first request's `expires_at` has passed with
    /// none.
    fn ask(&self, request: Envelope) -> RulingFuture;
}

/// The name of the topology's [`ApprovalSlot`] in its resources.
pub const APPROVALS_SLOT: &str = "approvals";

/// Where the runtime puts its approvals channel; shared by every gated tool of a topology.
#[derive(Debug, Default)]
pub struct ApprovalSlot(OnceLock<Arc<dyn Approvals>>);

impl ApprovalSlot {
    /// Installs the channel (the first one wins).
    pub fn set(&self, channel: Arc<dyn Approvals>) {
        let _ = self.0.set(channel);
    }

    /// The channel, once a runtime installed one.
    pub fn get(&self) -> Option<Arc<dyn Approvals>> {
        self.0.get().cloned()
    }
}

/// Makes the topology's empty slot (the link stage, before any operator is built).
pub fn insert_slot(resources: &mut Resources) {
    resources.insert(APPROVALS_SLOT, Arc::new(ApprovalSlot::default()));
}

/// The topology's slot (an empty one of its own when the link stage made none: tests).
pub fn slot(resources: &Resources) -> Arc<ApprovalSlot> {
    resources.get::<ApprovalSlot>(APPROVALS_SLOT).unwrap_or_default()
}

/// The request id of a gated call: derived from its idempotency key, the tool and the
/// [`canonical`] form of its arguments.
pub fn request_id(idempotency_key: &str, tool: &str, arguments: &Value) -> String {
    let mut h = sha2::Sha256::new();
    for part in [idempotency_key, tool, &canonical(arguments)] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("apr-{}", hex::encode(&h.finalize()[..16]))
}

/// `v` as JSON text with every object's keys sorted: equal values, equal text, whatever
/// order their keys were written in.
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_unstable();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// What an approval decides on, as a SHA-256 hex digest: the request's agent, requester,
/// tool, [`canonical`] arguments, summary and partition (not its times). Two requests under
/// one id with different fingerprints are a forgery or a bug: neither is decided for the
/// other.
pub fn fingerprint(p: &ApprovalRequestPayload) -> String {
    let arguments = p.arguments.as_ref().map(canonical).unwrap_or_default();
    let partition = p.partition.map(|n| n.to_string()).unwrap_or_default();
    let mut h = sha2::Sha256::new();
    for part in [&p.agent_id, &p.requester, &p.tool, &arguments, &p.summary, &partition] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What every gated tool of one operator shares.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The topology (the agent asking).
    pub agent: String,
    /// `<topology>/<operator>`: the waiter decisions are addressed to.
    pub requester: String,
    /// How long a call waits for a decision, from its first request.
    pub timeout: Duration,
    /// The runtime's channel.
    pub slot: Arc<ApprovalSlot>,
}

/// `tools` with every tool of tier `min_tier` or above (an MCP server's members each by its
/// own tier) wrapped in [`Gated`].
pub fn gate(tools: NamedTools, min_tier: u8, gate: &Gate) -> NamedTools {
    tools
        .into_iter()
        .map(|(name, tool)| {
            let gated = tool.tier() >= min_tier || tool.members().is_some();
            let tool: Arc<dyn Tool> = match gated {
                true => Arc::new(Gated { inner: tool, name: name.clone(), min_tier, gate: gate.clone() }),
                false => tool,
            };
            (name, tool)
        })
        .collect()
}

/// A tool whose calls wait for a person's approval.
#[derive(Debug)]
pub struct Gated {
    inner: Arc<dyn Tool>,
    /// Its name in the topology, as the person deciding reads it.
    name: String,
    min_tier: u8,
    gate: Gate,
}

/// The most characters of a call's arguments the summary shows.
const SHOWN: usize = 200;

impl Gated {
    fn request(&self, args: &Value, cx: &CallContext, id: &str) -> Envelope {
        let now = now_ms();
        let mut shown = args.to_string();
        if shown.chars().count() > SHOWN {
            shown = shown.chars().take(SHOWN).collect::<String>() + "…";
        }
        let payload = ApprovalRequestPayload {
            request_id: id.to_owned(),
            requester: self.gate.requester.clone(),
            agent_id: self.gate.agent.clone(),
            summary: format!("tool `{}` with {shown}", self.name),
            partition: None,
            requested_at: format_time_ms(now),
            expires_at: format_time_ms(now.saturating_add(self.gate.timeout.as_millis() as i64)),
            tool: self.name.clone(),
            arguments: Some(args.clone()),
            ..ApprovalRequestPayload::default()
        };
        let conversation = if cx.conversation_id.is_empty() { id } else { &cx.conversation_id };
        let mut e = Envelope::new(
            EnvelopeType::ApprovalRequest,
            conversation,
            self.gate.agent.clone(),
            format_time_ms(now),
            serde_json::to_value(payload).expect("a payload encodes"),
        );
        e.id = Some(id.to_owned());
        e.causation_id = cx.input_id.clone();
        e.zone = cx.zone.clone();
        e
    }
}

/// The `audit` of a ruling on call `id` of `tool`.
fn audit(event: &str, tool: &str, id: &str, key: &str, details: Value) -> Value {
    json!({
        "event_type": event,
        "details": {"tool": tool, "request_id": id, "idempotency_key": key, "decision": details},
    })
}

impl Tool for Gated {
    fn description(&self) -> String {
        self.inner.description()
    }
    fn parameters(&self) -> Value {
        self.inner.parameters()
    }
    fn side_effects(&self) -> bool {
        self.inner.side_effects()
    }
    fn idempotent(&self) -> bool {
        self.inner.idempotent()
    }
    fn effect(&self) -> super::effect::Effect {
        self.inner.effect()
    }
    fn reconcile(&self, args: Value, cx: CallContext) -> Option<super::effect::ReconcileFuture> {
        self.inner.reconcile(args, cx)
    }
    fn remembers(&self) -> bool {
        self.inner.remembers()
    }
    fn tier(&self) -> u8 {
        self.inner.tier()
    }
    fn open(&self) -> Result<(), String> {
        self.inner.open()
    }
    /// An MCP server's tools, each gated by its own tier.
    fn members(&self) -> Option<NamedTools> {
        let members = self.inner.members()?;
        let named = members.into_iter().map(|(m, t)| (format!("{}.{m}", self.name), (m, t)));
        Some(
            named
                .map(|(full, (member, tool))| {
                    let tool: Arc<dyn Tool> = match tool.tier() >= self.min_tier {
                        true => Arc::new(Gated {
                            inner: tool,
                            name: full,
                            min_tier: self.min_tier,
                            gate: self.gate.clone(),
                        }),
                        false => tool,
                    };
                    (member, tool)
                })
                .collect(),
        )
    }
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let checked = self.call_checked(args, cx);
        Box::pin(async move { checked.await.unwrap_or_else(|e| Err(e.0)) })
    }
    fn call_checked(&self, args: Value, cx: CallContext) -> CheckedFuture {
        let key = cx.idempotency_key.clone();
        let id = request_id(&key, &self.name, &args);
        let request = self.request(&args, &cx, &id);
        let (inner, name, channel) = (self.inner.clone(), self.name.clone(), self.gate.slot.get());
        Box::pin(async move {
            // Fails closed: a gated tool is never called without a way to ask.
            let Some(channel) = channel else {
                return Ok(Err(format!(
                    "refused: tool `{name}` needs a person's approval, and this runtime has no approvals channel (Kafka mode with `[topology] group`)"
                )));
            };
            let ruling = channel.ask(request).await.map_err(|e| {
                FatalToolError(format!(
                    "infrastructure: approval request `{id}` for tool `{name}` could not be made or followed ({e}); the tool was not called"
                ))
            })?;
            let refused = |event: &str, text: String, details: Value| -> ToolResult {
                let audits = vec![audit(event, &name, &id, &key, details)];
                Ok(ToolOutput { text, audits, ..ToolOutput::default() })
            };
            match ruling {
                Ruling::Decided(d) if d.verdict == Verdict::Approved => {
                    tracing::debug!(tool = %name, request_id = %id, approver = %d.approver, "approved");
                    let mut result = inner.call_checked(args, cx).await?;
                    let granted = audit("approval_granted", &name, &id, &key, d.payload());
                    if let Ok(out) = &mut result {
                        out.audits.insert(0, granted);
                    }
                    Ok(result)
                }
                Ruling::Decided(d) => {
                    let why = if d.reason.is_empty() { String::new() } else { format!(": {}", d.reason) };
                    let text = format!(
                        "not run: {} rejected this call of tool `{name}`{why} (approval request `{id}`)",
                        if d.approver.is_empty() { "a person" } else { &d.approver }
                    );
                    Ok(refused("approval_rejected", text, d.payload()))
                }
                Ruling::Mismatch(found) => {
                    tracing::warn!(tool = %name, request_id = %id, found = %found, "approval request mismatch: refused");
                    let text = format!(
                        "refused, not run: the approval request `{id}` for this call of tool `{name}` is not this call's ({found}); it may have been forged, and no decision on it applies to this call"
                    );
                    Ok(refused("approval_request_mismatch", text, json!({"found": found})))
                }
                Ruling::TimedOut => {
                    let text = format!(
                        "not run: nobody approved this call of tool `{name}` in time (approval request `{id}` timed out)"
                    );
                    Ok(refused(
                        "approval_timed_out",
                        text,
                        json!({"decision": "rejected", "approver": "kafclaw:timeout"}),
                    ))
                }
            }
        })
    }
}

#[cfg(test)]
#[path = "approval_tests.rs"]
mod tests;
