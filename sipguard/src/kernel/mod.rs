//! Everything that touches the kernel: the embedded object and its loader,
//! the maps a [`Policy`](crate::policy::Policy) is written into, the pins
//! in bpffs, attaching to interfaces, start-up checks, the stateful maps
//! (events, bans, fragments), learned registrars, the counters, carrying
//! state across a map ABI upgrade, and a private test-run instance. Uses
//! policy types; never the serving side.

pub mod attach;
pub mod bans;
pub mod counters;
pub mod decisions;
pub mod features;
pub mod jit;
pub mod maps;
pub mod migrate;
pub mod pins;
pub mod preflight;
pub mod program;
pub mod registrars;
pub mod stateful;
pub mod testrun;
