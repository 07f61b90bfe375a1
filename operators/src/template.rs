//! Jinja-style templates (minijinja) over the envelope, compiled once, rendered per record.
//!
//! The context is the envelope's fields (`payload`, `correlation_id`, …) and `meta`, the same
//! names CEL expressions see.

use std::sync::Arc;

use minijinja::Environment;
use serde_json::json;

use crate::record::Record;

/// A syntax error in a template, at a 1-based line inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line inside the template.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    env: Arc<Environment<'static>>,
}

const NAME: &str = "t";

impl Template {
    /// Compiles `source`.
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        env.add_template_owned(NAME, source.to_owned()).map_err(|e| TemplateError {
            line: e.line().unwrap_or(1),
            message: e.detail().unwrap_or("syntax error").to_owned(),
        })?;
        Ok(Self { env: Arc::new(env) })
    }

    /// Renders against one record.
    pub fn render(&self, record: &Record) -> Result<String, String> {
        let mut ctx = record.envelope.to_json();
        let o = &record.origin;
        ctx["meta"] = json!({
            "source": &*o.source,
            "location": &*o.location,
            "partition": o.partition,
            "offset": o.offset,
        });
        let template = self.env.get_template(NAME).map_err(|e| e.to_string())?;
        template.render(ctx).map_err(|e| format!("template: {e}"))
    }
}
