//! sipguard: an XDP filter against SIP scanners and ghost calls.
//!
//! One module per concern: [`config`] (YAML), [`policy`] (what goes into
//! the maps), [`program`] (the embedded object), [`maps`], [`attach`],
//! [`pins`], [`metrics`] (counters), [`daemon`] (`sipguard run`),
//! [`testrun`] (BPF_PROG_TEST_RUN), [`replay`] (captures through it), [`cli`].

pub mod attach;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod maps;
pub mod metrics;
pub mod pins;
pub mod policy;
pub mod replay;
pub mod program;
pub mod testrun;
