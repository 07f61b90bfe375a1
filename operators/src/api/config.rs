//! What every config half shares: the option error ([`ConfigError`], with its span in the
//! topology file), collecting every error of a config at once ([`Errors`]), durations and topic
//! names.

use std::ops::Range;

use toml::Spanned;

/// Where an option error is, in the topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Byte span of the offending value (or key) in the topology file.
    pub span: Range<usize>,
    /// For errors inside a string value (an expression, a template): the 0-based character
    /// offset inside the string's content.
    pub char_offset: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we know.
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error about a whole value.
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self { span, char_offset: None, message: message.into(), hint: None }
    }

    /// An error inside a string value at a character offset of its content.
    pub fn inside(span: Range<usize>, char_offset: usize, message: impl Into<String>) -> Self {
        Self { span, char_offset: Some(char_offset), message: message.into(), hint: None }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
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

/// Kafka topic names: 1 to 249 of letters, digits, `.`, `_`, `-`, and not `.` or `..`.
pub fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 250
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
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
