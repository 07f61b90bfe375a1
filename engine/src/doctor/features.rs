//! The broker's features, as the probe ([`crate::kafka::inspect::probe`]) measured them, turned
//! into checks.

use super::report::{Check, Verdict};
use crate::kafka::inspect::probe::Probe;

/// The advice when aborted records leak to `read_committed` readers.
pub const DEDUP_ADVICE: &str = "set `dedup = true` on every Kafka source of an exactly-once topology: \
     outputs carry deterministic ids, and dedup drops the leaked copies (required for exactly-once on this broker)";

fn failed(id: &'static str, subject: &str, what: &str, e: &str) -> Check {
    let verdict = if e.starts_with("not measured") { Verdict::Unknown } else { Verdict::Fail };
    Check::new(id, subject, verdict, format!("{what}: {e}"))
}

/// The feature checks of one probe run against `servers`.
pub fn checks(servers: &str, p: &Probe) -> Vec<Check> {
    let mut out = Vec::new();
    if let Err(e) = &p.create {
        out.push(
            Check::new("features.probe", servers, Verdict::Unknown, format!("cannot create the probe topic: {e}"))
                .advice(
                    "doctor needs CreateTopics and DeleteTopics on `kafclaw-doctor-probe-*`; or run with --no-probe",
                )
                .fact("topic", p.topic.clone()),
        );
    }
    out.push(match &p.idempotence {
        Ok(()) => {
            Check::new("features.idempotence", servers, Verdict::Ok, "an idempotent producer's record was acknowledged")
        }
        Err(e) => failed("features.idempotence", servers, "idempotent produce failed", e)
            .advice("kafclaw's producers are idempotent: the broker must support InitProducerId"),
    });
    out.push(match &p.transactions {
        Ok(()) => Check::new(
            "features.transactions",
            servers,
            Verdict::Ok,
            "a transaction with a record and a group offset committed, another aborted",
        ),
        Err(e) => failed("features.transactions", servers, "transactions failed", e)
            .advice("exactly-once topologies need transactions; use `guarantee = \"at-least-once\"` on this broker"),
    });
    out.push(match &p.aborted_visible {
        Ok(false) => Check::new(
            "features.read_committed",
            servers,
            Verdict::Ok,
            "a record of an aborted transaction stayed invisible to a read_committed reader",
        )
        .fact("aborted_visible", false),
        Ok(true) => Check::new(
            "features.read_committed",
            servers,
            Verdict::Warn,
            "a record of an aborted transaction was visible to a read_committed reader",
        )
        .advice(DEDUP_ADVICE)
        .fact("aborted_visible", true),
        Err(e) => failed("features.read_committed", servers, "could not read the probe back", e),
    });
    out.push(match &p.committed_offset {
        Ok(Some(1)) => Check::new(
            "features.committed_offsets",
            servers,
            Verdict::Ok,
            "the offset committed in the transaction shows",
        )
        .fact("committed", 1),
        Ok(other) => Check::new(
            "features.committed_offsets",
            servers,
            Verdict::Fail,
            format!(
                "the offset committed in the transaction does not show (expected 1, read {})",
                other.map_or("none".to_owned(), |o| o.to_string())
            ),
        )
        .advice("instances would reprocess from their last visible offset after every restart")
        .fact("committed", *other),
        Err(e) => failed("features.committed_offsets", servers, "could not read the committed offset", e),
    });
    out.push(match &p.cleanup_policy {
        Ok(Some(policy)) if policy.contains("compact") => Check::new(
            "features.compaction",
            servers,
            Verdict::Ok,
            format!(
                "a topic created with cleanup.policy = compact is described as `{policy}` (when the broker compacts is not measured)"
            ),
        )
        .fact("cleanup_policy", policy.clone()),
        Ok(Some(policy)) => Check::new(
            "features.compaction",
            servers,
            Verdict::Fail,
            format!("a topic created with cleanup.policy = compact is described as `{policy}`"),
        )
        .advice("changelogs must be compacted or restores lose state once retention deletes it")
        .fact("cleanup_policy", policy.clone()),
        Ok(None) => Check::new(
            "features.compaction",
            servers,
            Verdict::Unknown,
            "DescribeConfigs lists no cleanup.policy for the probe topic",
        ),
        Err(e) if e.starts_with("not measured") => Check::new("features.compaction", servers, Verdict::Unknown, e.clone()),
        Err(e) => Check::new(
            "features.compaction",
            servers,
            Verdict::Unknown,
            format!("DescribeConfigs failed, so compaction cannot be checked: {e}"),
        ),
    });
    out.push(group_protocol(servers, p));
    if p.create.is_ok() {
        out.push(match &p.cleanup {
            Ok(()) => Check::new("features.probe", servers, Verdict::Ok, format!("probe topic `{}` deleted", p.topic)),
            Err(e) => Check::new(
                "features.probe",
                servers,
                Verdict::Warn,
                format!("probe topic `{}` not deleted: {e}", p.topic),
            )
            .advice("delete it by hand"),
        });
    }
    out
}

fn group_protocol(servers: &str, p: &Probe) -> Check {
    let kip848 = match &p.consumer_protocol {
        Ok(d) => format!("the KIP-848 consumer protocol is offered too (assigned in {} ms)", d.as_millis()),
        Err(e) => format!("the KIP-848 consumer protocol is not offered ({e})"),
    };
    match &p.classic_group {
        Ok(d) => Check::new(
            "features.group_protocol",
            servers,
            Verdict::Ok,
            format!("classic protocol (the runtime's, cooperative-sticky): assigned in {} ms; {kip848}", d.as_millis()),
        )
        .fact("classic_ms", d.as_millis() as u64)
        .fact("consumer_protocol", p.consumer_protocol.is_ok()),
        Err(e) => failed("features.group_protocol", servers, "a classic-protocol consumer got no assignment", e)
            .fact("consumer_protocol", p.consumer_protocol.is_ok()),
    }
}
