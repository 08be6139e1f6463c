//! Dynamic policy sources: what changes while the daemon runs, on top of
//! the static config. Each source hands [`assemble`](crate::policy::assemble)
//! its current entries; it never writes maps itself.

pub mod dns;
pub mod feeds;
