//! `map`: sets fields from CEL expressions or templates, and removes fields.
//!
//! ```toml
//! [operators.shape]
//! type = "map"
//! inputs = ["tickets"]
//! set = { "type" = '"response"', "payload.priority" = 'payload.priority + 1' }
//! render = { "payload.content" = "Ticket {{ payload.task_id }}: {{ payload.description }}" }
//! remove = ["payload.internal_notes"]
//! ```
//! Every expression and template sees the record as it entered the operator; then the fields
//! are set (expressions first, then templates) and removed, in name order.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Emit, Failure, Port, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::StateAccess;
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::path::FieldPath;
use crate::lang::template::Template;

/// Config half of `map`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Field path → CEL expression whose value the field is set to.
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Field path → Jinja-style template whose rendering (a string) the field is set to.
    #[serde(default)]
    pub render: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Field paths to remove (optional header fields or payload fields).
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}

impl Kind for MapConfig {
    /// Builds the runtime half, reporting every bad path, expression and template.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut sets = Vec::new();
        let mut renders = Vec::new();
        let mut removes = Vec::new();
        if self.set.is_empty() && self.render.is_empty() && self.remove.is_empty() {
            errors.push(ConfigError::at(0..0, "a map needs at least one of `set`, `render` or `remove`"));
        }
        for (path, expr) in &self.set {
            match (FieldPath::parse_spanned(path), compile_expr(expr)) {
                (Ok(p), Ok(e)) => sets.push((p, e)),
                (p, e) => {
                    errors.extend(p.err());
                    errors.extend(e.err().unwrap_or_default());
                }
            }
        }
        for (path, text) in &self.render {
            let t = Template::compile(text.get_ref()).map_err(|e| {
                let offset: usize =
                    text.get_ref().split('\n').take(e.line.saturating_sub(1)).map(|l| l.chars().count() + 1).sum();
                ConfigError::inside(text.span(), offset, format!("template: {}", e.message))
            });
            match (FieldPath::parse_spanned(path), t) {
                (Ok(p), Ok(t)) => renders.push((p, t)),
                (p, t) => {
                    errors.extend(p.err());
                    errors.extend(t.err());
                }
            }
        }
        for path in &self.remove {
            match FieldPath::parse_spanned(path) {
                Ok(p) if p.removable() => removes.push(p),
                Ok(_) => errors.push(ConfigError::at(
                    path.span(),
                    format!("`{}` is required and cannot be removed", path.get_ref()),
                )),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(Built::Sync(Box::new(Map { sets, renders, removes }))) } else { Err(errors) }
    }
}

/// Runtime half of `map`.
#[derive(Debug, Clone)]
pub struct Map {
    sets: Vec<(FieldPath, Expr)>,
    renders: Vec<(FieldPath, Template)>,
    removes: Vec<FieldPath>,
}

impl Map {
    fn compute(&self, record: &Record) -> Result<Vec<(&FieldPath, Value)>, String> {
        let mut values = Vec::with_capacity(self.sets.len() + self.renders.len());
        for (path, expr) in &self.sets {
            values.push((path, expr.eval_json(record)?));
        }
        for (path, template) in &self.renders {
            values.push((path, Value::String(template.render(record)?)));
        }
        Ok(values)
    }
}

impl SyncOperator for Map {
    fn process(&mut self, record: Record, _state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let values = match self.compute(&record) {
            Ok(v) => v,
            Err(message) => return Err(Failure::new(record, message)),
        };
        let mut envelope = record.envelope.clone();
        let applied = values
            .into_iter()
            .try_for_each(|(path, value)| path.set(&mut envelope, value))
            .and_then(|()| self.removes.iter().try_for_each(|p| p.remove(&mut envelope)));
        match applied {
            Ok(()) => {
                out.emit(Port::DEFAULT, Record { envelope, origin: record.origin });
                Ok(())
            }
            Err(message) => Err(Failure::new(record, message)),
        }
    }
}
