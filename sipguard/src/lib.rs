//! sipguard: an XDP filter against SIP scanners and ghost calls.
//!
//! The modules follow the data flow (policy sources → policy → kernel maps
//! → XDP verdict → counters and events → serving) and depend one way:
//! [`cli`] uses [`serve`] and [`replay`], which use [`kernel`] and
//! [`policy`]; the kernel side uses policy types; the policy uses neither.
//!
//! - [`policy`]: the effective policy and [`policy::assemble`], which builds it
//!   - [`policy::config`]: the YAML file: [`sections`](policy::config::sections)
//!     and [`values`](policy::config::values) (schema),
//!     [`validate`](policy::config::validate) (checks across fields),
//!     [`yaml_errors`](policy::config::yaml_errors) (messages with line and field)
//!   - [`policy::compile`]: a config into a [`policy::Policy`]
//!   - [`policy::describe`]: what `sipguard check` prints
//!   - [`policy::evaluate`]: the host's verdict over the shared logic
//!   - [`policy::sources`]: dynamic sources: [`feeds`](policy::sources::feeds)
//!     (blocklist files), [`dns`](policy::sources::dns) (trusted names)
//! - [`kernel`]: everything that talks to the kernel
//!   - [`kernel::program`]: the embedded object and its loader
//!   - [`kernel::maps`]: the policy maps and applying a policy to them
//!   - [`kernel::pins`]: the bpffs pin directory and pinned links
//!   - [`kernel::attach`]: interfaces and XDP attach modes
//!   - [`kernel::preflight`]: start-up checks of privileges and kernel features
//!   - [`kernel::stateful`]: the `OPS` settings, `HINTS`, `OPS_STATS`, the boot clock
//!   - [`kernel::bans`]: the `BANS` map: ban, unban, list
//!   - [`kernel::registrars`]: the registrar learner (TC egress) and its entries
//!   - [`kernel::counters`]: the `COUNTERS` map summed per interface and reason
//!   - [`kernel::testrun`]: a private instance run with BPF_PROG_TEST_RUN
//! - [`serve`]: `sipguard run`: the main loop
//!   - [`serve::daemon`]: the running filter: start or adopt, reload, stop
//!   - [`serve::events`]: drop events from the ring buffer to the log and socket
//!   - [`serve::prometheus`]: the `/metrics` endpoint
//!   - [`serve::systemd`]: readiness notifications
//! - [`replay`]: captures through a private instance of the program
//! - [`cli`]: the clap definition and one module per verb

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
