//! Structured outputs: `response_format = { json_schema = "schemas/triage.json" }` on an `llm`
//! operator (or the schema inline). The schema is sent to the server in OpenAI's
//! `response_format` (`{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`),
//! and kafclaw validates every answer against it itself (the `jsonschema` crate), whatever
//! the server did with it: an answer that is not JSON, or violates the schema, is asked again
//! with the validation error in the conversation, up to `max_invalid` answers; past them the
//! record is dead-lettered naming the JSON pointer of the violation. A valid answer lands at
//! `payload.<into>` as JSON, not text.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

/// Where the schema is: a file (relative to the topology's folder) or inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SchemaSource {
    /// A JSON file.
    Path(String),
    /// The schema itself, as a TOML table.
    Inline(Value),
}

/// `response_format` of an `llm` operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFormatConfig {
    /// The JSON Schema every answer must match: a path relative to the topology's folder, or
    /// an inline table.
    pub json_schema: SchemaSource,
    /// The schema's name sent to the server (default `answer`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Whether the schema is sent to the server (`response_format`); some servers refuse the
    /// field. Validation by kafclaw happens either way. Default true.
    #[serde(default = "yes")]
    pub send: bool,
    /// Answers that may violate the schema before the record is dead-lettered (each is asked
    /// again with the error). Default 3.
    #[serde(default = "default_max_invalid")]
    pub max_invalid: u32,
}

fn default_name() -> String {
    "answer".to_owned()
}
fn yes() -> bool {
    true
}
fn default_max_invalid() -> u32 {
    3
}

/// A compiled structured output.
#[derive(Clone)]
pub struct Structured {
    /// What goes to the server (`None`: not sent).
    pub request: Option<Value>,
    validator: Arc<jsonschema::Validator>,
    /// Answers that may violate the schema.
    pub max_invalid: u32,
}

impl std::fmt::Debug for Structured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Structured").field("request", &self.request).field("max_invalid", &self.max_invalid).finish()
    }
}

impl ResponseFormatConfig {
    /// Loads (from `base` for a path) and compiles the schema.
    ///
    /// Errors: the file cannot be read, is not JSON, or is not a valid JSON Schema.
    pub fn compile(&self, base: &Path) -> Result<Structured, String> {
        let schema = match &self.json_schema {
            SchemaSource::Inline(v) => v.clone(),
            SchemaSource::Path(p) => {
                let path = base.join(p);
                let text = std::fs::read_to_string(&path).map_err(|e| format!("json_schema {p}: {e}"))?;
                serde_json::from_str(&text).map_err(|e| format!("json_schema {p}: not JSON: {e}"))?
            }
        };
        let validator =
            jsonschema::validator_for(&schema).map_err(|e| format!("json_schema: not a valid schema: {e}"))?;
        let request = self.send.then(
            || json!({"type": "json_schema", "json_schema": {"name": self.name, "schema": schema, "strict": true}}),
        );
        Ok(Structured { request, validator: Arc::new(validator), max_invalid: self.max_invalid.max(1) })
    }
}

impl Structured {
    /// The answer as JSON, or why it does not match: `(pointer, message)` (pointer empty for
    /// an answer that is not JSON). Markdown code fences around the JSON are tolerated.
    pub fn check(&self, content: &str) -> Result<Value, (String, String)> {
        let text = content.trim();
        let text = text
            .strip_prefix("```json")
            .or_else(|| text.strip_prefix("```"))
            .and_then(|t| t.strip_suffix("```"))
            .unwrap_or(text)
            .trim();
        let value: Value =
            serde_json::from_str(text).map_err(|e| (String::new(), format!("the answer is not JSON: {e}")))?;
        match self.validator.validate(&value) {
            Ok(()) => Ok(value),
            Err(e) => Err((e.instance_path().to_string(), e.to_string())),
        }
    }
}

/// The words handed back to the model when its answer does not match.
pub fn retry_prompt(pointer: &str, message: &str) -> String {
    let at = if pointer.is_empty() { String::new() } else { format!(" at `{pointer}`") };
    format!(
        "Your answer does not match the required JSON schema{at}: {message}. Answer again with only a JSON value that matches the schema."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn structured() -> Structured {
        let config: ResponseFormatConfig = toml::from_str(
            r#"json_schema = { type = "object", required = ["priority"], properties = { priority = { enum = ["low", "high"] } } }"#,
        )
        .unwrap();
        config.compile(Path::new(".")).unwrap()
    }

    #[test]
    fn answers_are_checked_with_the_pointer_of_the_violation() {
        let s = structured();
        assert_eq!(s.check(r#"{"priority": "high"}"#).unwrap(), json!({"priority": "high"}));
        assert_eq!(s.check("```json\n{\"priority\": \"low\"}\n```").unwrap(), json!({"priority": "low"}));
        let (pointer, message) = s.check(r#"{"priority": "urgent"}"#).unwrap_err();
        assert_eq!(pointer, "/priority", "{message}");
        let (pointer, message) = s.check("sure! here it is").unwrap_err();
        assert!(pointer.is_empty() && message.contains("not JSON"), "{message}");
        assert!(s.request.as_ref().unwrap()["json_schema"]["schema"]["required"] == json!(["priority"]));
    }
}
