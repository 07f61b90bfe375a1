//! What an operator author may touch: the record model ([`record`]), the synchronous and
//! asynchronous operator tiers ([`operator`], [`asynchronous`]), state access ([`state`]), dead
//! letters ([`dead_letter`]), what every config half shares ([`config`]), the config half's
//! contract ([`kind`]), the resources the nodes of a topology share ([`resources`]) and the
//! redaction of secrets ([`secrets`]).
//!
//! Layering: `api` uses only [`crate::envelope`]; everything else in the crate builds on it.

pub mod asynchronous;
pub mod config;
pub mod dead_letter;
pub mod kind;
pub mod operator;
pub mod record;
pub mod resources;
pub mod secrets;
pub mod state;
