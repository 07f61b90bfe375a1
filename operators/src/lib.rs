//! kafclaw operators.
//!
//! Each operator kind is one module with a **config half** (a serde struct with
//! `deny_unknown_fields`, whose doc comments are the reference docs, implementing
//! [`api::kind::Kind`]: ports, state tables, checks, warnings, build) and a **runtime half**
//! (the code that processes records). The engine's topology compiler lists the kinds
//! explicitly (`engine/src/compiler/registry.rs`, `KINDS`); nothing here registers itself.
//!
//! | kind | module | tier |
//! |---|---|---|
//! | `filter` | [`stream::filter`] | synchronous, fused |
//! | `map` | [`stream::map`] | synchronous, fused |
//! | `route` | [`stream::route`] | synchronous, fused |
//! | `count` | [`keyed::count`] | synchronous, fused, stateful |
//! | `aggregate` | [`keyed::aggregate`] | synchronous, fused, stateful |
//! | `dedupe` | [`keyed::dedupe`] | synchronous, fused, stateful (TTL table) |
//! | `window` | [`keyed::window`] | synchronous, fused, stateful (tumbling, event time) |
//! | `join` | [`keyed::join`] | synchronous, fused, stateful (stream–table) |
//! | `guard` | [`group::guard`] | synchronous, fused (zones, delegation depth, deadlines; audits) |
//! | `onboard`, `admissions` | [`group::onboard`] | synchronous; stateful (admitted, challenges) / instance-wide set |
//! | `roster` | [`group::roster`] | synchronous, stateful (members table) |
//! | source `file`, `stdin` | [`connectors`] | local I/O |
//! | sink `file`, `stdout` | [`connectors`] | local I/O |
//! | source/sink `kafka` | [`connectors::kafka`] (config half; runtime in the engine) | Kafka I/O |
//!
//! The folders stack one way (a module uses only those above it in this list):
//! [`envelope`] (the wire format, a leaf) → [`api`] (what an operator author touches) →
//! [`lang`] (CEL, templates, paths, keys) → [`stream`], [`group`] → [`keyed`] →
//! [`connectors`]. The agent wing (`llm`, tools, memory, the model client) is the crate
//! `kafclaw-agent`, built on this one; this crate needs no async runtime, HTTP or C++. A test
//! (`tests/layers.rs`) fails when a `use crate::` line runs back up.

#![warn(missing_docs)]

pub mod api;
pub mod connectors;
pub mod envelope;
pub mod group;
pub mod keyed;
pub mod lang;
pub mod stream;
pub mod testing;

pub use api::config::ConfigError;
pub use api::dead_letter::DeadLetter;
pub use api::operator::{Emit, Failure, Ports, SyncOperator};
pub use api::record::{Origin, RawRecord, RawView, Record};
pub use api::state::{NoState, ScanEntry, StateAccess, TableSpec};
pub use envelope::{Envelope, EnvelopeError, EnvelopeType};
