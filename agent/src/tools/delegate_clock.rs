//! The deadline of a delegated call, and what a record on its reply topic means for it.
//!
//! A call's deadline is set by its **first** request (the one a rerun after a crash finds on
//! the request topic, so a retry never restarts the clock): `payload.deadline_at` (its sent
//! time + `deadline`) and `payload.max_deadline_at` (its sent time + `max_deadline`). While
//! the deadline has not passed, a progress report stamped at `t` moves it to
//! `min(t + deadline, max_deadline_at)`: `deadline` is an idle timeout, `max_deadline` the
//! absolute cap. A record is judged by its Kafka timestamp, so a rerun reading the same
//! records judges them the same way; once the deadline has passed nothing revives the call.

use std::time::Duration;

use serde_json::Value;

use kafclaw_operators::api::record::format_time_ms;
use kafclaw_operators::envelope::time::event_time_ms;
use kafclaw_operators::envelope::{Envelope, EnvelopeType, wire};

/// How long a delegated call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Idle timeout: how long the call waits for the reply or the next progress report.
    pub idle: Duration,
    /// Absolute cap, from the first request, however long the peer keeps reporting progress.
    pub max: Duration,
}

impl Deadlines {
    /// `idle`, capped at `max` (default: 10 × `idle`; never below `idle`).
    pub fn new(idle: Duration, max: Option<Duration>) -> Self {
        let max = max.unwrap_or(idle.saturating_mul(10)).max(idle);
        Self { idle, max }
    }

    /// Stamps `request` as sent at `now_ms`: its envelope `timestamp`, `payload.deadline_at`
    /// (+ idle) and `payload.max_deadline_at` (+ max).
    pub fn stamp(&self, request: &mut Envelope, now_ms: i64) {
        let after = |d: Duration| format_time_ms(now_ms.saturating_add(d.as_millis().min(i64::MAX as u128) as i64));
        request.timestamp = format_time_ms(now_ms);
        if let Some(p) = request.payload.as_object_mut() {
            p.insert("deadline_at".into(), Value::String(after(self.idle)));
            p.insert("max_deadline_at".into(), Value::String(after(self.max)));
        }
    }
}

/// The deadline of one call, in ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// When the first request was sent.
    pub started_ms: i64,
    /// When the call ends unless progress moves it.
    pub due_ms: i64,
    /// The latest `due_ms` can move to.
    pub cap_ms: i64,
    /// How far a progress report moves it.
    pub idle_ms: i64,
}

impl Clock {
    /// The clock of a call whose first request is `request`: sent at its envelope
    /// `timestamp`, due at its `payload.deadline_at` (else sent + idle), capped at its
    /// `payload.max_deadline_at` (else sent + max).
    ///
    /// Errors: a field of the request that cannot be read (the record's fault).
    pub fn of_request(request: &Envelope, deadlines: Deadlines) -> Result<Self, String> {
        let started_ms = event_time_ms(&request.timestamp)?;
        let idle_ms = deadlines.idle.as_millis().min(i64::MAX as u128) as i64;
        let max_ms = deadlines.max.as_millis().min(i64::MAX as u128) as i64;
        let due_ms = wire::deadline_at(&request.payload)
            .map_err(|e| e.to_string())?
            .map_or(started_ms.saturating_add(idle_ms), |t| t.ms);
        let cap_ms = wire::field(&request.payload, "max_deadline_at", wire::time)
            .map_err(|e| e.to_string())?
            .map_or(started_ms.saturating_add(max_ms), |t| t.ms);
        Ok(Self { started_ms, due_ms, cap_ms: cap_ms.max(due_ms), idle_ms })
    }

    /// A progress report stamped `at_ms`: moves the deadline to `at + idle` (never back, never
    /// past the cap) if it has not passed. Returns whether it moved.
    pub fn progress(&mut self, at_ms: i64) -> bool {
        if !self.on_time(at_ms) {
            return false;
        }
        let due = at_ms.saturating_add(self.idle_ms).min(self.cap_ms).max(self.due_ms);
        let moved = due != self.due_ms;
        self.due_ms = due;
        moved
    }

