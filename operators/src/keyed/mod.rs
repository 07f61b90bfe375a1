//! Stateful operators over keyed state tables (changelogged in Kafka mode): `count`,
//! `aggregate`, `dedupe` (TTL table), `window` (tumbling, event time), `join` (stream–table).

pub mod aggregate;
pub mod count;
pub mod dedupe;
pub mod join;
pub mod window;
