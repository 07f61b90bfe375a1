//! The `schedule` source: its config half builds a punctuating operator (not an edge) with a
//! default output and `audit`, over one journal table `<node>.due`; its runtime half fires one
//! tick per due time from punctuations, the same tick (same origin, same fields but
//! `fired_at`) when a punctuation is rerun over the same committed state, nothing twice, and
//! fails with `Cause::State` (never a record's fault) when its store fails.

use std::time::Duration;

use serde_json::Value;

use kafclaw_operators::api::kind::{Built, Kind};
use kafclaw_operators::api::operator::{Cause, Emit, Port};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::connectors::schedule::ScheduleConfig;
use kafclaw_operators::envelope::time::event_time_ms;
use kafclaw_operators::testing::{Tables, table_names};
use kafclaw_operators::{Record, StateAccess, SyncOperator, TableSpec};

use super::{build_errors, config, port, sync};

fn ms(t: &str) -> i64 {
    event_time_ms(&format!("2026-11-01T{t}Z")).unwrap()
}

fn bound(options: &str) -> ScheduleConfig {
    let mut c: ScheduleConfig = config(options);
    c.bind("app", "every");
    c
}

/// One punctuation at `now` (`hh:mm:ss.mmm` on 2026-11-01): what it emitted, by port.
fn punctuate(op: &mut dyn SyncOperator, state: &mut dyn StateAccess, now: &str) -> Vec<(Port, Record)> {
    let mut out = Emit::default();
    op.punctuate(ms(now), 0, state, &mut out).expect("punctuates");
    out.drain().collect()
}

fn payload(r: &Record) -> Value {
    r.envelope.to_json()["payload"].clone()
}

#[test]
fn config_half_builds_a_punctuating_source() {
    let c = bound(
        "cron = \"*/10 * * * * *\"\ntimezone = \"Europe/Paris\"\njitter = \"3s\"\ncatch_up = \"last\"\nmax_catch_up = 50\ngrace = \"5s\"\ncontent = \"tick\"",
    );
    assert_eq!(c.topic(), Some("app.schedule.every"));
    assert_eq!(c.ports().named, vec!["audit".to_owned()]);
    assert!(c.ports().default);
    assert_eq!(c.tables("every"), vec![TableSpec::journal("every.due")]);
    assert!(c.check("every", &[], &Resources::default()).is_empty());
    assert!(matches!(c.build("every", &Resources::default()), Ok(Built::Sync(_))));
    let op = sync(&c, "every");
    assert_eq!(op.punctuation_interval(), Some(Duration::from_millis(200)));
    let errors = build_errors(&bound("cron = \"*/10 * * * * *\"\njitter = \"10s\"\nmax_catch_up = 0"), "every");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("jitter (10s) must be shorter")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("max_catch_up is 0")), "{errors:?}");
}

#[test]
fn one_tick_per_due_time_the_same_on_a_rerun() {
    let c = bound("cron = \"*/10 * * * * *\"\ncontent = \"look around\"\nsender_id = \"clock\"");
    let mut op = sync(&c, "every");
    let mut state = Tables::default();
    assert!(punctuate(op.as_mut(), &mut state, "12:00:03.000").is_empty(), "first start: owed from now");
    assert!(state.written().contains("every.due"));
    let committed = state.text("every.due", b"due").unwrap();
    let fired = punctuate(op.as_mut(), &mut state, "12:00:10.150");
    assert_eq!(fired.len(), 1);
    let (p, tick) = &fired[0];
    assert_eq!(*p, Port::DEFAULT);
    let e = &tick.envelope;
    assert_eq!(e.kind.as_str(), "request");
    assert_eq!(e.correlation_id, "every@2026-11-01T12:00:10.000Z");
    assert_eq!((e.sender_id.as_str(), e.timestamp.as_str()), ("clock", "2026-11-01T12:00:10.000Z"));
    let body = payload(tick);
    assert_eq!(body["task_id"], "every@2026-11-01T12:00:10.000Z");
    assert_eq!(body["due_at"], "2026-11-01T12:00:10.000Z");
    assert_eq!(body["fired_at"], "2026-11-01T12:00:10.150Z");
    assert_eq!((body["missed"].as_u64(), body["content"].as_str()), (Some(0), Some("look around")));
    assert_eq!((&*tick.origin.location, tick.origin.offset), ("schedule:app.schedule.every", ms("12:00:10")));
    assert!(punctuate(op.as_mut(), &mut state, "12:00:10.350").is_empty(), "handled: never twice");

    // The transaction of that tick aborted: a new owner over the committed state fires the
    // same tick (its id is derived from this origin), only `fired_at` differs.
    let mut rerun_state = Tables::default();
    rerun_state.put("every.due", b"due", committed.as_bytes()).unwrap();
    let mut rerun = sync(&c, "every");
    let again = punctuate(rerun.as_mut(), &mut rerun_state, "12:00:14.000");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.origin, tick.origin);
    let mut a = payload(&again[0].1);
    let mut b = body.clone();
    a["fired_at"] = Value::Null;
    b["fired_at"] = Value::Null;
    assert_eq!(a, b);
    assert_eq!(again[0].1.envelope.timestamp, e.timestamp);
}

