//! A declared model shared by every operator and task that names it: one client, one
//! concurrency limit per instance.

use std::sync::{Arc, OnceLock};

use super::{ModelClient, ModelConfig, UsageSnapshot};

/// A declared model, shared by every `llm` operator (and task) that names it, so one client
/// and one concurrency limit serve the instance.
#[derive(Debug)]
pub struct SharedModel {
    /// Its name in the topology.
    pub name: String,
    /// Its options.
    pub config: ModelConfig,
    client: OnceLock<Result<Arc<ModelClient>, String>>,
}

impl SharedModel {
    /// A model not yet connected.
    pub fn new(name: &str, config: ModelConfig) -> Arc<Self> {
        Arc::new(Self { name: name.to_owned(), config, client: OnceLock::new() })
    }

    /// What the model has done in this process (`None` before its first use).
    pub fn usage(&self) -> Option<UsageSnapshot> {
        match self.client.get() {
            Some(Ok(c)) => Some(c.usage()),
            _ => None,
        }
    }

    /// The model id sent to the endpoint (`gen_ai.request.model`), once connected.
    pub fn request_model(&self) -> Option<&str> {
        match self.client.get() {
            Some(Ok(c)) => Some(c.model.as_str()),
            _ => None,
        }
    }

    /// The client, created on first use (reads the API key then).
    pub fn client(&self) -> Result<Arc<ModelClient>, String> {
        self.client.get_or_init(|| self.config.client(&self.name).map(Arc::new)).clone()
    }
}