    /// Whether a record stamped `at_ms` is within the deadline.
    pub fn on_time(&self, at_ms: i64) -> bool {
        at_ms <= self.due_ms
    }

    /// The deadline as RFC 3339 text.
    pub fn due(&self) -> String {
        format_time_ms(self.due_ms)
    }
}

/// Task statuses that end a call (docs/a2a-kafka.md, 6.1); `input_required` too: nobody
/// can give a delegated call input.
const FINAL: &[&str] =
    &["completed", "failed", "error", "rejected", "canceled", "no_answer", "budget_exceeded", "input_required"];
/// Task statuses that say the peer is working on it.
const WORKING: &[&str] = &["accepted", "submitted", "in_progress", "working", "streaming"];

/// What a record on a reply topic, correlated to a call, means for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// A final answer (`response`, `skill_response`, a `task_status` with a final status).
    Final,
    /// The peer is working on it: extends the deadline.
    Progress,
    /// Neither (another envelope type, a status this version does not know): ignored.
    Ignored,
    /// A `task_status` whose `status` or `progress` cannot be read: never extends, never ends
    /// the call; the reason names the field.
    Unreadable(String),
}

/// `payload.progress`: a percentage (a number from 0 to 100) or a note (a string).
fn progress(payload: &Value) -> Result<Option<()>, String> {
    match payload.get("progress") {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(())),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)) => Ok(Some(())),
        Some(other) => Err(format!(
            "`payload.progress`: expected a percentage (0 to 100) or a non-empty string, got {}",
            other.to_string().chars().take(64).collect::<String>()
        )),
    }
}

