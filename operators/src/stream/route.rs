//! `route`: sends each record to named outputs by condition.
//!
//! ```toml
//! [operators.triage]
//! type = "route"
//! inputs = ["tickets"]
//! routes = [
//!   { name = "urgent", when = 'payload.priority >= 4' },
//!   { name = "normal", when = 'true' },
//! ]
//! ```
//! Downstream nodes read one output as `inputs = ["triage.urgent"]`. With `mode = "first"`
//! (the default) a record goes to the first route whose condition holds, in file order; with
//! `mode = "all"` to every one. Records no route takes go to the output `unmatched`.

use serde::Deserialize;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Emit, Failure, Port, Ports, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::StateAccess;
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;

/// The output no route took.
pub const UNMATCHED: &str = "unmatched";

/// One named output and its condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Output name, read downstream as `<operator>.<name>`.
    pub name: Spanned<String>,
    /// CEL condition that sends a record to this output.
    pub when: Spanned<String>,
}

/// How many routes one record may take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteMode {
    /// The first route whose condition holds.
    #[default]
    First,
    /// Every route whose condition holds.
    All,
}

/// Config half of `route`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The named outputs, tried in this order.
    pub routes: Vec<RouteEntry>,
    /// `first` (default) or `all`.
    #[serde(default)]
    pub mode: RouteMode,
}

impl Kind for RouteConfig {
    /// Outputs: one per route, then `unmatched`.
    fn ports(&self) -> Ports {
        let mut named: Vec<String> = self.routes.iter().map(|r| r.name.get_ref().clone()).collect();
        named.push(UNMATCHED.to_owned());
        Ports { default: false, named }
    }

    /// Builds the runtime half, reporting every bad name and condition.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut conditions = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        if self.routes.is_empty() {
            errors.push(ConfigError::at(0..0, "a route needs at least one entry in `routes`"));
        }
        for entry in &self.routes {
            let name = entry.name.get_ref().as_str();
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                errors.push(ConfigError::at(
                    entry.name.span(),
                    format!("route name `{name}` must be letters, digits, `_` or `-`"),
                ));
            } else if name == UNMATCHED {
                errors.push(ConfigError::at(entry.name.span(), "`unmatched` is the output for records no route takes"));
            } else if seen.contains(&name) {
                errors.push(ConfigError::at(entry.name.span(), format!("route `{name}` is defined twice")));
            }
            seen.push(name);
            match compile_expr(&entry.when) {
                Ok(e) => conditions.push(e),
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            let unmatched = Port(conditions.len());
            Ok(Built::Sync(Box::new(Route { conditions, mode: self.mode, unmatched })))
        } else {
            Err(errors)
        }
    }
}

/// Runtime half of `route`.
#[derive(Debug, Clone)]
pub struct Route {
    conditions: Vec<Expr>,
    mode: RouteMode,
    unmatched: Port,
}

impl SyncOperator for Route {
    fn process(&mut self, record: Record, _state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let mut hits = Vec::new();
        for (port, cond) in self.conditions.iter().enumerate() {
            match cond.eval_bool(&record) {
                Ok(true) => {
                    hits.push(Port(port));
                    if self.mode == RouteMode::First {
                        break;
                    }
                }
                Ok(false) => {}
                Err(message) => return Err(Failure::new(record, message)),
            }
        }
        match hits.split_last() {
            None => out.emit(self.unmatched, record),
            Some((last, rest)) => {
                for port in rest {
                    out.emit(*port, record.clone());
                }
                out.emit(*last, record);
            }
        }
        Ok(())
    }
}
