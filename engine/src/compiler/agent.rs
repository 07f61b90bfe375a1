//! `[agent]`: the topology runs as an agent of its group. In Kafka mode each instance joins
//! the group as `<name>.<instance id>`: it announces itself on `group.<g>.announce` when it
//! starts, sends a heartbeat every `heartbeat`, and announces its leave when it stops (a
//! killed instance stops heartbeating and the roster expires it).
//!
//! ```toml
//! [agent]
//! name = "billing"
//! summary = "Answers invoice and refund questions"
//! skills = ["billing"]
//! heartbeat = "5s"
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::collect::deserialize_all;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::sections::TopologySection;
use kafclaw_operators::api::config::parse_duration_ms;

/// `[agent]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// The agent's name in the group (default: the topology's name); each instance joins as
    /// `<name>.<instance id>`.
    #[serde(default)]
    pub name: Option<String>,
    /// One line on what the agent does (announced as `soul_summary`).
    #[serde(default)]
    pub summary: String,
    /// The skills it offers (announced as `capabilities`).
    #[serde(default)]
    pub skills: Vec<String>,
    /// `worker` (default), `orchestrator` or `observer`.
    #[serde(default = "default_role")]
    pub role: Spanned<String>,
    /// The zone it belongs to.
    #[serde(default)]
    pub zone: Option<String>,
    /// How often it sends a heartbeat.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Spanned<String>,
}

fn default_role() -> Spanned<String> {
    Spanned::new(0..0, "worker".to_owned())
}
fn default_heartbeat() -> Spanned<String> {
    Spanned::new(0..0, "5s".to_owned())
}

/// `[agent]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Its name.
    pub name: String,
    /// The group it joins.
    pub group: String,
    /// What it does.
    pub summary: String,
    /// Its skills.
    pub skills: Vec<String>,
    /// Its role.
    pub role: String,
    /// Its zone.
    pub zone: Option<String>,
    /// Its heartbeat interval.
    pub heartbeat: Duration,
}

impl Agent {
    /// The topic agents announce themselves on.
    pub fn announce_topic(&self) -> String {
        format!("group.{}.announce", self.group)
    }
}

/// Parses `[agent]` (`None`: no such table, or an error was reported).
pub fn parse_agent(
    value: &Spanned<DeValue<'_>>,
    topology: Option<&TopologySection>,
    diags: &mut Diagnostics,
) -> Option<Agent> {
    let section = deserialize_all::<AgentSection>(value, diags, &[])?;
    // Both checked, so a bad heartbeat does not hide a bad role.
    let heartbeat = match parse_duration_ms(&section.heartbeat) {
        Ok(ms) => Some(Duration::from_millis(ms as u64)),
        Err(errors) => {
            for e in errors {
                diags.push(Diagnostic::error(e.span, e.message));
            }
            None
        }
    };
    if !matches!(section.role.get_ref().as_str(), "worker" | "orchestrator" | "observer") {
        let roles = ["worker", "orchestrator", "observer"];
        let hint = match kafclaw_operators::lang::suggest::did_you_mean(section.role.get_ref(), &roles) {
            Some(m) => format!("did you mean `{m}`? roles: worker, orchestrator, observer"),
            None => "roles: worker, orchestrator, observer".to_owned(),
        };
        let span = if section.role.span() == (0..0) { value.span() } else { section.role.span() };
        diags.push(Diagnostic::error(span, format!("unknown agent role `{}`", section.role.get_ref())).hint(hint));
        return None;
    }
    let heartbeat = heartbeat?;
    let topology = topology?;
    let Some(group) = topology.group.as_ref() else {
        diags.push(
            Diagnostic::error(value.span(), "an [agent] joins a group: `[topology] group` is missing")
                .hint("add group = \"<name>\" to [topology]; the agent announces itself on group.<name>.announce"),
        );
        return None;
    };
    Some(Agent {
        name: section.name.unwrap_or_else(|| topology.name.get_ref().clone()),
        group: group.get_ref().clone(),
        summary: section.summary,
        skills: section.skills,
        role: section.role.into_inner(),
        zone: section.zone,
        heartbeat,
    })
}
