//! The top-level members of a JSON object's text, found without parsing it.
//!
//! [`super::LazyJson::fields`] reads a few fields of an untouched payload; with serde it
//! tokenised every other member to skip it (13 % of local mode's worker time on the 1 KB
//! benchmark envelope, which holds two long strings). The text was already checked to be
//! well-formed JSON by the decoder, so finding where each member starts and ends needs only
//! the structure: strings are skipped with `memchr` (vector code, 16–32 bytes a step),
//! brackets counted, and scalars run to the next delimiter. Only the members wanted are then
//! parsed, by serde_json.
//!
//! The walk relies on the text being well-formed: on text that is not, it may return members
//! serde would refuse (a value's text is checked only when it is parsed), but it never panics
//! and never reads past the text. Where the object's own grammar is broken it returns `None`,
//! and the caller falls back to serde's walk. On well-formed text it finds exactly the
//! members serde finds (the tests below check it against serde, on generated objects).

/// One member: its key as written between the quotes (escapes not undone) and its value's text.
pub(super) type Member<'t> = (&'t str, &'t str);

/// The members of the object `text` in order, duplicates included; `None` when `text` is not
/// an object, or not well-formed.
pub(super) fn members(text: &str) -> Option<Vec<Member<'_>>> {
    let b = text.as_bytes();
    let mut at = skip_ws(b, 0);
    if b.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(b, at + 1);
    let mut out = Vec::with_capacity(16);
    if b.get(at) == Some(&b'}') {
        return (skip_ws(b, at + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, at + 1)?;
        // Every delimiter is ASCII, so each slice below starts and ends on a char boundary.
        let key = text.get(at + 1..key_end)?;
        at = skip_ws(b, key_end + 1);
        if b.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, at + 1);
        let end = value_end(b, start)?;
        out.push((key, text.get(start..end)?));
        at = skip_ws(b, end);
        match b.get(at) {
            Some(b',') => at = skip_ws(b, at + 1),
            Some(b'}') => return (skip_ws(b, at + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while matches!(b.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        at += 1;
    }
    at
}

/// The index of the quote closing the string whose contents start at `at`.
fn string_end(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        at += memchr::memchr2(b'"', b'\\', b.get(at..)?)?;
        if b[at] == b'"' {
            return Some(at);
        }
        // An escape: the next byte is escaped (`\"`, `\\`, or the first of `\uXXXX`).
        at += 2;
    }
}

/// The index just past the value starting at `at`.
fn value_end(b: &[u8], at: usize) -> Option<usize> {
    match *b.get(at)? {
        b'"' => string_end(b, at + 1).map(|end| end + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match *b.get(i)? {
                    b'"' => i = string_end(b, i + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            let len = b[at..].iter().position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'));
            Some(at + len.unwrap_or(b.len() - at))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde_json::Value;

    /// The members as serde reads them: (key, value), in order, duplicates included.
    fn by_serde(text: &str) -> Option<Vec<(String, Value)>> {
        struct All;
        impl<'de> Visitor<'de> for All {
            type Value = Vec<(String, Value)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let found = de.deserialize_map(All).ok()?;
        de.end().ok().map(|()| found)
    }

    fn by_scan(text: &str) -> Option<Vec<(String, Value)>> {
        members(text).map(|found| {
            found
                .into_iter()
                .map(|(k, v)| {
                    let key: String = serde_json::from_str(&format!("\"{k}\"")).expect("a key as written");
                    (key, serde_json::from_str(v).expect("a value's text"))
                })
                .collect()
        })
    }

    #[test]
    fn members_are_found_as_serde_reads_them() {
        for text in [
            r#"{}"#,
            " { } ",
            r#"{"a":1}"#,
            r#"{"s":"x\"y","skip":{"deep":[1,{"a":null}]},"n":3,"n":4}"#,
            r#"{"\u006e":5,"s\"":1,"\\":"\\","q":"\\\"","e":"\u00e9\n"}"#,
            r#"{ "a" : [ ] , "b" :{ } ,"c":-1.5e-3 ,"d":true,"e":false,"f":null }"#,
            "{\n\t\"k\"\r\n:\n\"v\"\n}\n",
            r#"{"brackets in strings":"}]{[","k":["]","}",{"x":"{"}]}"#,
            r#"{"é":"ünïcödé 🦀","k":"\ud83e\udd80"}"#,
            r#"{"n":0,"m":-0,"big":99999999999999999999,"f":1E+2}"#,
        ] {
            assert_eq!(by_scan(text), by_serde(text), "{text}");
            assert!(by_scan(text).is_some(), "{text}");
        }
    }

    #[test]
    fn what_is_not_an_object_is_none() {
        for text in ["", "null", "[1]", r#""{}""#, "1", "{", r#"{"a":1"#, r#"{"a" 1}"#, r#"{"a":1,}"#, r#"{"a":1}x"#] {
            assert_eq!(members(text), None, "{text}");
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            // Quotes, backslashes, brackets, control characters and non-ASCII inside strings.
            "[a-z\"\\\\{}\\[\\],:\u{0}-\u{1f}é🦀 ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z\"\\\\é]{0,4}", inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_object_compact_or_pretty_is_read_as_serde_reads_it(
            members in prop::collection::vec(("[a-z\"\\\\{}:,é ]{0,6}", json()), 0..8),
            pretty in any::<bool>(),
        ) {
            // Written by hand so that repeated keys stay repeated.
            let write = |v: &Value| if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) };
            let sep = if pretty { ",\n  " } else { "," };
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), write(v).unwrap()))
                .collect();
            let text = format!("{{{}}}", body.join(sep));
            prop_assert_eq!(by_scan(&text), by_serde(&text));
        }
    }
}
