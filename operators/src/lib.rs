//! kafclaw operators.
//!
//! Each operator kind is one module with a **config half** (a serde struct with
//! `deny_unknown_fields`, whose doc comments are the reference docs) and a **runtime half**
//! (the code that processes records). The engine's topology compiler lists the kinds
//! explicitly (`engine/src/compiler/registry.rs`); nothing here registers itself.
//!
//! | kind | module | tier |
//! |---|---|---|
//! | `filter` | [`filter`] | synchronous, fused |
//! | `map` | [`map`] | synchronous, fused |
//! | `route` | [`route`] | synchronous, fused |
//! | `count` | [`count`] | synchronous, fused, stateful |
//! | `aggregate` | [`aggregate`] | synchronous, fused, stateful |
//! | `dedupe` | [`dedupe`] | synchronous, fused, stateful (TTL table) |
//! | `window` | [`window`] | synchronous, fused, stateful (tumbling, event time) |
//! | `join` | [`join`] | synchronous, fused, stateful (stream–table) |
//! | `memory-index`, `memory-search` | [`memory`] | synchronous, stateful (items table + usearch index) |
//! | `guard` | [`guard`] | synchronous, fused (zones, delegation depth, deadlines; audits) |
//! | `onboard`, `admissions` | [`onboard`] | synchronous; stateful (admitted, challenges) / instance-wide set |
//! | `roster` | [`roster`] | synchronous, stateful (members table) |
//! | `embed` | [`memory::embed_op`] | asynchronous, stateful (vector journal) |
//! | `llm` | [`llm`] | asynchronous ([`asynchronous`]), stateful (response journal, budgets) |
//! | source `file`, `stdin` | [`io`] | local I/O |
//! | sink `file`, `stdout` | [`io`] | local I/O |
//! | source/sink `kafka` | [`kafka`] (config half; runtime in the engine) | Kafka I/O |
//!
//! Also here: the envelope v1 ([`envelope`]), the record model ([`record`]), dead letters
//! ([`dead_letter`]), CEL expressions ([`expr`]), templates ([`template`]) and exact numbers
//! across them ([`exact`]).

#![warn(missing_docs)]

pub mod aggregate;
pub mod asynchronous;
pub mod count;
pub mod dead_letter;
pub mod dedupe;
pub mod envelope;
pub mod exact;
pub mod expr;
pub mod expr_check;
pub mod filter;
pub mod guard;
pub mod io;
pub mod join;
pub mod kafka;
pub mod keyed;
pub mod llm;
pub mod map;
pub mod memory;
pub mod onboard;
pub mod operator;
pub mod path;
pub mod record;
pub mod roster;
pub mod route;
pub mod state;
pub mod suggest;
pub mod template;
pub mod tools;
pub mod window;

pub use dead_letter::DeadLetter;
pub use envelope::{Envelope, EnvelopeError, EnvelopeType};
pub use operator::{ConfigError, Emit, Failure, Ports, SyncOperator};
pub use record::{Origin, RawRecord, RawView, Record};
pub use state::{NoState, ScanEntry, StateAccess, TableSpec};
