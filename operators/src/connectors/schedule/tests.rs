//! The schedule's arithmetic: due times, DST, jitter, catch-up plans, and the punctuating
//! operator against an in-memory table.

use proptest::prelude::*;

use super::timetable::{CatchUp, Plan, Policy, SCAN_CAP, Tick, Timetable, parse_cron, parse_timezone, plan};
use crate::envelope::time::event_time_ms;

fn ms(t: &str) -> i64 {
    event_time_ms(t).expect("test time")
}

fn tt(pattern: &str, tz: &str, jitter_ms: i64) -> Timetable {
    Timetable::new(parse_cron(pattern).expect("pattern"), parse_timezone(tz).expect("zone"), jitter_ms, "s")
}

fn policy(catch_up: CatchUp, grace_ms: i64, max_catch_up: usize) -> Policy {
    Policy { catch_up, grace_ms, max_catch_up }
}

#[test]
fn patterns_need_seconds_and_zones_are_iana() {
    assert!(parse_cron("0 */5 * * * *").is_ok());
    assert!(parse_cron("*/5 * * * *").is_err(), "five fields: seconds are required");
    assert!(parse_cron("0 61 * * * *").is_err());
    assert!(parse_timezone("Europe/Paris").is_ok());
    assert!(parse_timezone("Mars/Olympus").is_err());
}

#[test]
fn due_times_around_a_moment() {
    let t = tt("*/10 * * * * *", "UTC", 0);
    let at = ms("2026-03-01T12:00:10Z");
    assert_eq!(t.next_after(at), Some(ms("2026-03-01T12:00:20Z")));
    assert_eq!(t.next_after(at + 500), Some(ms("2026-03-01T12:00:20Z")));
    assert_eq!(t.at_or_before(at), Some(at));
    assert_eq!(t.at_or_before(at + 500), Some(at));
    assert_eq!(t.before(at), Some(ms("2026-03-01T12:00:00Z")));
    assert_eq!(t.shortest_gap(at), Some(10_000));
}

#[test]
fn daylight_saving_follows_the_zone() {
    // Paris springs forward on 2026-03-29 at 02:00 → 03:00: a fixed 02:30 fires once, just
    // after the gap; an every-30-minutes pattern has no due time inside the gap.
    let fixed = tt("0 30 2 * * *", "Europe/Paris", 0);
    let due = fixed.next_after(ms("2026-03-29T00:00:00Z")).unwrap();
    assert_eq!(due, ms("2026-03-29T01:00:00Z"), "03:00 CEST, the first valid time after the gap");
    assert_eq!(fixed.next_after(due), Some(ms("2026-03-30T00:30:00Z")), "02:30 CEST the next day");
    let every = tt("0 */30 * * * *", "Europe/Paris", 0);
    let a = every.next_after(ms("2026-03-29T00:45:00Z")).unwrap(); // 01:45 CET
    assert_eq!(a, ms("2026-03-29T01:00:00Z"), "01:45 CET → 03:00 CEST: 02:00 and 02:30 do not exist");
    // Autumn (2026-10-25 03:00 CEST → 02:00 CET): an interval pattern fires in both passes.
    let b = ms("2026-10-25T00:00:00Z"); // 02:00 CEST
    let mut seen = vec![b];
    while seen.len() < 4 {
        seen.push(every.next_after(*seen.last().unwrap()).unwrap());
    }
    let gaps: Vec<i64> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, vec![1_800_000; 3], "02:00, 02:30 CEST, 02:00, 02:30 CET: every 30 real minutes");
    // A UTC pattern ignores all of that.
    let utc = tt("0 0 * * * *", "UTC", 0);
    assert_eq!(utc.next_after(ms("2026-03-29T00:30:00Z")), Some(ms("2026-03-29T01:00:00Z")));
}

