//! A topology's consumer group (named after the topology): its members as the broker lists
//! them, and its lag: committed offsets against the partitions' ends (as fetch responses
//! carry them, else ListOffsets; see [`crate::kafka::inspect::groups`]).

use serde_json::json;

use super::report::{Check, Verdict};
use crate::kafka::inspect::groups::{GroupDescription, PartitionPosition};

/// `group.members`: the broker's description of group `group` (`None`: unknown to it).
pub fn members_check(group: &str, described: &Result<Option<GroupDescription>, String>) -> Check {
    match described {
        Ok(None) => {
            Check::new("group.members", group, Verdict::Ok, "the broker does not know the group (never started)")
                .fact("state", serde_json::Value::Null)
                .fact("members", Vec::<String>::new())
        }
        Ok(Some(g)) => {
            let who = if g.members.is_empty() { String::new() } else { format!(": {}", g.members.join(", ")) };
            let protocol = if g.protocol.is_empty() { String::new() } else { format!(", protocol {}", g.protocol) };
            Check::new(
                "group.members",
                group,
                Verdict::Ok,
                format!("state {}{protocol}, {} member(s){who}", g.state, g.members.len()),
            )
            .fact("state", g.state.clone())
            .fact("members", g.members.clone())
        }
        Err(e) => Check::new("group.members", group, Verdict::Unknown, format!("DescribeGroups failed: {e}")),
    }
}

/// `group.lag`: the group's lag over `positions` (its non-global source partitions); warns
/// above `max_lag` records in total when given.
pub fn lag_check(group: &str, positions: &Result<Vec<PartitionPosition>, String>, max_lag: Option<i64>) -> Check {
    let positions = match positions {
        Ok(p) => p,
        Err(e) => return Check::new("group.lag", group, Verdict::Unknown, format!("cannot read offsets: {e}")),
    };
    let partitions: Vec<serde_json::Value> = positions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "high_watermark": p.high.as_ref().ok(),
                "end_from": p.end_from,
                "lag": p.lag(),
            })
        })
        .collect();
    let unknown: Vec<String> = positions
        .iter()
        .filter(|p| p.lag().is_none())
        .map(|p| match &p.high {
            Err(e) => format!("{}/{}: high watermark unknown ({e})", p.topic, p.partition),
            Ok(h) => format!(
                "{}/{}: high watermark {h} below the committed offset {}",
                p.topic,
                p.partition,
                p.committed.unwrap_or(0)
            ),
        })
        .collect();
    let total: i64 = positions.iter().filter_map(PartitionPosition::lag).sum();
    let committed = positions.iter().filter(|p| p.committed.is_some()).count();
    let check = if !unknown.is_empty() {
        Check::new(
            "group.lag",
            group,
            Verdict::Unknown,
            format!("{total} record(s) behind where known; {}", unknown.join("; ")),
        )
    } else if positions.is_empty() {
        Check::new("group.lag", group, Verdict::Ok, "no partitions to consume")
    } else {
        let reason = format!(
            "{total} record(s) behind over {} partition(s) ({committed} with a committed offset)",
            positions.len()
        );
        match max_lag {
            Some(max) if total > max => {
                Check::new("group.lag", group, Verdict::Warn, format!("{reason}, above --max-lag {max}"))
                    .advice("add instances (up to the partition count) or find what slows the tasks (`kafclaw top`)")
            }
            _ => Check::new("group.lag", group, Verdict::Ok, reason),
        }
    };
    check.fact("total", total).fact("partitions", partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(committed: Option<i64>, high: Result<i64, String>) -> PartitionPosition {
        PartitionPosition { topic: "t".into(), partition: 0, committed, high, end_from: "fetch" }
    }

    #[test]
    fn lag_is_the_distance_to_the_high_watermark_and_unknown_when_it_is_wrong() {
        let c = lag_check("g", &Ok(vec![pos(Some(3), Ok(10)), pos(None, Ok(4))]), None);
        assert_eq!((c.verdict, c.facts["total"].as_i64()), (Verdict::Ok, Some(11)));
        let c = lag_check("g", &Ok(vec![pos(Some(3), Ok(10))]), Some(5));
        assert_eq!(c.verdict, Verdict::Warn);
        let c = lag_check("g", &Ok(vec![pos(Some(9), Ok(2))]), None);
        assert_eq!(c.verdict, Verdict::Unknown);
        assert!(c.reason.contains("below the committed offset 9"), "{}", c.reason);
    }
}
