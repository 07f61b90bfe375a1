//! The group's skills as MCP tools: the skills live members announce (their `capabilities`)
//! and the skills whose request topic exists, one tool each, plus the read-only tools `trace`
//! and `group_members`.
//!
//! A tool name follows the MCP tool-name rule (MCP 2025-11-25, "Tool names": 1–128 characters
//! of `A-Z a-z 0-9 _ - .`), which is also the Kafka topic-name alphabet: a skill whose name
//! breaks it cannot have a topic (`group.<g>.skill.<s>.requests`), so it is left out (and
//! logged once), never renamed onto another skill's topic. A skill named like a read-only tool
//! is offered as `skill.<name>`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::kafka::tasks::Member;

/// The read-only tool giving a task's trace envelopes.
pub const TRACE_TOOL: &str = "trace";
/// The read-only tool giving the roster.
pub const MEMBERS_TOOL: &str = "group_members";
/// The longest tool description taken from announces (characters); the rest is cut.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// One skill offered as a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillTool {
    /// The tool name (the skill name, or `skill.<name>` for a reserved one).
    pub tool: String,
    /// The skill: its topics are `group.<g>.skill.<skill>.{requests,responses}`.
    pub skill: String,
    /// The tool description.
    pub description: String,
}

/// Whether `name` is a valid MCP tool name (and so a valid topic-name part).
pub fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The skill tools of `group`, sorted by tool name: from the live `members` and the skills
/// whose request topic exists (`topic_skills`). Skills with names no topic can have are
/// returned apart, for the log.
pub fn skill_tools(group: &str, members: &[&Member], topic_skills: &[String]) -> (Vec<SkillTool>, Vec<String>) {
    let mut served: BTreeMap<&str, Vec<&Member>> = BTreeMap::new();
    for m in members {
        for s in &m.identity.capabilities {
            served.entry(s.as_str()).or_default().push(m);
        }
    }
    let all: BTreeSet<&str> = served.keys().copied().chain(topic_skills.iter().map(String::as_str)).collect();
    let (mut tools, mut refused) = (Vec::new(), Vec::new());
    for skill in all {
        if !valid_tool_name(skill) {
            refused.push(skill.to_owned());
            continue;
        }
        let tool = if matches!(skill, TRACE_TOOL | MEMBERS_TOOL) { format!("skill.{skill}") } else { skill.to_owned() };
        let by = served.get(skill).map_or(&[][..], Vec::as_slice);
        tools.push(SkillTool { tool, skill: skill.to_owned(), description: describe(group, skill, by) });
    }
    tools.sort_by(|a, b| a.tool.cmp(&b.tool));
    tools.dedup_by(|a, b| a.tool == b.tool);
    (tools, refused)
}