#[test]
fn jitter_is_derived_bounded_and_salted() {
    let t = tt("*/10 * * * * *", "UTC", 4_000);
    let due = ms("2026-03-01T12:00:10Z");
    let j = t.jitter(due);
    assert_eq!(j, t.jitter(due), "the same due time, the same delay");
    assert!((0..=4_000).contains(&j));
    let spread: std::collections::BTreeSet<i64> = (0..50).map(|i| t.jitter(due + i * 10_000)).collect();
    assert!(spread.len() > 40, "delays spread: {spread:?}");
    let other = Timetable::new(parse_cron("*/10 * * * * *").unwrap(), parse_timezone("UTC").unwrap(), 4_000, "t");
    let differs = (0..20).filter(|i| other.jitter(due + i * 10_000) != t.jitter(due + i * 10_000)).count();
    assert!(differs > 15, "another schedule's delays differ");
    // Capped below the interval even when configured larger (validation refuses that).
    let wide = tt("*/10 * * * * *", "UTC", 60_000);
    assert!((0..100).all(|i| wide.jitter(due + i * 10_000) < 10_000));
    assert_eq!(tt("*/10 * * * * *", "UTC", 0).jitter(due), 0);
}

#[test]
fn on_time_ticks_fire_once_each() {
    let t = tt("*/10 * * * * *", "UTC", 0);
    let p = policy(CatchUp::None, 60_000, 1000);
    let start = ms("2026-03-01T12:00:03Z");
    let nothing = plan(&t, start, start + 5_000, p, 0);
    assert_eq!(nothing, Plan { ticks: vec![], skipped: None, through_ms: start, pending_missed: 0 });
    let due = ms("2026-03-01T12:00:10Z");
    let first = plan(&t, start, due + 150, p, 0);
    assert_eq!(first.ticks, vec![Tick { due_ms: due, missed: 0 }]);
    assert_eq!(first.through_ms, due);
    let again = plan(&t, first.through_ms, due + 350, p, 0);
    assert!(again.ticks.is_empty(), "handled through the due time: not fired twice");
}

#[test]
fn a_jittered_due_time_waits_for_its_delay() {
    let t = tt("*/10 * * * * *", "UTC", 9_000);
    let due = ms("2026-03-01T12:00:10Z");
    let fire = t.fire_at(due);
    let before = plan(&t, due - 5_000, fire - 1, policy(CatchUp::All, 60_000, 1000), 0);
    assert!(before.ticks.is_empty(), "not before its fire time");
    let at = plan(&t, due - 5_000, fire, policy(CatchUp::All, 60_000, 1000), 0);
    assert_eq!(at.ticks, vec![Tick { due_ms: due, missed: 0 }]);
}

/// Two minutes of downtime over a 10-second pattern: 12 due times ripe at restart.
fn downtime() -> (Timetable, i64, i64) {
    let t = tt("*/10 * * * * *", "UTC", 0);
    (t, ms("2026-03-01T12:00:00Z"), ms("2026-03-01T12:02:00.400Z"))
}

#[test]
fn catch_up_all_fires_every_missed_due_time() {
    let (t, last, now) = downtime();
    let p = plan(&t, last, now, policy(CatchUp::All, 5_000, 1000), 0);
    assert_eq!(p.ticks.len(), 12);
    assert!(p.ticks.iter().all(|k| k.missed == 0));
    assert_eq!(p.ticks[0].due_ms, ms("2026-03-01T12:00:10Z"));
    assert_eq!(p.ticks[11].due_ms, ms("2026-03-01T12:02:00Z"));
    assert_eq!(p.skipped, None);
    assert_eq!(p.through_ms, ms("2026-03-01T12:02:00Z"));
}

#[test]
fn catch_up_all_is_bounded_by_max_catch_up() {
    let (t, last, now) = downtime();
    let p = plan(&t, last, now, policy(CatchUp::All, 5_000, 5), 0);
    let dues: Vec<i64> = p.ticks.iter().map(|k| k.due_ms).collect();
    assert_eq!(dues, (8..=12).map(|i| last + i * 10_000).collect::<Vec<_>>(), "the latest five");
    assert_eq!(p.ticks[0].missed, 7, "the first tick reports the seven skipped");
    let s = p.skipped.expect("skipped");
    assert_eq!((s.count, s.first_ms, s.last_ms, s.over_max), (7, last + 10_000, last + 70_000, true));
}

