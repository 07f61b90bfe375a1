//! `approve`: a record waits for a human decision (human in the loop, docs/approvals.md).
//!
//! ```toml
//! [sources.decisions]
//! type = "kafka"
//! topic = "group.ops.approvals.decisions"   # co-partitioned with `refunds`
//!
//! [operators.review]
//! type = "approve"
//! inputs = ["refunds", "decisions"]
//! decisions = "decisions"                   # the input carrying `approval` envelopes
//! summary = "refund {{ payload.amount }} to {{ payload.customer }}"
//! timeout = "30m"
//! on_timeout = "reject"                     # or "expire": the `expired` output
//!
//! [sinks.ask]                               # inputs = ["review.requests"]
//! type = "kafka"
//! topic = "group.ops.approvals.requests"
//! key = "payload.request_id"
//! ```
//! A record from any input but `decisions` is **parked**: kept in the changelogged table
//! `<node>.pending` under a request id derived from its input's coordinates and the node, and
//! an `approval_request` envelope leaves on the output `requests` (naming the partition the
//! decision must be written to: the task's). Nothing waits: other records, of any key, go on.
//!
//! An `approval` from the `decisions` input releases the parked record: `approved` to the
//! default output, `rejected` to the output `rejected`, with the decision at `into` (default
//! `payload.approval`: request id, decision, approver, reason, when). The decision is kept in
//! the journal `<node>.decisions` (kept across `kafclaw replay`, forgotten `remember` after
//! its last write): a duplicate or late decision is audited and ignored, and a replayed input
//! whose request was decided is released at once, as decided, without asking again. A
//! decision for a request this node does not know is audited; one addressed to another
//! waiter (`requester`) is skipped; one that cannot be read is dead-lettered.
//!
//! With `timeout`, a wall-clock punctuation decides the requests not decided in time:
//! `on_timeout = "reject"` (default) releases them to `rejected`, `"expire"` to `expired`;
//! the index `<node>.timeouts` (deadline, request id) is what it scans. Outputs `audit`: one
//! `audit` envelope per decision taken, timed out or ignored.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use crate::api::config::{ConfigError, Errors, parse_duration_ms, parse_optional_duration_ms};
use crate::api::kind::{Built, Kind, LintContext};
use crate::api::operator::{Cause, Emit, Failure, Port, Ports, SyncOperator};
use crate::api::record::{Origin, Record, format_time_ms, now_ms};
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, TableSpec};
use crate::envelope::approval::{ApprovalRequestPayload, Decision, Verdict};
use crate::envelope::{Envelope, EnvelopeType, deterministic_id};
use crate::lang::path::FieldPath;
use crate::lang::template::Template;
use approve_state::{Decided, Parked, StoredOrigin, corrupt, timeout_key};

/// The output of rejected records (and, with `on_timeout = "reject"`, timed-out ones).
pub const REJECTED: &str = "rejected";
/// The output of timed-out records with `on_timeout = "expire"`.
pub const EXPIRED: &str = "expired";
/// The output of `approval_request` envelopes.
pub const REQUESTS: &str = "requests";
/// The output of `audit` envelopes.
pub const AUDIT: &str = "audit";
/// The port of [`REJECTED`].
pub const REJECTED_PORT: Port = Port(1);
/// The port of [`EXPIRED`].
pub const EXPIRED_PORT: Port = Port(2);
/// The port of [`REQUESTS`].
pub const REQUESTS_PORT: Port = Port(3);
/// The port of [`AUDIT`].
pub const AUDIT_PORT: Port = Port(4);

/// Who decided a request nobody decided in time.
pub const TIMEOUT_APPROVER: &str = "kafclaw:timeout";

/// What a timeout decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Rejected: the output `rejected`, reason "timed out".
    #[default]
    Reject,
    /// The output `expired`.
    Expire,
}