/// The description of `skill`: who serves it and what they announced about themselves.
fn describe(group: &str, skill: &str, by: &[&Member]) -> String {
    let mut text = format!("Ask the `{skill}` skill of the kafclaw agent group `{group}`");
    if by.is_empty() {
        text.push_str(" (no live member serves it right now: a call waits for one until its deadline).");
    } else {
        let who: Vec<String> = by
            .iter()
            .map(|m| {
                let i = &m.identity;
                let name = if i.agent_name.is_empty() { &i.agent_id } else { &i.agent_name };
                if i.soul_summary.is_empty() { name.clone() } else { format!("{name}: {}", i.soul_summary) }
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        text.push_str(&format!(", served by {}.", who.join("; ")));
    }
    text.push_str(" The answer is the skill's response text.");
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        text = text.chars().take(MAX_DESCRIPTION_CHARS - 1).collect::<String>() + "…";
    }
    text
}

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(o) => Arc::new(o),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The input schema of every skill tool.
fn skill_schema(max_description: usize) -> Arc<JsonObject> {
    schema(json!({
        "type": "object",
        "properties": {
            "description": {
                "type": "string",
                "description": format!("The task for the skill, in plain words (at most {max_description} bytes)."),
            },
            "deadline_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "How long to wait for the answer, in seconds (default: the server's --deadline).",
            },
        },
        "required": ["description"],
        "additionalProperties": false,
    }))
}

/// The MCP tools: the skills', then `trace` and `group_members` (read-only).
pub fn tools(group: &str, skills: &[SkillTool], max_description: usize) -> Vec<Tool> {
    let input = skill_schema(max_description);
    let mut out: Vec<Tool> = skills
        .iter()
        .map(|s| {
            Tool::new(s.tool.clone(), s.description.clone(), input.clone()).with_annotations(
                ToolAnnotations::with_title(format!("{} skill ({group})", s.skill))
                    .read_only(false)
                    .destructive(false)
                    .idempotent(false)
                    .open_world(true),
            )
        })
        .collect();
    out.push(
        Tool::new(
            TRACE_TOOL,
            format!(
                "The trace envelopes (`group.{group}.traces`) of a task, by its task id (the `task_id` a skill call returns), in arrival order, as a JSON array."
            ),
            schema(json!({
                "type": "object",
                "properties": {"task_id": {"type": "string", "description": "The task id (the envelopes' correlation_id)."}},
                "required": ["task_id"],
                "additionalProperties": false,
            })),
        )
        .with_annotations(ToolAnnotations::with_title("Task trace").read_only(true).open_world(false)),
    );
    out.push(
        Tool::new(
            MEMBERS_TOOL,
            format!(
                "The live members of agent group `{group}` (from `group.{group}.announce`): agent id, name, summary, skills, role, zone, when each joined and was last seen, as a JSON array."
            ),
            schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        )
        .with_annotations(ToolAnnotations::with_title("Group members").read_only(true).open_world(false)),
    );
    out
}

/// The roster as the `group_members` tool returns it.
pub fn members_json(members: &[&Member]) -> Value {
    Value::Array(
        members
            .iter()
            .map(|m| {
                let i = &m.identity;
                json!({
                    "agent_id": i.agent_id,
                    "agent_name": i.agent_name,
                    "summary": i.soul_summary,
                    "skills": i.capabilities,
                    "role": i.role,
                    "zone": i.zone_id,
                    "joined_at": i.joined_at,
                    "last_seen": kafclaw_operators::api::record::format_time_ms(m.last_seen_ms),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafclaw_operators::envelope::AgentIdentity;

    fn member(id: &str, skills: &[&str]) -> Member {
        Member {
            identity: AgentIdentity {
                agent_id: id.into(),
                agent_name: id.into(),
                soul_summary: format!("{id} summary"),
                capabilities: skills.iter().map(|s| (*s).to_owned()).collect(),
                ..AgentIdentity::default()
            },
            last_seen_ms: 0,
        }
    }

    #[test]
    fn names_follow_the_mcp_rule_and_topics_alike() {
        assert!(valid_tool_name("billing") && valid_tool_name("a.b-c_D9"));
        assert!(!valid_tool_name("") && !valid_tool_name("has space") && !valid_tool_name("a/b"));
        assert!(!valid_tool_name(&"x".repeat(129)) && valid_tool_name(&"x".repeat(128)));
        assert!(!valid_tool_name("ünï"));
    }

    #[test]
    fn skills_come_from_members_and_topics_bad_names_are_left_out() {
        let (a, b) = (member("a", &["billing", "bad skill/../x"]), member("b", &["billing", "trace"]));
        let (tools, refused) = skill_tools("acme", &[&a, &b], &["orphan".into(), "billing".into()]);
        let names: Vec<&str> = tools.iter().map(|t| t.tool.as_str()).collect();
        assert_eq!(names, ["billing", "orphan", "skill.trace"]);
        assert_eq!(refused, ["bad skill/../x"]);
        assert!(tools[0].description.contains("served by a: a summary; b: b summary"), "{}", tools[0].description);
        assert!(tools[1].description.contains("no live member"));
        assert_eq!(tools[2].skill, "trace");
        let all = super::tools("acme", &tools, 100);
        assert_eq!(all.len(), 5);
        assert_eq!(all[3].annotations.as_ref().and_then(|a| a.read_only_hint), Some(true));
        assert_eq!(all[0].annotations.as_ref().and_then(|a| a.read_only_hint), Some(false));
    }

    #[test]
    fn long_summaries_are_cut() {
        let mut m = member("a", &["s"]);
        m.identity.soul_summary = "y".repeat(10_000);
        let (tools, _) = skill_tools("g", &[&m], &[]);
        assert_eq!(tools[0].description.chars().count(), MAX_DESCRIPTION_CHARS);
    }
}
