//! `schedule` source: ticks at the due times of a cron pattern, exactly once per due time
//! across all instances (docs/schedules.md).
//!
//! ```toml
//! [sources.every-5-minutes]
//! type = "schedule"
//! cron = "0 */5 * * * *"
//! timezone = "Europe/Paris"
//! jitter = "20s"
//! catch_up = "last"
//! ```
//!
//! The config half ([`ScheduleConfig`]) checks the options; the runtime half
//! ([`operator::ScheduleSource`]) is a punctuating operator the task of the schedule's
//! partition runs: at each due time it emits a `request` envelope (the tick) and writes the
//! due time handled to its state table, in the same transaction. In Kafka mode the schedule
//! owns a one-partition topic, `<topology>.schedule.<name>`, so that the consumer group gives
//! it to exactly one instance; records written to that topic run through like ticks (manual
//! runs). The arithmetic (due times, jitter, catch-up) is [`timetable`].

pub mod operator;
#[cfg(test)]
mod tests;
pub mod timetable;

use serde::Deserialize;
use toml::Spanned;

use crate::api::config::{ConfigError, Errors, parse_duration_ms, valid_topic};
use crate::api::kind::{Built, Kind};
use crate::api::operator::Ports;
use crate::api::resources::Resources;
use crate::api::state::TableSpec;
use crate::envelope::time::event_time_ms;
use crate::lang::suggest::did_you_mean;
pub use timetable::{CatchUp, Policy, Timetable};

/// The named output carrying `audit` envelopes about skipped due times.
pub const AUDIT_PORT_NAME: &str = "audit";

/// Config half of the `schedule` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron pattern with seconds: `second minute hour day-of-month month day-of-week`, and
    /// optionally a year (`"0 */5 * * * *"`: every five minutes; `"0 0 9 * * MON-FRI"`: 09:00 on
    /// weekdays). `L`, `W` and `#` as in croner; nicknames (`@hourly`, `@daily`) are accepted.
    pub cron: Spanned<String>,
    /// IANA time zone the pattern is read in (`"Europe/Paris"`); default `"UTC"`. Across a
    /// daylight-saving change a fixed time (`0 30 2 * * *`) fires once — in a spring-forward
    /// gap at the first valid time after it — and an interval pattern (`0 */5 * * * *`) skips
    /// the hour that does not exist and fires in both passes of the hour that repeats
    /// (croner's rules, the Open Cron Pattern Specification's).
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// Delay each tick by up to this much (`"30s"`), so that many schedules with the same
    /// pattern do not fire at once. The delay of a due time is derived from the schedule and the
    /// due time, so every instance and every rerun agrees; it must be shorter than the pattern's
    /// shortest interval.
    #[serde(default)]
    pub jitter: Option<Spanned<String>>,
    /// What to do with due times missed while no instance ran the schedule (downtime):
    /// `"all"` (default) fires every one of them (at most `max_catch_up`), `"last"` fires one
    /// tick for the latest, carrying how many it stands for (`missed`), `"none"` skips them.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Most ticks one catch-up fires with `catch_up = "all"` (default 1000); older missed due
    /// times are skipped and audited. Also bounds the ticks of one punctuation under any
    /// policy.
    #[serde(default)]
    pub max_catch_up: Option<Spanned<i64>>,
    /// How late a tick may fire and still count as on time (default `"1m"`, Quartz's misfire
    /// threshold): a rebalance, a restart or an aborted transaction within it delays ticks but
    /// never skips them. Later than that a due time was missed, and `catch_up` decides.
    #[serde(default)]
    pub grace: Option<Spanned<String>>,
    /// Where the schedule starts when it has no state yet (RFC 3339): due times from then on
    /// are owed, so a first start after it catches up per `catch_up`. Default: the first start
    /// (no backfill).
    #[serde(default)]
    pub start_at: Option<Spanned<String>>,
    /// The tick request's `content` (what the agent is asked to do), default empty.
    #[serde(default)]
    pub content: String,
    /// The ticks' `sender_id` (and the request's `requester_id`); default the topology's name.
    #[serde(default)]
    pub sender_id: Option<String>,
    /// Set by the compiler's plan: the topology this node belongs to and the schedule's topic.
    #[serde(skip)]
    pub bound: Option<Binding>,
}

/// What a schedule node knows once planned into its topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The topology's name.
    pub topology: String,
    /// The schedule's one-partition topic, `<topology>.schedule.<node>`.
    pub topic: String,
}

/// Default `max_catch_up`.
pub const DEFAULT_MAX_CATCH_UP: usize = 1000;

/// Default `grace`, ms.
pub const DEFAULT_GRACE_MS: i64 = 60_000;

/// A fixed reference from which a pattern's shortest interval is measured (so validation does
/// not depend on the day it runs): 2000-01-01T00:00:00Z.
const GAP_REFERENCE_MS: i64 = 946_684_800_000;

/// The checked options, as the runtime half uses them.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Due times and jitter.
    pub timetable: Timetable,
    /// The catch-up knobs.
    pub policy: Policy,
    /// Where a schedule without state starts (`None`: at its first punctuation).
    pub start_at_ms: Option<i64>,
    /// The pattern as written.
    pub cron: String,
    /// The zone's name.
    pub timezone: String,
}

impl ScheduleConfig {
    /// The topic of schedule `node` in topology `topology`.
    pub fn topic_for(topology: &str, node: &str) -> String {
        format!("{topology}.schedule.{node}")
    }

    /// Binds the node to its topology (the compiler's plan does, once).
    pub fn bind(&mut self, topology: &str, node: &str) {
        self.bound = Some(Binding { topology: topology.to_owned(), topic: Self::topic_for(topology, node) });
    }

