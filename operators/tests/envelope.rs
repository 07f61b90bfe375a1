//! Envelope v1: KafClaw compatibility, byte-stable round trips, errors that name the field,
//! and property tests (arbitrary input never panics; generated envelopes round-trip).

use kafclaw_operators::envelope::{Envelope, EnvelopeError, EnvelopeType, Payload};
use proptest::prelude::*;
use serde_json::json;

/// What a KafClaw (Go) peer writes: the five fields, RFC 3339 with nanoseconds, no `id`/`v`.
const KAFCLAW: &str = r#"{"type":"request","correlation_id":"task-17","sender_id":"agent-go","timestamp":"2026-11-02T08:15:30.123456789+01:00","payload":{"task_id":"task-17","description":"summarise","content":"the report","requester_id":"agent-go","delegation_depth":1,"deadline_at":"2026-11-02T09:00:00Z"}}"#;

fn decode(s: &str) -> Result<Envelope, EnvelopeError> {
    Envelope::decode(s.as_bytes())
}

#[test]
fn kafclaw_envelope_without_our_fields_decodes() {
    let e = decode(KAFCLAW).unwrap();
    assert_eq!(e.kind, EnvelopeType::Request);
    assert_eq!(e.correlation_id, "task-17");
    assert_eq!(e.id, None);
    assert_eq!(e.v, None);
    match e.typed_payload().unwrap() {
        Payload::Request(p) => {
            assert_eq!(p.task_id, "task-17");
            assert_eq!(p.delegation_depth, 1);
            assert_eq!(p.deadline_at, "2026-11-02T09:00:00Z");
        }
        other => panic!("wrong payload {other:?}"),
    }
    // A KafClaw envelope re-encodes to exactly what the peer wrote.
    assert_eq!(String::from_utf8(e.encode()).unwrap(), KAFCLAW);
}

#[test]
fn every_kafclaw_type_decodes_to_its_payload() {
    for t in EnvelopeType::ALL {
        let text = format!(
            r#"{{"type":"{t}","correlation_id":"c","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{{}}}}"#
        );
        let e = decode(&text).unwrap();
        assert_eq!(e.kind, t);
        e.typed_payload().unwrap();
    }
}

#[test]
fn ours_round_trips_byte_stable() {
    let mut e = Envelope::new(
        EnvelopeType::Response,
        "c-1",
        "agent",
        "2026-11-23T10:00:00Z",
        json!({"task_id": "c-1", "status": "completed", "content": "ok", "score": 0.1, "n": [1, 2, {"z": null, "a": true}]}),
    );
    e.id = Some("0123456789abcdef0123456789abcdef".into());
    e.v = Some(1);
    e.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    e.span_id = Some("00f067aa0ba902b7".into());
    e.parent_span_id = Some("00f067aa0ba902b8".into());
    e.causation_id = Some("parent".into());
    e.zone = Some("shared".into());
    e.extra.insert("x_future".into(), json!({"b": 1, "a": 2}));
    let first = e.encode();
    let back = Envelope::decode(&first).unwrap();
    assert_eq!(back, e);
    assert_eq!(back.encode(), first);
}

