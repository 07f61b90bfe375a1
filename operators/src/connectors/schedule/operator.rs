//! Runtime half of the `schedule` source: a punctuating operator. Each punctuation reads the
//! due time handled through from the state table, asks [`plan`] what is ripe, emits the ticks
//! (and an `audit` envelope for skipped due times), and writes the new due time handled
//! through — all in the open transaction, so a crash before the commit fires the same ticks
//! again (same ids: their origin is derived from the schedule and the due time) and a crash
//! after it never does.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::timetable::{Plan, Policy, Skipped, Timetable, plan};
use super::{Binding, Checked, ScheduleConfig};
use crate::api::operator::{Cause, Emit, Failure, Port, SyncOperator};
use crate::api::record::{Origin, Record};
use crate::api::state::{StateAccess, StateError};
use crate::envelope::time::format_time_ms;
use crate::envelope::{Envelope, EnvelopeType, derive_trace_id};

/// The ticks.
pub const TICK_PORT: Port = Port::DEFAULT;
/// `audit` envelopes about skipped due times.
pub const AUDIT_PORT: Port = Port(1);

/// How often the schedule looks at the clock: a tick fires at most about this late.
pub const PUNCTUATION_INTERVAL: Duration = Duration::from_millis(200);

/// The key of the schedule's one entry in its table.
const KEY: &[u8] = b"due";

/// The stored state (JSON, readable in `kafclaw state inspect`): every due time at or before
/// `last_due_ms` is handled — fired or skipped; on a first start without `start_at`, the moment
/// the schedule started. `last_due` repeats it in RFC 3339 and is not read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct DueState {
    /// Handled through this time, ms since the epoch.
    pub last_due_ms: i64,
    /// Skipped due times no tick has reported yet.
    #[serde(default)]
    pub missed: u64,
}

/// The schedule at run time.
pub struct ScheduleSource {
    node: Arc<str>,
    table: String,
    timetable: Timetable,
    policy: Policy,
    start_at_ms: Option<i64>,
    cron: String,
    timezone: String,
    /// `schedule:<topic>`: the location of the ticks' origin (unique across topologies, as
    /// topics are, and never a topic a source reads).
    location: Arc<str>,
    content: String,
    sender_id: String,
}

impl ScheduleSource {
    /// The runtime half of schedule `node`.
    pub fn new(node: &str, checked: Checked, bound: &Binding, content: String, sender_id: String) -> Self {
        Self {
            node: node.into(),
            table: ScheduleConfig::table(node),
            timetable: checked.timetable,
            policy: checked.policy,
            start_at_ms: checked.start_at_ms,
            cron: checked.cron,
            timezone: checked.timezone,
            location: format!("schedule:{}", bound.topic).into(),
            content,
            sender_id,
        }
    }

    fn read(&self, state: &mut dyn StateAccess) -> Result<Option<(i64, u64)>, Cause> {
        let Some(bytes) = state.get(&self.table, KEY)? else { return Ok(None) };
        // The table is the schedule's own: a value it cannot read is the store's fault.
        let s: DueState = serde_json::from_slice(&bytes)
            .map_err(|e| Cause::State(StateError::new(&self.table, format!("unreadable schedule state: {e}"))))?;
        Ok(Some((s.last_due_ms, s.missed)))
    }

    fn write(&self, state: &mut dyn StateAccess, last_due_ms: i64, missed: u64) -> Result<(), Cause> {
        let text = format_time_ms(last_due_ms);
        let value = json!({"last_due_ms": last_due_ms, "last_due": text, "missed": missed});
        state.put(&self.table, KEY, value.to_string().as_bytes())?;
        Ok(())
    }

    /// The origin of everything fired for due time `due_ms`: what makes a tick's id the same
    /// on every instance and every rerun.
    fn origin(&self, partition: i32, due_ms: i64) -> Arc<Origin> {
        Arc::new(Origin {
            source: self.node.clone(),
            location: self.location.clone(),
            partition,
            offset: due_ms,
            line: None,
            input_id: None,
            input_span_id: None,
            trace_id: derive_trace_id(&self.location, partition, due_ms),
        })
    }

