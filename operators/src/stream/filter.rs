//! `filter`: keeps the records for which a CEL condition is true.
//!
//! ```toml
//! [operators.tickets]
//! type = "filter"
//! inputs = ["requests"]
//! where = 'type == "request" && payload.description != ""'
//! ```
//! A record on which the condition fails to evaluate (a missing field, a type error) goes to
//! the dead-letter output with the error. Use `has(payload.x)` to test for optional fields.

use serde::Deserialize;
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Emit, Failure, Port, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::StateAccess;
use crate::lang::expr::{Expr, compile_expr};

/// Config half of `filter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// CEL condition over the envelope; records for which it is `true` pass.
    #[serde(rename = "where")]
    pub condition: Spanned<String>,
}

impl Kind for FilterConfig {
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Sync(Box::new(Filter { condition: compile_expr(&self.condition)? })))
    }
}

/// Runtime half of `filter`.
#[derive(Debug, Clone)]
pub struct Filter {
    condition: Expr,
}

impl SyncOperator for Filter {
    fn process(&mut self, record: Record, _state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        match self.condition.eval_bool(&record) {
            Ok(true) => {
                out.emit(Port::DEFAULT, record);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(message) => Err(Failure::new(record, message)),
        }
    }
}