/// Config half of `approve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveConfig {
    /// The input (one of `inputs`, by node name) whose records are `approval` decisions; it
    /// must be co-partitioned with the other inputs (the decision is written to the partition
    /// the request names).
    pub decisions: Spanned<String>,
    /// Template (Jinja, over the envelope) of the one line the person deciding reads
    /// (default: the type, sender and correlation id).
    #[serde(default)]
    pub summary: Option<Spanned<String>>,
    /// How long a record waits (wall clock) before `on_timeout` decides; none: until decided.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// What a timeout decides: `"reject"` (default) or `"expire"`.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Field of the released record the decision is written to.
    #[serde(default = "default_into")]
    pub into: Spanned<String>,
    /// How long a decision is remembered after it was taken (event time), to recognise a
    /// duplicate or late one and to release a replayed record without asking again.
    #[serde(default = "default_remember")]
    pub remember: Spanned<String>,
}

fn default_into() -> Spanned<String> {
    Spanned::new(0..0, "payload.approval".to_owned())
}

fn default_remember() -> Spanned<String> {
    Spanned::new(0..0, "30days".to_owned())
}

impl ApproveConfig {
    fn pending_table(node: &str) -> TableSpec {
        TableSpec::kept(format!("{node}.pending"))
    }

    fn timeouts_table(node: &str) -> TableSpec {
        TableSpec::kept(format!("{node}.timeouts"))
    }

    fn decisions_table(&self, node: &str) -> TableSpec {
        let ttl_ms = parse_duration_ms(&self.remember).ok();
        TableSpec { name: format!("{node}.decisions"), ttl_ms, journal: true }
    }

    fn check_inputs(&self, inputs: &[&str]) -> Option<ConfigError> {
        let d = self.decisions.get_ref();
        let msg = match (inputs.contains(&d.as_str()), inputs.len() >= 2) {
            (true, true) => return None,
            (true, false) => format!("`{d}` is the only input; nothing is left to approve"),
            (false, _) => format!("`decisions = \"{d}\"` is not one of the inputs"),
        };
        Some(ConfigError::at(self.decisions.span(), msg).with_hint(Some(format!("inputs: {}", inputs.join(", ")))))
    }
}

impl Kind for ApproveConfig {
    /// The outputs: approved records (default), `rejected`, `expired`, `requests`, `audit`.
    fn ports(&self) -> Ports {
        Ports { default: true, named: [REJECTED, EXPIRED, REQUESTS, AUDIT].map(str::to_owned).to_vec() }
    }

    /// `<node>.pending`, `<node>.timeouts` and the journal `<node>.decisions`.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![Self::pending_table(node), Self::timeouts_table(node), self.decisions_table(node)]
    }

    /// Requests nobody reads (nobody would be asked); `expire` with no reader of `expired`.
    fn lint(&self, node: &str, cx: &LintContext<'_>) -> Vec<ConfigError> {
        let mut warnings = Vec::new();
        if !cx.reads(node, REQUESTS) {
            warnings.push(
                ConfigError::at(self.decisions.span(), format!("no node reads `{node}.{REQUESTS}`: nobody is asked"))
                    .with_hint(Some("wire it to a kafka sink on `group.<g>.approvals.requests`".into())),
            );
        }
        if self.on_timeout == OnTimeout::Expire && !cx.reads(node, EXPIRED) {
            let span = self.timeout.as_ref().map_or(self.decisions.span(), |t| t.span());
            warnings.push(ConfigError::at(
                span,
                format!(
                    "`on_timeout = \"expire\"`, and no node reads `{node}.{EXPIRED}`: timed-out records are dropped"
                ),
            ));
        }
        warnings
    }

    fn check(&self, node: &str, inputs: &[&str], resources: &Resources) -> Vec<ConfigError> {
        let mut errors = self.build(node, resources).err().unwrap_or_default();
        errors.extend(self.check_inputs(inputs));
        errors
    }

    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Sync(Box::new(self.runtime(node, resources)?)))
    }
}

