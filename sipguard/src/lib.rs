//! sipguard: an XDP filter against SIP scanners and ghost calls.
//!
//! One module per concern: [`config`] (YAML), [`policy`] (what goes into
//! the maps), [`program`] (the embedded object), [`maps`], [`attach`],
//! [`pins`], [`metrics`] (counters), [`daemon`] (`sipguard run`),
//! [`testrun`] (BPF_PROG_TEST_RUN), [`cli`].

pub mod attach;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod feeds;
pub mod maps;
pub mod metrics;
pub mod ops;
pub mod pins;
pub mod policy;
pub mod prom;
pub mod program;
pub mod systemd;
pub mod testrun;