#[test]
fn a_catch_up_is_audited() {
    let c = bound("cron = \"*/10 * * * * *\"\ncatch_up = \"last\"\ngrace = \"5s\"");
    let mut op = sync(&c, "every");
    let mut state = Tables::default();
    punctuate(op.as_mut(), &mut state, "12:00:00.500");
    let out = punctuate(op.as_mut(), &mut state, "12:02:01.000");
    let audit = port(&c, "audit");
    let ports: Vec<Port> = out.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![audit, Port::DEFAULT]);
    let details = &payload(&out[0].1)["details"];
    assert_eq!((details["skipped"].as_u64(), details["catch_up"].as_str()), (Some(11), Some("last")));
    assert_eq!(details["first_due_at"], "2026-11-01T12:00:10.000Z");
    assert_eq!(details["last_due_at"], "2026-11-01T12:01:50.000Z");
    assert_eq!(out[0].1.envelope.kind.as_str(), "audit");
    let tick = payload(&out[1].1);
    assert_eq!((tick["due_at"].as_str(), tick["missed"].as_u64()), (Some("2026-11-01T12:02:00.000Z"), Some(11)));
}

#[test]
fn start_at_owes_due_times_from_then_and_other_partitions_never_fire() {
    let c = bound("cron = \"*/10 * * * * *\"\nstart_at = \"2026-11-01T12:00:00Z\"");
    let mut op = sync(&c, "every");
    let mut state = Tables::default();
    let mut out = Emit::default();
    op.punctuate(ms("12:00:35.000"), 1, &mut state, &mut out).unwrap();
    assert_eq!(out.drain().count(), 0, "only the owner of partition 0 fires");
    let dues: Vec<String> = punctuate(op.as_mut(), &mut state, "12:00:35.000")
        .iter()
        .map(|(_, r)| payload(r)["due_at"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = ["00", "10", "20", "30"].iter().map(|s| format!("2026-11-01T12:00:{s}.000Z")).collect();
    assert_eq!(dues, expected, "start_at itself is owed");
    assert_eq!(state.written(), table_names(&c.tables("every")));
}

#[test]
fn a_failing_or_unreadable_store_is_the_stores_fault() {
    let c = bound("cron = \"*/10 * * * * *\"");
    let mut op = sync(&c, "every");
    let mut out = Emit::default();
    let mut broken = Tables::failing_on("every.due");
    let e = op.punctuate(ms("12:00:00.000"), 0, &mut broken, &mut out).unwrap_err();
    assert!(matches!(e, Cause::State(ref s) if s.table == "every.due"), "{e:?}");
    let mut corrupt = Tables::default();
    corrupt.put("every.due", b"due", b"not json").unwrap();
    let e = op.punctuate(ms("12:00:00.000"), 0, &mut corrupt, &mut out).unwrap_err();
    assert!(matches!(e, Cause::State(ref s) if s.message.contains("unreadable schedule state")), "{e:?}");
    assert_eq!(out.drain().count(), 0);
}
