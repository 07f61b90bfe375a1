//! Property-based fuzzing of the surfaces that read untrusted or user-written text: the
//! envelope decoder (and the lazy payload it keeps), CEL expressions and templates. The
//! OpenAI-protocol answers of a model endpoint are fuzzed in `agent/tests/fuzz_model`, with
//! this harness. See docs/fuzzing.md.
//!
//! The property everywhere: no panic, no hang, errors come back as values. Each case runs in
//! its own thread with a spawned thread's default stack (2 MiB, what a runtime task gets) and
//! a time limit, so a stack overflow, a panic and a hang all fail the case.
//!
//! The generators are structured: valid seeds (envelopes, the expressions and templates of
//! the shipped topologies, the fake endpoint's answers) mutated by truncation, byte flips and
//! insertion of tricky tokens (deep nesting, huge numbers, lone surrogates, BOM, NUL, CRLF,
//! long strings, duplicate keys), and grammar-aware generation for CEL and templates.
//!
//! Cases per target: `KAFCLAW_FUZZ_CASES` (or `PROPTEST_CASES`) overrides the defaults,
//! which keep this file to a few tens of seconds in a debug build.

mod cel;
mod envelope;
mod harness;
mod templates;

use cel::*;
use envelope::*;
use harness::*;
use templates::*;

// The properties
// ---------------------------------------------------------------------------------------------

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn envelope_decoding_mutated_seeds_never_panics(bytes in mutated(envelope_seeds())) {
        let what = shown(&bytes);
        bounded(&what, move || check_envelope(&bytes))?;
    }

    #[test]
    fn lazy_payload_reads_agree_on_mutated_json(text in mutated_text(&[
        r#"{"s":"x\"y","skip":{"deep":[1,{"a":null}]},"n":3,"n":4}"#,
        r#"{"description": "find", "priority": 4, "list": [1e2, -0, 1.5], "map": {"": null}}"#,
        r#"[{"n": 1}]"#,
        "null",
    ])) {
        bounded(&text.clone(), move || check_lazy(text))?;
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn cel_generated_expressions_never_panic(source in prop_oneof![4 => cel_expr(), 1 => cel_deep()]) {
        bounded(&source.clone(), move || check_cel(&source, &records()))?;
    }

    #[test]
    fn cel_mutated_topology_expressions_never_panic(source in mutated_text(CEL_SEEDS)) {
        bounded(&source.clone(), move || check_cel(&source, &records()))?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn templates_generated_never_panic(source in prop_oneof![4 => template_body(), 1 => template_deep()]) {
        bounded(&source.clone(), move || check_template(&source, &small_records()))?;
    }

    #[test]
    fn templates_mutated_seeds_never_panic(source in mutated_text(TEMPLATE_SEEDS)) {
        bounded(&source.clone(), move || check_template(&source, &small_records()))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed inputs: deep nesting, and the regressions fuzzing found
// ---------------------------------------------------------------------------------------------

fn envelope_with_payload(payload: &str) -> Vec<u8> {
    format!(r#"{{"type":"request","correlation_id":"c","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{payload}}}"#)
        .into_bytes()
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    for open in ["[", "{\"a\":", "{\"a\":["] {
        let deep = format!("{{\"x\":{}", open.repeat(100_000));
        let bytes = envelope_with_payload(&deep);
        bounded("100k-deep payload", move || match Envelope::decode(&bytes) {
            Ok(_) => Err("a 100k-deep payload decoded".into()),
            Err(_) => Ok(()),
        })
        .unwrap();
        let text = open.repeat(100_000);
        bounded("100k-deep lazy text", move || check_lazy(text)).unwrap();
    }
}

#[test]
fn payload_as_deep_as_serde_json_allows_converts_and_renders() {
    // 127 levels of nesting: the deepest payload the decoder accepts.
    let payload = format!("{{\"a\":{}1{}}}", "[".repeat(126), "]".repeat(126));
    let bytes = envelope_with_payload(&payload);
    bounded("127-deep payload", move || {
        let e = Envelope::decode(&bytes).map_err(|e| e.to_string())?;
        check_envelope(&bytes)?;
        let record = Record::detached(e);
        for src in ["payload.a == 1", "size(payload) == 1", "payload.a.exists(x, true)"] {
            check_cel(src, std::slice::from_ref(&record))?;
        }
        check_template("{{ payload }}{{ payload | tojson }}{{ payload.a | length }}", std::slice::from_ref(&record))
    })
    .unwrap();
}
