//! Fail-closed readers of the KafClaw payload fields decisions depend on (docs/ARCHITECTURE.md, "The envelope").
//!
//! A guard, the onboarding check, the `llm` call context and `delegate` decide on
//! `payload.delegation_depth`, `payload.deadline_at`, `payload.task_id` and the other ids.
//! Every such read goes through this module, which keeps one rule for all of them:
//!
//! - **Absent** (the key is not in the payload, or the payload is `null`) reads as `None`.
//!   Nothing else does: a value that is present but cannot be read is a [`WireError`] naming
//!   the field, never taken as absent, 0 or a default.
//! - **Whole numbers** (`delegation_depth`): a JSON number, or a string holding exactly a
//!   JSON number's text, whose value is a whole number ≥ 0 that fits the target type. The
//!   value is judged exactly on the number's text (mantissa and exponent, no `f64`
//!   rounding), so `3`, `3.0`, `3e0`, `30e-1`, `0.3e1`, `"3"` and `"3.0"` all read as 3.
//!   Refused: any minus sign (`-1`, and `-0` too: no honest writer of a count spells it so),
//!   a fraction (`2.5`, `3.0000000000000001`), a value too large for the type (`1e400`,
//!   `18446744073709551616`), booleans, `null`, arrays, objects, and strings that are not
//!   exactly a JSON number: empty, surrounded by spaces, with a leading `+` or zeros, hex,
//!   non-ASCII digits, `"abc"`. The judgement is the same with or without serde_json's
//!   `arbitrary_precision`, except that without it serde_json itself cannot hold `1e400`
//!   and reads `3.0000000000000001` as `3.0` before this module sees it.
//! - **Strings** (ids, actions, statuses): a JSON string; anything else (a number, `null`,
//!   an array, an object) is refused. The empty string reads as absent: it is Go's zero
//!   value, which KafClaw writes for unset ids (`requester_id`, and `parent_task_id` in a
//!   delegated request, carry no `omitempty`), and it has no other reading.
//! - **Times** (`deadline_at`): a string holding an RFC 3339 time; a number (epoch seconds
//!   or milliseconds are not guessed), another string, or any other value is refused. The
//!   empty string reads as absent, as for ids.
//!
//! - **Once.** A guarded field ([`GUARDED`]) written twice in the payload's text (`{"delegation_depth":3,
//!   "delegation_depth":1}`) is refused ([`Problem::Repeated`]): a reader that keeps the first and
//!   one that keeps the last would decide differently. Readers check with [`once`], which
//!   scans the payload's top-level keys in its text (only readers of guarded fields pay).
//!
//! Keys are case-sensitive: `Delegation_Depth` is not `delegation_depth`, and is an unknown
//! field. Unknown fields are not read here and stay free (forward compatible); only the
//! fields a decision reads are held to the rule.

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::LazyJson;
use super::time::event_time_ms;

/// The payload fields decisions read (guard, onboarding, admissions, tools): each may appear
/// at most once in a payload's text.
pub const GUARDED: &[&str] = &[
    "action",
    "challenge",
    "deadline_at",
    "delegation_depth",
    "original_requester_id",
    "parent_task_id",
    "requester_id",
    "response",
    "status",
    "task_id",
];

/// How many characters of an unreadable value an error shows.
const SHOWN: usize = 64;

/// A payload field that is present but cannot be read. Displays as
/// ``"`payload.delegation_depth`: expected a whole number ≥ 0, got 2.5"``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {problem}")]
pub struct WireError {
    /// The field at fault, with its path (`payload.delegation_depth`).
    pub field: String,
    /// What is wrong with its value.
    pub problem: Problem,
}

