//! Deserializing one TOML value into a config struct while collecting *every* error, and the
//! small checks every section shares (`as_table`, [`valid_name`]).
//!
//! serde stops at the first error. To report all unknown keys and bad values of a table in
//! one run, the key at fault is removed (or, for a typo of a field, renamed to that field) and
//! deserialization is tried again, until it passes or the error cannot be pinned to a key.

use std::borrow::Cow;
use std::ops::Range;

use kafclaw_operators::lang::suggest::did_you_mean;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostic::{Diagnostic, Diagnostics, PLACEHOLDER};

/// Characters allowed in topology and node names.
pub fn valid_name(name: &str, allow_dot: bool) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.'))
}

/// The table `v` is, or `None` (reported: `what` must be a table).
pub(super) fn as_table<'a, 'i>(
    v: &'a Spanned<DeValue<'i>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        other => {
            diags.push(Diagnostic::error(v.span(), format!("{what} must be a table, not {}", other.type_str())));
            None
        }
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer != &(0..0)
}

/// Removes the entry whose key or value sits at `span`, anywhere inside `value`; failing
/// that, the entry whose value holds `span` (an error on an element of a list drops the
/// list). Returns the removed key's name.
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
            if let Some(found) = table.iter_mut().find_map(|(_, v)| remove_key_at(v.get_mut(), span)) {
                return Some(found);
            }
            let holder = table.iter().find(|(_, v)| contains(&v.span(), span)).map(|(k, _)| k.get_ref().to_string())?;
            table.remove(holder.as_str());
            Some(holder)
        }
        DeValue::Array(items) => items.iter_mut().find_map(|v| remove_key_at(v.get_mut(), span)),
        _ => None,
    }
}

/// For an error serde gave without a place (inside an internally tagged enum): the value of
/// `table` it is about, found from the value the message quotes (`invalid type: string "ls"`).
fn locate_in_table(table: &DeValue<'_>, message: &str) -> Option<Range<usize>> {
    let DeValue::Table(table) = table else { return None };
    let rest = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "))?;
    let (what, _) = rest.split_once(", expected")?;
    let matches = |v: &DeValue<'_>| match v {
        DeValue::String(s) => what == format!("string {s:?}"),
        DeValue::Integer(i) => what == format!("integer `{}`", i.as_str()),
        DeValue::Float(f) => what == format!("floating point `{}`", f.as_str()),
        DeValue::Boolean(b) => what == format!("boolean `{b}`"),
        DeValue::Array(_) => what == "sequence",
        DeValue::Table(_) => what == "map",
        DeValue::Datetime(_) => false,
    };
    let mut hits = table.iter().filter(|(k, v)| k.get_ref() != "type" && matches(v.get_ref()));
    let (_, v) = hits.next()?;
    hits.next().is_none().then(|| v.span())
}

/// Values tried, in order, for a field that is missing or was dropped, so the rest of the
/// table can still be made into a value (whose checks then run).
fn placeholders() -> [DeValue<'static>; 5] {
    let parse = |s: &'static str| DeValue::parse(s).map(Spanned::into_inner).unwrap_or(DeValue::Boolean(false));
    [
        DeValue::String(Cow::Borrowed("")),
        parse("0"),
        DeValue::Boolean(false),
        DeValue::Array(Default::default()),
        DeValue::Table(DeTable::new()),
    ]
}

/// Puts placeholder `index` for `field` into the table at `table` (inside `value`), at
/// offset `at`. Whether there was one.
fn put_placeholder(
    value: &mut Spanned<DeValue<'_>>,
    table: &Range<usize>,
    field: &str,
    index: usize,
    at: usize,
) -> bool {
    if value.span() != *table {
        return match value.get_mut() {
            DeValue::Table(t) => t.iter_mut().any(|(_, v)| put_placeholder(v, table, field, index, at)),
            DeValue::Array(items) => items.iter_mut().any(|v| put_placeholder(v, table, field, index, at)),
            _ => false,
        };
    }
    let DeValue::Table(t) = value.get_mut() else { return false };
    let Some(v) = placeholders().into_iter().nth(index) else { return false };
    t.insert(Spanned::new(at..at, Cow::Owned(field.to_owned())), Spanned::new(at..at, v));
    true
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
    match deserialize_partial(value, diags, extra_keys) {
        Some((t, true)) => Some(t),
        _ => None,
    }
}

/// As [`deserialize_all`], but a required field that is missing (reported) or was dropped
/// after an error on it is filled with a placeholder at [`PLACEHOLDER`], so a value is still
/// made and the checks of the fields that are right still run. The flag says whether the
/// value is complete (no placeholder in it).
pub fn deserialize_partial<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    diags: &mut Diagnostics,
    extra_keys: &[&str],
) -> Option<(T, bool)> {
    let mut current = value.clone();
    // Keys dropped after an error on them, and fields a typo was read as.
    let mut accounted: Vec<String> = Vec::new();
    // The field being filled, and the placeholder tried for it.
    let mut filling: Option<(String, Range<usize>, usize)> = None;
    let mut complete = true;
    for _ in 0..96 {
        let attempt = T::deserialize(ValueDeserializer::from(current.clone()));
        let err = match attempt {
            Ok(t) => return Some((t, complete)),
            Err(e) => e,
        };
        let message = err.message().to_owned();
        let mut span = err.span().unwrap_or_else(|| value.span());
        if span.start >= PLACEHOLDER {
            // The placeholder does not fit: try the next kind of value.
            let (field, table, index) = filling.take()?;
            remove_key_at(current.get_mut(), &span);
            if !put_placeholder(&mut current, &table, &field, index + 1, span.start) {
                return None;
            }
            filling = Some((field, table, index + 1));
            continue;
        }
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            let field = field.to_owned();
            // A field dropped after an earlier error on it, or a typo of it, is reported.
            if !accounted.contains(&field) {
                diags.push(Diagnostic::error(span.clone(), message.clone()).maybe_hint(hint_for(&message, extra_keys)));
            }
            complete = false;
            let at = PLACEHOLDER + accounted.len() + 1;
            if !put_placeholder(&mut current, &span, &field, 0, at) {
                return None;
            }
            accounted.push(field.clone());
            filling = Some((field, span, 0));
            continue;
        }
        if span == value.span()
            && let Some(at) = locate_in_table(current.get_ref(), &message)
        {
            span = at;
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
