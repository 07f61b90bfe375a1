//! The skills of a group that have a request topic (`group.<g>.skill.<s>.requests`), from the
//! cluster's metadata: how `kafclaw mcp-server` knows a skill nobody serves right now.

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka::producer::CALL_TIMEOUT;
use crate::kafka::settings::ClientSettings;

/// The skills of `group` whose request topic exists, sorted.
pub fn skill_topics(settings: &ClientSettings, group: &str) -> Result<Vec<String>, String> {
    let consumer: BaseConsumer = settings.client_config(&[]).create().map_err(|e| e.to_string())?;
    let md = consumer.fetch_metadata(None, CALL_TIMEOUT).map_err(|e| e.to_string())?;
    let names: Vec<&str> = md.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name()).collect();
    Ok(skills_of(group, &names))
}

/// The skills named by request topics of `group` among `topics`, sorted and unique.
fn skills_of(group: &str, topics: &[&str]) -> Vec<String> {
    let prefix = format!("group.{group}.skill.");
    let mut skills: Vec<String> = topics
        .iter()
        .filter_map(|t| t.strip_prefix(&prefix)?.strip_suffix(".requests").map(str::to_owned))
        .filter(|s| !s.is_empty())
        .collect();
    skills.sort();
    skills.dedup();
    skills
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_topics_name_the_skills() {
        let topics = [
            "group.acme.skill.billing.requests",
            "group.acme.skill.billing.responses",
            "group.acme.skill.a.b.requests",
            "group.acme.requests",
            "group.acme2.skill.x.requests",
            "group.acme.skill..requests",
        ];
        assert_eq!(super::skills_of("acme", &topics), ["a.b", "billing"]);
    }
}
