//! Stateless, per-record operators, fused inside a task: `filter`, `map`, `route`.

pub mod filter;
pub mod map;
pub mod route;