/// What is wrong with a field's value; each variant carries the value as written (JSON,
/// cut to 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not a whole number ≥ 0: another type, negative, fractional, or not a number's text.
    #[error("expected a whole number ≥ 0, got {0}")]
    NotWholeNumber(String),
    /// A whole number, but larger than the field's type holds.
    #[error("expected a whole number ≤ {max}, got {got}")]
    TooLarge {
        /// The value as written.
        got: String,
        /// The largest value the field holds.
        max: u64,
    },
    /// Not a string.
    #[error("expected a string, got {0}")]
    NotString(String),
    /// Not a string holding an RFC 3339 time.
    #[error("expected an RFC 3339 time string, got {0}")]
    NotTime(String),
    /// Written more than once in the payload's text.
    #[error("appears more than once in the payload")]
    Repeated,
    /// The payload's text cannot be scanned (it was checked on decode: not expected).
    #[error("the payload's text cannot be read: {0}")]
    Unscannable(String),
}

/// Why a number's text is not a whole number ≥ 0 (see [`whole_number`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotWhole {
    /// Not a JSON number's text.
    Syntax,
    /// Has a minus sign (`-0` included).
    Negative,
    /// Has a fractional part.
    Fractional,
    /// Larger than `u64::MAX`.
    TooLarge,
}

/// The value of a JSON number's text (`-? (0|[1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`) if
/// it is a whole number ≥ 0 that fits a `u64`, computed exactly on the digits: `30e-1` is 3,
/// `3.0000000000000001` is fractional, `0e999999` is 0, `1e400` is too large.
///
/// Errors: [`NotWhole`], checked in the order syntax, sign, fraction, size.
pub fn whole_number(text: &str) -> Result<u64, NotWhole> {
    let b = text.as_bytes();
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let negative = b.first() == Some(&b'-');
    let int_start = usize::from(negative);
    let int_end = match b.get(int_start) {
        Some(b'0') => int_start + 1,
        Some(b'1'..=b'9') => digits_from(int_start + 1),
        _ => return Err(NotWhole::Syntax),
    };
    let mut i = int_end;
    let mut frac = &b[i..i];
    if b.get(i) == Some(&b'.') {
        let end = digits_from(i + 1);
        if end == i + 1 {
            return Err(NotWhole::Syntax);
        }
        frac = &b[i + 1..end];
        i = end;
    }
    let mut exponent: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let minus = b.get(i) == Some(&b'-');
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let end = digits_from(i);
        if end == i {
            return Err(NotWhole::Syntax);
        }
        // Saturation keeps the judgement exact: no number's text has enough digits to
        // bring an exponent beyond ±9.2e18 back into range.
        for d in &b[i..end] {
            exponent = exponent.saturating_mul(10).saturating_add(i64::from(d - b'0'));
        }
        if minus {
            exponent = -exponent;
        }
        i = end;
    }
    if i != b.len() {
        return Err(NotWhole::Syntax);
    }
    if negative {
        return Err(NotWhole::Negative);
    }
    // The value is `digits × 10^(exponent − frac.len())`, digits = integer part ++ fraction.
    let digits = || b[int_start..int_end].iter().chain(frac).map(|d| d - b'0');
    let Some(first) = digits().position(|d| d != 0) else { return Ok(0) };
    let total = int_end - int_start + frac.len();
    let last = total - 1 - digits().rev().position(|d| d != 0).expect("a non-zero digit exists");
    // Significant digits `digits[first..=last]` (no trailing zeros) times 10^scale.
    let scale = i128::from(exponent) - frac.len() as i128 + (total - 1 - last) as i128;
    if scale < 0 {
        return Err(NotWhole::Fractional);
    }
    if (last - first + 1) as i128 + scale > 20 {
        return Err(NotWhole::TooLarge);
    }
    let mut value: u64 = 0;
    for d in digits().skip(first).take(last - first + 1) {
        value = value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))).ok_or(NotWhole::TooLarge)?;
    }
    for _ in 0..scale {
        value = value.checked_mul(10).ok_or(NotWhole::TooLarge)?;
    }
    Ok(value)
}

