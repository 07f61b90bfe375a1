//! Tests of the wire-field readers (`wire.rs`).

use super::*;
use serde_json::json;

/// Whether serde_json keeps numbers' text (`arbitrary_precision`).
fn keeps_text() -> bool {
    let written = serde_json::to_string(&parsed("3.0000000000000001")).unwrap();
    written == "3.0000000000000001"
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn whole_numbers_are_judged_exactly_on_their_text() {
    for (text, n) in [
        ("0", 0),
        ("3", 3),
        ("3.0", 3),
        ("3e0", 3),
        ("3E+0", 3),
        ("30e-1", 3),
        ("0.3e1", 3),
        ("300e-2", 3),
        ("0.000", 0),
        ("0e999999999999999999999", 0),
        ("1e19", 10_000_000_000_000_000_000),
        ("18446744073709551615", u64::MAX),
        ("1.8446744073709551615e19", u64::MAX),
    ] {
        assert_eq!(whole_number(text), Ok(n), "{text}");
    }
    for (text, why) in [
        ("-1", NotWhole::Negative),
        ("-0", NotWhole::Negative),
        ("-0.0", NotWhole::Negative),
        ("-2.5", NotWhole::Negative),
        ("2.5", NotWhole::Fractional),
        ("3.0000000000000001", NotWhole::Fractional),
        ("1e-1", NotWhole::Fractional),
        ("5e-99999999999999999999999", NotWhole::Fractional),
        ("1e400", NotWhole::TooLarge),
        ("1e20", NotWhole::TooLarge),
        ("18446744073709551616", NotWhole::TooLarge),
        ("99999999999999999999", NotWhole::TooLarge),
        ("1844674407370955161.6e1", NotWhole::TooLarge),
    ] {
        assert_eq!(whole_number(text), Err(why), "{text}");
    }
    for text in [
        "", " 3", "3 ", "+3", "03", "00", "0x10", "3.", ".3", "3e", "3e+", "1_000", "abc", "NaN", "Infinity",
        "\u{ff13}", "\u{663}", "3\u{0}", "--1", "1e1e1",
    ] {
        assert_eq!(whole_number(text), Err(NotWhole::Syntax), "{text:?}");
    }
}

#[test]
fn depth_is_read_in_any_whole_spelling_and_refused_otherwise() {
    let depth = |v: Value| delegation_depth(&json!({ "delegation_depth": v }));
    for v in [json!(3), json!(3.0), json!("3"), json!("3.0"), json!("30e-1"), parsed("3e0"), parsed("30e-1")] {
        assert_eq!(depth(v.clone()), Ok(Some(3)), "{v}");
    }
    assert_eq!(depth(json!(u32::MAX)), Ok(Some(u32::MAX)));
    let refused = |v: Value| depth(v).unwrap_err().to_string();
    assert_eq!(refused(json!(2.5)), "`payload.delegation_depth`: expected a whole number ≥ 0, got 2.5");
    assert_eq!(refused(json!(-1)), "`payload.delegation_depth`: expected a whole number ≥ 0, got -1");
    assert_eq!(refused(json!(true)), "`payload.delegation_depth`: expected a whole number ≥ 0, got true");
    assert_eq!(refused(json!(null)), "`payload.delegation_depth`: expected a whole number ≥ 0, got null");
    assert_eq!(refused(json!("")), r#"`payload.delegation_depth`: expected a whole number ≥ 0, got """#);
    assert_eq!(refused(json!(" 3")), r#"`payload.delegation_depth`: expected a whole number ≥ 0, got " 3""#);
    for v in [json!([]), json!({}), json!("abc"), json!("-1"), json!("+3"), json!("0x3"), parsed("-0")] {
        assert!(matches!(depth(v.clone()), Err(WireError { problem: Problem::NotWholeNumber(_), .. })), "{v}");
    }
    assert_eq!(
        refused(json!(4_294_967_296_u64)),
        "`payload.delegation_depth`: expected a whole number ≤ 4294967295, got 4294967296"
    );
    let too_large = parsed("18446744073709551616");
    assert!(matches!(depth(too_large), Err(WireError { problem: Problem::TooLarge { .. }, .. })));
    // Without `arbitrary_precision` serde_json cannot hold 1e400, nor tell
    // 3.0000000000000001 from 3.0; with it, both are judged on their text.
    if let Ok(v) = serde_json::from_str::<Value>("1e400") {
        assert!(matches!(depth(v), Err(WireError { problem: Problem::TooLarge { .. }, .. })));
    }
    let close = parsed("3.0000000000000001");
    assert_eq!(depth(close).is_err(), keeps_text());
    // Truly absent is the only absent.
    assert_eq!(delegation_depth(&json!({})), Ok(None));
    assert_eq!(delegation_depth(&Value::Null), Ok(None));
}

#[test]
fn ids_and_times_are_strings() {
    let p = json!({"task_id": "t-1", "parent_task_id": "", "requester_id": 7, "deadline_at": "1970-01-01T00:00:01Z"});
    assert_eq!(string_field(&p, "task_id"), Ok(Some("t-1")));
    assert_eq!(string_field(&p, "parent_task_id"), Ok(None));
    assert_eq!(string_field(&p, "original_requester_id"), Ok(None));
    assert_eq!(
        string_field(&p, "requester_id").unwrap_err().to_string(),
        "`payload.requester_id`: expected a string, got 7"
    );
    for v in [json!({"a": 1}), json!(null), json!(["t"]), json!(1.5)] {
        assert!(string_field(&json!({ "task_id": v }), "task_id").is_err());
    }
    assert_eq!(deadline_at(&p), Ok(Some(Time { text: "1970-01-01T00:00:01Z", ms: 1000 })));
    assert_eq!(deadline_at(&json!({"deadline_at": ""})), Ok(None));
    let late = |v: Value| deadline_at(&json!({ "deadline_at": v })).unwrap_err().to_string();
    assert_eq!(late(json!(1_700_000_000)), "`payload.deadline_at`: expected an RFC 3339 time string, got 1700000000");
    assert_eq!(late(json!("tomorrow")), r#"`payload.deadline_at`: expected an RFC 3339 time string, got "tomorrow""#);
    assert_eq!(
        late(json!(["1970-01-01T00:00:01Z"])),
        r#"`payload.deadline_at`: expected an RFC 3339 time string, got ["1970-01-01T00:00:01Z"]"#
    );
    assert!(deadline_at(&json!({"deadline_at": null})).is_err());
}

#[test]
fn typed_requests_follow_the_same_rule() {
    use crate::envelope::{Envelope, EnvelopeType, Payload};
    let typed = |p: Value| Envelope::new(EnvelopeType::Request, "c", "a", "1970-01-01T00:00:00Z", p).typed_payload();
    let Ok(Payload::Request(r)) = typed(json!({"delegation_depth": "3", "deadline_at": "1970-01-01T00:00:00Z"})) else {
        panic!("a request")
    };
    assert_eq!((r.delegation_depth, r.deadline_at.as_str()), (3, "1970-01-01T00:00:00Z"));
    let e = typed(json!({"delegation_depth": 2.5})).unwrap_err();
    assert_eq!(e.to_string(), "field `payload.delegation_depth`: expected a whole number ≥ 0, got 2.5");
    let e = typed(json!({"delegation_depth": ""})).unwrap_err();
    assert_eq!(e.to_string(), r#"field `payload.delegation_depth`: expected a whole number ≥ 0, got """#);
    assert_eq!(typed(json!({"deadline_at": 5})).unwrap_err().field_name(), Some("payload.deadline_at"));
    assert_eq!(typed(json!({"task_id": 5})).unwrap_err().field_name(), Some("payload"));
}

fn decoded_payload(payload: &str) -> LazyJson {
    let text = format!(
        r#"{{"type":"request","correlation_id":"c","sender_id":"a","timestamp":"1970-01-01T00:00:00Z","payload":{payload}}}"#
    );
    crate::envelope::Envelope::decode(text.as_bytes()).unwrap().payload
}

#[test]
fn a_guarded_field_written_twice_is_refused() {
    let names = GUARDED;
    let refused = |text: &str| repeated(text, names).unwrap_err().to_string();
    assert_eq!(
        refused(r#"{"delegation_depth":3,"delegation_depth":1}"#),
        "`payload.delegation_depth`: appears more than once in the payload"
    );
    assert_eq!(
        refused(r#"{"deadline_at":"a","x":{"deadline_at":1},"deadline_at":"b"}"#),
        "`payload.deadline_at`: appears more than once in the payload"
    );
    // Escaped spellings are the same key; the first repeated guarded key is named.
    assert!(refused(r#"{"task_id":"a","response":1,"task\u005fid":"b","response":2}"#).contains("task_id"));
    assert!(refused(r#" {"response":"a", "response":"a"}"#).contains("payload.response"));
    // Unguarded repeats, nested repeats, other cases and non-objects are not this rule's.
    for ok in [
        r#"{"note":1,"note":2}"#,
        r#"{"a":{"task_id":1,"task_id":2},"b":[{"status":1,"status":1}]}"#,
        r#"{"Delegation_Depth":9,"delegation_depth":1}"#,
        r#"[1,2]"#,
        "null",
        r#""task_id""#,
        "{}",
    ] {
        assert_eq!(repeated(ok, names), Ok(()), "{ok}");
    }
}

#[test]
fn task_fields_of_a_decoded_payload_refuse_repeats_even_once_read() {
    let p = decoded_payload(r#"{"task_id":"t1","delegation_depth":3,"delegation_depth":1}"#);
    assert_eq!(p["delegation_depth"], 1, "a parse keeps the last");
    let e = TaskFields::of(&p).unwrap_err();
    assert_eq!((e.field.as_str(), e.problem), ("payload.delegation_depth", Problem::Repeated));
    let p = decoded_payload(r#"{"deadline_at":"2020-01-01T00:00:00Z","deadline_at":"2099-01-01T00:00:00Z"}"#);
    assert_eq!(TaskFields::of(&p).unwrap_err().field, "payload.deadline_at");
    let p = decoded_payload(r#"{"task_id":"t","delegation_depth":"2"}"#);
    assert_eq!(TaskFields::of(&p).unwrap().delegation_depth, Some(2));
    // A payload built as a value has no text to repeat a key in.
    assert!(once(&LazyJson::from(json!({"task_id": "t"}))).is_ok());
}

#[test]
fn task_fields_stop_at_the_first_unreadable_one_and_show_little_of_it() {
    let p = json!({"task_id": "t", "delegation_depth": "2", "deadline_at": "1970-01-01T00:00:00Z"});
    let f = TaskFields::read(&p).unwrap();
    assert_eq!((f.task_id, f.delegation_depth, f.deadline_at.map(|t| t.ms)), (Some("t"), Some(2), Some(0)));
    assert_eq!(TaskFields::read(&Value::Null), Ok(TaskFields::default()));
    let e = TaskFields::read(&json!({"task_id": {"x": 1}, "delegation_depth": 2.5})).unwrap_err();
    assert_eq!(e.field, "payload.task_id");
    let long = "x".repeat(200);
    let e = TaskFields::read(&json!({ "delegation_depth": long })).unwrap_err();
    assert!(e.to_string().ends_with(&format!("got \"{}…", "x".repeat(63))), "{e}");
}
