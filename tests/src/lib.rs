//! Helpers shared by sipguard's integration tests: frame building, root
//! checks, the end-to-end harness (namespaces, the daemon) with its
//! addresses, a real CrowdSec Local API, and the sipguard binary.

pub mod addresses;
pub mod crowdsec;
pub mod differential;
pub mod fixtures;
pub mod frames;
pub mod harness;
pub mod hostile;
pub mod lab;
pub mod os;
pub mod sip;
pub mod vm;

use std::{path::PathBuf, sync::OnceLock};

/// True when running as root. Otherwise prints a loud SKIP line: these tests
/// need BPF and network namespaces; CI runs as root, so there they run.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    eprintln!("\n*** SKIPPED {test}: needs root (BPF, XDP, network namespaces) ***\n");
    false
}

/// Path to the `sipguard` binary, built once per test process.
pub fn sipguard_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SIPGUARD_BIN") {
            return PathBuf::from(p);
        }
        vm::workspace_bin("sipguard", "sipguard").unwrap_or_else(|e| panic!("{e:#}"))
    })
    .clone()
}
