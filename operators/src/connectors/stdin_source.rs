//! `stdin` source: JSON Lines from standard input.

use serde::Deserialize;

use super::{Format, LineSource};
use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind};
use crate::api::resources::Resources;

/// Config half of the `stdin` source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// Record framing; only `jsonl` for now.
    #[serde(default)]
    pub format: Format,
}

impl Kind for StdinSourceConfig {
    /// Opened by the runtime.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Edge)
    }
}

impl StdinSourceConfig {
    /// Opens standard input.
    pub fn open(&self) -> LineSource {
        LineSource::from_reader(std::io::stdin(), "<stdin>".to_owned())
    }
}
