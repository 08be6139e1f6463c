//! The end-to-end harness: network namespaces joined by veth pairs, the
//! standard WAN topology with its addresses ([`crate::addresses`]), the real
//! daemon running in it, and the UDP traffic between them.
//!
//! Safety rules every part keeps: traffic only goes between addresses
//! inside namespaces the test created; names carry the process id
//! ([`netns::unique`]) so concurrent test runs never meet; and every guard
//! (namespace, daemon, child process) cleans up in `Drop`, so a failing
//! assertion leaves nothing behind. Processes are stopped by their PID.

pub mod daemon;
pub mod netns;
pub mod process;
pub mod traffic;
pub mod wan;

pub use daemon::Daemon;
pub use netns::Netns;
pub use process::Proc;
pub use traffic::{Arrivals, Datagram, Listener, Receiver, Steady};
pub use wan::Wan;

/// The standard WAN and a daemon for its PBX, not launched yet; `None`
/// (the test skips, loudly) without root.
pub fn wan_and_daemon(test: &str) -> Option<(Wan, Daemon)> {
    if !crate::require_root(test) {
        return None;
    }
    let net = Wan::new();
    let d = Daemon::new(&net.pbx);
    Some((net, d))
}
