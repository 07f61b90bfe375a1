//! Tables read from topics: restoring state tables from their changelogs ([`restore`]),
//! global tables read in full by every instance ([`global`]), the latest value of each key of
//! a table-like topic ([`latest`]), and `kafclaw replay`, which rebuilds the tables by
//! reprocessing the inputs ([`replay`]).

pub(super) mod global;
pub mod latest;
pub mod replay;
pub mod restore;