    /// The tick of `due_ms`: a `request` to the topology's operators, readable by any member
    /// of the group.
    fn tick(&self, partition: i32, due_ms: i64, missed: u64, now_ms: i64) -> Record {
        let due_at = format_time_ms(due_ms);
        let task_id = format!("{}@{due_at}", self.node);
        let payload = json!({
            "task_id": task_id,
            "description": format!("schedule `{}` due at {due_at}", self.node),
            "content": self.content,
            "requester_id": self.sender_id,
            "schedule": &*self.node,
            "cron": self.cron,
            "timezone": self.timezone,
            "due_at": due_at,
            "fired_at": format_time_ms(now_ms),
            "missed": missed,
        });
        let envelope = Envelope::new(
            EnvelopeType::Request,
            task_id,
            self.sender_id.clone(),
            format_time_ms(self.timetable.fire_at(due_ms)),
            payload,
        );
        Record { envelope, origin: self.origin(partition, due_ms) }
    }

    /// One `audit` envelope for due times passed over.
    fn audit(&self, partition: i32, s: &Skipped, now_ms: i64) -> Record {
        let reason = if s.over_max {
            format!("more than max_catch_up ({}) due times were missed", self.policy.max_catch_up)
        } else {
            format!("catch_up = \"{}\"", self.policy.catch_up.as_str())
        };
        let details: Value = json!({
            "schedule": &*self.node,
            "skipped": s.count,
            "first_due_at": format_time_ms(s.first_ms),
            "last_due_at": format_time_ms(s.last_ms),
            "catch_up": self.policy.catch_up.as_str(),
            "reason": reason,
        });
        let payload = json!({"event_type": "schedule_skipped", "agent_id": self.sender_id, "details": details});
        let corr = format!("{}@{}", self.node, format_time_ms(s.last_ms));
        let envelope =
            Envelope::new(EnvelopeType::Audit, corr, self.sender_id.clone(), format_time_ms(now_ms), payload);
        Record { envelope, origin: self.origin(partition, s.last_ms) }
    }
}

impl SyncOperator for ScheduleSource {
    /// A source's own records never reach it (they go straight downstream).
    fn process(&mut self, record: Record, _: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        out.emit(TICK_PORT, record);
        Ok(())
    }

    fn punctuation_interval(&self) -> Option<Duration> {
        Some(PUNCTUATION_INTERVAL)
    }

    fn punctuate(
        &mut self,
        now_ms: i64,
        partition: i32,
        state: &mut dyn StateAccess,
        out: &mut Emit,
    ) -> Result<(), Cause> {
        // The schedule's topic has one partition; should it have more, only the owner of the
        // first fires, so a schedule still has exactly one.
        if partition != 0 {
            return Ok(());
        }
        let (last_due_ms, pending) = match self.read(state)? {
            Some(s) => s,
            None => {
                // First start: owed from `start_at`, or from now on (no backfill).
                let anchor = self.start_at_ms.map_or(now_ms, |s| s - 1);
                self.write(state, anchor, 0)?;
                (anchor, 0)
            }
        };
        let Plan { ticks, skipped, through_ms, pending_missed } =
            plan(&self.timetable, last_due_ms, now_ms, self.policy, pending);
        if through_ms == last_due_ms {
            return Ok(());
        }
        // Skipped due times are an audit record, not a log line: the record is the trail.
        if let Some(s) = &skipped {
            out.emit(AUDIT_PORT, self.audit(partition, s, now_ms));
        }
        for t in &ticks {
            out.emit(TICK_PORT, self.tick(partition, t.due_ms, t.missed, now_ms));
        }
        self.write(state, through_ms, pending_missed)
    }
}