impl ApproveConfig {
    /// The runtime half of node `node`.
    pub(crate) fn runtime(&self, node: &str, resources: &Resources) -> Result<Approve, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let summary = match &self.summary {
            Some(t) => errors
                .take_one(
                    Template::compile(t.get_ref())
                        .map_err(|e| ConfigError::at(t.span(), format!("template line {}: {}", e.line, e.message))),
                )
                .map(Some),
            None => Some(None),
        };
        let timeout_ms = errors.take(parse_optional_duration_ms(&self.timeout));
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        errors.take(parse_duration_ms(&self.remember));
        errors.finish(|| {
            Some(Approve {
                node: node.to_owned(),
                requester: format!("{}/{node}", resources.topology()),
                agent: resources.topology().to_owned(),
                decisions_input: self.decisions.get_ref().clone(),
                summary: summary?,
                timeout_ms: timeout_ms?,
                on_timeout: self.on_timeout,
                into: into?,
                pending: Self::pending_table(node).name,
                timeouts: Self::timeouts_table(node).name,
                decided: self.decisions_table(node).name,
                clock: now_ms,
                last_input: None,
            })
        })
    }
}

/// Runtime half of `approve`.
#[derive(Debug, Clone)]
pub struct Approve {
    node: String,
    /// `<topology>/<node>`.
    requester: String,
    agent: String,
    decisions_input: String,
    summary: Option<Template>,
    timeout_ms: Option<i64>,
    on_timeout: OnTimeout,
    into: FieldPath,
    pending: String,
    timeouts: String,
    decided: String,
    pub(crate) clock: fn() -> i64,
    /// The input coordinates of the last parked record and how many records of that input
    /// were parked (an input an upstream operator fanned out asks once per record). Held by
    /// the task: the runtime rebuilds tasks after an abort, a rebalance or a restart, so a
    /// redelivered input counts from 0 again and finds its request under the same id.
    last_input: Option<(Arc<str>, i32, i64, u32)>,
}

