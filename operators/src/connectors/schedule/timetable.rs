//! The arithmetic of a schedule, pure and clock-free: due times from a cron pattern in an IANA
//! time zone (croner: seconds, `L`, `W`, `#`, and its documented DST rules; chrono-tz: the
//! zone database), a deterministic jitter per due time, and what a punctuation at `now` must
//! fire under a catch-up policy ([`plan`]). Every time is milliseconds since the Unix epoch.

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use sha2::{Digest, Sha256};

/// Due times looked at to find a pattern's shortest interval (the bound of `jitter`).
const GAP_SAMPLES: usize = 1000;

/// Most due times counted one by one behind the ones a catch-up keeps; past it the count of
/// skipped due times saturates (a per-second pattern after 11 days of downtime).
pub const SCAN_CAP: u64 = 1_000_000;

/// What happens to due times missed while no instance ran the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Skip them: only due times still within `grace` fire; the next tick says how many
    /// were skipped (`missed`).
    None,
    /// Fire one tick, for the latest of them, carrying how many it stands for (`missed`).
    Last,
    /// Fire every one of them, oldest first, at most `max_catch_up` (the oldest beyond that
    /// are skipped and audited).
    #[default]
    All,
}

impl CatchUp {
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Last => "last",
            Self::All => "all",
        }
    }
}

/// A cron pattern (with seconds) read in a time zone, and a jitter per due time.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Cron,
    tz: Tz,
    /// The most a tick is delayed after its due time, in ms (0: none).
    jitter_ms: i64,
    /// Mixed into the jitter, so two schedules with the same pattern do not fire together.
    salt: String,
}

/// Parses a cron pattern of six fields (seconds first) or seven (a year last).
pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    CronParser::builder().seconds(Seconds::Required).build().parse(pattern).map_err(|e| e.to_string())
}

/// Reads an IANA time zone name (`Europe/Paris`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| format!("`{name}` is not an IANA time zone"))
}

impl Timetable {
    /// A timetable of `cron` in `tz`, delaying each tick by up to `jitter_ms` (derived from
    /// `salt` and the due time).
    pub fn new(cron: Cron, tz: Tz, jitter_ms: i64, salt: impl Into<String>) -> Self {
        Self { cron, tz, jitter_ms: jitter_ms.max(0), salt: salt.into() }
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        self.tz.timestamp_millis_opt(ms).single()
    }

    /// The first due time strictly after `ms`.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let t = self.at(ms)?;
        self.cron.find_next_occurrence(&t, false).ok().map(|d| d.timestamp_millis())
    }

    /// The last due time at or before `ms`.
    pub fn at_or_before(&self, ms: i64) -> Option<i64> {
        let t = self.at(ms)?;
        self.cron.find_previous_occurrence(&t, true).ok().map(|d| d.timestamp_millis())
    }

    /// The last due time strictly before `ms`.
    pub fn before(&self, ms: i64) -> Option<i64> {
        let t = self.at(ms)?;
        self.cron.find_previous_occurrence(&t, false).ok().map(|d| d.timestamp_millis())
    }

    /// The shortest interval between consecutive due times among the first [`GAP_SAMPLES`]
    /// after `from_ms` (`None`: the pattern has fewer than two due times there).
    pub fn shortest_gap(&self, from_ms: i64) -> Option<i64> {
        let mut prev = self.next_after(from_ms)?;
        let mut shortest: Option<i64> = None;
        for _ in 0..GAP_SAMPLES {
            let Some(next) = self.next_after(prev) else { break };
            shortest = Some(shortest.map_or(next - prev, |s| s.min(next - prev)));
            prev = next;
        }
        shortest
    }

    /// How long after due time `due_ms` its tick fires: derived from the schedule and the due
    /// time alone (every instance, every rerun agrees), in `0..=jitter`, and always less than
    /// the interval to the next due time, so ticks fire in due-time order.
    pub fn jitter(&self, due_ms: i64) -> i64 {
        if self.jitter_ms == 0 {
            return 0;
        }
        let gap = self.next_after(due_ms).map_or(i64::MAX, |n| n - due_ms);
        let bound = self.jitter_ms.min(gap - 1).max(0);
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        h.update([0]);
        h.update(due_ms.to_be_bytes());
        let digest = h.finalize();
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        (n % (bound as u64 + 1)) as i64
    }

    /// When the tick of due time `due_ms` fires: the due time plus its jitter.
    pub fn fire_at(&self, due_ms: i64) -> i64 {
        due_ms.saturating_add(self.jitter(due_ms))
    }
}

/// One tick to fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Its due time.
    pub due_ms: i64,
    /// Due times before it, since the previous tick, that got no tick of their own.
    pub missed: u64,
}