#[test]
fn catch_up_last_fires_the_latest_with_the_count() {
    let (t, last, now) = downtime();
    let p = plan(&t, last, now, policy(CatchUp::Last, 5_000, 1000), 0);
    assert_eq!(p.ticks, vec![Tick { due_ms: ms("2026-03-01T12:02:00Z"), missed: 11 }]);
    assert_eq!(p.skipped.map(|s| (s.count, s.over_max)), Some((11, false)));
    // With no downtime it is an ordinary schedule.
    let on_time = plan(&t, last, last + 10_100, policy(CatchUp::Last, 5_000, 1000), 0);
    assert_eq!(on_time.ticks, vec![Tick { due_ms: last + 10_000, missed: 0 }]);
}

#[test]
fn catch_up_none_skips_what_is_past_grace() {
    let (t, last, now) = downtime();
    // Grace 5 s: only 12:02:00 (0.4 s late) is on time; the eleven before were missed.
    let p = plan(&t, last, now, policy(CatchUp::None, 5_000, 1000), 0);
    assert_eq!(p.ticks, vec![Tick { due_ms: ms("2026-03-01T12:02:00Z"), missed: 11 }]);
    assert_eq!(p.skipped.map(|s| s.count), Some(11));
    // Restarted between due times: nothing on time, the count waits for the next tick.
    let p = plan(&t, last, now + 5_000, policy(CatchUp::None, 2_000, 1000), 3);
    assert!(p.ticks.is_empty());
    assert_eq!((p.pending_missed, p.through_ms), (15, ms("2026-03-01T12:02:00Z")));
    let next = plan(&t, p.through_ms, now + 9_700, policy(CatchUp::None, 2_000, 1000), p.pending_missed);
    assert_eq!(next.ticks, vec![Tick { due_ms: ms("2026-03-01T12:02:10Z"), missed: 15 }]);
}

#[test]
fn a_huge_downtime_is_counted_up_to_the_cap() {
    let t = tt("* * * * * *", "UTC", 0);
    let last = ms("2026-03-01T00:00:00Z");
    let now = last + (SCAN_CAP as i64 + 5_000) * 1000;
    let p = plan(&t, last, now, policy(CatchUp::Last, 1_000, 10), 0);
    assert_eq!(p.ticks.len(), 1);
    assert_eq!(p.ticks[0].due_ms, now);
    assert_eq!(p.ticks[0].missed, SCAN_CAP + 9, "saturated count plus the nine kept and skipped");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the punctuations are spaced, `all` fires every due time exactly once, in order,
    /// never before its fire time; `none` and `last` fire a subset, and every due time is
    /// either fired or counted as missed.
    #[test]
    fn every_due_time_is_handled_once(
        steps in proptest::collection::vec(1i64..40_000, 1..60),
        jitter in 0i64..6_000,
        policy_ix in 0usize..3,
        grace in 1i64..30_000,
    ) {
        let catch_up = [CatchUp::All, CatchUp::Last, CatchUp::None][policy_ix];
        let t = tt("*/7 * * * * *", "UTC", jitter);
        let start = ms("2026-03-01T12:00:00.250Z");
        let mut last = start;
        let mut pending = 0;
        let mut now = start;
        let mut fired: Vec<Tick> = Vec::new();
        let mut skipped = 0u64;
        for step in steps {
            now += step;
            let p = plan(&t, last, now, policy(catch_up, grace, 1000), pending);
            for k in &p.ticks {
                prop_assert!(t.fire_at(k.due_ms) <= now, "fired before its time");
            }
            skipped += p.skipped.map_or(0, |s| s.count);
            fired.extend(p.ticks);
            prop_assert!(p.through_ms >= last);
            last = p.through_ms;
            pending = p.pending_missed;
        }
        let mut expected = Vec::new();
        let mut d = start;
        while let Some(n) = t.next_after(d).filter(|&n| n <= last) {
            expected.push(n);
            d = n;
        }
        let dues: Vec<i64> = fired.iter().map(|k| k.due_ms).collect();
        prop_assert!(dues.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
        prop_assert_eq!(dues.len() as u64 + skipped, expected.len() as u64);
        let reported: u64 = fired.iter().map(|k| k.missed).sum::<u64>() + pending;
        prop_assert_eq!(reported, skipped, "every skipped due time is reported once");
        if catch_up == CatchUp::All {
            prop_assert_eq!(dues, expected);
        }
    }
}
