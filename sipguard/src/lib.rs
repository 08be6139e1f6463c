//! sipguard: an XDP filter against SIP scanners and ghost calls.
//!
//! The modules follow the data flow, and depend one way: [`cli`] uses
//! [`serve`] and [`replay`], which use [`kernel`] and [`policy`]; the
//! kernel side uses policy types; the policy uses neither.
//!
//! - [`policy`]: what should be filtered. [`policy::config`] (YAML schema,
//!   validation, errors with line and field), compiling it into a
//!   [`policy::Policy`], describing it, the host-side verdict, and
//!   [`policy::sources`] (blocklist feeds, trusted DNS names) that
//!   [`policy::assemble`] adds to the static config.
//! - [`kernel`]: the embedded XDP object and its loader, the policy maps,
//!   pins, attaching, start-up checks, the stateful maps (events, bans,
//!   fragments), bans, learned registrars, counters, and a private
//!   BPF_PROG_TEST_RUN instance.
//! - [`serve`]: `sipguard run`: the main loop, the running filter, the
//!   events socket, the Prometheus endpoint, systemd notifications.
//! - [`replay`]: captures through a private instance of the program.
//! - [`cli`]: the command line, one module per verb.

// User input and the kernel reach this crate: no unwrap/expect/panic outside
// tests (clippy -D warnings in CI turns these into errors).
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cli;
pub mod kernel;
pub mod policy;
pub mod replay;
pub mod serve;
