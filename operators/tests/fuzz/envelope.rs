//! Target 1: the envelope decoder and the lazy payload.

use super::harness::*;

// ---------------------------------------------------------------------------------------------
// 1. The envelope decoder and the lazy payload
// ---------------------------------------------------------------------------------------------

pub(crate) const KAFCLAW: &str = r#"{"type":"request","correlation_id":"task-17","sender_id":"agent-go","timestamp":"2026-11-02T08:15:30.123456789+01:00","payload":{"task_id":"task-17","description":"summarise","content":"the report","requester_id":"agent-go","delegation_depth":1,"deadline_at":"2026-11-02T09:00:00Z"}}"#;

pub(crate) fn envelope_seeds() -> Vec<Vec<u8>> {
    let mut ours = Envelope::new(
        EnvelopeType::Response,
        "c-1",
        "agent",
        "2026-11-23T10:00:00Z",
        json!({"task_id": "c-1", "status": "completed", "content": "ok", "score": 0.1, "n": [1, 2, {"z": null, "a": true}]}),
    );
    ours.id = Some("0123456789abcdef0123456789abcdef".into());
    ours.v = Some(1);
    ours.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    ours.span_id = Some("00f067aa0ba902b7".into());
    ours.parent_span_id = Some("00f067aa0ba902b8".into());
    ours.causation_id = Some("parent".into());
    ours.zone = Some("shared".into());
    ours.extra.insert("x_future".into(), json!({"b": 1, "a": 2}));
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(KAFCLAW).unwrap()).unwrap();
    let mut seeds = vec![
        KAFCLAW.as_bytes().to_vec(),
        ours.encode(),
        pretty.replace('\n', "\r\n").into_bytes(),
        br#"{"type":"memory","correlation_id":"m","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":null,"zeta":[1,{"k":"\u00e9\ud83d\ude00"}]}"#.to_vec(),
    ];
    for p in payloads().into_iter().take(4) {
        seeds.push(record(p).envelope.encode());
    }
    seeds
}

/// Field names a CEL condition might pick from the payload's text.
pub(crate) fn pick_names() -> Vec<String> {
    ["description", "priority", "n", "s", "list", "map", "a", "x", "", "é"].map(String::from).to_vec()
}

/// Decodes `bytes`; when it decodes, every read of the envelope and its payload works and
/// agrees with the others (picked fields = fields of the parsed payload; re-encoding is
/// stable).
pub(crate) fn check_envelope(bytes: &[u8]) -> Result<(), String> {
    let e = match Envelope::decode(bytes) {
        Ok(e) => e,
        Err(err) => {
            let _ = err.to_string();
            return Ok(());
        }
    };
    let names = pick_names();
    let object_by_text = e.payload.is_json_object();
    let picked = e.payload.fields(&names, Value::clone);
    let mut notes = Spellings::default();
    let _ = e.payload.fields(&names, |v| json_to_cel(v, &mut notes));
    let _ = e.typed_payload();
    let _ = Record::detached(e.clone()).event_time_ms();
    let encoded = e.encode();
    let back = Envelope::decode(&encoded).map_err(|err| format!("re-encoded envelope does not decode: {err}"))?;
    if back.encode() != encoded {
        return Err("re-encoding is not byte-stable".into());
    }
    // Parse the payload (the first read through Deref).
    let parsed: Value = (*e.payload).clone();
    if object_by_text != parsed.is_object() {
        return Err(format!("the payload's text says object={object_by_text}, its parsed value is {parsed}"));
    }
    let from_parsed = LazyJson::from(parsed.clone()).fields(&names, Value::clone);
    if picked != from_parsed {
        return Err(format!("fields picked from the text {picked:?} differ from the parsed payload's {from_parsed:?}"));
    }
    let _ = json_to_cel(&parsed, &mut notes);
    let _ = e.to_json();
    Ok(())
}

/// A JSON text checked by `RawValue` (as the decoder does), read as a lazy payload.
pub(crate) fn check_lazy(text: String) -> Result<(), String> {
    let Ok(raw) = RawValue::from_string(text) else { return Ok(()) };
    let names = pick_names();
    let lazy = LazyJson::from_raw(raw);
    let picked = lazy.fields(&names, Value::clone);
    let parsed: Value = (*lazy).clone();
    let whole = LazyJson::from(parsed.clone()).fields(&names, Value::clone);
    if picked != whole {
        return Err(format!("picked {picked:?} but the parsed value has {whole:?}"));
    }
    let _ = serde_json::to_vec(&lazy).map_err(|e| e.to_string())?;
    Ok(())
}
