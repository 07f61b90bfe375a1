//! The console's Dead letters page: the newest letters of the dead-letter topics the gateway
//! is given (`kafclaw gateway --dead-letters <topic>`, repeatable; `<topology>.dlq` by
//! default naming), by topic (topology) and reason, each with the record that failed and its
//! error headers; and a letter's record resubmitted to the topic it came from, as it was or
//! as corrected in the page — **audited**: the record and an `audit` envelope
//! (`dead_letter_resubmitted`, on `group.<g>.observe.audit`) are written in one Kafka
//! transaction.
//!
//! Only the listed topics are read (`404` for any other). The target is the letter's
//! `kafclaw.location` header, which must name an existing topic (it is never created). A
//! letter whose copy was cut (`kafclaw.raw.size`) can only be resubmitted corrected.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use kafclaw_operators::api::record::{format_time_ms, now_ms};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::session::ConsoleUser;
use super::{Console, pages, refuse};
use crate::kafka::dead_letters::{self, Letter};

/// Letters read per partition of a topic (the newest).
const NEWEST: i64 = 200;
/// Most letters one listing shows (the newest), and most bytes of each record it shows (the
/// rest is fetched when the letter is resubmitted).
const LISTED: usize = 300;
const PREVIEW_BYTES: usize = 16 * 1024;

/// The reason a letter is filed under: its error code where the engine gave one, else its
/// stage (`decode`, `operator:<name>`).
fn reason(l: &Letter) -> String {
    l.header(kafclaw_operators::api::dead_letter::headers::CODE)
        .or(l.header(kafclaw_operators::api::dead_letter::headers::STAGE))
        .unwrap_or("unknown")
        .to_owned()
}

/// The topology a dead-letter topic is of, by the default naming (`<topology>.dlq`).
fn topology_of(topic: &str) -> &str {
    topic.strip_suffix(".dlq").unwrap_or(topic)
}

/// The envelope fields a correction may not change: who sent it, from where, as whom, and
/// what it is. A correction of a record that was an envelope must be one with the same
/// values (a console user cannot make a record say it came from someone else); a record that
/// was not one (a decode failure) may become any (the admin writes it, and the audit says so).
const IDENTITY: [&str; 4] = ["type", "sender_id", "zone", "payload.requester_id"];

fn same_identity(original: &[u8], corrected: &[u8]) -> Result<(), String> {
    let Ok(before) = serde_json::from_slice::<serde_json::Value>(original) else { return Ok(()) };
    if Envelope::decode(original).is_err() {
        return Ok(());
    }
    let after: serde_json::Value =
        serde_json::from_slice(corrected).map_err(|e| format!("the correction is not JSON: {e}"))?;
    for field in IDENTITY {
        let pointer = format!("/{}", field.replace('.', "/"));
        if before.pointer(&pointer) != after.pointer(&pointer) {
            return Err(format!("a correction may not change `{field}` (the record's identity)"));
        }
    }
    Ok(())
}

/// `GET /console/dead-letters`.
pub(super) async fn page(State(console): State<Console>, Extension(user): Extension<ConsoleUser>) -> Response {
    let topics: Vec<_> =
        console.dead_letter_topics.iter().map(|t| json!({"topic": t, "topology": topology_of(t)})).collect();
    let admin = console.is_admin(&user);
    pages::page(&console, &user, "dead_letters.html", "dead-letters", minijinja::context! { topics, admin })
}

/// `GET /console/api/dead-letters` query.
#[derive(Debug, Deserialize)]
pub(super) struct Which {
    /// One of the gateway's dead-letter topics.
    topic: String,
}

/// The settings to reach Kafka with, when `user` is a console admin and `topic` is one of the
/// console's; else the status and message that say why not.
fn allowed(
    console: &Console,
    user: &ConsoleUser,
    topic: &str,
) -> Result<crate::kafka::ClientSettings, (StatusCode, &'static str)> {
    if !console.is_admin(user) {
        return Err((StatusCode::FORBIDDEN, "dead letters are for console admins (kafclaw gateway --console-admin)"));
    }
    let Some(settings) = console.kafka.as_ref() else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "this console reaches no Kafka cluster"));
    };
    if !console.dead_letter_topics.iter().any(|t| t == topic) {
        return Err((StatusCode::NOT_FOUND, "not one of this gateway's dead-letter topics (--dead-letters)"));
    }
    Ok(settings.clone())
}

