//! The payload as read: its JSON text, parsed only when an operator looks inside.
//!
//! Most pipelines route, filter and forward envelopes without touching most of the payload.
//! Decoding keeps the payload's bytes (checked to be well-formed JSON by the decoder); the
//! first read through [`Deref`] parses them into a [`Value`], a write through [`DerefMut`]
//! drops them. Encoding an untouched payload copies its bytes as they came, so a filter or
//! router never builds the payload's tree ("decode only the fields the plan needs": docs/benchmarks.md).
//! [`LazyJson::fields`] reads a few top-level fields without building the rest.
//!
//! Numbers keep their text when parsed too (serde_json's `arbitrary_precision`): a parsed and
//! re-encoded payload writes `99999999999999999999` and `0.1000000000000000055511151231257827`
//! as read (an exponent gains its sign: `1e2` → `1e+2`).

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// Opening brackets from which a payload is parsed when decoded (see [`LazyJson::checked`]):
/// fewer cannot nest as deep as serde_json's recursion limit (128).
pub const EAGER_BRACKETS: usize = 100;

/// How many `[` and `{` `text` holds. Counted in blocks of 64 bytes with branch-free sums,
/// which the compiler turns into vector code: the count runs over every decoded payload (a
/// byte-by-byte filter was 8 % of the hot path's instructions).
fn opening_brackets(text: &[u8]) -> usize {
    let count =
        |block: &[u8]| block.iter().map(|&b| u8::from(b == b'[') + u8::from(b == b'{')).fold(0u8, u8::wrapping_add);
    let mut chunks = text.chunks_exact(64);
    let mut n: usize = chunks.by_ref().map(|c| usize::from(count(c))).sum();
    n += usize::from(count(chunks.remainder()));
    n
}

/// A JSON value kept as text until it is read.
pub struct LazyJson {
    /// The JSON text as read (well-formed; dropped on the first write).
    raw: Option<Box<RawValue>>,
    /// The parsed value, made on the first read.
    parsed: OnceLock<Value>,
}

impl LazyJson {
    /// Keeps `raw` (already known to be well-formed JSON) for later.
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        Self { raw: Some(raw), parsed: OnceLock::new() }
    }

    /// Keeps `raw` (well-formed JSON) for later, after making sure it can be read: well-formed
    /// text nested deeper than serde_json's limit (128 levels) would otherwise read as `null`
    /// on first use, and every field in it as absent (fail-open). A text with fewer than
    /// [`EAGER_BRACKETS`] opening brackets cannot be that deep and stays unparsed (the common
    /// case costs one counting pass); one with more is parsed now — the error, or the value,
    /// which later reads use.
    pub fn checked(raw: Box<RawValue>) -> Result<Self, String> {
        if opening_brackets(raw.get().as_bytes()) < EAGER_BRACKETS {
            return Ok(Self::from_raw(raw));
        }
        let value: Value = serde_json::from_str(raw.get()).map_err(|e| match e.to_string() {
            e if e.starts_with("recursion limit exceeded") => {
                "nested deeper than 128 levels, more than JSON readers here take".to_owned()
            }
            e => e.split(" at line ").next().unwrap_or_default().to_owned(),
        })?;
        Ok(Self { raw: Some(raw), parsed: OnceLock::from(value) })
    }

    /// The JSON text as read, while the payload is untouched.
    pub fn raw(&self) -> Option<&str> {
        match self.parsed.get() {
            Some(_) => None,
            None => self.raw.as_deref().map(RawValue::get),
        }
    }

    /// The JSON text as read, until the payload is written (also once it has been read):
    /// for checks of the text itself, such as repeated keys ([`super::wire::once`]).
    pub fn source(&self) -> Option<&str> {
        self.raw.as_deref().map(RawValue::get)
    }

    /// Whether the value has been parsed (or was built as a value).
    pub fn is_parsed(&self) -> bool {
        self.parsed.get().is_some()
    }

    /// Whether the value is a JSON object, told from the text's first byte when unparsed.
    pub fn is_json_object(&self) -> bool {
        match self.raw() {
            Some(text) => text.starts_with('{'),
            None => self.is_object(),
        }
    }

    /// The value, leaving this one `null`.
    pub fn take(&mut self) -> Value {
        let v = std::mem::take(self.deref_mut());
        *self = Self::from(Value::Null);
        v
    }

    /// The named top-level fields of an object, each converted by `convert`, without
    /// building the others; absent fields (and every field of a non-object) are left out.
    pub fn fields<'a, T>(&self, names: &'a [String], convert: impl FnMut(&Value) -> T) -> HashMap<&'a str, T> {
        let values = self.field_values(names, convert);
        names.iter().zip(values).filter_map(|(n, v)| Some((n.as_str(), v?))).collect()
    }

    /// As [`Self::fields`], by position: element `i` is field `names[i]`, `None` when absent.
    pub fn field_values<T>(&self, names: &[String], mut convert: impl FnMut(&Value) -> T) -> Vec<Option<T>> {
        if let (Some(raw), None) = (&self.raw, self.parsed.get()) {
            if let Some(found) = pick(raw.get(), names, &mut convert) {
                return found;
            }
            let mut de = serde_json::Deserializer::from_str(raw.get());
            if let Ok(found) = de.deserialize_any(Pick { names, convert: &mut convert }) {
                return found;
            }
        }
        match &**self {
            Value::Object(map) => names.iter().map(|n| map.get(n).map(&mut convert)).collect(),
            _ => names.iter().map(|_| None).collect(),
        }
    }
}