/// What `record` means for the call it is correlated to.
pub fn reading(record: &Envelope) -> Reading {
    match record.kind {
        EnvelopeType::Response | EnvelopeType::SkillResponse => return Reading::Final,
        EnvelopeType::TaskStatus => {}
        _ => return Reading::Ignored,
    }
    let p = &record.payload;
    let progress_once = || p.source().map_or(Ok(()), |text| wire::repeated(text, &["progress"]));
    let status = match wire::once(p).and_then(|()| progress_once()).and_then(|()| wire::string_field(p, "status")) {
        Ok(s) => s,
        Err(e) => return Reading::Unreadable(e.to_string()),
    };
    let progress = match progress(p) {
        Ok(p) => p.is_some(),
        Err(e) => return Reading::Unreadable(e),
    };
    match status {
        Some(s) if FINAL.contains(&s) => Reading::Final,
        Some(s) if WORKING.contains(&s) => Reading::Progress,
        _ if progress => Reading::Progress,
        _ => Reading::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clock(idle: u64, max: u64) -> Clock {
        let mut r = Envelope::new(EnvelopeType::Request, "c", "me", format_time_ms(1_000_000), json!({}));
        let d = Deadlines::new(Duration::from_millis(idle), Some(Duration::from_millis(max)));
        *r.payload = json!({"deadline_at": format_time_ms(1_000_000 + idle as i64)});
        Clock::of_request(&r, d).unwrap()
    }

    #[test]
    fn progress_moves_the_deadline_up_to_the_cap_and_never_revives_it() {
        let mut c = clock(1_000, 3_500);
        assert_eq!((c.started_ms, c.due_ms, c.cap_ms), (1_000_000, 1_001_000, 1_003_500));
        assert!(c.on_time(1_001_000) && !c.on_time(1_001_001));
        assert!(c.progress(1_000_900));
        assert_eq!(c.due_ms, 1_001_900);
        // An older report (read late) never moves it back.
        assert!(!c.progress(1_000_100));
        assert_eq!(c.due_ms, 1_001_900);
        assert!(c.progress(1_001_800));
        assert_eq!(c.due_ms, 1_002_800);
        // Capped.
        assert!(c.progress(1_002_700));
        assert_eq!(c.due_ms, 1_003_500);
        assert!(!c.progress(1_003_400));
        // Past the deadline, a report changes nothing.
        let mut late = clock(1_000, 10_000);
        assert!(!late.progress(1_001_001));
        assert_eq!(late.due_ms, 1_001_000);
        assert_eq!(late.due(), "1970-01-01T00:16:41.000Z");
    }

    #[test]
    fn the_first_request_sets_the_clock() {
        let d = Deadlines::new(Duration::from_secs(60), None);
        assert_eq!(d.max, Duration::from_secs(600));
        assert_eq!(Deadlines::new(Duration::from_secs(60), Some(Duration::from_secs(1))).max, d.idle);
        let r = |p: Value| Envelope::new(EnvelopeType::Request, "c", "me", "2026-12-01T10:00:00Z", p);
        let c = Clock::of_request(
            &r(json!({"deadline_at": "2026-12-01T10:00:30Z", "max_deadline_at": "2026-12-01T10:05:00Z"})),
            d,
        )
        .unwrap();
        assert_eq!(c.due_ms - c.started_ms, 30_000, "its deadline_at, not the config's");
        assert_eq!(c.cap_ms - c.started_ms, 300_000);
        assert_eq!(c.idle_ms, 60_000);
        let bare = Clock::of_request(&r(json!({})), d).unwrap();
        assert_eq!((bare.due_ms - bare.started_ms, bare.cap_ms - bare.started_ms), (60_000, 600_000));
        let e = Clock::of_request(&r(json!({"max_deadline_at": 5})), d).unwrap_err();
        assert_eq!(e, "`payload.max_deadline_at`: expected an RFC 3339 time string, got 5");
        let mut bad_time = r(json!({}));
        bad_time.timestamp = "yesterday".into();
        assert!(Clock::of_request(&bad_time, d).is_err());
    }

    #[test]
    fn readings_of_reply_records() {
        let rec = |kind, p: Value| Envelope::new(kind, "c", "peer", "t", p);
        let status = |p: Value| reading(&rec(EnvelopeType::TaskStatus, p));
        assert_eq!(reading(&rec(EnvelopeType::Response, json!({"status": "in_progress"}))), Reading::Final);
        assert_eq!(reading(&rec(EnvelopeType::SkillResponse, json!({}))), Reading::Final);
        assert_eq!(reading(&rec(EnvelopeType::Audit, json!({"status": "failed"}))), Reading::Ignored);
        for s in ["in_progress", "working", "accepted", "streaming"] {
            assert_eq!(status(json!({ "status": s })), Reading::Progress, "{s}");
        }
        for s in ["failed", "rejected", "completed", "canceled", "input_required"] {
            assert_eq!(status(json!({ "status": s })), Reading::Final, "{s}");
        }
        assert_eq!(status(json!({"progress": 40})), Reading::Progress);
        assert_eq!(status(json!({"status": "thinking-hard", "progress": "step 2 of 5"})), Reading::Progress);
        assert_eq!(status(json!({"status": "failed", "progress": 99.5})), Reading::Final);
        assert_eq!(status(json!({"status": "thinking-hard"})), Reading::Ignored);
        assert_eq!(status(json!({})), Reading::Ignored);
        for (p, field) in [
            (json!({"status": 3}), "payload.status"),
            (json!({"status": "in_progress", "progress": true}), "payload.progress"),
            (json!({"progress": 101}), "payload.progress"),
            (json!({"progress": -1}), "payload.progress"),
            (json!({"progress": ""}), "payload.progress"),
            (json!({"status": "failed", "progress": {}}), "payload.progress"),
        ] {
            match status(p.clone()) {
                Reading::Unreadable(why) => assert!(why.starts_with(&format!("`{field}`")), "{p}: {why}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        let twice = Envelope::decode(
            br#"{"type":"task_status","correlation_id":"c","sender_id":"p","timestamp":"2026-12-01T10:00:00Z","payload":{"status":"in_progress","status":"failed"}}"#,
        )
        .unwrap();
        assert_eq!(
            reading(&twice),
            Reading::Unreadable("`payload.status`: appears more than once in the payload".into())
        );
        let twice = Envelope::decode(
            br#"{"type":"task_status","correlation_id":"c","sender_id":"p","timestamp":"2026-12-01T10:00:00Z","payload":{"progress":5,"progress":true}}"#,
        )
        .unwrap();
        assert_eq!(
            reading(&twice),
            Reading::Unreadable("`payload.progress`: appears more than once in the payload".into())
        );
    }
}