#[test]
fn unknown_fields_are_kept_in_order() {
    let text = r#"{"zeta":1,"type":"memory","correlation_id":"m","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{},"alpha":{"k":[1]}}"#;
    let e = decode(text).unwrap();
    assert_eq!(e.extra.keys().collect::<Vec<_>>(), ["zeta", "alpha"]);
    let out = String::from_utf8(e.encode()).unwrap();
    assert!(out.ends_with(r#""zeta":1,"alpha":{"k":[1]}}"#), "{out}");
}

#[test]
fn invalid_envelopes_name_the_field() {
    let base = json!({"type": "request", "correlation_id": "c", "sender_id": "s", "timestamp": "2026-01-01T00:00:00Z", "payload": {}});
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("type", json!("requets")),
        ("type", json!(42)),
        ("correlation_id", json!(7)),
        ("timestamp", json!("yesterday")),
        ("payload", json!([1, 2])),
        ("trace_id", json!("xyz")),
        ("span_id", json!("00F067AA0BA902B7")),
        ("v", json!(-1)),
        ("id", json!("")),
    ];
    for (field, bad) in cases {
        let mut v = base.clone();
        v[field] = bad.clone();
        let text = v.to_string();
        let err = decode(&text).unwrap_err();
        assert_eq!(err.field_name(), Some(field), "{field}={bad}: {err}");
        assert!(err.to_string().starts_with(&format!("field `{field}`")), "{err}");
    }
    for missing in ["type", "correlation_id", "sender_id", "timestamp", "payload"] {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(missing);
        let err = decode(&v.to_string()).unwrap_err();
        assert_eq!(err, EnvelopeError::field(missing, "missing"));
    }
    let dup = r#"{"type":"request","type":"request","correlation_id":"c","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{}}"#;
    assert_eq!(decode(dup).unwrap_err().field_name(), Some("type"));
    assert!(matches!(decode("not json").unwrap_err(), EnvelopeError::Syntax(_)));
    assert!(matches!(decode("[1]").unwrap_err(), EnvelopeError::Syntax(_)));
}

#[test]
fn typed_payload_errors_name_the_payload() {
    let text = r#"{"type":"request","correlation_id":"c","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{"delegation_depth":"deep"}}"#;
    let err = decode(text).unwrap().typed_payload().unwrap_err();
    assert_eq!(err.field_name(), Some("payload.delegation_depth"));
    let text = r#"{"type":"request","correlation_id":"c","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{"task_id":7}}"#;
    assert_eq!(decode(text).unwrap().typed_payload().unwrap_err().field_name(), Some("payload"));
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9 _\\-\u{e9}\u{1F600}\"\\\\\n]{0,12}".prop_map(serde_json::Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

prop_compose! {
    fn envelope()(
        kind in prop::sample::select(EnvelopeType::ALL.to_vec()),
        corr in "[ -~]{0,16}",
        sender in "[a-z0-9-]{1,10}",
        payload in prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..5),
        id in prop::option::of("[0-9a-f]{32}"),
        zone in prop::option::of("(public|shared|private)"),
        extra in prop::collection::vec(("x_[a-z]{1,5}", json_value()), 0..3),
    ) -> Envelope {
        let mut e = Envelope::new(kind, corr, sender, "2026-11-23T10:00:00.5Z", serde_json::Value::Object(payload.into_iter().collect()));
        e.id = id;
        e.v = Some(1);
        e.zone = zone;
        e.extra = extra.into_iter().collect();
        e
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        let text = v.to_string();
        let _ = Envelope::decode(text.as_bytes());
    }

    #[test]
    fn generated_envelopes_round_trip(e in envelope()) {
        let bytes = e.encode();
        let back = Envelope::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.encode(), bytes);
        let _ = back.typed_payload();
    }
}

fn with_payload(payload: &str) -> String {
    format!(
        r#"{{"type":"request","correlation_id":"c","sender_id":"s","timestamp":"2026-11-23T10:00:00Z","payload":{payload}}}"#
    )
}

/// A payload nested deeper than serde_json reads (128 levels) is well-formed JSON: it used to
/// decode, then read as `null` on first use, every field absent — a guard then passed a request
/// with `delegation_depth: 5` beside such a field. It is a decode error naming the payload.
#[test]
fn a_payload_too_deep_to_read_is_a_decode_error_not_null() {
    for depth in [127, 128, 200, 5000] {
        let junk = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = with_payload(&format!(r#"{{"delegation_depth":5,"junk":{junk}}}"#));
        let e = decode(&text).expect_err(&format!("depth {depth}"));
        assert!(e.to_string().contains("payload"), "{e}");
    }
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(150), "}".repeat(150));
    assert!(decode(&with_payload(&format!(r#"{{"x":{deep_object}}}"#))).is_err());
}

/// Just under the limit, and payloads with many brackets but little depth, decode and read.
#[test]
fn deep_but_readable_payloads_keep_their_fields() {
    for depth in [1, 99, 100, 120] {
        let junk = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let e = decode(&with_payload(&format!(r#"{{"delegation_depth":5,"junk":{junk}}}"#))).unwrap();
        assert_eq!(e.payload["delegation_depth"], 5, "depth {depth}");
    }
    let wide = format!("[{}]", vec!["[]"; 5000].join(","));
    let e = decode(&with_payload(&format!(r#"{{"n":1,"wide":{wide}}}"#))).unwrap();
    assert_eq!(e.payload["n"], 1);
    assert_eq!(e.payload["wide"].as_array().map(Vec::len), Some(5000));
}
