//! The agent-group protocol's operators: `approve` (human approval), `guard` (zones, delegation depth, deadlines; audits),
//! `onboard` and `admissions` (who may join), `roster` (who is in the group).

pub mod approve;
pub mod guard;
pub mod onboard;
pub mod roster;