    /// The schedule's topic, once bound.
    pub fn topic(&self) -> Option<&str> {
        self.bound.as_ref().map(|b| b.topic.as_str())
    }

    /// The state table of schedule `node`: the due time handled through. A journal table, as
    /// an `llm`'s answers are: ticks are effects that happened, so `kafclaw replay` keeps it
    /// (a replay does not fire past ticks again) and a restore applies every record of it.
    pub fn table(node: &str) -> String {
        format!("{node}.due")
    }

    /// Every option checked, or every error (each at its option's place in the file).
    pub fn checked(&self, node: &str) -> Result<Checked, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let cron = errors.take_one(timetable::parse_cron(self.cron.get_ref()).map_err(|e| {
            ConfigError::at(self.cron.span(), format!("`{}` is not a cron pattern: {e}", self.cron.get_ref()))
                .with_hint(Some("six fields, seconds first: \"0 */5 * * * *\" (every five minutes)".into()))
        }));
        let tz_name = self.timezone.as_ref().map_or("UTC", |t| t.get_ref().as_str());
        let tz = errors.take_one(timetable::parse_timezone(tz_name).map_err(|e| {
            let span = self.timezone.as_ref().map_or(0..0, Spanned::span);
            let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
            let hint = did_you_mean(tz_name, &names).map(|s| format!("did you mean `{s}`?"));
            ConfigError::at(span, e).with_hint(hint.or(Some("an IANA name such as \"Europe/Paris\" or \"UTC\"".into())))
        }));
        let jitter_ms = match &self.jitter {
            Some(j) => errors.take(parse_duration_ms(j)),
            None => Some(0),
        };
        let grace_ms = match &self.grace {
            Some(g) => errors.take(parse_duration_ms(g)),
            None => Some(DEFAULT_GRACE_MS),
        };
        let max_catch_up = match &self.max_catch_up {
            Some(m) if *m.get_ref() < 1 => {
                errors
                    .push(ConfigError::at(m.span(), format!("max_catch_up is {}; it must be at least 1", m.get_ref())));
                None
            }
            Some(m) => Some(usize::try_from(*m.get_ref()).unwrap_or(usize::MAX)),
            None => Some(DEFAULT_MAX_CATCH_UP),
        };
        let start_at_ms = match &self.start_at {
            Some(s) => errors.take_one(event_time_ms(s.get_ref()).map(Some).map_err(|e| {
                ConfigError::at(s.span(), format!("start_at `{}` is not an RFC 3339 time: {e}", s.get_ref()))
            })),
            None => Some(None),
        };
        let topic = Self::topic_for("t", node);
        if !valid_topic(&topic) {
            errors.push(ConfigError::at(self.cron.span(), format!("schedule `{node}` cannot name a Kafka topic")));
        }
        let timetable = match (cron, tz, jitter_ms) {
            (Some(cron), Some(tz), Some(jitter_ms)) => {
                let salt = match &self.bound {
                    Some(b) => b.topic.clone(),
                    None => node.to_owned(),
                };
                let tt = Timetable::new(cron, tz, jitter_ms, salt);
                match tt.shortest_gap(GAP_REFERENCE_MS) {
                    None => {
                        errors.push(ConfigError::at(
                            self.cron.span(),
                            format!("`{}` has no due times (or only one)", self.cron.get_ref()),
                        ));
                        None
                    }
                    Some(gap) if jitter_ms >= gap => {
                        let span = self.jitter.as_ref().map_or(0..0, Spanned::span);
                        errors.push(
                            ConfigError::at(
                                span,
                                format!(
                                    "jitter ({}) must be shorter than the pattern's shortest interval ({})",
                                    self.jitter.as_ref().map_or("0", |j| j.get_ref().as_str()),
                                    humantime::format_duration(std::time::Duration::from_millis(gap as u64))
                                ),
                            )
                            .with_hint(Some("a tick is delayed at most to just before the next due time".into())),
                        );
                        None
                    }
                    Some(_) => Some(tt),
                }
            }
            _ => None,
        };
        errors.finish(|| {
            Some(Checked {
                timetable: timetable?,
                policy: Policy { catch_up: self.catch_up, grace_ms: grace_ms?, max_catch_up: max_catch_up? },
                start_at_ms: start_at_ms?,
                cron: self.cron.get_ref().clone(),
                timezone: tz_name.to_owned(),
            })
        })
    }
}

impl Kind for ScheduleConfig {
    /// The ticks (default output) and `audit`: skipped due times.
    fn ports(&self) -> Ports {
        Ports { default: true, named: vec![AUDIT_PORT_NAME.to_owned()] }
    }

    /// `<node>.due`: the due time handled through (a journal: see [`ScheduleConfig::table`]).
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![TableSpec::journal(Self::table(node))]
    }

    /// The pattern, the zone, the durations, `start_at`, and the jitter against the pattern's
    /// shortest interval.
    fn check(&self, node: &str, _: &[&str], _: &Resources) -> Vec<ConfigError> {
        self.checked(node).err().unwrap_or_default()
    }

    /// The punctuating operator the task of the schedule's partition runs.
    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let checked = self.checked(node)?;
        let bound = self
            .bound
            .clone()
            .unwrap_or_else(|| Binding { topology: node.to_owned(), topic: Self::topic_for("local", node) });
        Ok(Built::Sync(Box::new(operator::ScheduleSource::new(
            node,
            checked,
            &bound,
            self.content.clone(),
            self.sender_id.clone().unwrap_or_else(|| bound.topology.clone()),
        ))))
    }
}
