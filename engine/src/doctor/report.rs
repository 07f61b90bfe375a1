//! The doctor's report: checks with a verdict each, printed one per line for people or as one
//! JSON document (`--json`, shape below) for programs.
//!
//! The JSON shape (version 1; keys are always present, `null` when they do not apply):
//!
//! ```json
//! {
//!   "doctor": 1,
//!   "bootstrap_servers": "127.0.0.1:9092",
//!   "verdict": "warn",
//!   "counts": { "ok": 12, "warn": 2, "fail": 0, "unknown": 1 },
//!   "checks": [
//!     { "id": "features.read_committed", "area": "features", "topology": null,
//!       "subject": "127.0.0.1:9092", "verdict": "warn",
//!       "reason": "a record of an aborted transaction was visible to a read_committed reader",
//!       "advice": "set dedup = true on every Kafka source …", "facts": { … } }
//!   ]
//! }
//! ```
//!
//! `verdict` is the worst of the checks' (`fail` > `warn` > `unknown` > `ok`); `facts` holds
//! what was measured (numbers, names), its keys fixed per check `id`.

use serde::Serialize;
use serde_json::{Map, Value};

/// The version of the JSON shape; bumped on any incompatible change.
pub const JSON_VERSION: u32 = 1;

/// What a check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// As kafclaw needs it.
    Ok,
    /// Could not be measured (the reason says why).
    Unknown,
    /// Works, with a caveat the advice addresses.
    Warn,
    /// Broken: kafclaw will not work (or not as promised) until it is fixed.
    Fail,
}

impl Verdict {
    /// The lower-case name (`ok`, `warn`, `fail`, `unknown`), as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unknown => "unknown",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Stable id: `<area>.<what>` (e.g. `connectivity.tcp`, `layout.compaction`).
    pub id: &'static str,
    /// `settings`, `connectivity`, `features`, `layout` or `group`.
    pub area: &'static str,
    /// The topology the check is about, if any.
    pub topology: Option<String>,
    /// What was checked: a broker address, a topic, a group.
    pub subject: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub reason: String,
    /// What to do about it, when there is something to do.
    pub advice: Option<String>,
    /// What was measured (fixed keys per `id`).
    pub facts: Map<String, Value>,
}

impl Check {
    /// A check with no topology, advice or facts.
    pub fn new(id: &'static str, subject: impl Into<String>, verdict: Verdict, reason: impl Into<String>) -> Self {
        let area = id.split('.').next().unwrap_or(id);
        let area = match area {
            "settings" => "settings",
            "connectivity" => "connectivity",
            "features" => "features",
            "layout" => "layout",
            _ => "group",
        };
        Self {
            id,
            area,
            topology: None,
            subject: subject.into(),
            verdict,
            reason: reason.into(),
            advice: None,
            facts: Map::new(),
        }
    }

    /// The same, about topology `name`.
    pub fn topology(mut self, name: &str) -> Self {
        self.topology = Some(name.to_owned());
        self
    }

    /// The same, with advice.
    pub fn advice(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into());
        self
    }

    /// The same, with one more fact.
    pub fn fact(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.facts.insert(key.to_owned(), value.into());
        self
    }
}

/// Every check of one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The bootstrap servers the cluster checks used.
    pub bootstrap_servers: String,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// The worst verdict (`ok` for no checks).
    pub fn verdict(&self) -> Verdict {
        self.checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok)
    }

    /// How many checks have `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == verdict).count()
    }

    /// Whether any check failed (the command then exits 1).
    pub fn failed(&self) -> bool {
        self.count(Verdict::Fail) > 0
    }

    /// The JSON document (module docs).
    pub fn to_json(&self) -> Value {
        let mut counts = Map::new();
        for v in [Verdict::Ok, Verdict::Warn, Verdict::Fail, Verdict::Unknown] {
            counts.insert(v.as_str().to_owned(), self.count(v).into());
        }
        serde_json::json!({
            "doctor": JSON_VERSION,
            "bootstrap_servers": self.bootstrap_servers,
            "verdict": self.verdict().as_str(),
            "counts": counts,
            "checks": self.checks,
        })
    }

    /// The human report: one line per check (`verdict  id  subject: reason`), advice indented
    /// under it, and a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let subject = match &c.topology {
                Some(t) => format!("{t}: {}", c.subject),
                None => c.subject.clone(),
            };
            out.push_str(&format!("{:<8}{:<34}{subject}: {}\n", c.verdict.as_str(), c.id, c.reason));
            if let Some(a) = &c.advice {
                out.push_str(&format!("{:<8}{:<34}-> {a}\n", "", ""));
            }
        }
        out.push_str(&format!(
            "doctor: {}: {} ok, {} warn, {} fail, {} unknown\n",
            self.verdict().as_str(),
            self.count(Verdict::Ok),
            self.count(Verdict::Warn),
            self.count(Verdict::Fail),
            self.count(Verdict::Unknown)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins_and_unknown_is_worse_than_ok() {
        let mut r = Report::default();
        assert_eq!(r.verdict(), Verdict::Ok);
        r.checks.push(Check::new("features.compaction", "b", Verdict::Ok, "fine"));
        r.checks.push(Check::new("features.compaction", "b", Verdict::Unknown, "not measured"));
        assert_eq!(r.verdict(), Verdict::Unknown);
        r.checks.push(Check::new("layout.topic", "t", Verdict::Warn, "missing"));
        assert_eq!(r.verdict(), Verdict::Warn);
        assert!(!r.failed());
        r.checks.push(Check::new("layout.compaction", "t", Verdict::Fail, "not compacted"));
        assert!(r.failed());
        let j = r.to_json();
        assert_eq!(j["verdict"], "fail");
        assert_eq!(j["counts"]["unknown"], 1);
        assert_eq!(j["checks"][2]["area"], "layout");
        assert!(r.render().lines().last().unwrap().starts_with("doctor: fail: 1 ok, 1 warn, 1 fail, 1 unknown"));
    }
}