/// Due times a punctuation decided not to fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// How many (saturates at [`SCAN_CAP`] plus the kept ones).
    pub count: u64,
    /// The first and the last of them.
    pub first_ms: i64,
    /// The last of them.
    pub last_ms: i64,
    /// Whether they were skipped for `max_catch_up` (rather than by the policy).
    pub over_max: bool,
}

/// What a punctuation at `now` does: the ticks to fire, in due-time order, what it skipped, and
/// the due time handled through (the new `last_due`; unchanged when nothing was ripe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Ticks to fire now, oldest first.
    pub ticks: Vec<Tick>,
    /// Due times passed over, if any.
    pub skipped: Option<Skipped>,
    /// Every due time at or before this one is handled (fired or skipped).
    pub through_ms: i64,
    /// Skipped due times not yet reported by a tick's `missed` (carried to the next tick).
    pub pending_missed: u64,
}

/// The policy's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// What to do with missed due times.
    pub catch_up: CatchUp,
    /// A tick firing at most this late (after its due time plus jitter) is on time; one later
    /// was missed.
    pub grace_ms: i64,
    /// Most ticks fired for one catch-up (at least 1).
    pub max_catch_up: usize,
}

/// What to fire at `now_ms`, given that every due time at or before `last_due_ms` is handled
/// and `pending_missed` skipped due times are not yet reported. A due time is *ripe* when its
/// fire time (due + jitter) is at or before `now_ms`, and *missed* when it is ripe by more than
/// `grace_ms`. On-time due times always fire; missed ones follow the policy.
pub fn plan(tt: &Timetable, last_due_ms: i64, now_ms: i64, policy: Policy, pending_missed: u64) -> Plan {
    let idle = Plan { ticks: Vec::new(), skipped: None, through_ms: last_due_ms, pending_missed };
    // The latest ripe due time: the last due at or before now, or the one before it when its
    // jitter has not yet passed (a jitter is shorter than the interval, so that one is ripe).
    let Some(latest) = tt.at_or_before(now_ms) else { return idle };
    let latest = if tt.fire_at(latest) <= now_ms { Some(latest) } else { tt.before(latest) };
    let Some(latest) = latest.filter(|&l| l > last_due_ms) else { return idle };
    // The ripe due times kept, newest first, at most `max_catch_up`.
    let keep = policy.max_catch_up.max(1);
    let mut kept = vec![latest];
    while kept.len() < keep {
        match tt.before(*kept.last().expect("non-empty")) {
            Some(d) if d > last_due_ms => kept.push(d),
            _ => break,
        }
    }
    kept.reverse();
    // Older ripe due times beyond `max_catch_up`: counted, never fired.
    let oldest_kept = kept[0];
    let older = count_between(tt, last_due_ms, oldest_kept);
    let first_older = (older > 0).then(|| tt.next_after(last_due_ms)).flatten();
    let missed = |d: i64| now_ms - tt.fire_at(d) > policy.grace_ms;
    let catching_up = older > 0 || missed(oldest_kept);

    let (fire, skipped_kept): (Vec<i64>, Vec<i64>) = match policy.catch_up {
        CatchUp::All => (kept, Vec::new()),
        CatchUp::Last if catching_up => {
            let last = kept.pop().expect("non-empty");
            (vec![last], kept)
        }
        CatchUp::Last => (kept, Vec::new()),
        CatchUp::None => kept.into_iter().partition(|&d| !missed(d)),
    };
    let skipped_count = older.saturating_add(skipped_kept.len() as u64);
    let skipped = (skipped_count > 0).then(|| Skipped {
        count: skipped_count,
        first_ms: first_older.or(skipped_kept.first().copied()).unwrap_or(oldest_kept),
        last_ms: skipped_kept.last().copied().unwrap_or_else(|| tt.before(oldest_kept).unwrap_or(oldest_kept)),
        over_max: older > 0 && policy.catch_up == CatchUp::All,
    });
    let mut carried = pending_missed.saturating_add(skipped_count);
    let ticks =
        fire.into_iter().map(|due_ms| Tick { due_ms, missed: std::mem::take(&mut carried) }).collect::<Vec<_>>();
    Plan { ticks, skipped, through_ms: latest, pending_missed: carried }
}

/// How many due times lie strictly between `after_ms` and `before_ms` (saturating at
/// [`SCAN_CAP`]).
fn count_between(tt: &Timetable, after_ms: i64, before_ms: i64) -> u64 {
    let mut n = 0;
    let mut at = after_ms;
    while n < SCAN_CAP {
        match tt.next_after(at) {
            Some(d) if d < before_ms => {
                n += 1;
                at = d;
            }
            _ => break,
        }
    }
    n
}