/// `GET /console/api/dead-letters?topic=` → `{"topic", "topology", "letters": [...]}`: the
/// newest 200 letters of each partition, newest first, each as [`Letter::to_json`] with its
/// `reason`.
pub(super) async fn list(
    State(console): State<Console>,
    Extension(user): Extension<ConsoleUser>,
    Query(which): Query<Which>,
) -> Response {
    let _reading = console.kafka_reads.acquire().await;
    let settings = match allowed(&console, &user, &which.topic) {
        Ok(s) => s,
        Err((code, why)) => return refuse(code, why),
    };
    let topic = which.topic.clone();
    let read = tokio::task::spawn_blocking(move || dead_letters::newest(&settings, &topic, NEWEST)).await;
    match read {
        Ok(Ok(letters)) => {
            let letters: Vec<_> = letters
                .iter()
                .take(LISTED)
                .map(|l| {
                    let mut v = l.to_json();
                    v["reason"] = json!(reason(l));
                    if l.value.len() > PREVIEW_BYTES {
                        let text = v["value"].as_str().unwrap_or_default();
                        let cut = (0..=PREVIEW_BYTES).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                        v["value"] = json!(&text[..cut]);
                        v["preview"] = json!(true);
                    }
                    v
                })
                .collect();
            Json(json!({"topic": which.topic, "topology": topology_of(&which.topic), "letters": letters}))
                .into_response()
        }
        Ok(Err(e)) => refuse(StatusCode::BAD_GATEWAY, &e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `POST /console/api/dead-letters/resubmit` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Resubmit {
    /// The dead-letter topic.
    topic: String,
    /// The letter's partition there.
    partition: i32,
    /// Its offset.
    offset: i64,
    /// The record to write instead of the letter's (a correction); none: the letter's own.
    #[serde(default)]
    value: Option<String>,
}

/// `POST /console/api/dead-letters/resubmit` `{"topic", "partition", "offset", "value"?}` →
/// `200 {"resubmitted": {"topic", "partition", "offset"}}`; `404` no such letter, `409` a
/// letter with no topic to go back to or a cut copy sent uncorrected, `502` Kafka failed.
pub(super) async fn resubmit(
    State(console): State<Console>,
    Extension(user): Extension<ConsoleUser>,
    body: axum::body::Bytes,
) -> Response {
    let ask: Resubmit = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("body: {e}")),
    };
    let _reading = console.kafka_reads.acquire().await;
    let settings = match allowed(&console, &user, &ask.topic) {
        Ok(s) => s,
        Err((code, why)) => return refuse(code, why),
    };
    let (s, topic, (p, o)) = (settings.clone(), ask.topic.clone(), (ask.partition, ask.offset));
    let letter = match tokio::task::spawn_blocking(move || dead_letters::one(&s, &topic, p, o)).await {
        Ok(Ok(Some(l))) => l,
        Ok(Ok(None)) => return refuse(StatusCode::NOT_FOUND, "no dead letter there"),
        Ok(Err(e)) => return refuse(StatusCode::BAD_GATEWAY, &e),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let Some(to) = letter.header(kafclaw_operators::api::dead_letter::headers::LOCATION).map(str::to_owned) else {
        return refuse(StatusCode::CONFLICT, "the letter names no topic it came from (kafclaw.location)");
    };
    let edited = ask.value.as_ref().is_some_and(|v| v.as_bytes() != letter.value.as_slice());
    if edited && std::str::from_utf8(&letter.value).is_err() {
        return refuse(StatusCode::CONFLICT, "the letter's record is not text: it can only be resubmitted as it is");
    }
    if let (true, Some(v)) = (edited, &ask.value)
        && let Err(why) = same_identity(&letter.value, v.as_bytes())
    {
        return refuse(StatusCode::CONFLICT, &why);
    }
    if letter.cut() && !edited {
        return refuse(
            StatusCode::CONFLICT,
            "the letter keeps only a cut copy of the record (kafclaw.raw.size): resubmit a corrected, whole record",
        );
    }
    let value = ask.value.map_or_else(|| letter.value.clone(), String::into_bytes);
    // Both topics must exist: neither is created here (the audit topic is the group's,
    // `kafclaw group create` makes it).
    let audit_topic = format!("group.{}.observe.audit", console.group);
    for (what, topic) in [("the letter's topic", to.clone()), ("the group's audit topic", audit_topic.clone())] {
        let s = settings.clone();
        let exists = tokio::task::spawn_blocking(move || dead_letters::partitions(&s, &topic)).await;
        if let Err(e) = exists.unwrap_or_else(|e| Err(e.to_string())) {
            return refuse(StatusCode::CONFLICT, &format!("{what}: {e}"));
        }
    }
    // Keyed as kafclaw keys envelopes: by correlation id, when the record is one.
    let key = Envelope::decode(&value).ok().map(|e| e.correlation_id);
    let who = &user.identity;
    let digest = hex::encode(Sha256::digest(&value));
    let dlq = ask.topic.clone();
    let audit = |done: &dead_letters::Resubmitted| {
        let payload = json!({
            "event_type": "dead_letter_resubmitted",
            "agent_id": who.sender_id,
            "token": who.name,
            "dead_letter": {"topic": dlq, "partition": letter.partition, "offset": letter.offset,
                "error": letter.header(kafclaw_operators::api::dead_letter::headers::ERROR), "reason": reason(&letter)},
            "to": {"topic": done.topic, "partition": done.partition, "offset": done.offset},
            "edited": edited,
            "sha256": digest,
        });
        let correlation = key.clone().unwrap_or_else(|| format!("{dlq}/{}/{}", letter.partition, letter.offset));
        Envelope::new(EnvelopeType::Audit, correlation, who.sender_id.clone(), format_time_ms(now_ms()), payload)
            .encode()
    };
    let r = dead_letters::Resubmission {
        from: (ask.topic.as_str(), letter.partition, letter.offset),
        to: &to,
        key: key.as_deref(),
        value: &value,
        by: &who.sender_id,
    };
    match dead_letters::resubmit(&settings, r, &audit_topic, audit).await {
        Ok(done) => {
            tracing::info!(dead_letter = %ask.topic, partition = letter.partition, offset = letter.offset, to = %done.topic,
                to_offset = done.offset, token = %who.name, sender_id = %who.sender_id, edited, "dead letter resubmitted");
            Json(json!({"resubmitted": {"topic": done.topic, "partition": done.partition, "offset": done.offset}}))
                .into_response()
        }
        Err(e) => refuse(StatusCode::BAD_GATEWAY, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correction_keeps_the_records_identity() {
        let original = br#"{"type":"request","correlation_id":"c","sender_id":"shop","timestamp":"2026-12-02T10:00:00Z","payload":{"amount":"x","requester_id":"shop"}}"#;
        let fixed = br#"{"type":"request","correlation_id":"c","sender_id":"shop","timestamp":"2026-12-02T10:00:00Z","payload":{"amount":5,"requester_id":"shop"}}"#;
        assert!(same_identity(original, fixed).is_ok());
        for (forged, field) in [
            (
                r#"{"type":"request","correlation_id":"c","sender_id":"internal-agent","timestamp":"t","payload":{"requester_id":"shop"}}"#,
                "sender_id",
            ),
            (
                r#"{"type":"request","correlation_id":"c","sender_id":"shop","zone":"internal","timestamp":"t","payload":{"requester_id":"shop"}}"#,
                "zone",
            ),
            (
                r#"{"type":"skill_request","correlation_id":"c","sender_id":"shop","timestamp":"t","payload":{"requester_id":"shop"}}"#,
                "type",
            ),
            (
                r#"{"type":"request","correlation_id":"c","sender_id":"shop","timestamp":"t","payload":{"requester_id":"boss"}}"#,
                "payload.requester_id",
            ),
        ] {
            let e = same_identity(original, forged.as_bytes()).unwrap_err();
            assert!(e.contains(&format!("`{field}`")), "{e}");
        }
        assert!(same_identity(original, b"not json").unwrap_err().contains("not JSON"));
        // A record that was no envelope (a decode failure) may become one.
        assert!(same_identity(br#"{"type":"request","payload":{"#, fixed).is_ok());
        assert_eq!(reason_for(Some("record_too_large"), Some("operator:x")), "record_too_large");
        assert_eq!(reason_for(None, Some("decode")), "decode");
        assert_eq!(topology_of("refunds.dlq"), "refunds");
    }

    fn reason_for(code: Option<&str>, stage: Option<&str>) -> String {
        let mut headers = Vec::new();
        if let Some(c) = code {
            headers.push((kafclaw_operators::api::dead_letter::headers::CODE.to_owned(), c.to_owned()));
        }
        if let Some(s) = stage {
            headers.push((kafclaw_operators::api::dead_letter::headers::STAGE.to_owned(), s.to_owned()));
        }
        reason(&Letter { partition: 0, offset: 0, timestamp_ms: None, headers, value: Vec::new() })
    }
}