impl Approve {
    /// The request id of `record`: derived from its input's coordinates, the node, and its
    /// rank among the records of that input parked here.
    fn request_id(&mut self, record: &Record) -> String {
        let o = &record.origin;
        let rank = match &mut self.last_input {
            Some((l, p, off, n)) if **l == *o.location && *p == o.partition && *off == o.offset => {
                *n += 1;
                *n
            }
            slot => {
                *slot = Some((o.location.clone(), o.partition, o.offset, 0));
                0
            }
        };
        format!("apr-{}", deterministic_id(&o.location, o.partition, o.offset, &format!("approve:{}", self.node), rank))
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        state: &mut dyn StateAccess,
        table: &str,
        id: &str,
    ) -> Result<Option<T>, Cause> {
        match state.get(table, id.as_bytes())? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| corrupt(table, id, e)),
            None => Ok(None),
        }
    }

    fn put_json(
        &self,
        state: &mut dyn StateAccess,
        table: &str,
        id: &str,
        value: &impl serde::Serialize,
    ) -> Result<(), Cause> {
        let bytes = serde_json::to_vec(value).map_err(|e| corrupt(table, id, e))?;
        Ok(state.put(table, id.as_bytes(), &bytes)?)
    }

    /// An `audit` envelope about request `id`, derived from `record`.
    fn audit(&self, record: &Record, event: &str, id: &str, details: Value) -> Record {
        let mut r = record.clone();
        r.envelope.kind = EnvelopeType::Audit;
        r.envelope.sender_id = self.agent.clone();
        *r.envelope.payload = json!({"event_type": event, "agent_id": self.agent, "node": self.node, "request_id": id, "details": details});
        r
    }

    fn summary(&self, record: &Record) -> Result<String, String> {
        match &self.summary {
            Some(t) => t.render(record).map_err(|e| format!("summary: {e}")),
            None => {
                let e = &record.envelope;
                Ok(format!("{} from {} ({})", e.kind, e.sender_id, e.correlation_id))
            }
        }
    }

    /// Parks `record` (or releases it at once when its request was decided before: a replay).
    fn park(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Cause> {
        let id = self.request_id(&record);
        if let Some(d) = self.get_json::<Decided>(state, &self.decided, &id)? {
            return self.release_decided(record, &id, &d, out);
        }
        if state.get(&self.pending, id.as_bytes())?.is_some() {
            // The same input again (a redelivery under at-least-once): already waiting.
            return Ok(());
        }
        let now = (self.clock)();
        let deadline_ms = self.timeout_ms.map(|t| now.saturating_add(t));
        let request = ApprovalRequestPayload {
            request_id: id.clone(),
            requester: self.requester.clone(),
            agent_id: self.agent.clone(),
            summary: self.summary(&record)?,
            partition: Some(record.origin.partition),
            requested_at: format_time_ms(now),
            expires_at: deadline_ms.map(format_time_ms).unwrap_or_default(),
            ..ApprovalRequestPayload::default()
        };
        let parked = Parked {
            envelope: String::from_utf8_lossy(&record.envelope.encode()).into_owned(),
            origin: StoredOrigin::from(&*record.origin),
            requested_at_ms: now,
            deadline_ms,
        };
        self.put_json(state, &self.pending, &id, &parked)?;
        if let Some(d) = deadline_ms {
            state.put(&self.timeouts, &timeout_key(d, &id), b"")?;
        }
        let mut r = record;
        r.envelope.kind = EnvelopeType::ApprovalRequest;
        r.envelope.sender_id = self.agent.clone();
        r.envelope.payload = serde_json::to_value(&request).map_err(|e| e.to_string())?.into();
        out.emit(REQUESTS_PORT, r);
        Ok(())
    }

    /// Releases a replayed record whose request was already decided, as decided.
    fn release_decided(&self, record: Record, id: &str, d: &Decided, out: &mut Emit) -> Result<(), Cause> {
        let port = match d.decision.as_str() {
            "approved" => Port::DEFAULT,
            "expired" => EXPIRED_PORT,
            _ => REJECTED_PORT,
        };
        let released = self.with_decision(record, id, d)?;
        out.emit(port, released);
        Ok(())
    }

    fn with_decision(&self, mut record: Record, id: &str, d: &Decided) -> Result<Record, Cause> {
        let v = json!({
            "request_id": id,
            "decision": d.decision,
            "approver": d.approver,
            "reason": d.reason,
            "decided_at": format_time_ms(d.at_ms),
        });
        self.into.set(&mut record.envelope, v).map_err(Cause::Record)?;
        Ok(record)
    }

    /// The parked record of `id` back as it was, under `origin`.
    fn unpark(&self, id: &str, parked: &Parked, origin: Arc<Origin>) -> Result<Record, Cause> {
        let envelope = Envelope::decode(parked.envelope.as_bytes()).map_err(|e| corrupt(&self.pending, id, e))?;
        Ok(Record { envelope, origin })
    }

    /// Forgets request `id` as pending and journals its decision.
    fn settle(&self, state: &mut dyn StateAccess, id: &str, parked: &Parked, d: &Decided) -> Result<(), Cause> {
        state.delete(&self.pending, id.as_bytes())?;
        if let Some(deadline) = parked.deadline_ms {
            state.delete(&self.timeouts, &timeout_key(deadline, id))?;
        }
        self.put_json(state, &self.decided, id, d)
    }

    /// Applies an `approval` from the decisions input.
    fn decide(&self, record: &Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Cause> {
        if record.envelope.kind != EnvelopeType::Approval {
            return Err(Cause::Record(format!(
                "the decisions input `{}` carries `{}`, not `approval`",
                self.decisions_input, record.envelope.kind
            )));
        }
        let decision = Decision::read(&record.envelope.payload).map_err(Cause::Record)?;
        let id = decision.request_id.as_str();
        if decision.requester.as_deref().is_some_and(|r| r != self.requester) {
            // Another waiter's decision: not ours to judge.
            return Ok(());
        }
        let details =
            json!({"decision": decision.verdict.as_str(), "approver": decision.approver, "reason": decision.reason});
        if let Some(d) = self.get_json::<Decided>(state, &self.decided, id)? {
            let mut details = details;
            details["reason_ignored"] =
                json!(format!("already decided: {} by {} at {}", d.decision, d.approver, format_time_ms(d.at_ms)));
            out.emit(AUDIT_PORT, self.audit(record, "approval_ignored", id, details));
            return Ok(());
        }
        let Some(parked) = self.get_json::<Parked>(state, &self.pending, id)? else {
            let mut details = details;
            details["reason_ignored"] = json!("no request of this node is waiting under this id");
            out.emit(AUDIT_PORT, self.audit(record, "approval_unknown", id, details));
            return Ok(());
        };
        let now = (self.clock)();
        if parked.deadline_ms.is_some_and(|d| d <= now) {
            // Past its deadline: the timeout decides first; this decision came too late.
            self.time_out(state, id, &parked, now, out)?;
            let mut details = details;
            details["reason_ignored"] = json!("the request timed out before this decision arrived");
            out.emit(AUDIT_PORT, self.audit(record, "approval_ignored", id, details));
            return Ok(());
        }
        let d = Decided {
            decision: decision.verdict.as_str().to_owned(),
            approver: decision.approver.clone(),
            reason: decision.reason.clone(),
            at_ms: now,
        };
        self.settle(state, id, &parked, &d)?;
        // Released under the decision's coordinates (its output ids derive from them), in the
        // parked record's trace.
        let mut origin = (*record.origin).clone();
        origin.trace_id = parked.origin.trace_id.clone();
        let released = self.unpark(id, &parked, Arc::new(origin))?;
        let released = self.with_decision(released, id, &d)?;
        let (port, event) = match decision.verdict {
            Verdict::Approved => (Port::DEFAULT, "approval_granted"),
            Verdict::Rejected => (REJECTED_PORT, "approval_rejected"),
        };
        out.emit(AUDIT_PORT, self.audit(&released, event, id, details));
        out.emit(port, released);
        Ok(())
    }

    /// Decides request `id` by its timeout.
    fn time_out(
        &self,
        state: &mut dyn StateAccess,
        id: &str,
        parked: &Parked,
        now: i64,
        out: &mut Emit,
    ) -> Result<(), Cause> {
        let waited = Duration::from_millis((now - parked.requested_at_ms).max(0) as u64 / 1000 * 1000);
        let (decision, port) = match self.on_timeout {
            OnTimeout::Reject => ("rejected", REJECTED_PORT),
            OnTimeout::Expire => ("expired", EXPIRED_PORT),
        };
        let d = Decided {
            decision: decision.to_owned(),
            approver: TIMEOUT_APPROVER.to_owned(),
            reason: format!("no decision within {}", humantime::format_duration(waited)),
            at_ms: now,
        };
        self.settle(state, id, parked, &d)?;
        // Under the parked record's own origin: a rerun of this punctuation derives the same ids.
        let released = self.unpark(id, parked, Arc::new(parked.origin.origin()))?;
        let released = self.with_decision(released, id, &d)?;
        let details = json!({"decision": decision, "approver": TIMEOUT_APPROVER, "reason": d.reason});
        out.emit(AUDIT_PORT, self.audit(&released, "approval_timed_out", id, details));
        out.emit(port, released);
        Ok(())
    }
}

impl SyncOperator for Approve {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let kept = record.clone();
        self.park(record, state, out).map_err(|c| Failure::because(kept, c))
    }

    fn process_from(
        &mut self,
        input: &str,
        record: Record,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Failure> {
        if input != self.decisions_input {
            return self.process(record, state, out);
        }
        match self.decide(&record, state, out) {
            Ok(()) => Ok(()),
            Err(c) => Err(Failure::because(record, c)),
        }
    }

    fn punctuation_interval(&self) -> Option<Duration> {
        self.timeout_ms.map(|t| Duration::from_millis((t / 20).clamp(100, 1000) as u64))
    }

    fn punctuate(&mut self, now_ms: i64, _: i32, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Cause> {
        if self.timeout_ms.is_none() {
            return Ok(());
        }
        let end = timeout_key(now_ms.saturating_add(1), "");
        for (key, _) in state.scan(&self.timeouts, b"", Some(&end))? {
            let id = String::from_utf8_lossy(&key[8.min(key.len())..]).into_owned();
            match self.get_json::<Parked>(state, &self.pending, &id)? {
                Some(parked) => self.time_out(state, &id, &parked, now_ms, out)?,
                // Decided meanwhile and the index entry left behind: drop it.
                None => state.delete(&self.timeouts, &key)?,
            }
        }
        Ok(())
    }
}

#[path = "approve_state.rs"]
mod approve_state;

#[cfg(test)]
#[path = "approve_tests.rs"]
mod tests;
