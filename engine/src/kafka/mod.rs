//! Kafka I/O: the only module that touches rdkafka. Client configuration, topic management and
//! the instance runtime (consumer group member, tasks per partition, transactions).

pub mod bus;
pub mod client;
mod clients;
pub mod fault;
mod global;
pub mod group;
pub mod instance;
pub mod journal;
pub mod latest;
pub mod presence;
pub mod replay;
pub mod restore;
pub mod stats;
pub mod tasks;
pub mod timeline_feed;
pub mod topics;

pub use client::ClientSettings;
pub use instance::{InstanceError, InstanceOptions, run_instance};
pub use replay::{ReplayFrom, ReplaySummary, replay};
pub use stats::Stats;
