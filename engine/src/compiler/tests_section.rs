//! `[[tests]]`: tests written in the topology file (input envelopes → expected outputs).

use std::ops::Range;
use std::str::FromStr;

use kafclaw_operators::Envelope;
use kafclaw_operators::envelope::{EnvelopeType, KNOWN_FIELDS};
use kafclaw_operators::lang::suggest::did_you_mean;
use serde::Deserialize;
use serde_json::{Number, Value};
use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::{Diagnostic, Diagnostics};

/// One test case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// Name shown in the report.
    pub name: Spanned<String>,
    /// Records fed to sources, in order.
    pub inputs: Vec<TestInput>,
    /// Expected records per sink, in order. Every sink named here must receive exactly these
    /// records; each expected envelope is matched as a subset (fields it leaves out are not
    /// compared).
    #[serde(default)]
    pub outputs: Vec<TestOutput>,
    /// How many records must go to the dead-letter output (default 0).
    #[serde(default)]
    pub dead_letters: usize,
}

/// One input record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// The source that reads it.
    pub source: Spanned<String>,
    /// The envelope, as a TOML table.
    #[serde(default)]
    pub envelope: Option<Spanned<Value>>,
    /// Or the raw line, to test what happens to records that are not envelopes.
    #[serde(default)]
    pub raw: Option<Spanned<String>>,
}

/// One expected output record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOutput {
    /// The sink that must receive it.
    pub sink: Spanned<String>,
    /// The fields it must have.
    pub envelope: Spanned<Value>,
}

/// The value written at `span`, anywhere inside `v`.
fn find_at<'a, 'i>(v: &'a Spanned<DeValue<'i>>, span: &Range<usize>) -> Option<&'a Spanned<DeValue<'i>>> {
    if v.span() == *span {
        return Some(v);
    }
    match v.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(_, v)| find_at(v, span)),
        DeValue::Array(items) => items.iter().find_map(|v| find_at(v, span)),
        _ => None,
    }
}

/// A TOML value as JSON, numbers kept as written (`1.0000000000000001` stays that, not the
/// f64 TOML reads). A number JSON cannot write (`inf`, `nan`) is reported.
fn exact_json(v: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Value {
    let number = |text: &str, radix: u32| -> Option<Number> {
        let text = text.replace('_', "");
        let text = text.strip_prefix('+').unwrap_or(&text);
        if radix == 10 {
            Number::from_str(text).ok()
        } else {
            i128::from_str_radix(text, radix).ok().and_then(|i| Number::from_str(&i.to_string()).ok())
        }
    };
    let mut bad = |text: &str| {
        diags.push(Diagnostic::error(v.span(), format!("`{text}` is not a number JSON can hold")));
        Value::Null
    };
    match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => number(i.as_str(), i.radix()).map_or_else(|| bad(i.as_str()), Value::Number),
        DeValue::Float(f) => number(f.as_str(), 10).map_or_else(|| bad(f.as_str()), Value::Number),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|i| exact_json(i, diags)).collect()),
        DeValue::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.get_ref().to_string(), exact_json(v, diags))).collect())
        }
    }
}

/// Replaces the test envelopes (read by serde through f64) with the numbers as written in
/// `raw` (the `tests` value of the file).
pub(super) fn keep_exact_numbers(tests: &mut [TestSpec], raw: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) {
    let mut exact = |v: &mut Spanned<Value>| {
        if let Some(written) = find_at(raw, &v.span()) {
            *v.get_mut() = exact_json(written, diags);
        }
    };
    for test in tests {
        for input in &mut test.inputs {
            if let Some(env) = &mut input.envelope {
                exact(env);
            }
        }
        for output in &mut test.outputs {
            exact(&mut output.envelope);
        }
    }
}

/// Checks an expected envelope like an input one, field by field: each field written must
/// be one an envelope has, with a value an envelope may hold (a known `type`, a timestamp,
/// …), or the expectation could never match.
pub(super) fn check_expected(env: &Spanned<Value>, raw: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) {
    let (Some(written), Value::Object(fields)) = (find_at(raw, &env.span()), env.get_ref()) else { return };
    let DeValue::Table(table) = written.get_ref() else { return };
    let base = serde_json::json!({
        "type": "request", "correlation_id": "t", "sender_id": "s",
        "timestamp": "2026-01-01T00:00:00Z", "payload": {},
    });
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        if !KNOWN_FIELDS.contains(&name) {
            let hint = match did_you_mean(name, &KNOWN_FIELDS) {
                Some(m) => format!("did you mean `{m}`? fields: {}", KNOWN_FIELDS.join(", ")),
                None => format!("fields: {}", KNOWN_FIELDS.join(", ")),
            };
            diags.push(Diagnostic::error(key.span(), format!("an envelope has no field `{name}`")).hint(hint));
            continue;
        }
        let Some(v) = fields.get(name) else { continue };
        if name == "type"
            && let Some(t) = v.as_str()
            && EnvelopeType::parse(t).is_none()
        {
            let names: Vec<&str> = EnvelopeType::ALL.iter().map(|t| t.as_str()).collect();
            let hint = match did_you_mean(t, &names) {
                Some(m) => format!("did you mean `{m}`? types: {}", names.join(", ")),
                None => format!("types: {}", names.join(", ")),
            };
            diags.push(Diagnostic::error(value.span(), format!("unknown envelope type `{t}`")).hint(hint));
            continue;
        }
        let mut one = base.clone();
        one[name] = v.clone();
        if let Err(e) = Envelope::from_json(&one) {
            diags.push(Diagnostic::error(value.span(), format!("the expected envelope can never match: {e}")));
        }
    }
}
