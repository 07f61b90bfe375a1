//! Models: `[models.<name>]` in a topology ([`config`]), the client that calls one
//! ([`client`]), recorded runs ([`recording`]), the wire protocol ([`protocol`]), adaptive
//! concurrency ([`limiter`]), token rates ([`rate`]), embedders ([`embed`]) and the model shared
//! by every operator that names it ([`shared`]).

pub mod answer;
pub mod client;
pub mod config;
pub mod embed;
pub mod limiter;
pub mod metrics;
pub mod protocol;
pub mod rate;
pub mod recording;
pub mod shared;
pub mod usage;

pub use client::{Answer, CallError, Embedded, ModelClient, ModelUsage, UsageSnapshot};
pub use config::{ModelConfig, undeclared_model};
pub use recording::{ExportedEntry, Recorded, Recording};
pub use shared::SharedModel;
