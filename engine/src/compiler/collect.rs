//! Deserializing one TOML value into a config struct while collecting *every* error.
//!
//! serde stops at the first error. To report all unknown keys and bad values of a table in
//! one run, the key at fault is removed and deserialization is tried again, until it passes
//! or the error cannot be pinned to a key.

use std::ops::Range;

use kafclaw_operators::suggest::did_you_mean;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::diagnostic::{Diagnostic, Diagnostics};

/// Removes the entry whose key or value sits at `span`, anywhere inside `value`. Returns the
/// removed key's name.
fn remove_key_at(value: &mut DeValue<'_>, span: &Range<usize>) -> Option<String> {
    match value {
        DeValue::Table(table) => {
            let hit = table
                .iter()
                .find(|(k, v)| k.span() == *span || v.span() == *span)
                .map(|(k, _)| k.get_ref().to_string());
            if let Some(name) = hit {
                table.remove(name.as_str());
                return Some(name);
            }
            table.iter_mut().find_map(|(_, v)| remove_key_at(v.get_mut(), span))
        }
        DeValue::Array(items) => items.iter_mut().find_map(|v| remove_key_at(v.get_mut(), span)),
        _ => None,
    }
}

/// The hint for a serde error message: "did you mean" for unknown fields and variants.
fn hint_for(message: &str, extra_keys: &[&str]) -> Option<String> {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let (first, rest) = quoted.split_first()?;
    let mut rest = rest.to_vec();
    if message.starts_with("unknown field") {
        rest.extend_from_slice(extra_keys);
    }
    let rest = &rest[..];
    if message.starts_with("unknown field") || message.starts_with("unknown variant") {
        let expected = if rest.is_empty() { "none".to_owned() } else { rest.join(", ") };
        return Some(match did_you_mean(first, rest) {
            Some(s) => format!("did you mean `{s}`? expected one of: {expected}"),
            None => format!("expected one of: {expected}"),
        });
    }
    None
}

/// Deserializes `value` as `T`, pushing every error found into `diags`. Keys that were at
/// fault are left out of the result, so later checks still see the rest of the table; `None`
/// only when no value could be made. `extra_keys` are keys the caller handles itself (listed
/// in hints).
pub fn deserialize_all<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    diags: &mut Diagnostics,
    extra_keys: &[&str],
) -> Option<T> {
    let mut current = value.clone();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..64 {
        let attempt = T::deserialize(ValueDeserializer::from(current.clone()));
        let err = match attempt {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let message = err.message().to_owned();
        let span = err.span().unwrap_or_else(|| value.span());
        if message.starts_with("missing field") && removed.iter().any(|r| message.contains(&format!("`{r}`"))) {
            // The field was removed after an earlier error on it; that one is reported.
            return None;
        }
        diags.push(Diagnostic::error(span.clone(), message.clone()).maybe_hint(hint_for(&message, extra_keys)));
        match remove_key_at(current.get_mut(), &span) {
            Some(name) => removed.push(name),
            None => return None,
        }
    }
    None
}
