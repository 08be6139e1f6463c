//! The one definition of how the eBPF object is built: toolchain, package and
//! flags. Used by `sipguard/build.rs` (to embed the object) and by
//! `cargo xtask build-ebpf` (to build it on its own).

use std::{path::Path, process::Command};

pub use aya_build::Result;

/// Cargo package of the XDP program.
pub const EBPF_PACKAGE: &str = "sipguard-ebpf";
/// Name of the object produced (the package's binary target).
pub const EBPF_OBJECT: &str = "sipguard";
/// Nightly pinned for LLVM 22, which bpf-linker 0.13 (llvm-22) must match.
pub const PINNED_NIGHTLY: &str = "nightly-2026-05-20";

/// The toolchain for the eBPF crate: `$SIPGUARD_EBPF_TOOLCHAIN`, else the
/// machine's `nightly` when its LLVM is 22, else the pinned nightly.
pub fn ebpf_toolchain() -> String {
    if let Ok(t) = std::env::var("SIPGUARD_EBPF_TOOLCHAIN") {
        if !t.is_empty() {
            return t;
        }
    }
    let llvm22 = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("LLVM version: 22."))
        .unwrap_or(false);
    if llvm22 {
        "nightly".into()
    } else {
        PINNED_NIGHTLY.into()
    }
}

/// Builds the eBPF object into `$OUT_DIR/sipguard` (the build-script
/// contract of aya-build). `workspace_root` locates the eBPF crate.
pub fn build_ebpf(workspace_root: &Path) -> Result<()> {
    let toolchain = ebpf_toolchain();
    let root = workspace_root.join(EBPF_PACKAGE);
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", root.display()))?;
    println!("cargo:rerun-if-env-changed=SIPGUARD_EBPF_TOOLCHAIN");
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("sipguard-common").display()
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
