//! Kafka I/O: the only module that touches rdkafka. Client configuration, topic management,
//! the headers kafclaw writes, tables read from topics, the agent group's clients and the
//! instance runtime (consumer group member, tasks per partition, transactions).
//!
//! - [`settings`]: librdkafka properties; [`producer`]: the instance's producer and client
//!   contexts; [`fault`]: who a failed send is the fault of; [`headers`]: every header name;
//!   [`topics`]; [`stats`]; [`inspect`]: the clients of `kafclaw doctor` and `kafclaw tap`;
//! - [`tables`]: restore, global tables, latest values, replay;
//! - [`group`]: presence, members, delegate bus, gateway and timeline feeds, journal export;
//! - [`effects`]: the effect log of `at-most-once` and `reconcile` tools (docs/effects.md);
//! - [`dead_letters`]: dead-letter topics read, and a letter resubmitted (the console);
//! - [`approvals`]: human approval: the group's approvals topics read and decided, and the
//!   channel of approval-gated tools (docs/approvals.md);
//! - [`instance`]: the runtime.

pub mod approvals;
pub mod dead_letters;
pub mod effects;
pub mod fault;
pub mod group;
pub mod headers;
pub mod inspect;
pub mod instance;
mod producer;
pub mod settings;
pub mod stats;
pub mod tables;
pub mod topics;

pub use instance::{InstanceError, InstanceOptions, run_instance};
pub use settings::ClientSettings;
pub use stats::Stats;
pub use tables::replay::{ReplayFrom, ReplaySummary, replay};

// The modules' paths before they moved into folders (kept for code outside `kafka/`).
pub use group::gateway_feed as tasks;
pub use group::{bus, journal, presence, timeline_feed};
pub use settings as client;
pub use tables::{latest, replay, restore};