/// The value as written, cut to 64 characters, for messages.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A whole number ≥ 0 no larger than `max`, from a JSON number or a string holding exactly a
/// JSON number's text (see the module docs).
///
/// Errors: [`Problem::NotWholeNumber`], [`Problem::TooLarge`].
pub fn whole(value: &Value, max: u64) -> Result<u64, Problem> {
    let n = match value {
        // Plain integers (the common case) need no text.
        Value::Number(n) => n.as_u64().map_or_else(|| whole_number(&n.to_string()), Ok),
        Value::String(s) => whole_number(s),
        other => return Err(Problem::NotWholeNumber(shown(other))),
    };
    match n {
        Ok(n) if n <= max => Ok(n),
        Ok(_) | Err(NotWhole::TooLarge) => Err(Problem::TooLarge { got: shown(value), max }),
        Err(_) => Err(Problem::NotWholeNumber(shown(value))),
    }
}

/// A string; the empty string reads as absent (`None`).
///
/// Errors: [`Problem::NotString`] for any other JSON type.
pub fn string(value: &Value) -> Result<Option<&str>, Problem> {
    match value {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(Problem::NotString(shown(other))),
    }
}

/// A point in time read from an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time<'a> {
    /// The time as written.
    pub text: &'a str,
    /// Milliseconds since the Unix epoch.
    pub ms: i64,
}

/// An RFC 3339 time string; the empty string reads as absent (`None`).
///
/// Errors: [`Problem::NotTime`] for a number, another string or any other JSON type.
pub fn time(value: &Value) -> Result<Option<Time<'_>>, Problem> {
    match value {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => match event_time_ms(s) {
            Ok(ms) => Ok(Some(Time { text: s, ms })),
            Err(_) => Err(Problem::NotTime(shown(value))),
        },
        other => Err(Problem::NotTime(shown(other))),
    }
}

/// Reads `payload.<key>` with `read`: `Ok(None)` when the key is absent (or the payload is
/// `null`), the read value, or a [`WireError`] naming `payload.<key>`.
pub fn field<'a, T>(
    payload: &'a Value,
    key: &str,
    read: impl FnOnce(&'a Value) -> Result<Option<T>, Problem>,
) -> Result<Option<T>, WireError> {
    match payload.get(key) {
        None => Ok(None),
        Some(v) => read(v).map_err(|problem| WireError { field: format!("payload.{key}"), problem }),
    }
}

/// `payload.delegation_depth`: how many delegations deep a task is (absent: `None`, which
/// readers take as 0, KafClaw's `omitempty` zero).
///
/// Errors: a [`WireError`] for any value but a whole number ≤ `u32::MAX`.
pub fn delegation_depth(payload: &Value) -> Result<Option<u32>, WireError> {
    field(payload, "delegation_depth", |v| whole(v, u64::from(u32::MAX)).map(|n| Some(n as u32)))
}

/// `payload.<key>` as a string (an id, an action, a status; `""` reads as absent).
///
/// Errors: a [`WireError`] for any value but a string.
pub fn string_field<'a>(payload: &'a Value, key: &str) -> Result<Option<&'a str>, WireError> {
    field(payload, key, string)
}

/// `payload.deadline_at` (an RFC 3339 string; `""` reads as absent).
///
/// Errors: a [`WireError`] for any value but an RFC 3339 string.
pub fn deadline_at(payload: &Value) -> Result<Option<Time<'_>>, WireError> {
    field(payload, "deadline_at", time)
}

/// Refuses a payload whose text writes a [`GUARDED`] field more than once (the first such
/// field); a payload built or rewritten as a value has no text and no repeats.
///
/// Errors: a [`WireError`] naming `payload.<key>` ([`Problem::Repeated`]).
pub fn once(payload: &LazyJson) -> Result<(), WireError> {
    match payload.source() {
        Some(text) => repeated(text, GUARDED),
        None => Ok(()),
    }
}

