//! What an operator author may touch: the record model ([`record`]), the synchronous and
//! asynchronous operator tiers ([`operator`], [`asynchronous`]), state access ([`state`]), dead
//! letters ([`dead_letter`]) and what every config half shares ([`config`]).
//!
//! Layering: `api` uses only [`crate::envelope`]; everything else in the crate builds on it.

pub mod asynchronous;
pub mod config;
pub mod dead_letter;
pub mod operator;
pub mod record;
pub mod state;
