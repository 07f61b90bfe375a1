//! The languages over a record: CEL expressions ([`expr`], with its constant-regex checks), Jinja templates ([`template`]), field paths ([`path`]), keys ([`key`]),
//! exact numbers across them ([`exact`]) and did-you-mean hints ([`suggest`]).
//!
//! Layering: `lang` uses [`crate::envelope`] and [`crate::api`]; operators build on it.

pub mod exact;
pub mod expr;
pub mod key;
pub mod path;
pub mod suggest;
pub mod template;
