//! Why a record is not a valid envelope.

/// A record that is not a valid envelope v1. Always names the field when one is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not JSON, or not a JSON object.
    #[error("not a JSON envelope: {0}")]
    Syntax(String),
    /// A field is missing, of the wrong type or has a bad value.
    #[error("field `{field}`: {message}")]
    Field {
        /// The field at fault (`timestamp`, `payload.delegation_depth`, …).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl EnvelopeError {
    /// An error about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field { field: field.into(), message: message.into() }
    }

    /// The field at fault, if any.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. } => Some(field),
            Self::Syntax(_) => None,
        }
    }

    /// Marker that lets a field error travel through serde's string-only custom errors.
    pub(crate) const MARK: char = '\u{1f}';

    pub(crate) fn to_serde_message(&self) -> String {
        match self {
            Self::Field { field, message } => format!("{}{field}{}{message}", Self::MARK, Self::MARK),
            Self::Syntax(m) => m.clone(),
        }
    }

    /// Rebuilds the typed error from a decoder's message (see [`Self::to_serde_message`]).
    pub(crate) fn from_serde_message(message: &str) -> Self {
        if let Some(start) = message.find(Self::MARK) {
            let rest = &message[start + 1..];
            if let Some(end) = rest.find(Self::MARK) {
                return Self::field(&rest[..end], rest[end + 1..].trim_end_matches('"').to_owned());
            }
        }
        Self::Syntax(message.to_owned())
    }
}
