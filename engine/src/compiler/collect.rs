//! Deserializing one TOML value into a config struct while collecting *every* error.
//!
//! serde stops at the first error. To report all unknown keys and bad values of a table in
//! one run, the key at fault is removed (or, for a typo of a field, renamed to that field) and
//! deserialization is tried again, until it passes or the error cannot be pinned to a key.

use std::borrow::Cow;
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

/// Renames the key whose name sits at `span`, anywhere inside `value`, to `to`, unless its
/// table already has `to`. Whether it was renamed.
fn rename_key_at(value: &mut DeValue<'_>, span: &Range<usize>, to: &str) -> bool {
    match value {
        DeValue::Table(table) => {
            let hit = table.iter().find(|(k, _)| k.span() == *span).map(|(k, _)| k.get_ref().to_string());
            match hit {
                Some(_) if table.contains_key(to) => false,
                Some(name) => {
                    let Some((key, v)) = table.remove_entry(name.as_str()) else { return false };
                    table.insert(Spanned::new(key.span(), Cow::Owned(to.to_owned())), v);
                    true
                }
                None => table.iter_mut().any(|(_, v)| rename_key_at(v.get_mut(), span, to)),
            }
        }
        DeValue::Array(items) => items.iter_mut().any(|v| rename_key_at(v.get_mut(), span, to)),
        _ => false,
    }
}

/// The names quoted with backticks in a serde message: for an unknown field or variant, the
/// name given, then the ones expected.
fn quoted(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// The key an unknown field was probably meant to be, from the fields the message lists.
fn meant_field(message: &str) -> Option<&str> {
    let quoted = quoted(message);
    let (first, fields) = quoted.split_first()?;
    message.starts_with("unknown field").then(|| did_you_mean(first, fields)).flatten()
}

/// The hint for a serde error message: "did you mean" for unknown fields and variants.
fn hint_for(message: &str, extra_keys: &[&str]) -> Option<String> {
    let quoted = quoted(message);
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
///
/// An unknown key close to a field the table lacks (`nmae` for `name`) is reported once and
/// then read as that field: its value is still checked, and the field it stood for is not
/// also reported missing. A field missing with no such typo is reported.
pub fn deserialize_all<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    diags: &mut Diagnostics,
    extra_keys: &[&str],
) -> Option<T> {
    let mut current = value.clone();
    // Keys dropped after an error on them, and fields a typo was read as.
    let mut accounted: Vec<String> = Vec::new();
    for _ in 0..64 {
        let attempt = T::deserialize(ValueDeserializer::from(current.clone()));
        let err = match attempt {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let message = err.message().to_owned();
        let span = err.span().unwrap_or_else(|| value.span());
        if message.starts_with("missing field") && accounted.iter().any(|r| message.contains(&format!("`{r}`"))) {
            // The field was dropped after an earlier error on it, or a typo of it was; that
            // one is reported.
            return None;
        }
        diags.push(Diagnostic::error(span.clone(), message.clone()).maybe_hint(hint_for(&message, extra_keys)));
        if let Some(field) = meant_field(&message)
            && rename_key_at(current.get_mut(), &span, field)
        {
            accounted.push(field.to_owned());
            continue;
        }
        match remove_key_at(current.get_mut(), &span) {
            Some(name) => accounted.push(name),
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use toml::de::DeTable;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        name: String,
        size: u32,
        #[serde(default)]
        colour: Option<String>,
    }

    fn collect(text: &str) -> (Option<Conf>, Vec<String>) {
        let table = DeTable::parse(text).unwrap();
        let value = Spanned::new(table.span(), DeValue::Table(table.into_inner()));
        let mut diags = Diagnostics::default();
        let conf = deserialize_all::<Conf>(&value, &mut diags, &["type"]);
        (conf, diags.sorted().into_iter().map(|d| format!("{}: {}", d.offset, d.message)).collect())
    }

    #[test]
    fn a_typo_is_read_as_the_field_it_stood_for() {
        let (conf, diags) = collect("nmae = \"x\"\nsize = 3\n");
        assert_eq!(conf.unwrap().name, "x");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].starts_with("0: unknown field `nmae`"), "{diags:?}");
    }

    #[test]
    fn a_typo_with_a_bad_value_is_not_also_missing() {
        let (conf, diags) = collect("nmae = 5\nsize = 3\n");
        assert!(conf.is_none());
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags[0].starts_with("0: unknown field `nmae`"), "{diags:?}");
        assert!(diags[1].starts_with("7: invalid type"), "{diags:?}");
    }

    #[test]
    fn two_typos_and_a_far_key() {
        let (conf, diags) = collect("nmae = \"x\"\nsiez = 3\nzzzzzzzz = 1\n");
        assert!(conf.is_some());
        assert_eq!(diags.len(), 3, "{diags:?}");
    }

    #[test]
    fn a_missing_field_without_a_typo_is_reported() {
        let (conf, diags) = collect("size = 3\ncolor = \"red\"\n");
        assert!(conf.is_none());
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags.iter().any(|d| d.contains("missing field `name`")), "{diags:?}");
        assert!(diags.iter().any(|d| d.contains("unknown field `color`")), "{diags:?}");
    }

    #[test]
    fn a_typo_of_a_field_that_is_present_is_dropped() {
        let (conf, diags) = collect("name = \"x\"\nnmae = \"y\"\nsize = 1\n");
        assert_eq!(conf.unwrap().name, "x");
        assert_eq!(diags.len(), 1, "{diags:?}");
    }
}
