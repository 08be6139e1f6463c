//! sipguard: an XDP filter against SIP scanners and ghost calls.
//!
//! One module per concern: [`config`] (YAML), [`policy`] (what goes into
//! the maps), [`program`] (the embedded object), [`maps`], [`attach`],
//! [`pins`], [`metrics`] (counters), [`daemon`] (`sipguard run`),
//! [`testrun`] (BPF_PROG_TEST_RUN), [`replay`] (captures through it),
//! [`preflight`] (start-up checks), [`cli`].

// User input and the kernel reach this crate: no unwrap/expect/panic outside
// tests (clippy -D warnings in CI turns these into errors).
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod attach;
pub mod cli;
pub mod config;
pub mod crowdsec;
pub mod daemon;
pub mod events;
pub mod feeds;
pub mod learn;
pub mod maps;
pub mod metrics;
pub mod names;
pub mod ops;
pub mod pins;
pub mod policy;
pub mod preflight;
pub mod program;
pub mod prom;
pub mod replay;
pub mod systemd;
pub mod testrun;