/// Refuses `text` (a JSON value) if it is an object that has one of `names` (at most 64) as
/// a top-level key more than once. Keys are compared unescaped (`"task\u005fid"` is
/// `task_id`); values are skipped without being built.
///
/// Errors: [`Problem::Repeated`] naming the first repeated key.
pub fn repeated(text: &str, names: &[&str]) -> Result<(), WireError> {
    if !text.trim_start().starts_with('{') {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match de.deserialize_map(Keys { names }) {
        Ok(None) => Ok(()),
        Ok(Some(i)) => Err(WireError { field: format!("payload.{}", names[i]), problem: Problem::Repeated }),
        Err(e) => Err(WireError { field: "payload".to_owned(), problem: Problem::Unscannable(e.to_string()) }),
    }
}

/// Finds the first of `names` repeated among an object's keys.
struct Keys<'n> {
    names: &'n [&'n str],
}

impl<'de> Visitor<'de> for Keys<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut seen, mut first) = (0_u64, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if let Some(i) = self.names.iter().take(64).position(|n| *n == key) {
                if seen & (1 << i) != 0 {
                    first = first.or(Some(i));
                }
                seen |= 1 << i;
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(first)
    }
}

/// The KafClaw fields of a task request's payload (`request`, `skill_request`), every one
/// read by the rule above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskFields<'a> {
    /// `payload.task_id`.
    pub task_id: Option<&'a str>,
    /// `payload.parent_task_id`.
    pub parent_task_id: Option<&'a str>,
    /// `payload.requester_id`.
    pub requester_id: Option<&'a str>,
    /// `payload.original_requester_id`.
    pub original_requester_id: Option<&'a str>,
    /// `payload.delegation_depth`.
    pub delegation_depth: Option<u32>,
    /// `payload.deadline_at`.
    pub deadline_at: Option<Time<'a>>,
}

impl<'a> TaskFields<'a> {
    /// Reads the fields of `payload` (an object, or `null`: all absent).
    ///
    /// Errors: the first unreadable field, in the order of the struct's fields.
    pub fn read(payload: &'a Value) -> Result<Self, WireError> {
        Ok(Self {
            task_id: string_field(payload, "task_id")?,
            parent_task_id: string_field(payload, "parent_task_id")?,
            requester_id: string_field(payload, "requester_id")?,
            original_requester_id: string_field(payload, "original_requester_id")?,
            delegation_depth: delegation_depth(payload)?,
            deadline_at: deadline_at(payload)?,
        })
    }

    /// Reads the fields of a payload as decoded, refusing first any guarded field its text
    /// writes twice ([`once`]).
    ///
    /// Errors: a repeated guarded field, then the first unreadable field.
    pub fn of(payload: &'a LazyJson) -> Result<Self, WireError> {
        once(payload)?;
        Self::read(payload)
    }
}

/// Serde adapters that hold the typed payloads ([`crate::envelope::TaskRequestPayload`]) to
/// the same rule; their errors reach [`crate::envelope::Envelope::typed_payload`] naming the
/// field.
pub(crate) mod de {
    use serde::{Deserialize, Deserializer, de::Error};
    use serde_json::Value;

    use super::super::EnvelopeError;
    use super::Problem;

    fn fail<E: Error>(field: &str, problem: Problem) -> E {
        E::custom(EnvelopeError::field(field, problem.to_string()).to_serde_message())
    }

    /// `payload.delegation_depth` (see [`crate::envelope::wire::delegation_depth`]).
    pub(crate) fn delegation_depth<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let v = Value::deserialize(d)?;
        super::whole(&v, u64::from(u32::MAX)).map(|n| n as u32).map_err(|p| fail("payload.delegation_depth", p))
    }

    /// `payload.deadline_at` (see [`crate::envelope::wire::deadline_at`]), kept as written.
    pub(crate) fn deadline_at<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let v = Value::deserialize(d)?;
        match super::time(&v) {
            Ok(t) => Ok(t.map(|t| t.text.to_owned()).unwrap_or_default()),
            Err(p) => Err(fail("payload.deadline_at", p)),
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
