//! What the stateful operators share: the key a CEL expression gives a record, event-time
//! durations in options, and collecting every option error of a config at once.

use serde_json::Value;
use toml::Spanned;

use crate::expr::Expr;
use crate::operator::ConfigError;
use crate::record::Record;

/// The key text of a CEL result: a string as is, any other value as its JSON text.
pub fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Evaluates a key expression; `None` when it gives `null` (no key).
pub fn eval_key(by: &Expr, record: &Record) -> Result<Option<String>, String> {
    match by.eval_json(record)? {
        Value::Null => Ok(None),
        v => Ok(Some(key_text(&v))),
    }
}

/// Parses a duration option (`"30s"`, `"10m"`, `"1h 30m"`, `"7days"`) into milliseconds.
pub fn parse_duration_ms(value: &Spanned<String>) -> Result<i64, Vec<ConfigError>> {
    let text = value.get_ref();
    let bad = |m: String| {
        vec![
            ConfigError::at(value.span(), m)
                .with_hint(Some("a duration such as \"500ms\", \"30s\", \"10m\", \"1h\", \"7days\"".into())),
        ]
    };
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(bad(format!("`{text}` is zero; a duration must be positive"))),
        Ok(d) => i64::try_from(d.as_millis()).map_err(|_| bad(format!("`{text}` is too long"))),
        Err(e) => Err(bad(format!("`{text}` is not a duration: {e}"))),
    }
}

/// Parses an optional duration option.
pub fn parse_optional_duration_ms(value: &Option<Spanned<String>>) -> Result<Option<i64>, Vec<ConfigError>> {
    value.as_ref().map(parse_duration_ms).transpose()
}

/// Collects the errors of every option of a config, so `validate` reports them all at once.
#[derive(Debug, Default)]
pub struct Errors(Vec<ConfigError>);

impl Errors {
    /// Keeps the value, or the errors.
    pub fn take<T>(&mut self, result: Result<T, Vec<ConfigError>>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e);
                None
            }
        }
    }

    /// Keeps the value, or the error.
    pub fn take_one<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        self.take(result.map_err(|e| vec![e]))
    }

    /// Adds one error.
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// `Ok(build())` when no error was collected.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Vec<ConfigError>> {
        if self.0.is_empty() { build().ok_or_else(Vec::new) } else { Err(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_zero_is_refused() {
        let d = |s: &str| parse_duration_ms(&Spanned::new(3..9, s.to_owned()));
        assert_eq!(d("10m").unwrap(), 600_000);
        assert_eq!(d("1h 30m").unwrap(), 5_400_000);
        assert_eq!(d("250ms").unwrap(), 250);
        let e = d("0s").unwrap_err();
        assert_eq!(e[0].span, 3..9);
        assert!(e[0].message.contains("positive"));
        assert!(d("soon").unwrap_err()[0].message.contains("not a duration"));
    }
}
