//! The published JSON Schema (docs/schema/envelope.v1.json) and the decoder agree.

use kafclaw_operators::Envelope;
use serde_json::{Value, json};

fn schema() -> jsonschema::Validator {
    let text = include_str!("../../docs/schema/envelope.v1.json");
    let schema: Value = serde_json::from_str(text).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).expect("the schema compiles")
}

fn base() -> Value {
    json!({"type": "request", "correlation_id": "c", "sender_id": "s", "timestamp": "2026-01-01T00:00:00Z",
           "payload": {"task_id": "c", "delegation_depth": 2}})
}

#[test]
fn schema_and_decoder_agree() {
    let v = schema();
    let mut ours = base();
    ours["id"] = json!("0123456789abcdef0123456789abcdef");
    ours["v"] = json!(1);
    ours["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
    ours["span_id"] = json!("00f067aa0ba902b7");
    ours["zone"] = json!("private");
    ours["x_future"] = json!([1]);
    for good in [base(), ours] {
        assert!(v.is_valid(&good), "schema rejects {good}");
        Envelope::from_json(&good).unwrap();
    }
    let bad: Vec<(&str, Value)> = vec![
        ("type", json!("requets")),
        ("timestamp", json!("yesterday")),
        ("payload", json!([1])),
        ("trace_id", json!("00000000000000000000000000000000")),
        ("span_id", json!("XYZ")),
        ("v", json!(0)),
    ];
    for (field, value) in bad {
        let mut e = base();
        e[field] = value;
        assert!(!v.is_valid(&e), "schema accepts bad {field}: {e}");
        assert_eq!(Envelope::from_json(&e).unwrap_err().field_name(), Some(field));
    }
    let mut missing = base();
    missing.as_object_mut().unwrap().remove("sender_id");
    assert!(!v.is_valid(&missing));
    let mut typed = base();
    typed["payload"]["delegation_depth"] = json!("deep");
    assert!(!v.is_valid(&typed), "typed payloads are checked by the schema");
    assert!(Envelope::from_json(&typed).unwrap().typed_payload().is_err());
}