/// The wanted fields of the object `text` (well-formed JSON), found by
/// [`super::members::members`] and only they parsed; `None` when that walk or a parse fails
/// (the caller then walks with serde).
fn pick<T>(text: &str, names: &[String], convert: &mut impl FnMut(&Value) -> T) -> Option<Vec<Option<T>>> {
    let mut found: Vec<Option<T>> = names.iter().map(|_| None).collect();
    for (key, value) in super::members::members(text)? {
        let key: std::borrow::Cow<'_, str> = match key.contains('\\') {
            false => key.into(),
            true => serde_json::from_str::<String>(&format!("\"{key}\"")).ok()?.into(),
        };
        // A later duplicate wins, as when the whole object is parsed.
        if let Some(i) = names.iter().position(|n| **n == *key) {
            found[i] = Some(convert(&serde_json::from_str::<Value>(value).ok()?));
        }
    }
    Some(found)
}

/// Reads the wanted fields of an object and skips the rest (serde's walk, for what
/// [`pick`] cannot read).
struct Pick<'n, 'c, F> {
    names: &'n [String],
    convert: &'c mut F,
}

impl<'de, T, F: FnMut(&Value) -> T> Visitor<'de> for Pick<'_, '_, F> {
    type Value = Vec<Option<T>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Vec<Option<T>> = self.names.iter().map(|_| None).collect();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.names.iter().position(|n| **n == *key.as_str()) {
                // A later duplicate wins, as when the whole object is parsed.
                Some(i) => {
                    found[i] = Some((self.convert)(&map.next_value::<Value>()?));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.names.iter().map(|_| None).collect())
    }
}

/// A string as read (an object key, the envelope's `type`): borrowed from the text unless it
/// holds escapes (serde's `Cow<str>` always allocates; most need no copy).
pub(super) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(super) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl Deref for LazyJson {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.parsed.get_or_init(|| {
            // The decoder checked the text, so this parse cannot fail.
            self.raw.as_deref().map_or(Value::Null, |r| serde_json::from_str(r.get()).unwrap_or(Value::Null))
        })
    }
}

impl DerefMut for LazyJson {
    fn deref_mut(&mut self) -> &mut Value {
        let _ = <Self as Deref>::deref(self);
        self.raw = None;
        self.parsed.get_mut().expect("parsed above")
    }
}

impl From<Value> for LazyJson {
    fn from(v: Value) -> Self {
        Self { raw: None, parsed: OnceLock::from(v) }
    }
}

impl Default for LazyJson {
    fn default() -> Self {
        Self::from(Value::Null)
    }
}

impl Clone for LazyJson {
    fn clone(&self) -> Self {
        match self.parsed.get() {
            Some(v) => Self::from(v.clone()),
            None => Self { raw: self.raw.clone(), parsed: OnceLock::new() },
        }
    }
}

impl PartialEq for LazyJson {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<Value> for LazyJson {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl std::fmt::Debug for LazyJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for LazyJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.parsed.get(), &self.raw) {
            (None, Some(raw)) => raw.serialize(s),
            _ => (**self).serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lazy(text: &str) -> LazyJson {
        LazyJson::from_raw(RawValue::from_string(text.to_owned()).unwrap())
    }

    #[test]
    fn untouched_text_is_written_as_read_and_parsed_on_first_read() {
        let p = lazy(r#"{"a": 1e2, "b": [1, 2]}"#);
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"a": 1e2, "b": [1, 2]}"#);
        assert!(!p.is_parsed());
        assert_eq!(p["b"][1], 2);
        assert!(p.is_parsed());
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"a":1e+2,"b":[1,2]}"#);
    }

    #[test]
    fn a_write_drops_the_text() {
        let mut p = lazy(r#"{"a":1}"#);
        p["a"] = json!(2);
        assert_eq!(p.raw(), None);
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"a":2}"#);
        assert_eq!(p.clone(), json!({"a": 2}));
    }

    #[test]
    fn numbers_keep_their_text_when_parsed_and_written_again() {
        let text = r#"{"big":99999999999999999999,"neg":-99999999999999999999,"u":18446744073709551616,"huge":1e400,"one":1.0,"hundred":1e2,"z":-0,"d":0.1,"long":123456789012345678901234567890.123456789,"p":0.1000000000000000055511151231257827,"id":1234567890123456789012345}"#;
        let mut p = lazy(text);
        p["added"] = json!(true);
        let written = serde_json::to_string(&p).unwrap();
        assert_eq!(written, text.replace("1e2", "1e+2").replace("1e400", "1e+400").replace('}', r#","added":true}"#));
    }

    #[test]
    fn opening_brackets_are_counted_in_blocks_and_the_rest() {
        for len in [0, 1, 63, 64, 65, 200] {
            let text: Vec<u8> = (0..len).map(|i| [b'[', b'{', b'a', b'}'][i % 4]).collect();
            let expected = text.iter().filter(|b| matches!(b, b'[' | b'{')).count();
            assert_eq!(opening_brackets(&text), expected, "length {len}");
        }
        assert_eq!(opening_brackets(&[b'{'; 64]), 64);
    }

    #[test]
    fn picked_fields_match_the_parsed_object() {
        let names = ["n".to_owned(), "s".to_owned(), "missing".to_owned()];
        let text = r#"{"s":"x\"y","skip":{"deep":[1,{"a":null}]},"n":3,"n":4}"#;
        let picked = lazy(text).fields(&names, Value::clone);
        let parsed = LazyJson::from(serde_json::from_str::<Value>(text).unwrap()).fields(&names, Value::clone);
        assert_eq!(picked, parsed);
        assert_eq!(picked.len(), 2);
        assert_eq!(picked["n"], json!(4));
        assert!(lazy("null").fields(&names, Value::clone).is_empty());
        // A key spelled with an escape is the same key.
        assert_eq!(lazy(r#"{"\u006e":5,"s\"":1}"#).fields(&names, Value::clone)["n"], json!(5));
    }
}
