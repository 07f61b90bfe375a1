//! Keys: the key a CEL expression gives a record (`dedupe`, `llm`: [`key_text`]; the stateful
//! operators that group and join: [`state_key`], numbers by value).

use std::borrow::Cow;
use std::str::FromStr;

use serde_json::{Number, Value};

use crate::api::record::Record;
use crate::lang::exact;
use crate::lang::expr::Expr;

/// The key text of a CEL result: a string as is, any other value as its JSON text.
/// (`dedupe` and `llm` key by this; the stateful operators that group and join use
/// [`state_key`].)
pub fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Evaluates a key expression with [`key_text`]; `None` when it gives `null` (no key).
pub fn eval_key(by: &Expr, record: &Record) -> Result<Option<String>, String> {
    match by.eval_json(record)? {
        Value::Null => Ok(None),
        v => Ok(Some(key_text(&v))),
    }
}

/// The state key of a key expression's value, for `count`, `aggregate`, `window` and `join`:
/// numbers by value, everything else as before.
///
/// - A number: its value's text ([`exact::canonical`]): `1`, `1.0`, `1e0`, `10e-1` → `1`.
/// - A string: as is (as [`key_text`]), so stored state keeps its layout. The string `"1"`
///   and the number `1` therefore share a key, as they always have: telling them apart would
///   move every numeric-string key (`"12345"`) of existing stores.
/// - Anything else (`true`, lists, maps): its JSON text, numbers inside as above.
pub fn state_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => exact::canonical(n).into_owned(),
        other => canonical_numbers(other).to_string(),
    }
}

/// `v` with every number replaced by its [`exact::canonical`] text.
fn canonical_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => match exact::canonical(n) {
            Cow::Borrowed(_) => Value::Number(n.clone()),
            Cow::Owned(text) => Number::from_str(&text).map_or_else(|_| Value::Number(n.clone()), Value::Number),
        },
        Value::Array(items) => Value::Array(items.iter().map(canonical_numbers).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical_numbers(v))).collect()),
        other => other.clone(),
    }
}

/// A state key as shown in outputs (`payload.count_key`, an aggregate's `key`) and messages:
/// the key text itself.
pub fn shown_key(stored: &str) -> Cow<'_, str> {
    Cow::Borrowed(stored)
}

/// Evaluates a key expression into a [`state_key`]; `None` when it gives `null` (no key).
pub fn eval_state_key(by: &Expr, record: &Record) -> Result<Option<String>, String> {
    match by.eval_json(record)? {
        Value::Null => Ok(None),
        v => Ok(Some(state_key(&v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_are_numbers_by_value_and_strings_as_before() {
        let key = |json: &str| state_key(&serde_json::from_str(json).unwrap());
        // As before: strings not read as JSON, plain integers, plain decimals.
        for (json, stored) in [(r#""sender-a""#, "sender-a"), ("42", "42"), ("-7", "-7"), ("2.5", "2.5")] {
            assert_eq!(key(json), stored, "{json}");
        }
        assert_eq!(key("99999999999999999999"), "99999999999999999999");
        for same in ["1.0", "1e0", "10e-1", "0.1e1"] {
            assert_eq!(key(same), "1", "{same}");
        }
        assert_eq!(key("[1.0, {\"a\": 2.50}]"), key("[1, {\"a\": 2.5}]"));
        // Strings as they are (the layout of stored state): `"1"` shares the number's key.
        for (json, stored) in [(r#""1""#, "1"), (r#""true""#, "true"), (r#""[1]""#, "[1]"), (r#""\"q""#, "\"q")] {
            assert_eq!(key(json), stored, "{json}");
            assert_eq!(shown_key(&key(json)), stored);
        }
        assert_eq!(key("true"), key(r#""true""#));
    }
}
