//! `kafclaw tap` on the broker: only the envelopes the CEL condition keeps are printed, with
//! the `filter` operator's variables (`type`, `payload`, `meta`); records that are not
//! envelopes are counted, not printed.

use std::process::Command;

use crate::support::{brokers, create_topic, produce, unique};

fn envelope(id: &str, kind: &str, n: i64) -> String {
    format!(
        r#"{{"type":"{kind}","correlation_id":"c-{id}","sender_id":"tap-test","timestamp":"2026-11-23T10:00:00Z","payload":{{"n":{n}}},"id":"{id}"}}"#
    )
}

fn tap(topic: &str, extra: &[&str]) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["tap", topic, "--from", "beginning", "--exit-at-end", "--brokers", &brokers()])
        .args(extra)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out.status.code(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ids(lines: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = lines.iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn tap_shows_only_matching_envelopes() {
    let topic = unique("tap");
    create_topic(&topic, 2);
    let mut records: Vec<(String, String)> = Vec::new();
    for i in 0..8i64 {
        let kind = if i % 2 == 0 { "request" } else { "response" };
        records.push((format!("k{i}"), envelope(&format!("e{i}"), kind, i)));
    }
    records.push(("junk".into(), "not an envelope".into()));
    produce(&topic, records);

    let (code, lines, err) = tap(&topic, &["--where", r#"type == "request" && payload.n >= 3"#]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(ids(&lines), ["e4", "e6"], "{err}");
    assert!(lines.iter().all(|l| l["type"] == "request"));
    assert!(err.contains("2 matched of 9 read, 1 not envelopes"), "{err}");

    // No condition: every envelope; `meta` is bound as for a kafka source.
    let (_, all, _) = tap(&topic, &[]);
    assert_eq!(all.len(), 8);
    let (_, p1, _) = tap(&topic, &["--where", "meta.partition == 1 && meta.source == 'tap'", "--meta"]);
    assert!(!p1.is_empty() && p1.len() < 9, "{p1:?}");
    assert!(p1.iter().all(|l| l["partition"] == 1 && l["envelope"]["id"].is_string() && l["key"].is_string()));

    // An evaluation error (a missing field) is a non-match, counted.
    let (code, lines, err) = tap(&topic, &["--where", "payload.missing == 1", "--max", "1"]);
    assert_eq!((code, lines.len()), (Some(0), 0), "{err}");
    assert!(err.contains("could not be evaluated"), "{err}");
}

#[test]
fn tap_stops_after_max_and_refuses_a_missing_topic() {
    let topic = unique("tap-max");
    create_topic(&topic, 1);
    produce(&topic, (0..5).map(|i| (format!("k{i}"), envelope(&format!("m{i}"), "request", i))));
    let (code, lines, err) = tap(&topic, &["--max", "2"]);
    assert_eq!((code, ids(&lines)), (Some(0), vec!["m0".to_owned(), "m1".to_owned()]), "{err}");

    let (code, _, err) = tap(&unique("tap-none"), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}
