//! Helpers shared by sipguard's integration tests: frame building, root
//! checks, the end-to-end harness (namespaces, the daemon) with its
//! addresses, and the sipguard binary.

pub mod addresses;
pub mod differential;
pub mod fixtures;
pub mod frames;
pub mod harness;
pub mod hostile;
pub mod lab;
pub mod os;
pub mod sip;
pub mod vm;

use std::{path::PathBuf, process::Command, sync::OnceLock};

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
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "-p",
                "sipguard",
                "--bin",
                "sipguard",
                "--message-format=json",
            ])
            .output()
            .expect("running cargo build for the sipguard binary");
        assert!(
            out.status.success(),
            "cargo build -p sipguard failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines().rev() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["reason"] == "compiler-artifact" && v["target"]["name"] == "sipguard" {
                if let Some(exe) = v["executable"].as_str() {
                    return PathBuf::from(exe);
                }
            }
        }
        panic!("cargo build did not report the sipguard executable");
    })
    .clone()
}
