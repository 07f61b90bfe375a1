//! kafclaw's agent wing: the operators that call models, run tools and index memory.
//!
//! | kind | module | tier |
//! |---|---|---|
//! | `llm` | [`llm`] | asynchronous, stateful (response journal, budgets) |
//! | `embed` | [`memory::embed_op`] | asynchronous, stateful (vector journal) |
//! | `memory-index`, `memory-search` | [`memory`] | synchronous, stateful (items table + usearch index) |
//! | tools `fs_read`, `fs_write`, `shell`, `http`, `memory`, `delegate` | [`tools`] | called by `llm` |
//!
//! The folders stack one way: [`model`] (config, client, recordings, protocol, embedders)
//! and [`sandbox`] (the OS sandbox of the programs tools start) → [`memory`] → [`tools`] →
//! [`llm`], with [`resources`] (typed access to what a topology's
//! nodes share: models, tools, the bus slot) on top beside [`llm`]. This crate is where
//! `tokio`, `reqwest` and the vector index (through `kafclaw-state`) enter;
//! `kafclaw-operators` builds without them.

#![warn(missing_docs)]

pub mod llm;
pub mod memory;
pub mod model;
pub mod resources;
pub mod sandbox;
pub mod telemetry;
pub mod tools;
